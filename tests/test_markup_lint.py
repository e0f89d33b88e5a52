"""No new way for data to reach the dashboard's HTML unescaped.

Every value a template prints is HTML-escaped (autoescape on for every template), and data meant for
a script goes through the ``json_script`` filter. Anything that marks text as trusted HTML bypasses
that: a custom role's description once went through ``|safe`` into a ``<script>`` element, closed
it, and planted a form that took an admin's CSRF token (a ``role:manage`` member became nanoAdmin).
This test fails on any such construct under src/streamward outside the reviewed list below.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src" / "streamward"

# Constructs that put text into a page without escaping it, by what they are.
UNSAFE = {
    "|safe": r"\|\s*safe\b",
    "filter safe": r"\{%-?\s*filter\s+safe\b",
    "Markup(": r"\bMarkup\s*\(",
    "__html__": r"__html__",
    "mark_safe": r"\bmark_safe\b",
    "autoescape false": r"autoescape\s*(?:=\s*)?False\b|autoescape\s+false\b",
    "select_autoescape": r"\bselect_autoescape\b",
    "HTMLResponse(": r"\bHTMLResponse\s*\(",
    "innerHTML": r"\b(?:inner|outer)HTML\b|\binsertAdjacentHTML\b|\bdocument\.write\b",
}

# Reviewed uses: (file relative to src/streamward, construct) -> how many. Keep it short; each entry
# says why it cannot carry unescaped data.
ALLOWED: dict[tuple[str, str], int] = {
    # json_script: the element around script_json(value), whose text has no "<", ">" or "&" left,
    # and an element id passed through escape(). qr_code: segno's drawing of a QR code, checked
    # against its exact shape (svg, g, path; attributes of numbers, colours and path commands):
    # geometry, never text.
    ("dashboard/templating.py", "Markup("): 2,
    # The API reference page: fixed markup; its two values (the app's title, the OpenAPI URL) are
    # configuration, each passed through html.escape.
    ("docs.py", "HTMLResponse("): 1,
}
# Third-party files kept as released (not our code; updated as a dependency, not reviewed line by line).
VENDORED = {"docs_assets/swagger-ui-bundle.js", "docs_assets/swagger-ui-bundle.js.LICENSE.txt"}

WHY = (
    "{where}: {construct} marks text as trusted HTML. The dashboard relies on autoescape alone: a value "
    "printed as {{{{ value }}}} is escaped, and data a script reads goes through "
    '{{{{ value|json_script("element-id") }}}}. A user-controlled string that reaches this construct is '
    "injected into the page as markup (a role description once planted a form that took an admin's "
    "CSRF token). Escape instead; only if this is reviewed markup that can never carry data, add it to "
    "ALLOWED in tests/test_markup_lint.py with the reason."
)


def _text_files() -> list[Path]:
    files = []
    for path in sorted(SOURCE.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        if path.relative_to(SOURCE).as_posix() in VENDORED:
            continue
        try:
            path.read_text(encoding="utf-8")
        except UnicodeDecodeError:  # images and other binaries
            continue
        files.append(path)
    return files


def found_constructs() -> Counter[tuple[str, str]]:
    found: Counter[tuple[str, str]] = Counter()
    for path in _text_files():
        text = path.read_text(encoding="utf-8")
        for construct, pattern in UNSAFE.items():
            hits = len(re.findall(pattern, text))
            if hits:
                found[(path.relative_to(SOURCE).as_posix(), construct)] += hits
    return found


def test_nothing_marks_text_as_safe_html_outside_the_reviewed_list() -> None:
    found = found_constructs()
    problems = [
        WHY.format(
            where=f"{file} ({count}x, {ALLOWED.get((file, construct), 0)} reviewed)", construct=construct
        )
        for (file, construct), count in sorted(found.items())
        if count > ALLOWED.get((file, construct), 0)
    ]
    assert not problems, "\n\n".join(problems)


def test_the_reviewed_list_is_exact() -> None:
    """A reviewed use that went away leaves its slot behind: remove the entry so nothing reuses it."""
    found = found_constructs()
    stale = {key: count for key, count in ALLOWED.items() if found.get(key, 0) != count}
    assert not stale, f"ALLOWED no longer matches the code; update these entries: {stale}"


def test_the_patterns_catch_what_they_name() -> None:
    samples = {
        "|safe": "{{ role_data | safe }}",
        "filter safe": "{% filter safe %}x{% endfilter %}",
        "Markup(": "return Markup(text)",
        "__html__": "def __html__(self): ...",
        "mark_safe": "mark_safe(x)",
        "autoescape false": "{% autoescape false %} / Environment(autoescape=False)",
        "select_autoescape": "autoescape=select_autoescape()",
        "HTMLResponse(": 'HTMLResponse(f"<p>{name}</p>")',
        "innerHTML": "target.innerHTML = role.description",
    }
    assert samples.keys() == UNSAFE.keys()
    for construct, sample in samples.items():
        assert re.search(UNSAFE[construct], sample), construct
