"""Outgoing mail, through the backend the settings choose.

``console`` (the default, for development) sends nothing: it files each message as a file of its
own under ``<var_dir>/mail/`` (folder 0700, files 0600) and logs only recipient, subject and file.
The messages hold working links (a password reset link is a credential), and logs are read by many
and kept long: they never see a body. ``smtp`` sends through a relay; smtplib blocks, so it runs in
a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import smtplib
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Protocol

from streamward.config import Settings, make_private_dir

log = logging.getLogger(__name__)

SMTP_TIMEOUT_SECONDS = 15
MAIL_FOLDER = "mail"  # under var_dir: where the console backend files mails


@dataclass(frozen=True)
class MailMessage:
    to: str
    subject: str
    body: str


class MailBackend(Protocol):
    async def send(self, message: MailMessage) -> None: ...


class ConsoleMail:
    """Files each mail under ``<var_dir>/mail`` (one ``.eml`` file each, named so that they sort by
    time)."""

    def __init__(self, sender: str, var_dir: Path) -> None:
        self.sender = sender
        self.var_dir = var_dir
        self.folder = var_dir / MAIL_FOLDER

    def _file_blocking(self, message: MailMessage) -> Path:
        make_private_dir(self.var_dir)
        make_private_dir(self.folder)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        path = self.folder / f"{stamp}-{secrets.token_hex(4)}.eml"
        # O_EXCL: never write into a file (or through a link) someone else put there first.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            # Plain headers and the body as written (no MIME transfer encoding): a developer opens
            # the file and follows the link in it.
            handle.write(
                f"From: {self.sender}\nTo: {message.to}\nSubject: {message.subject}\n"
                f"Content-Type: text/plain; charset=utf-8\n\n{message.body}\n"
            )
        return path

    async def send(self, message: MailMessage) -> None:
        path = await asyncio.to_thread(self._file_blocking, message)
        log.info("mail to %s (%r) not sent (console backend): filed as %s", message.to, message.subject, path)


class SmtpMail:
    def __init__(self, settings: Settings) -> None:
        self.host = settings.smtp_host
        self.port = settings.smtp_port
        self.username = settings.smtp_username
        self.password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        self.starttls = settings.smtp_starttls
        self.sender = settings.smtp_from

    def _envelope(self, message: MailMessage) -> EmailMessage:
        email = EmailMessage()
        email["From"] = self.sender
        email["To"] = message.to
        email["Subject"] = message.subject
        email["Message-ID"] = make_msgid(domain="streamward")
        email.set_content(message.body)
        return email

    def _send_blocking(self, message: MailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=SMTP_TIMEOUT_SECONDS) as smtp:
            if self.starttls:
                # Verifies the relay's certificate and host name (the default context does both).
                smtp.starttls(context=ssl.create_default_context())
            if self.username:
                smtp.login(self.username, self.password or "")
            smtp.send_message(self._envelope(message))

    async def send(self, message: MailMessage) -> None:
        await asyncio.to_thread(self._send_blocking, message)


def mail_backend(settings: Settings) -> MailBackend:
    if settings.mail_backend == "smtp":
        return SmtpMail(settings)
    return ConsoleMail(settings.smtp_from, settings.var_dir)


async def send_quietly(backend: MailBackend, message: MailMessage) -> None:
    """Send after the response went out: a failure is logged (without the message, which may hold
    a link that works as a credential) and never reaches the client, whose answer must not depend on
    whether mail was sent."""
    try:
        await backend.send(message)
    except (OSError, smtplib.SMTPException) as error:
        log.error("could not send mail %r to %s: %s", message.subject, message.to, error)


# --- what the second factor tells an account by mail (sent after the commit, like every mail) ---


def recovery_code_used_mail(email: str, *, remaining: int, client_address: str) -> MailMessage:
    """A recovery code stands in for the second factor: the owner hears of every use, so that a
    stolen code does not go unnoticed."""
    return MailMessage(
        to=email,
        subject="A recovery code was used to sign in to Streamward",
        body=(
            f"Someone signed in to the Streamward account {email} with one of its recovery codes "
            f"(from the address {client_address}). That code no longer works; {remaining} unused "
            "codes are left.\n\nIf it was you, consider setting up your authenticator app or passkey "
            "again and replacing your recovery codes.\nIf it was not you, change your password now: "
            "your password and a recovery code were both known to whoever signed in.\n"
        ),
    )


def factor_added_mail(email: str, *, kind: str, name: str, client_address: str | None) -> MailMessage:
    """A new way into the account: the owner hears of every one, so that a factor planted by whoever
    held a session (and, later than just after signing in, the password) does not go unnoticed."""
    article, what = ("A", "passkey") if kind == "passkey" else ("An", "authenticator app")
    where = f" (from the address {client_address})" if client_address else ""
    return MailMessage(
        to=email,
        subject=f"{article} {what} was added to your Streamward account",
        body=(
            f"The {what} {name!r} was added to the Streamward account {email}{where}, and the "
            "account's other sessions were signed out.\n\nIf it was you, nothing more to do.\nIf it "
            "was not you, sign in, remove it on your security page and change your password.\n"
        ),
    )


def second_factors_reset_mail(email: str, *, organisation_name: str) -> MailMessage:
    """An administrator removed every second factor of the account."""
    return MailMessage(
        to=email,
        subject="Your Streamward second factors were removed",
        body=(
            f"An administrator of the organisation {organisation_name!r} removed every authenticator "
            f"app, passkey and recovery code of the Streamward account {email}, and signed it out "
            "everywhere.\n\nSign in with your password and set up a second factor again. If you did "
            "not ask for this, tell your administrator.\n"
        ),
    )
