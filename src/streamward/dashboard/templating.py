"""The dashboard's templates and the filters data passes through on its way into HTML.

Autoescape is on for every template; the only Markup that carries data is ``json_script``'s
(tests/test_markup_lint.py refuses any other way to mark text safe).
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC
from pathlib import Path
from typing import Any

import jinja2
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape

from streamward.authz.permissions import LABELS
from streamward.invites.service import DEFAULT_LIFETIME_DAYS, MAX_LIFETIME_DAYS, MIN_LIFETIME_DAYS

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
TEMPLATE_DIR = HERE / "templates"
# Autoescape for every template whatever its file name (Starlette's default only escapes names
# ending in .html/.htm/.xml): a value is HTML-escaped unless it is Markup, and the only Markup that
# carries data is `json_script`'s. tests/test_markup_lint.py refuses any other way to mark text safe.
templates = Jinja2Templates(
    env=jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR), autoescape=True)
)

# Inside a <script> element the HTML parser ends the element at the first "</script" whatever the
# quotes around it, and "<!--" changes how it looks for that end: a value written there raw can close
# the element and inject markup (forms that swallow the page's CSRF tokens; CSP stops scripts, not
# markup). JSON's \u escapes say the same characters without "<", ">" or "&", and JSON.parse reads them
# back unchanged; U+2028/U+2029 are escaped too so the text stays valid if ever read as JavaScript.
_SCRIPT_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def script_json(value: Any) -> str:
    """``value`` as JSON text that cannot end or alter the <script> element it is written into."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True).translate(_SCRIPT_ESCAPES)


def json_script(value: Any, element_id: str) -> Markup:
    """``{{ value|json_script("some-id") }}``: the whole ``<script type="application/json">`` element,
    for app.js to read with ``JSON.parse(element.textContent)``. The one way data enters a script."""
    element = f'<script type="application/json" id="{escape(element_id)}">{script_json(value)}</script>'
    return Markup(element)  # noqa: S704 - the id is escaped; script_json leaves no "<", ">" or "&"


def json_text(value: Any) -> str:
    """JSON for people to read (the audit log's before/after): plain text, HTML-escaped like any value."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


# An inline SVG's size, to give the image document it is wrapped into a viewBox (so it scales).
# What segno draws a QR code as: an <svg> of fixed size holding a <g> of <path>s, whose attributes
# (these seven, never an event handler) are numbers, colours and path commands. Nothing else may
# pass as markup (see qr_code).
_QR_ATTRIBUTE = r'\s(?:width|height|class|transform|fill|stroke|d)="[-0-9a-zA-Z .#()]*"'
_QR_SVG = re.compile(
    rf"<svg(?:{_QR_ATTRIBUTE})*><g(?:{_QR_ATTRIBUTE})*>(?:<path(?:{_QR_ATTRIBUTE})*/>)+</g></svg>"
)
_QR_SIZE = re.compile(r'<svg width="([0-9.]+)" height="([0-9.]+)"')


def qr_code(svg: str) -> Markup:
    """``{{ qr_svg|qr_code }}``: the TOTP service's QR code (segno, drawn from the otpauth URI) as
    inline SVG. The URI becomes module geometry, never text, and the markup is checked to be exactly
    segno's shape (svg, g, path; attributes of numbers, colours and path commands) before it is
    trusted; anything else is refused rather than escaped into a broken image. A viewBox lets the
    stylesheet scale it."""
    if not _QR_SVG.fullmatch(svg):
        raise ValueError("not a QR code drawn by segno")
    size = _QR_SIZE.match(svg)
    if size:
        svg = svg.replace(">", f' viewBox="0 0 {size[1]} {size[2]}" aria-hidden="true">', 1)
    return Markup(svg)  # noqa: S704 (checked above: geometry only)


def _static_version() -> str:
    digest = hashlib.sha256()
    for path in sorted(STATIC_DIR.iterdir()):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


_STATIC_VERSION = _static_version()
templates.env.globals["static"] = lambda name: f"/static/{name}?v={_STATIC_VERSION}"
templates.env.filters["utc"] = lambda value: (
    value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if value else ""
)
templates.env.filters["label"] = lambda permission: LABELS.get(permission, permission)
templates.env.filters["json_script"] = json_script
templates.env.filters["role_label"] = lambda role, title=None: (
    role_label(role, title) if isinstance(role, str) else role_label(role.name, role.title)
)
templates.env.filters["json_text"] = json_text
templates.env.filters["qr_code"] = qr_code
# The invitation form offers what invites.service accepts (the service refuses anything else anyway).
templates.env.globals["invite_lifetime"] = {
    "min": MIN_LIFETIME_DAYS,
    "max": MAX_LIFETIME_DAYS,
    "default": DEFAULT_LIFETIME_DAYS,
}
# Jinja's own `tojson` returns Markup that leaves '"' raw: in a double-quoted attribute it breaks out.
# Data goes into scripts through `json_script` and into text through `json_text`, nothing else.
del templates.env.filters["tojson"]


def role_label(name: str, title: str | None = None) -> str:
    """The one way a role is named on a page: title first, name second ("Administrator (nanoAdmin)");
    a role whose title is its name (custom roles) by its name alone. As a filter:
    ``{{ role|role_label }}`` for a Role, ``{{ name|role_label(title) }}`` for a name and a title."""
    return f"{title} ({name})" if title and title != name else name
