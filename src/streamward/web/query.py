"""A route's query parameters read in one validation, for the routes every page load calls.

FastAPI resolves each query parameter on its own, working out again on every request what kind of
field it is (a sequence? a model? which alias?) before validating it: 110 to 180 µs per request for
the stream list's eight parameters (in-process, against 34 µs for FastAPI's whole hello-world),
a tenth of the list's CPU. A ``QueryModel`` declares them once, as the fields of a pydantic model;
``query_model(Model)`` is a dependency that reads the request's query string into it with one
validation. What a client sees is unchanged:

* the same answers: values are validated by pydantic as FastAPI validates them (the same types and
  constraints, the last of repeated values for a single one, every value for a list, unknown
  parameters ignored), and a failure is FastAPI's ``RequestValidationError``, located at
  ``("query", <name>, ...)`` as FastAPI locates it, so it gets the API's usual 422;
* the same document: ``document_query_model`` describes each field as FastAPI
  documents a query parameter (name, ``in: query``, ``required``, its schema and description), and
  ``openapi`` adds them to the operations of the routes that read the model.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar, get_args, get_origin

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, ValidationError

QUERY_MODEL_ATTRIBUTE = "streamward_query_model"


class QueryModel(BaseModel):
    """Query parameters: each field's alias (or name) is the parameter's name."""

    model_config = ConfigDict(
        extra="ignore",
        frozen=True,
        # Titled as FastAPI titles a query parameter: by its name on the wire.
        field_title_generator=lambda name, field: (
            (getattr(field, "alias", None) or name).replace("_", " ").title()
        ),
    )


Q = TypeVar("Q", bound=QueryModel)


_MANY = (list, set, frozenset, tuple)


def _is_list(annotation: Any) -> bool:
    """Whether a field takes every value of a repeated parameter (``list[str] | None``,
    ``Annotated[list[str], ...]`` and the like)."""
    origin = get_origin(annotation)
    if origin in _MANY or annotation in _MANY:
        return True
    return origin is not None and any(_is_list(arg) for arg in get_args(annotation))


def _names(model: type[QueryModel]) -> list[tuple[str, bool]]:
    """Each parameter's name, and whether it is a list, in the model's order."""
    return [(field.alias or name, _is_list(field.annotation)) for name, field in model.model_fields.items()]


def query_model(model: type[Q]) -> Any:
    """``Depends`` on a reader of the request's query string into ``model``."""
    names = _names(model)

    async def read(request: Request) -> Q:
        received = request.query_params
        values = {
            name: received.getlist(name) if many else received[name]
            for name, many in names
            if name in received
        }
        try:
            return model.model_validate(values)
        except ValidationError as error:
            problems = error.errors(include_url=False)
            located = [{**problem, "loc": ("query", *problem["loc"])} for problem in problems]
            raise RequestValidationError(located) from None

    read.__name__ = f"read_{model.__name__}"
    setattr(read, QUERY_MODEL_ATTRIBUTE, model)
    reader: Callable[[Request], Awaitable[Q]] = read
    return Depends(reader)


def query_models(dependant: Dependant) -> Iterator[type[QueryModel]]:
    """The query models a route reads through ``query_model`` (its dependencies' included)."""
    model = getattr(dependant.call, QUERY_MODEL_ATTRIBUTE, None)
    if model is not None:
        yield model
    for sub in dependant.dependencies:
        yield from query_models(sub)


def document_query_model(model: type[QueryModel]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The OpenAPI parameters of ``model``'s fields, as FastAPI documents query parameters, and the
    schemas they refer to (for ``components/schemas``)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    required = set(schema.get("required", ()))
    parameters = []
    for name, _ in _names(model):
        field_schema = dict(schema["properties"][name])
        if "default" in field_schema and field_schema["default"] is None:
            del field_schema["default"]  # FastAPI does not document a default of None
        parameter: dict[str, Any] = {"name": name, "in": "query", "required": name in required}
        if "description" in field_schema:
            parameter["description"] = field_schema["description"]
        parameter["schema"] = field_schema
        parameters.append(parameter)
    return parameters, schema.get("$defs", {})
