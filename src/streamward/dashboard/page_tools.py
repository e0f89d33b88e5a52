"""Small helpers shared by the roles, audit, deliveries and streams pages."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlencode

from fastapi import Request
from pydantic import ValidationError


async def form_values(request: Request, name: str) -> list[str]:
    """Every value of a repeated form field (a group of checkboxes).

    Only for routes that also take ``CheckedForm``: that dependency has read (and cached) the form
    and checked its CSRF token before the route runs.
    """
    form = await request.form()
    return [value for value in form.getlist(name) if isinstance(value, str)]


def lines(text: str) -> list[str]:
    """A textarea's non-blank lines (one value per line: tags may contain commas)."""
    return [line for line in text.splitlines() if line.strip()]


def validation_message(
    error: ValidationError, labels: Mapping[str, str], hints: Mapping[str, str] | None = None
) -> str:
    """A readable sentence from a request model's validation error, naming the form's fields.

    ``labels`` maps a model field (by alias) to the label shown on the form; ``hints`` replaces the
    validator's wording for a field whose rule is easier said in words (a name pattern, say).
    """
    problems: list[str] = []
    for problem in error.errors():
        field = next((str(part) for part in problem["loc"] if isinstance(part, str)), "")
        text = (hints or {}).get(field) or str(problem["msg"]).removeprefix("Value error, ")
        label = labels.get(field, field)
        sentence = f"{label}: {text}" if label else text
        if sentence not in problems:
            problems.append(sentence)
    return "Please check your input. " + "; ".join(problems) + "."


def list_url(path: str, **params: str | None) -> str:
    """A list page's URL with its filters (empty ones left out), for pager and download links."""
    query = urlencode({key: value for key, value in params.items() if value})
    return f"{path}?{query}" if query else path
