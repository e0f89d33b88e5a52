"""Data never reaches the dashboard's HTML unescaped.

A custom role's description used to be written raw into the role-preview
``<script type="application/json">``: a description holding ``</script><form ...>`` closed the
element, and its unclosed form swallowed the next dialog's CSRF token and submit button, so an admin
confirming *Reset user token* posted the attacker's role change (a ``role:manage`` member became
nanoAdmin). The tests here drive the real pages over HTTP as a browser does, with data created
through the API, and check every template renders hostile strings as text.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from html import unescape as html_unescape
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pyotp
import pytest
from fastapi.routing import APIRoute
from jinja2 import meta, nodes
from jinja2.runtime import Macro
from markupsafe import Markup, escape
from sqlalchemy import update

import streamward.dashboard.templating
import streamward.users.service
from streamward.authn.mfa import totp
from streamward.authz.permissions import LABELS
from streamward.streams.models import Stream
from streamward.worker import worker_for
from tests.conftest import PASSWORD, Env
from tests.support.pages import browser, csrf_of, signed_in
from tests.support.routes import all_routes

_ROLE_DATA = re.compile(r'<script type="application/json" id="role-data">(.*?)</script>', re.DOTALL)


def role_data(page: str) -> dict[str, Any]:
    """The role-preview data exactly as the browser's JSON.parse(element.textContent) reads it."""
    found = _ROLE_DATA.findall(page)
    assert len(found) == 1, "the page carries one role-data element"
    parsed: dict[str, Any] = json.loads(found[0])
    return parsed


async def test_a_role_description_cannot_close_the_role_preview_script(env: Env) -> None:
    org = await env.org()
    admin = await env.member(org, "nanoAdmin")
    victim = await env.member(org, "nanoUser")
    # The attacker may manage roles (and read streams, so a role with stream:read is theirs to make).
    manager_role = {"name": "roleManager", "permissions": ["role:manage", "stream:read"]}
    created = await env.client.post("/api/permission", json=manager_role, headers=admin.headers)
    assert created.status_code == 201, created.text
    attacker = await env.member(org, "roleManager")
    attack = (
        "Streams, read only.</script>"
        f"<form method=post action=/organisation/users/{attacker.id}/permission>"
        "<input type=hidden name=role value=nanoAdmin>"
    )
    hostile = {"name": "streamReader", "description": attack, "permissions": ["stream:read"]}
    created = await env.client.post("/api/permission", json=hostile, headers=attacker.headers)
    assert created.status_code == 201, created.text
    assigned = await env.client.put(
        "/api/user/permission", json={"userId": str(victim.id), "role": "streamReader"}, headers=admin.headers
    )
    assert assigned.status_code == 200, assigned.text

    admin_browser = await signed_in(env, admin)
    for url in (
        f"/organisation/users/{victim.id}",
        f"/organisation/users/{attacker.id}",
        "/organisation/users/invite",
    ):
        response = await admin_browser.get(url)
        assert response.status_code == 200, response.text
        page = response.text
        assert "</script><form" not in page and "<input type=hidden name=role" not in page
        # Only the dashboard's own forms: each posts its own CSRF token.
        assert page.count("<form") == page.count('name="csrf_token"')
        assert role_data(page)["streamReader"]["description"] == attack
    # The victim's own role is shown as text on their page.
    page = (await admin_browser.get(f"/organisation/users/{victim.id}")).text
    assert f"<p>{escape(attack)}</p>" in page


# --- every template, every field a user can set ---------------------------------------------------

# Closes an attribute, opens elements, closes a script and opens a form; every character HTML-escaping
# must change. SLASHLESS is the same without "/", for host names and URL path segments.
PAYLOAD = '"><script>x</script><img src=x onerror=1>\'"&</script><form>'
SLASHLESS = '"><script>x<img src=x onerror=1>\'"&'
MARKERS = ("<script>x", "<img src=x", "</script><form>", "'\"&")
HOSTILE_EMAIL = f"{PAYLOAD}@example.com"
OPERATOR_TOKEN = "operator-token-for-template-safety-tests"
TEMPLATE_DIR = streamward.dashboard.templating.TEMPLATE_DIR
# Every file of the folder, whatever its extension: each must be covered below.
ALL_TEMPLATES = sorted(p.relative_to(TEMPLATE_DIR).as_posix() for p in TEMPLATE_DIR.rglob("*") if p.is_file())


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "allow_private_webhook_targets": True,
        "operator_token": OPERATOR_TOKEN,
        "webhook_timeout_seconds": 1.0,
    }


def unescaped(page: str) -> list[str]:
    """Each raw marker in ``page`` with what surrounds it (names the field that leaked)."""
    return [
        page[max(match.start() - 80, 0) : match.end() + 40]
        for marker in MARKERS
        for match in re.finditer(re.escape(marker), page)
    ]


class Pages:
    """Opens dashboard pages and checks each: an HTML page under the page CSP, no marker raw, and
    the hostile values it is expected to show present in their escaped form."""

    def __init__(self) -> None:
        self.checked: list[str] = []

    def check(
        self, response: httpx.Response, status: int = 200, *, shows: tuple[str, ...] = (PAYLOAD,)
    ) -> str:
        label = f"{response.request.method} {response.request.url.path}"
        assert response.status_code == status, f"{label}: {response.status_code} {response.text[:300]}"
        assert response.headers["content-type"].startswith("text/html"), label
        csp = [part.strip() for part in response.headers["content-security-policy"].split(";")]
        assert "form-action 'self'" in csp and "base-uri 'none'" in csp, f"{label}: CSP {csp}"
        page = response.text
        assert not unescaped(page), f"{label} renders data unescaped: {unescaped(page)}"
        for value in shows:
            assert str(escape(value)) in page, f"{label} does not show {value!r} (escaped)"
        self.checked.append(label)
        return page


@pytest.fixture
def rendered_templates(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Names of the templates loaded while the test runs: pages, and what they extend, include, import."""
    loaded: set[str] = set()
    environment = streamward.dashboard.templating.templates.env
    original = environment.get_template

    def recording(name: Any, *args: Any, **kwargs: Any) -> Any:
        template = original(name, *args, **kwargs)
        loaded.add(str(template.name))
        return template

    monkeypatch.setattr(environment, "get_template", recording)
    return loaded


async def dashboard_invite(pages: Pages, browser: httpx.AsyncClient, role: str, email: str) -> str:
    """Invite through the dashboard form; returns the invitation token from the link shown once."""
    form = await browser.get("/organisation/users/invite")
    response = await browser.post(
        "/organisation/users/invite",
        data={"csrf_token": csrf_of(form.text), "role": role, "email": email, "expires_in_days": "7"},
    )
    assert response.status_code == 303 and response.headers["location"] == "/organisation/users/invite"
    issued = pages.check(await browser.get("/organisation/users/invite"), shows=(email,))
    link = re.search(r'id="invite-link" type="text" readonly value="[^"]*/invite/([^"]+)"', issued)
    assert link, "the invitation link is shown once"
    return html_unescape(link.group(1))


async def test_every_template_renders_hostile_values_as_text(
    env: Env, rendered_templates: set[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Accounts and invitations made before emails were checked as emails can hold markup; lifting
    # the syntax check (not the length or control-character rules) lets the forms make such rows.
    monkeypatch.setattr(streamward.users.service, "validate_email", lambda *_, **__: None)
    pages = Pages()
    operator = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    org = await env.org()
    admin = await env.member(org, "nanoAdmin")
    api = admin.headers
    org_name = f"Acme {PAYLOAD}"

    # Data created the way clients create it: the operator API, the JSON API, the dashboard's forms.
    renamed = await env.client.patch(
        f"/api/operator/organisation/{org.id}", json={"name": org_name}, headers=operator
    )
    assert renamed.status_code == 200, renamed.text
    role = {
        "name": "hostileRole",
        "description": PAYLOAD,
        "permissions": ["org:read", "user:read", "stream:read"],
    }
    assert (await env.client.post("/api/permission", json=role, headers=api)).status_code == 201
    streams = [
        (await env.client.post("/api/stream", json={"tags": [PAYLOAD, "plain"]}, headers=api)).json()
        for _ in range(2)
    ]
    # Stream names are generated; a hostile one can only be written straight to the database.
    async with env.runtime.database.session() as session:
        await session.execute(
            update(Stream).where(Stream.id == uuid.UUID(streams[0]["id"])).values(name=PAYLOAD)
        )
        await session.commit()

    # The webhook's host resolves while it is saved and no longer when events go out: the delivery
    # log then records the refusal, which names the host.
    dns = {"resolves": True}

    async def resolver(host: str, port: int) -> list[str]:
        if dns["resolves"]:
            return ["127.0.0.1"]
        raise OSError("no such host (test resolver)")

    env.runtime.webhook_resolver = resolver
    webhook_url = f"http://{SLASHLESS}/hook?{PAYLOAD}"
    saved = await env.client.put(
        "/api/organisation/webhook", json={"webhook": webhook_url, "events": ["user.invited"]}, headers=api
    )
    assert saved.status_code == 200, saved.text
    dns["resolves"] = False

    # Invitations with hostile emails from the dashboard's form; one of them makes a nanoAdmin whose
    # email shows on every page they open.
    first_admin = await signed_in(env, admin)
    admin_token = await dashboard_invite(pages, first_admin, "nanoAdmin", HOSTILE_EMAIL)
    member_token = await dashboard_invite(pages, first_admin, "hostileRole", f"member{PAYLOAD}@example.com")
    pending_token = await dashboard_invite(pages, first_admin, "hostileRole", f"pending{PAYLOAD}@example.com")
    await worker_for(env.runtime).drain()

    visitor = browser(env)
    pages.check(
        await visitor.get(f"/invite/{pending_token}"),
        shows=(org_name, PAYLOAD, f"pending{PAYLOAD}@example.com"),
    )
    accept = await visitor.get(f"/invite/{member_token}")
    short = {"csrf_token": csrf_of(accept.text), "mode": "signup", "email": f"member{PAYLOAD}@example.com"}
    pages.check(await visitor.post(f"/invite/{member_token}", data=short | {"password": "short"}), 400)
    joined = await visitor.post(f"/invite/{member_token}", data=short | {"password": PASSWORD})
    assert joined.status_code == 303, joined.text
    pages.check(await browser(env).get(f"/invite/{SLASHLESS}"), 404, shows=())

    joiner = browser(env)
    accept = await joiner.get(f"/invite/{admin_token}")
    signup = {
        "csrf_token": csrf_of(accept.text),
        "mode": "signup",
        "email": HOSTILE_EMAIL,
        "password": PASSWORD,
    }
    assert (await joiner.post(f"/invite/{admin_token}", data=signup)).status_code == 303

    # Sign-in pages: a hostile next URL and email, and the organisation choice of an account that
    # belongs to two organisations (one of them named by the operator API above).
    other = await env.org(name=f"Other {PAYLOAD}")
    await env.member(other, "nanoUser", email=HOSTILE_EMAIL, password=PASSWORD, token=False)
    login = browser(env)
    pages.check(await login.get(f"/login?next={quote('/' + PAYLOAD, safe='')}"), shows=("/" + PAYLOAD,))
    form = {"csrf_token": csrf_of((await login.get("/login")).text), "email": HOSTILE_EMAIL}
    pages.check(
        await login.post("/login", data=form | {"password": "wrong password"}), 401, shows=(HOSTILE_EMAIL,)
    )
    pages.check(
        await login.post("/login", data=form | {"password": PASSWORD}), shows=(org_name, f"Other {PAYLOAD}")
    )
    reset = browser(env)
    form = {"csrf_token": csrf_of(pages.check(await reset.get("/password/reset"), shows=()))}
    pages.check(await reset.post("/password/reset", data=form | {"email": HOSTILE_EMAIL}), shows=())
    pages.check(await reset.get(f"/password/reset/{SLASHLESS}"), shows=(SLASHLESS,))
    mismatch = form | {"password": PASSWORD, "password_again": PASSWORD + "!"}
    pages.check(
        await reset.post(f"/password/reset/{quote(SLASHLESS)}", data=mismatch), 400, shows=(SLASHLESS,)
    )

    # The organisation as its hostile-email admin sees it.
    users = {
        user["email"]: user["id"] for user in (await env.client.get("/api/user", headers=api)).json()["items"]
    }
    member_id = users[f"member{PAYLOAD}@example.com"]
    pages.check(
        await joiner.get("/organisation/overview"), shows=(HOSTILE_EMAIL, org_name, webhook_url, PAYLOAD)
    )
    # One's own password page names the (hostile) account; a refusal shows the page again.
    account = pages.check(await joiner.get("/account/password"), shows=(HOSTILE_EMAIL,))
    wrong = {"csrf_token": csrf_of(account), "current_password": PAYLOAD, "new_password": PASSWORD}
    pages.check(
        await joiner.post("/account/password", data=wrong | {"new_password_again": PASSWORD}),
        400,
        shows=(HOSTILE_EMAIL,),
    )
    overview = await joiner.get("/organisation/overview")
    refused_host = {"csrf_token": csrf_of(overview.text), "url": f"http://{SLASHLESS}/"}
    pages.check(await joiner.post("/organisation/webhook", data=refused_host), 400, shows=(SLASHLESS[:-3],))
    pages.check(
        await joiner.get("/organisation/users"),
        shows=(f"member{PAYLOAD}@example.com", f"pending{PAYLOAD}@example.com"),
    )
    pages.check(await joiner.get(f"/organisation/users?q={quote(PAYLOAD)}"), shows=(PAYLOAD,))
    shown = pages.check(
        await joiner.get(f"/organisation/users/{member_id}"), shows=(f"member{PAYLOAD}@example.com", PAYLOAD)
    )
    assert role_data(shown)["hostileRole"]["description"] == PAYLOAD
    invite = pages.check(await joiner.get("/organisation/users/invite"), shows=(org_name,))
    assert role_data(invite)["hostileRole"]["description"] == PAYLOAD

    pages.check(await joiner.get("/roles"), shows=(PAYLOAD, org_name))
    pages.check(await joiner.get("/roles/new"), shows=(HOSTILE_EMAIL,))
    form = {
        "csrf_token": csrf_of((await joiner.get("/roles/new")).text),
        "name": PAYLOAD,
        "description": PAYLOAD,
    }
    pages.check(await joiner.post("/roles", data=form), 422, shows=(PAYLOAD,))
    pages.check(await joiner.get("/roles/hostileRole/edit"), shows=(PAYLOAD,))

    pages.check(await joiner.get("/audit"), shows=(HOSTILE_EMAIL,))
    filters = {"actor": PAYLOAD, "action": PAYLOAD, "target": PAYLOAD, "from": SLASHLESS}
    pages.check(await joiner.get("/audit?" + urlencode(filters)), 400, shows=(PAYLOAD, SLASHLESS))

    pages.check(await joiner.get("/webhook/deliveries"), shows=(SLASHLESS[:-3],))
    pages.check(
        await joiner.get("/webhook/deliveries?" + urlencode({"event_type": PAYLOAD})), shows=(PAYLOAD,)
    )

    monkeypatch.setattr("streamward.dashboard.stream_pages.DEFAULT_LIMIT", 1)
    listed = pages.check(await joiner.get("/streams?" + urlencode({"tag": PAYLOAD})), shows=(PAYLOAD,))
    older = re.search(r'href="([^"]+)">Older streams', listed)
    assert older, "the pager links to the next page"
    pages.check(await joiner.get(html_unescape(older.group(1))), shows=(PAYLOAD,))
    pages.check(await joiner.get("/streams/new"), shows=(HOSTILE_EMAIL,))
    form = {
        "csrf_token": csrf_of((await joiner.get("/streams/new")).text),
        "tags": PAYLOAD + "x" * 10,
        "group_id": PAYLOAD,
    }
    pages.check(await joiner.post("/streams", data=form), 422, shows=(PAYLOAD,))
    for stream in streams:
        pages.check(await joiner.get(f"/streams/{stream['id']}"), shows=(PAYLOAD,))
    form = {"csrf_token": csrf_of((await joiner.get("/streams/new")).text), "tags": PAYLOAD * 2}
    pages.check(await joiner.post(f"/streams/{streams[0]['id']}/tags", data=form), 422, shows=(PAYLOAD * 2,))

    pages.check(await joiner.get(f"/organisation/users/{uuid.uuid4()}"), 404, shows=(HOSTILE_EMAIL,))

    # Second factors (test_dash_mfa.py has the rest): an app named with the payload, its set-up
    # page, a wrong first code, the security page listing it, and the login's second step.
    security = pages.check(await joiner.get("/account/security"), shows=(HOSTILE_EMAIL,))
    started = {"csrf_token": csrf_of(security), "name": PAYLOAD[:100]}
    enrol = pages.check(await joiner.post("/account/security/totp", data=started), shows=(PAYLOAD[:100],))
    confirm = re.search(r'action="(/account/security/totp/[0-9a-f-]{36}/confirm)"', enrol)
    secret = re.search(r'id="totp-secret" type="hidden" value="([A-Z2-7]+)"', enrol)
    assert confirm and secret
    wrong_code = {"csrf_token": csrf_of(enrol), "code": "000000", "name": PAYLOAD}
    pages.check(await joiner.post(confirm.group(1), data=wrong_code), 400, shows=())
    right_code = wrong_code | {"code": pyotp.TOTP(secret.group(1)).now()}
    assert (await joiner.post(confirm.group(1), data=right_code)).status_code == 303
    pages.check(await joiner.get("/account/security"), shows=(PAYLOAD[:100], HOSTILE_EMAIL))
    second = browser(env)
    form = {"csrf_token": csrf_of((await second.get("/login")).text), "email": HOSTILE_EMAIL}
    stepped = await second.post("/login", data=form | {"password": PASSWORD, "organisation": str(org.id)})
    assert stepped.headers["location"] == "/login/mfa", stepped.text
    pages.check(await second.get("/login/mfa"), shows=(HOSTILE_EMAIL,))

    missing = sorted(set(ALL_TEMPLATES) - rendered_templates)
    print(f"{len(pages.checked)} responses checked:", ", ".join(pages.checked))
    print("templates rendered over HTTP:", ", ".join(sorted(rendered_templates)))
    assert not missing, f"templates no page of this test rendered (add a page that uses them): {missing}"


# --- every variable of every template, rendered directly -------------------------------------------
# The pages above show what users can really set today. Rendering each template directly with EVERY
# variable hostile also covers what no form reaches yet (a value a validator refuses today, a field
# added tomorrow), and each macro of a partial.


def _template_ast(name: str) -> nodes.Template:
    source = (TEMPLATE_DIR / name).read_text()
    return streamward.dashboard.templating.templates.env.parse(source)


def _hostile_class() -> type[str]:
    """A string holding PAYLOAD whose every attribute, item, call and element is another such
    string: whatever a template does with a variable, it ends up printing PAYLOAD."""

    class Hostile(str):
        def __new__(cls) -> Hostile:
            return super().__new__(cls, PAYLOAD)

        def __getattr__(self, name: str) -> Hostile:
            if name.startswith("__"):
                raise AttributeError(name)
            return Hostile()

        def __getitem__(self, key: Any) -> Hostile:  # type: ignore[override]
            return Hostile()

        def __call__(self, *args: Any, **kwargs: Any) -> Hostile:
            return Hostile()

        def __iter__(self) -> Iterator[Hostile]:  # type: ignore[override]
            return iter((Hostile(), Hostile()))  # two: `for a, b in x` unpacks one

        def __contains__(self, item: Any) -> bool:  # type: ignore[override]
            return True

    # Attributes the templates read that str has too (`role.title`) must not find str's methods.
    read = {node.attr for name in ALL_TEMPLATES for node in _template_ast(name).find_all(nodes.Getattr)}
    for attr in sorted(read):
        if hasattr(str, attr):
            setattr(Hostile, attr, property(lambda self: Hostile()))
    return Hostile


def render_hostile(name: str) -> str:
    environment = streamward.dashboard.templating.templates.env
    variables = set().union(*(meta.find_undeclared_variables(_template_ast(n)) for n in ALL_TEMPLATES))
    hostile = _hostile_class()
    context = {variable: hostile() for variable in variables - set(environment.globals)}
    # The one value that is markup: the QR code segno draws, here of a hostile otpauth URI (the
    # qr_code filter refuses anything that is not segno's drawing; see the test below).
    context["qr_svg"] = totp.qr_svg(f"otpauth://totp/{PAYLOAD}?secret=JBSWY3DPEHPK3PXP&issuer={PAYLOAD}")
    template = environment.get_template(name)
    rendered = [template.render(context)]
    # A partial of macros renders nothing by itself: call each macro with hostile arguments.
    module = template.make_module(context)
    for macro in vars(module).values():
        if isinstance(macro, Macro):
            rendered.append(macro(*(hostile() for _ in macro.arguments)))
    return "".join(rendered)


@pytest.mark.parametrize("name", ALL_TEMPLATES)
def test_every_template_escapes_every_variable(name: str) -> None:
    page = render_hostile(name)
    assert not unescaped(page), f"{name} renders data unescaped: {unescaped(page)}"
    assert str(escape(PAYLOAD)) in page, f"{name} printed none of its variables"


# --- the environment and the dashboard's own filters -----------------------------------------------


def test_autoescape_is_on_for_every_template_whatever_its_name() -> None:
    environment = streamward.dashboard.templating.templates.env
    # A bool, not Starlette's default select_autoescape() that escapes only *.html/*.htm/*.xml names.
    assert environment.autoescape is True
    for name in [*ALL_TEMPLATES, "partial.txt", "mail.j2"]:
        assert environment.from_string("{{ v }}").render(v=PAYLOAD) == str(escape(PAYLOAD)), name


def test_the_dashboards_filters_return_text_that_autoescape_escapes() -> None:
    environment = streamward.dashboard.templating.templates.env
    render = environment.from_string
    assert render("{{ p|label }}").render(p=PAYLOAD) == str(escape(PAYLOAD))  # unknown: the name itself
    assert render("{{ p|label }}").render(p="user:edit") == str(escape(LABELS["user:edit"]))
    assert render("{{ v|utc }}").render(v=None) == ""
    assert render('<code title="{{ v|json_text }}">{{ v|json_text }}</code>').render(v={"d": PAYLOAD}) == (
        f'<code title="{escape(json.dumps({"d": PAYLOAD}))}">{escape(json.dumps({"d": PAYLOAD}))}</code>'
    )
    # Jinja's own tojson leaves '"' raw in its Markup (an attribute breaks out): it is not offered.
    assert "tojson" not in environment.filters
    for name in ("label", "utc", "json_text"):
        assert not isinstance(environment.filters[name](PAYLOAD if name != "utc" else None), Markup), name


def test_json_script_is_one_element_whose_text_parses_back_to_the_value() -> None:
    value = {"description": PAYLOAD + "<!-- \u2028\u2029 </SCRIPT >", "n": [1, None, True]}
    rendered = streamward.dashboard.templating.templates.env.from_string(
        '{{ v|json_script("role-data") }}'
    ).render(v=value)
    opening = '<script type="application/json" id="role-data">'
    assert rendered.startswith(opening) and rendered.endswith("</script>")
    text = rendered[len(opening) : -len("</script>")]
    for raw in ("<", ">", "&", "\u2028", "\u2029"):
        assert raw not in text
    assert json.loads(text) == value
    attribute = streamward.dashboard.templating.json_script({}, '"><b>')
    assert attribute.startswith('<script type="application/json" id="&#34;&gt;&lt;b&gt;">')


# --- the page CSP ------------------------------------------------------------------------------------


async def test_every_dashboard_response_forbids_foreign_form_targets_and_base_urls(env: Env) -> None:
    """Injected markup could still post a form elsewhere or re-base relative URLs; the page CSP's
    form-action 'self' and base-uri 'none' stop both, on every dashboard response (refusals included)."""
    org = await env.org()
    admin = await env.member(org, "nanoAdmin", token=False)
    browsers = [await signed_in(env, admin), browser(env)]
    app = env.client._transport.app  # type: ignore[attr-defined]
    dashboard = [
        route
        for route in all_routes(app)
        if isinstance(route, APIRoute) and route.endpoint.__module__.startswith("streamward.dashboard.")
    ]
    assert len(dashboard) >= 20, "the route walk found too few dashboard routes"
    for route in dashboard:
        path = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), route.path)
        for method in sorted(route.methods - {"HEAD"}):
            for client in browsers:
                response = await client.request(method, path, data={} if method == "POST" else None)
                csp = [
                    part.strip() for part in response.headers.get("content-security-policy", "").split(";")
                ]
                assert "form-action 'self'" in csp and "base-uri 'none'" in csp, f"{method} {path}: {csp}"


def test_the_qr_code_filter_lets_through_segnos_geometry_and_nothing_else() -> None:
    qr_code = streamward.dashboard.templating.qr_code
    drawn = qr_code(totp.qr_svg(f"otpauth://totp/{PAYLOAD}?secret=JBSWY3DPEHPK3PXP"))
    assert drawn.startswith("<svg ") and 'viewBox="0 0 ' in drawn and PAYLOAD not in drawn
    assert not unescaped(str(drawn))
    for forged in (
        PAYLOAD,
        '<svg width="1" height="1"><script>alert(1)</script></svg>',
        '<svg width="1" height="1"><g><path d="M0 0" onload="alert(1)"/></g></svg>',
        '<svg width="1" height="1"><g><path d="M0 0"/><foreignObject/></g></svg>',
        '<svg width="1" height="1"><g><path d="javascript:alert(1)"/></g></svg>',
    ):
        with pytest.raises(ValueError, match="segno"):
            qr_code(forged)
