"""Reading the mails the console backend filed (``<var_dir>/mail/*.eml``), as a developer would."""

from __future__ import annotations

import re
from email import message_from_bytes, policy
from email.message import EmailMessage

from tests.conftest import Env

RESET_LINK = re.compile(r"(http://\S+/password/reset/(swr_[A-Za-z0-9_-]{43}))")


def filed_mails(env: Env) -> list[EmailMessage]:
    """Every mail filed so far, oldest first."""
    folder = env.settings.var_dir / "mail"
    if not folder.exists():
        return []
    return [
        message_from_bytes(path.read_bytes(), policy=policy.default) for path in sorted(folder.glob("*.eml"))
    ]


def mailed_reset_links(env: Env) -> list[tuple[str, str]]:
    """(link, token) of every password-reset mail filed so far."""
    return [found for mail in filed_mails(env) for found in RESET_LINK.findall(mail.get_content())]


def mailed_reset_tokens(env: Env) -> list[str]:
    return [token for _, token in mailed_reset_links(env)]


async def reset_link(env: Env, email: str) -> str:
    """Ask for a reset of ``email``'s password; the token of the link mailed."""
    await env.client.post("/api/user/password/reset", json={"email": email})
    [(_, token)] = mailed_reset_links(env)
    return token
