"""``streamward demo``: a demo organisation with one user of each predefined role."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.authz.permissions import PREDEFINED_ROLES
from streamward.config import Settings
from streamward.crypto import SecretBox
from streamward.db import Database
from streamward.orgs.models import Organisation
from streamward.orgs.packages import PACKAGE_KEYS
from streamward.orgs.service import CreatedOrganisation
from streamward.users.provisioning import create_with_admin
from streamward.users.service import add_membership, create_account

DEMO_NAME = "Demo Organisation"
DEMO_USERS = (
    ("nanoAdmin", "admin@demo.example.com"),
    ("nanoUser", "operator@demo.example.com"),
    ("nanoReadOnly", "observer@demo.example.com"),
)
CREDENTIALS_FILE = "demo-credentials.txt"


class DemoRefused(Exception):
    pass


@dataclass(frozen=True)
class DemoCredentials:
    text: str
    created: bool


def credentials_path(settings: Settings) -> Path:
    return settings.var_dir / CREDENTIALS_FILE


async def create_demo(settings: Settings, *, if_missing: bool = False) -> DemoCredentials:
    """Create the demo organisation; with ``if_missing``, an existing demo is not an error.

    The generated passwords are written to ``var/demo-credentials.txt`` (mode 0600) so that
    ``make run`` can tell how to log in every time it starts; this is for demos only.
    """
    stored = credentials_path(settings)
    passwords = {role: secrets.token_urlsafe(12) for role, _ in DEMO_USERS}
    database = Database(settings.effective_database_url)
    try:
        async with database.session() as session:
            names = list((await session.execute(select(Organisation.name))).scalars())
            if names and set(names) != {DEMO_NAME}:
                raise DemoRefused(
                    "this database holds other organisations; the demo only goes into an empty one"
                )
            if names:
                if if_missing and stored.exists():
                    return DemoCredentials(stored.read_text(), created=False)
                raise DemoRefused("the demo organisation exists already")
            created = await _provision(session, SecretBox(settings.secret_key_bytes), passwords)
            await session.commit()
            assert await session.scalar(select(func.count()).select_from(Organisation)) == 1
    finally:
        await database.dispose()

    text = _credentials_text(settings, created, passwords)
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(stored, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return DemoCredentials(text, created=True)


async def _provision(session: AsyncSession, box: SecretBox, passwords: dict[str, str]) -> CreatedOrganisation:
    """The demo organisation, its first user as nanoAdmin and one user of each other role."""
    admin_role, admin_email = DEMO_USERS[0]
    provisioned = await create_with_admin(
        session,
        box,
        admin_email=admin_email,
        admin_password=passwords[admin_role],
        name=DEMO_NAME,
        support_level="premium",
        analytics_level="full",
        packages=sorted(PACKAGE_KEYS),
    )
    organisation = provisioned.created.organisation
    for role, email in DEMO_USERS[1:]:
        account = await create_account(session, email=email, password=passwords[role])
        await add_membership(session, organisation, account, role)
    return provisioned.created


def _credentials_text(settings: Settings, created: CreatedOrganisation, passwords: dict[str, str]) -> str:
    admin_role, admin_email = DEMO_USERS[0]
    lines = [f"Demo organisation: {DEMO_NAME} ({created.organisation.id})", ""]
    for role, email in DEMO_USERS:
        title = PREDEFINED_ROLES[role].title
        lines.append(f"  {role:<13} {title:<14} {email:<28} password: {passwords[role]}")
    lines += [
        "",
        f"  API key (X-BINTU-APIKEY): {created.api_key}",
        "",
        f"Dashboard: {settings.base_url}/ (sign in with a user above)",
        f"Try the API (after `make run` / `streamward serve`, at {settings.base_url}):",
        f"  curl -s -X POST {settings.base_url}/api/user/validate -H 'content-type: application/json' \\",
        f'       -d \'{{"email": "{admin_email}", "password": "{passwords[admin_role]}"}}\'',
        f"  curl -s {settings.base_url}/api/organisation -H 'X-BINTU-TOKEN: <token from the reply>'",
        f"  API reference: {settings.base_url}/api/docs",
    ]
    return "\n".join(lines) + "\n"
