"""The signed-in person's own account: changing their password."""

from __future__ import annotations

from typing import Annotated

from fastapi import Request
from fastapi.responses import Response

from streamward.authn import password_changes
from streamward.dashboard.core import CheckedForm, Viewer, flash_redirect, page, render
from streamward.errors import AppError
from streamward.web.params import RuntimeDep
from streamward.web.routing import Router
from streamward.web.session import DbSession, note_refusal, reads, writes

router = Router(include_in_schema=False)

TITLE = "Change your password"
CHANGED = "Your password was changed. Your other sessions were signed out; this one stays signed in."


@router.get("/account/password")
@reads
async def password_page(request: Request, viewer: Annotated[Viewer, page()]) -> Response:
    return render(request, "account_password.html", title=TITLE)


@router.post("/account/password")
@writes
async def change_password(
    request: Request,
    viewer: Annotated[Viewer, page()],
    form: CheckedForm,
    db: DbSession,
    runtime: RuntimeDep,
) -> Response:
    def again(error: str, status: int, headers: dict[str, str] | None = None) -> Response:
        response = render(request, "account_password.html", status_code=status, title=TITLE, error=error)
        response.headers.update(headers or {})
        return response

    new_password = form.get("new_password") or ""
    if new_password != (form.get("new_password_again") or ""):
        return again("The two new passwords differ.", 400)
    try:
        # The API's PUT /api/user/password: the same checks, throttle, audit entry and session ends.
        await password_changes.change_password(
            db,
            runtime.login_throttle,
            viewer.principal,
            current_password=(form.get("current_password") or "")[:128],
            new_password=new_password,
        )
    except AppError as refused:
        note_refusal(request, refused)
        return again(refused.message, refused.status_code, refused.headers)
    return flash_redirect(request, "/organisation/overview", "success", CHANGED)
