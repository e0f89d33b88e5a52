"""The SMTP mail backend against a real SMTP server (aiosmtpd) on this machine: STARTTLS with a
certificate the client verifies, then AUTH, then the password-reset mail end to end."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr

from streamward.authn.mail import MailMessage, SmtpMail, send_quietly
from streamward.config import Settings
from tests.conftest import PASSWORD, Env
from tests.support.net import free_port

SMTP_USER, SMTP_PASSWORD = "streamward", "relay secret"
SENDER = "Streamward <noreply@streamward.example.org>"


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for localhost / 127.0.0.1 (its own CA), as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@dataclass
class Inbox:
    """What the SMTP server received: messages and the credentials it was given."""

    messages: list[tuple[str, list[str], Message]] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        self.messages.append(
            (envelope.mail_from, list(envelope.rcpt_tos), message_from_bytes(envelope.content))
        )
        return "250 OK"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        self.logins.append((login, password))
        return AuthResult(success=(login, password) == (SMTP_USER, SMTP_PASSWORD))


@pytest.fixture
def smtp_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Inbox, int]]:
    cert, key = _self_signed(tmp_path)
    # The client verifies the server's certificate against the default trust store; point that store
    # at this certificate (OpenSSL reads SSL_CERT_FILE whenever a default context is created).
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    inbox, port = Inbox(), free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=tls,
        require_starttls=True,
        authenticator=inbox.authenticate,
        auth_required=True,
    )
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture
def settings_overrides(smtp_server: tuple[Inbox, int]) -> dict[str, Any]:
    return {
        "mail_backend": "smtp",
        "smtp_host": "localhost",
        "smtp_port": smtp_server[1],
        "smtp_username": SMTP_USER,
        "smtp_password": SMTP_PASSWORD,
        "smtp_starttls": True,
        "smtp_from": SENDER,
    }


async def test_password_reset_mail_goes_out_over_starttls_with_authentication(
    env: Env, smtp_server: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp_server
    org = await env.org()
    user = await env.member(org, "nanoUser", email="mailme@example.com")
    response = await env.client.post("/api/user/password/reset", json={"email": "mailme@example.com"})
    assert response.status_code == 202
    assert inbox.logins == [(SMTP_USER, SMTP_PASSWORD)]
    [(mail_from, recipients, message)] = inbox.messages
    assert (mail_from, recipients) == ("noreply@streamward.example.org", ["mailme@example.com"])
    assert message["From"] == SENDER and message["Subject"] == "Reset your Streamward password"
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    body = payload.decode()
    link = next(word for word in body.split() if "/password/reset/" in word)
    assert link.startswith(f"{env.settings.base_url}/password/reset/swr_")

    token = link.rsplit("/", 1)[1]
    done = await env.client.post(
        f"/api/user/password/reset/{token}", json={"password": "mailed new passphrase"}
    )
    assert done.status_code == 204
    old = await env.client.post("/api/user/validate", json={"email": user.email, "password": PASSWORD})
    assert old.status_code == 401


async def test_unknown_email_sends_no_mail(env: Env, smtp_server: tuple[Inbox, int]) -> None:
    inbox, _ = smtp_server
    response = await env.client.post("/api/user/password/reset", json={"email": "ghost@example.com"})
    assert response.status_code == 202
    assert inbox.messages == [] and inbox.logins == []


async def test_a_failing_relay_is_logged_and_never_reaches_the_client(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    org = await env.org()
    await env.member(org, "nanoUser", email="unlucky@example.com")
    env.runtime.settings.smtp_port = free_port()  # nothing listens there
    caplog.set_level(logging.ERROR, logger="streamward.authn.mail")
    response = await env.client.post("/api/user/password/reset", json={"email": "unlucky@example.com"})
    assert response.status_code == 202
    [record] = [r for r in caplog.records if r.name == "streamward.authn.mail"]
    assert "could not send mail" in record.getMessage() and "/password/reset/" not in record.getMessage()


async def test_a_relay_whose_certificate_is_not_trusted_gets_nothing(
    smtp_server: tuple[Inbox, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox, port = smtp_server
    monkeypatch.delenv("SSL_CERT_FILE")  # back to the system's trust store, which lacks the test CA
    settings = Settings(
        mail_backend="smtp",
        smtp_host="localhost",
        smtp_port=port,
        smtp_username=SMTP_USER,
        smtp_password=SecretStr(SMTP_PASSWORD),
    )
    backend = SmtpMail(settings)
    message = MailMessage(to="a@example.com", subject="s", body="b")
    with pytest.raises(ssl.SSLCertVerificationError):
        await backend.send(message)
    await send_quietly(backend, message)  # the same failure, logged instead of raised
    assert inbox.logins == [] and inbox.messages == []  # credentials never left over an unverified link
