"""The ``streamward`` command."""

from __future__ import annotations

import asyncio
import logging
import secrets
import sys
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from streamward.config import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from streamward.users.provisioning import ProvisionedOrganisation

app = typer.Typer(
    help="Streamward: organisations, users, roles and credentials of a streaming cloud.", no_args_is_help=True
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
org_app = typer.Typer(help="Organisations (platform operator).", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(org_app, name="org")


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"streamward: {message}", err=True)
    raise typer.Exit(code)


def _settings() -> Settings:
    try:
        settings = load_settings()
        from streamward.logs import configure_logging

        configure_logging(settings)  # STREAMWARD_LOG_LEVEL and STREAMWARD_LOG_FORMAT, once
        from streamward.users.service import allow_special_email_domains

        # The one email rule, as the server applies it (intranet domains admitted by the setting).
        allow_special_email_domains(settings.special_email_domains)
        _ = settings.secret_key_bytes  # generate or validate the key now, not on first use
    except SettingsError as exc:
        _fail(str(exc))
    return settings


def _is_local(url: str) -> bool:
    from urllib.parse import urlsplit

    return (urlsplit(url).hostname or "") in ("127.0.0.1", "localhost", "::1")


def _upgrade(settings: Settings) -> None:
    from streamward.migrate import upgrade

    try:
        upgrade(settings.effective_database_url)
    except OSError as exc:
        _fail(f"cannot reach the database: {exc}")


def _warn_about_setup(settings: Settings, workers: int) -> None:
    """Settings that work but are likely a mistake for a server others reach."""
    from streamward.limits import unshared_limits_warning

    if settings.mail_backend == "console" and not _is_local(settings.base_url):
        # The console backend sends nothing: it files each mail under var_dir/mail. Fine on a laptop.
        logging.getLogger("streamward").warning(
            "STREAMWARD_MAIL_BACKEND=console sends no mail (each one, password-reset link included, "
            "is filed under %s); use smtp for a server others reach (%s)",
            settings.var_dir / "mail",
            settings.base_url,
        )
    if limits_warning := unshared_limits_warning(settings, workers):
        logging.getLogger("streamward").warning(limits_warning)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Overrides STREAMWARD_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Overrides STREAMWARD_PORT.")] = None,
    workers: Annotated[
        int, typer.Option(min=1, help="Server processes on this machine, sharing the port (PostgreSQL only).")
    ] = 1,
) -> None:
    """Upgrade the schema, then serve the API and the dashboard."""
    import os

    from streamward.app import create_app
    from streamward.bintu_root import run_server

    settings = _settings()
    if host:
        settings.host = host
    if port:
        settings.port = port
    if workers > 1 and settings.is_sqlite:
        _fail("--workers needs PostgreSQL (STREAMWARD_DATABASE_URL): SQLite takes one writer at a time")
    _upgrade(settings)
    _warn_about_setup(settings, workers)
    typer.echo(f"Streamward on http://{settings.host}:{settings.port}  (API docs: /api/docs)")
    if workers > 1:
        # The processes are spawned and read their settings from the environment, like this one did:
        # the command line's overrides must reach them there (links are built from host and port).
        os.environ["STREAMWARD_HOST"], os.environ["STREAMWARD_PORT"] = settings.host, str(settings.port)
    # uvicorn.run, also listening on the bintu API root's own port when STREAMWARD_BINTU_ROOT_PORT is set.
    # On SIGTERM: stop accepting, let requests in flight finish (at most the grace), then the app's
    # shutdown (the delivery worker hands back what it has not started sending).
    run_server(
        "streamward.app:app_from_environment" if workers > 1 else create_app(settings),
        bintu_root_port=settings.bintu_root_port,
        workers=workers,
        factory=workers > 1,
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        server_header=False,
        # uvicorn would take client address and scheme from X-Forwarded-* sent from 127.0.0.1 whatever
        # STREAMWARD_TRUST_FORWARDED_FOR says; the app's ForwardedClient middleware decides, once.
        proxy_headers=False,
        # Access lines would carry URL paths, which may hold secrets (invitation links): off by default.
        # streamward.observability writes one with the route template instead.
        access_log=False,
        # uvicorn's own lines go through streamward.logs (its format, its request ids), not its config.
        log_config=None,
    )


@app.command()
def worker() -> None:
    """Run the webhook delivery worker alone (scale-out: STREAMWARD_RUN_WORKER=false on web processes)."""
    import signal

    from streamward.runtime import Runtime
    from streamward.worker import worker_for

    settings = _settings()
    _upgrade(settings)

    async def run() -> None:
        runtime = Runtime.from_settings(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await worker_for(runtime).run(stop)
        finally:
            await runtime.aclose()

    asyncio.run(run())


@app.command()
def housekeeping(
    retention_days: Annotated[
        int | None, typer.Option(min=1, help="Overrides STREAMWARD_RETENTION_DAYS.")
    ] = None,
) -> None:
    """Purge what has expired now (the delivery worker also does it every few minutes) and print how
    many rows of each kind went. Never the audit log."""
    from streamward.db import Database
    from streamward.housekeeping import purge

    settings = _settings()
    _upgrade(settings)

    async def run() -> dict[str, int]:
        database = Database(settings.effective_database_url)
        try:
            return await purge(database, retention_days=retention_days or settings.retention_days)
        finally:
            await database.dispose()

    counts = asyncio.run(run())
    width = max(len(name) for name in counts)
    for name, count in counts.items():
        typer.echo(f"{name:<{width}}  {count}")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration."""
    settings = _settings()
    _upgrade(settings)
    typer.echo("schema is up to date")


@org_app.command("create")
def org_create(
    name: Annotated[str, typer.Option(help="Organisation name.")],
    admin_email: Annotated[str, typer.Option(help="Email of the first nanoAdmin.")],
    admin_password: Annotated[
        str | None,
        typer.Option(
            help="First nanoAdmin's password. Omitted: asked for (no echo), or generated when not a terminal."
        ),
    ] = None,
    support_level: Annotated[str, typer.Option()] = "basic",
    analytics_level: Annotated[str, typer.Option()] = "basic",
    package: Annotated[list[str] | None, typer.Option(help="Package key; repeat for several.")] = None,
    trial: Annotated[bool, typer.Option(help="Flag the organisation as a trial.")] = False,
) -> None:
    """Create an organisation with its first administrator; prints the API key once."""
    from streamward.crypto import SecretBox
    from streamward.db import Database
    from streamward.errors import AppError
    from streamward.users.provisioning import create_with_admin

    settings = _settings()
    admin_password, generated = _first_admin_password(admin_password)
    _upgrade(settings)

    async def run() -> ProvisionedOrganisation:
        database = Database(settings.effective_database_url)
        try:
            async with database.session() as session:
                provisioned = await create_with_admin(
                    session,
                    SecretBox(settings.secret_key_bytes),
                    admin_email=admin_email,
                    admin_password=admin_password,
                    name=name,
                    support_level=support_level,
                    analytics_level=analytics_level,
                    packages=package or [],
                    trial=trial,
                )
                await session.commit()
                return provisioned
        finally:
            await database.dispose()

    try:
        provisioned = asyncio.run(run())
    except AppError as exc:  # a refused email, name or level: one line, no traceback
        _fail(exc.message)
    except ValueError as exc:
        _fail(str(exc))
    org = provisioned.created.organisation
    typer.echo(f"organisation {org.name!r} created: {org.id}")
    typer.echo(f"API key (shown once): {provisioned.created.api_key}")
    if provisioned.admin_account_existed:
        typer.echo(f"admin {admin_email} already had an account and keeps its password")
    elif generated:
        typer.echo(f"admin {admin_email} password (shown once): {admin_password}")
    else:
        typer.echo(f"admin {admin_email} can log in with the password given")


def _first_admin_password(given: str | None) -> tuple[str, bool]:
    """The first nanoAdmin's password and whether it was generated: as given, else asked for (no
    echo) on a terminal, else generated. Checked against the policy before anything is written."""
    from streamward.errors import AppError
    from streamward.password_policy import check_password

    generated = False
    if given is None:
        if sys.stdin.isatty():
            given = typer.prompt("Admin password", hide_input=True, confirmation_prompt=True)
        else:
            given, generated = secrets.token_urlsafe(15), True
    try:
        check_password(given)
    except AppError as exc:
        _fail(exc.message)
    return given, generated


@org_app.command("update")
def org_update(
    organisation_id: Annotated[str, typer.Argument(help="The organisation's id.")],
    name: Annotated[str | None, typer.Option(help="New name.")] = None,
    support_level: Annotated[str | None, typer.Option(help="basic, standard, premium or enterprise.")] = None,
    analytics_level: Annotated[str | None, typer.Option(help="basic, full or premium.")] = None,
    package: Annotated[
        list[str] | None, typer.Option(help="The packages from now on (replaces them); repeat for several.")
    ] = None,
    add_package: Annotated[list[str] | None, typer.Option(help="Enable a package; repeatable.")] = None,
    remove_package: Annotated[list[str] | None, typer.Option(help="Disable a package; repeatable.")] = None,
    trial: Annotated[
        bool | None, typer.Option("--trial/--no-trial", help="Set or clear the trial flag.")
    ] = None,
) -> None:
    """Change an organisation's name, levels, trial flag or packages (audited as the operator)."""
    import uuid

    from streamward.db import Database
    from streamward.errors import AppError
    from streamward.orgs.service import OrganisationChanges, update_organisation

    if package is not None and (add_package or remove_package):
        _fail("use either --package (replace the set) or --add-package/--remove-package, not both")
    try:
        key = uuid.UUID(organisation_id)
    except ValueError:
        _fail(f"not an organisation id: {organisation_id!r}")
    changes = OrganisationChanges(
        name=name,
        support_level=support_level,
        analytics_level=analytics_level,
        trial=trial,
        packages=package,
        add_packages=add_package,
        remove_packages=remove_package,
    )
    settings = _settings()
    _upgrade(settings)

    async def run() -> str:
        database = Database(settings.effective_database_url)
        try:
            async with database.session() as session:
                org = await update_organisation(session, key, changes)
                await session.commit()
                return (
                    f"organisation {org.name!r} ({org.id}): support {org.support_level}, "
                    f"analytics {org.analytics_level}, trial {'yes' if org.trial else 'no'}, "
                    f"packages {', '.join(org.packages) or 'none'}"
                )
        finally:
            await database.dispose()

    try:
        typer.echo(asyncio.run(run()))
    except AppError as exc:
        _fail(exc.message)


@app.command()
def demo(
    if_missing: Annotated[
        bool, typer.Option("--if-missing", help="Succeed quietly when the demo exists.")
    ] = False,
) -> None:
    """Create a demo organisation with one user of each predefined role and print their credentials."""
    from streamward.demo import DemoRefused, create_demo

    settings = _settings()
    _upgrade(settings)
    try:
        credentials = asyncio.run(create_demo(settings, if_missing=if_missing))
    except DemoRefused as exc:
        _fail(str(exc))
    typer.echo(credentials.text)


def main() -> None:
    app()
