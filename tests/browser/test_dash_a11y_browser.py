"""Every dashboard page, as every predefined role, at 1440 px and 375 px, in Debian's Chromium:
axe-core finds no serious or critical accessibility violation, and the page meets the design rules
axe does not check (touch targets of at least 40 px on phones, tables that stay inside their box,
no sideways scrolling, a focus ring and input borders of at least 3:1). Dialogs are opened and
checked too. Screenshots of each page and dialog go to test-artifacts/screenshots/, named
<role>-<page>-<width>.png; every problem found goes to test-artifacts/a11y-report.json.

One real server (``streamward serve`` on SQLite with the demo organisation, plus invitations, a
custom role, streams with tags and a webhook that fails) serves the whole module. Each viewer (no
one, and each role) is one browser context, signed in once; each page is loaded once and checked at
both widths; the viewers run side by side in the session's one Chromium.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.support.axe import RUN_AXE, axe_script
from tests.support.browser import ARTIFACTS, SCREENSHOTS, WIDTHS, Server, Servers, sign_in
from tests.support.net import free_port

REPORT = ARTIFACTS / "a11y-report.json"
FAILING_IMPACTS = ("serious", "critical")
TARGET = 40  # px: the least height of a button or a link in a control
# Nothing listens here: every delivery to the webhook fails.
HOOK_PORT = free_port()


@dataclass(frozen=True)
class Seeded:
    server: Server
    invite_token: str
    other_user_id: str


@dataclass
class Findings:
    problems: list[dict[str, Any]] = field(default_factory=list)

    def add(self, role: str, page: str, width: int, kind: str, detail: Any) -> None:
        self.problems.append({"role": role, "page": page, "width": width, "kind": kind, "detail": detail})


def _seed(url: str, admin: tuple[str, str], hook_port: int) -> tuple[str, str]:
    """What a real organisation holds: people, invitations, a custom role, tagged streams and a
    webhook that refuses every delivery. Returns (an open invitation's token, a member's id)."""
    with httpx.Client(base_url=url, timeout=30) as api:
        login = api.post("/api/user/validate", json={"email": admin[0], "password": admin[1]})
        assert login.status_code == 200, login.text
        headers = {"X-BINTU-TOKEN": login.json()["token"]}
        hook = {"webhook": f"http://127.0.0.1:{hook_port}/hook", "events": ["user.invited", "user.joined"]}
        assert api.put("/api/organisation/webhook", json=hook, headers=headers).status_code == 200
        role = {
            "name": "streamProducer",
            "description": "Creates and tags streams; sees nothing else.",
            "permissions": [
                "org:read",
                "playerkey:read",
                "token:read",
                "stream:read",
                "stream:create",
                "tag:read",
                "tag:write",
            ],
        }
        assert api.post("/api/permission", json=role, headers=headers).status_code == 201
        member_id = ""
        for n in range(6):
            issued = api.post("/api/user/invite", json={"role": "streamProducer"}, headers=headers).json()
            joined = api.post(
                f"/api/invite/{issued['token']}/accept",
                json={
                    "email": f"producer{n}.with.a.long.name@studio-{n}.example.com",
                    "password": "a-long-password-1",
                },
            )
            assert joined.status_code == 200, joined.text
            member_id = joined.json()["user"]["id"]
        for email in ("pending.person@partner.example.com", None):
            body = {"role": "nanoUser"} | ({"email": email} if email else {})
            assert api.post("/api/user/invite", json=body, headers=headers).status_code == 201
        open_invite = api.post("/api/user/invite", json={"role": "nanoReadOnly"}, headers=headers).json()
        for tags in (
            ["news", "sport:football"],
            ["news"],
            ["studio:berlin", "premium", "long-tag-name:value"],
        ):
            assert api.post("/api/stream", json={"tags": tags}, headers=headers).status_code in (200, 201)
        return open_invite["token"], member_id


@pytest.fixture(scope="session")
def seeded(servers: Servers) -> Seeded:
    """A server of its own, seeded once (webhook targets on loopback allowed: the hook's port)."""
    server = servers(__name__, {"allow_private_webhook_targets": "true", "webhook_timeout_seconds": "1"})
    token, member_id = _seed(server.url, server.admin, HOOK_PORT)
    return Seeded(server, token, member_id)


# Measured in the page: what axe does not check. Touch targets on phones, tables inside their box,
# cells of stacked tables without a label, and the page's own width.
MEASURE = """(target) => {
  const visible = (el) => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0
      && getComputedStyle(el).visibility !== "hidden" && !el.closest("[hidden], dialog:not([open])"); };
  const name = (el) => (el.getAttribute("aria-label") || el.textContent || el.value || el.id || "")
    .trim().replace(/\\s+/g, " ").slice(0, 40);
  const small = [...document.querySelectorAll(
      "button, .btn, .tabs a, .topnav a, .menu a, .pager a, select, "
      + "input:not([type=hidden]):not([type=checkbox]):not([type=radio])")]
    .filter(visible).filter((el) => el.getBoundingClientRect().height < target)
    .map((el) => `${el.tagName.toLowerCase()}.${[...el.classList].join(".")} "${name(el)}" `
      + `${Math.round(el.getBoundingClientRect().height)}px`);
  const wide = [...document.querySelectorAll(".table-wrap, .card")].filter(visible)
    .filter((box) => box.scrollWidth > box.clientWidth + 1)
    .map((box) => `${box.className}: ${box.scrollWidth}px in ${box.clientWidth}px`);
  const unlabelled = [...document.querySelectorAll("table.table-cards td:not([data-label]):not([colspan])")]
    .filter((td) => td.textContent.trim() && !td.classList.contains("cell-actions")).length;
  const cardTables = document.querySelectorAll("table.table-cards").length;
  const allTables = document.querySelectorAll("main table").length;
  return {small, wide, unlabelled, cardTables, allTables,
          overflow: document.documentElement.scrollWidth - window.innerWidth};
}"""

# WCAG 2.x contrast of two CSS colours (rgb()/rgba() strings as getComputedStyle gives them).
CONTRAST = """([a, b]) => {
  const parse = (c) => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = (rgb) => { const [r, g, b] = rgb.map((v) => { v /= 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const [x, y] = [lum(parse(a)), lum(parse(b))];
  return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05);
}"""


def _pages_for(seeded: Seeded) -> list[tuple[str, str]]:
    pages = [
        ("overview", "/organisation/overview"),
        ("users", "/organisation/users"),
        ("user-self", "/organisation/users/{self}"),
        ("user-other", f"/organisation/users/{seeded.other_user_id}"),
        ("invite", "/organisation/users/invite"),
        ("streams", "/streams"),
        ("stream", "/streams/{first_stream}"),
        ("stream-new", "/streams/new"),
        ("roles", "/roles"),
        ("role-new", "/roles/new"),
        ("role-edit", "/roles/streamProducer/edit"),
        ("audit", "/audit"),
        ("deliveries", "/webhook/deliveries"),
        ("account-password", "/account/password"),
        ("account-security", "/account/security"),
        ("not-found", "/streams/00000000-0000-7000-8000-000000000000"),
    ]
    return pages


PUBLIC_PAGES = [
    ("login", "/login"),
    ("password-reset", "/password/reset"),
    ("password-new", "/password/reset/swr_not-a-real-token"),
    ("invite-accept", "/invite/{invite}"),
    ("invite-invalid", "/invite/swi_not-a-real-token"),
]


async def _check(page: Any, findings: Findings, role: str, name: str, width: int) -> None:
    """axe and the measurements on the page as it is now; a screenshot; then each kind of dialog."""
    for violation in await page.evaluate(RUN_AXE, None):
        if violation["impact"] in FAILING_IMPACTS:
            findings.add(role, name, width, f"axe:{violation['id']}", violation)
    measured = await page.evaluate(MEASURE, TARGET)
    if measured["overflow"] > 0:
        findings.add(role, name, width, "page-overflow", f"{measured['overflow']}px wider than the viewport")
    if width < 640:
        if measured["small"]:
            findings.add(role, name, width, "touch-target", measured["small"])
        if measured["wide"]:
            findings.add(role, name, width, "table-outside-box", measured["wide"])
    if measured["unlabelled"]:
        findings.add(role, name, width, "table-cards-without-data-label", f"{measured['unlabelled']} cells")
    if measured["allTables"] > measured["cardTables"]:
        findings.add(
            role,
            name,
            width,
            "table-not-cards",
            f"{measured['allTables'] - measured['cardTables']} table(s) without class table-cards",
        )
    await page.screenshot(path=str(SCREENSHOTS / f"{role}-{name}-{width}.png"), full_page=True)

    seen: set[str] = set()
    for opener in await page.locator("[data-dialog-open]").all():
        dialog_id = await opener.get_attribute("data-dialog-open") or ""
        kind = re.sub(r"-([0-9a-f-]{36}|\d+)$", "", dialog_id)  # one of each kind
        if kind in seen or not await opener.is_visible():
            continue
        seen.add(kind)
        await opener.click()
        dialog = page.locator(f"dialog#{dialog_id}")
        if not await dialog.is_visible():
            findings.add(role, name, width, "dialog-does-not-open", dialog_id)
            continue
        for violation in await page.evaluate(RUN_AXE, f"dialog[id='{dialog_id}']"):
            if violation["impact"] in FAILING_IMPACTS:
                findings.add(role, f"{name}/{kind}", width, f"axe:{violation['id']}", violation)
        # The dialog's actions stay in view (sticky at its bottom) whatever its length.
        actions = dialog.locator(".dialog-actions").first
        if await actions.count():
            box = await actions.bounding_box()
            if box is None or box["y"] + box["height"] > page.viewport_size["height"] + 1:
                findings.add(role, f"{name}/{kind}", width, "dialog-actions-off-screen", box)
        await page.screenshot(path=str(SCREENSHOTS / f"{role}-{name}-{kind}-{width}.png"))
        await page.keyboard.press("Escape")
        if await dialog.is_visible():
            findings.add(role, f"{name}/{kind}", width, "dialog-not-closed-by-escape", dialog_id)


ROLES = ("nanoAdmin", "nanoUser", "nanoReadOnly")


async def test_every_page_as_every_role_passes_axe_and_the_design_rules(browser: Any, seeded: Seeded) -> None:
    axe = axe_script()
    findings = Findings()
    # The viewers side by side, each in one context of its own, signed in once.
    await asyncio.gather(
        *(_check_viewer(browser, seeded, role, axe, findings) for role in ("anonymous", *ROLES))
    )
    await _check_focus_ring_and_borders(browser, seeded.server, findings)
    REPORT.write_text(json.dumps(sorted(findings.problems, key=json.dumps), indent=2))
    summary = sorted({f"{p['kind']} on {p['page']} ({p['role']}, {p['width']}px)" for p in findings.problems})
    assert not findings.problems, f"{len(summary)} problems (details in {REPORT}):\n" + "\n".join(summary)


async def _check_viewer(browser: Any, seeded: Seeded, role: str, axe: str, findings: Findings) -> None:
    server = seeded.server
    context = await browser.new_context(viewport={"width": WIDTHS[0], "height": 800})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    if role == "anonymous":
        pages = [(name, path.format(invite=seeded.invite_token)) for name, path in PUBLIC_PAGES]
        statuses: tuple[int, ...] = (200, 404)
    else:
        await sign_in(page, server, *server.demo.users[role])
        own = await page.evaluate("document.cookie")  # nothing readable: the session is HttpOnly
        assert "sw_session" not in own
        first_stream = await _first_stream_id(page, server)
        self_id = await _own_user_id(page, server, role)
        pages = [
            (name, path.format(self=self_id or seeded.other_user_id, first_stream=first_stream))
            for name, path in _pages_for(seeded)
        ]
        statuses = (200, 403, 404)
    for name, target in pages:
        response = await page.goto(server.url + target)
        assert response is not None and response.status in statuses, (
            role,
            target,
            response and response.status,
        )
        # Every width on the loaded page: the layout follows the viewport (CSS only, no script reads
        # the width), and axe, loaded once, stays loaded.
        await page.evaluate(axe)
        for width in WIDTHS:
            await page.set_viewport_size({"width": width, "height": 800})
            await _check(page, findings, role, name, width)
    if role != "anonymous":
        assert errors == [], errors
    await context.close()


async def _first_stream_id(page: Any, server: Server) -> str:
    await page.goto(server.url + "/streams")
    link = page.locator("main a[href^='/streams/']:not([href='/streams/new'])").first
    href = await link.get_attribute("href") if await link.count() else None
    return href.rsplit("/", 1)[1] if href else "00000000-0000-7000-8000-000000000000"


async def _own_user_id(page: Any, server: Server, role: str) -> str:
    email = server.demo.users[role][0]
    await page.goto(server.url + "/organisation/users?q=" + email.split("@")[0])
    link = page.locator(f"main a:has-text('{email}')").first
    href = await link.get_attribute("href") if await link.count() else None
    return href.rsplit("/", 1)[1] if href else ""


async def _check_focus_ring_and_borders(browser: Any, server: Server, findings: Findings) -> None:
    """The focus ring against the colours around it, and input borders against the field's card."""
    context = await browser.new_context(viewport={"width": 1440, "height": 800})
    page = await context.new_page()
    await page.goto(server.url + "/login")
    await page.focus("#email")
    await page.keyboard.press("Tab")  # keyboard focus: :focus-visible applies
    styles = await page.evaluate(
        """() => { const el = document.activeElement; const s = getComputedStyle(el);
           const card = getComputedStyle(el.closest('.card'));
           const body = getComputedStyle(document.body.parentElement);
           const email = getComputedStyle(document.querySelector('#email'));
           const button = getComputedStyle(document.querySelector('button[type=submit]'));
           return {ring: s.outlineColor, ringWidth: s.outlineWidth, card: card.backgroundColor,
                   page: body.backgroundColor, border: email.borderTopColor,
                   button: button.backgroundColor}; }"""
    )
    for against in ("card", "page"):
        ratio = await page.evaluate(CONTRAST, [styles["ring"], styles[against]])
        if ratio < 3:
            findings.add(
                "anonymous", "login", 1440, "focus-ring-contrast", f"{ratio:.2f}:1 against {against}"
            )
    if float(styles["ringWidth"].rstrip("px") or 0) < 2:
        findings.add("anonymous", "login", 1440, "focus-ring-width", styles["ringWidth"])
    ratio = await page.evaluate(CONTRAST, [styles["border"], styles["card"]])
    if ratio < 3:
        findings.add("anonymous", "login", 1440, "input-border-contrast", f"{ratio:.2f}:1")
    await context.close()
