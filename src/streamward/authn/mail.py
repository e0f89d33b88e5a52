"""Outgoing mail, through the backend the settings choose.

``console`` (the default) writes each message, link included, to the log: that is its purpose in
development, and why it is not for production. ``smtp`` sends through a relay; smtplib blocks, so
it runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Protocol

from streamward.config import Settings

log = logging.getLogger(__name__)

SMTP_TIMEOUT_SECONDS = 15


@dataclass(frozen=True)
class MailMessage:
    to: str
    subject: str
    body: str


class MailBackend(Protocol):
    async def send(self, message: MailMessage) -> None: ...


class ConsoleMail:
    def __init__(self, sender: str) -> None:
        self.sender = sender

    async def send(self, message: MailMessage) -> None:
        log.info(
            "mail (console backend)\nFrom: %s\nTo: %s\nSubject: %s\n\n%s",
            self.sender,
            message.to,
            message.subject,
            message.body,
        )


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
    return ConsoleMail(settings.smtp_from)


async def send_quietly(backend: MailBackend, message: MailMessage) -> None:
    """Send after the response went out: a failure is logged (without the message, which may hold
    a link that works as a credential) and never reaches the client, whose answer must not depend on
    whether mail was sent."""
    try:
        await backend.send(message)
    except (OSError, smtplib.SMTPException) as error:
        log.error("could not send mail %r to %s: %s", message.subject, message.to, error)
