"""Small helpers shared by the pages: forms, lists, and the JSON the passkey script reads."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from streamward.authn.mfa.passkeys import Ceremony
from streamward.errors import AppError, error_body
from streamward.web.session import note_refusal


async def form_values(request: Request, name: str) -> list[str]:
    """Every value of a repeated form field (a group of checkboxes).

    Only for routes that also take ``CheckedForm``: that dependency has read (and cached) the form
    and checked its CSRF token before the route runs.
    """
    form = await request.form()
    return [value for value in form.getlist(name) if isinstance(value, str)]


def lines(text: str) -> list[str]:
    """A textarea's non-blank lines (one value per line: tags may contain commas)."""
    return [line for line in text.splitlines() if line.strip()]


def validation_message(
    error: ValidationError, labels: Mapping[str, str], hints: Mapping[str, str] | None = None
) -> str:
    """A readable sentence from a request model's validation error, naming the form's fields.

    ``labels`` maps a model field (by alias) to the label shown on the form; ``hints`` replaces the
    validator's wording for a field whose rule is easier said in words (a name pattern, say).
    """
    problems: list[str] = []
    for problem in error.errors():
        field = next((str(part) for part in problem["loc"] if isinstance(part, str)), "")
        text = (hints or {}).get(field) or str(problem["msg"]).removeprefix("Value error, ")
        label = labels.get(field, field)
        sentence = f"{label}: {text}" if label else text
        if sentence not in problems:
            problems.append(sentence)
    return "Please check your input. " + "; ".join(problems) + "."


def list_url(path: str, **params: str | None) -> str:
    """A list page's URL with its filters (empty ones left out), for pager and download links."""
    query = urlencode({key: value for key, value in params.items() if value})
    return f"{path}?{query}" if query else path


def ceremony_json(ceremony: Ceremony) -> JSONResponse:
    """A started WebAuthn ceremony, for passkeys.js: the options and the challenge to send back."""
    return JSONResponse({"challenge": ceremony.token, "publicKey": ceremony.public_key})


def refusal_json(request: Request, refused: AppError) -> JSONResponse:
    """A refusal passkeys.js shows, in the API's error envelope (the request's changes rolled back,
    as a rendered refusal's are)."""
    note_refusal(request, refused)
    body = error_body(refused.code, refused.message)
    return JSONResponse(body, status_code=refused.status_code, headers=refused.headers)
