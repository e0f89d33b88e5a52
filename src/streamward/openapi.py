"""The OpenAPI document's error responses and security, derived in one place from the route table.

FastAPI documents a route's success and, for routes with parameters, its own 422 shape. Every
deliberate refusal (400, 401, 403, 404, 409, 413, 422, 429) is added here instead, with the error
envelope the route really answers with:

* from the route's access rule (``streamward_access_rule`` on its dependency, see authz/deps.py):
  credentials that may be missing or wrong (401), a permission that may be lacking (403), the
  operator API or ingest being switched off (404), and the matching OpenAPI ``security``;
* from its inputs: path parameters name something that may not exist (404); a body or query may be
  malformed or carry control characters (400) or fail validation (422); a body may be too large (413);
* from ``REFUSALS`` below, for what the route's service decides and nothing in its signature shows
  (409 conflicts, 429 rate limits, 403 escalation or a missing package...).

The token service (``/api/v1/splay*``, routes of class ``SplayRoute``) answers in its own envelope,
with its own statuses (bad credentials are 403, validation failures 400). What the middleware in
front of every route refuses (``EDGE_CODES``: control characters, nesting, size) comes in the
common envelope there too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from streamward.api.ingest import INGEST_SECRET_HEADER
from streamward.api.playback import SplayRoute
from streamward.api.stream_readers import PLAYER_KEY_HEADER
from streamward.web.access import ACCESS_RULE_ATTRIBUTE
from streamward.web.authenticate import API_KEY_HEADER, TOKEN_HEADER

ERROR_SCHEMA = "Error"
SPLAY_ERROR_SCHEMA = "SplayError"
_FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")

# Security scheme names as they appear in the document (and in Swagger UI's "Authorize" dialog).
BINTU_TOKEN = "bintuToken"
API_KEY = "apiKey"
PLAYER_KEY = "playerKey"
OPERATOR_TOKEN = "operatorToken"
INGEST_SECRET = "ingestSecret"

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    BINTU_TOKEN: {
        "type": "apiKey",
        "in": "header",
        "name": TOKEN_HEADER,
        "description": "A member's session token from `POST /api/user/validate`.",
    },
    API_KEY: {
        "type": "apiKey",
        "in": "header",
        "name": API_KEY_HEADER,
        "description": "The organisation's API key: every permission of the organisation.",
    },
    PLAYER_KEY: {
        "type": "apiKey",
        "in": "header",
        "name": PLAYER_KEY_HEADER,
        "description": "The organisation's player key: reads what players may read.",
    },
    OPERATOR_TOKEN: {
        "type": "http",
        "scheme": "bearer",
        "description": "The platform operator's token (`STREAMWARD_OPERATOR_TOKEN`).",
    },
    INGEST_SECRET: {
        "type": "apiKey",
        "in": "header",
        "name": INGEST_SECRET_HEADER,
        "description": "The media servers' shared secret (`STREAMWARD_INGEST_SECRET`).",
    },
}

_ERROR_SCHEMAS: dict[str, dict[str, Any]] = {
    ERROR_SCHEMA: {
        "title": "Error",
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "description": "Stable code; clients branch on it."},
                    "message": {"type": "string", "description": "For humans; may change."},
                    "details": {"description": "More about the refusal, when there is more to say."},
                },
            }
        },
    },
    SPLAY_ERROR_SCHEMA: {
        "title": "SplayError",
        "type": "object",
        "required": ["success", "errorCode", "message", "error"],
        "properties": {
            "success": {"type": "boolean", "const": False},
            "errorCode": {"type": "integer", "description": "The token service's numeric error code."},
            "message": {"type": "string"},
            "error": {
                "type": "object",
                "required": ["code", "reason", "message"],
                "properties": {
                    "code": {"type": "integer", "description": "The token service's numeric error code."},
                    "reason": {"type": "string", "description": "Stable code; clients branch on it."},
                    "message": {"type": "string"},
                    "details": {},
                },
            },
        },
    },
}

_STATUS_TITLES = {
    400: "Bad request",
    401: "Credentials missing or not valid",
    403: "Not allowed",
    404: "Not found",
    409: "Conflicts with the current state",
    413: "Body too large",
    422: "Invalid fields",
    429: "Too many attempts (see Retry-After)",
}

Refusal = tuple[int, str]  # (status, error code)
Security = list[dict[str, list[str]]]  # OpenAPI: any one of these requirements suffices

_AMBIGUOUS: Refusal = (400, "ambiguous_credentials")  # a token and a key at once
_UNAUTHENTICATED: Refusal = (401, "unauthenticated")
_FORBIDDEN: Refusal = (403, "forbidden")
# Rate limits shared through Redis fail closed when Redis cannot be reached.
_LIMITS_DOWN: Refusal = (503, "rate_limit_unavailable")
_MEMBER_OR_KEY: Security = [{BINTU_TOKEN: []}, {API_KEY: []}]


@dataclass(frozen=True)
class RuleDoc:
    """What an access rule refuses, and the credentials it takes."""

    refusals: tuple[Refusal, ...]
    security: Security


_PERMISSION = RuleDoc((_AMBIGUOUS, _UNAUTHENTICATED, _FORBIDDEN), _MEMBER_OR_KEY)
ACCESS_RULES: dict[str, RuleDoc] = {
    "public": RuleDoc((), []),
    "authenticated": RuleDoc((_AMBIGUOUS, _UNAUTHENTICATED), _MEMBER_OR_KEY),
    # The token service answers bad or missing credentials with 403, as its documentation says.
    "token-service": RuleDoc((_AMBIGUOUS, (403, "unauthenticated"), _FORBIDDEN), _MEMBER_OR_KEY),
    # Anonymous when the organisation's VOD is public (the empty requirement: none needed); the
    # organisation is named by id, and may not exist.
    "vod-visibility": RuleDoc(
        (_AMBIGUOUS, _UNAUTHENTICATED, _FORBIDDEN, (404, "not_found")), [{}, *_MEMBER_OR_KEY]
    ),
    # Players: a member's credentials, the player key, or nothing (public streams).
    "player": RuleDoc((_AMBIGUOUS, _UNAUTHENTICATED, _FORBIDDEN), [{}, *_MEMBER_OR_KEY, {PLAYER_KEY: []}]),
    "operator": RuleDoc((_UNAUTHENTICATED, (404, "operator_api_disabled")), [{OPERATOR_TOKEN: []}]),
    # The media servers' body is read by hand (form fields or JSON), so the route shows none.
    "ingest": RuleDoc(
        (
            (400, "malformed_json"),
            (400, "validation_error"),
            _UNAUTHENTICATED,
            (404, "ingest_disabled"),
            (413, "payload_too_large"),
        ),
        [{INGEST_SECRET: []}],
    ),
}


def rule_doc(rule: str) -> RuleDoc:
    if rule.startswith("permission:"):
        return _PERMISSION
    # A rule this module does not know yet is documented like a permission (the test of the
    # document fails on it, so that its real refusals get written down here).
    return ACCESS_RULES.get(rule, _PERMISSION)


# What a route's service refuses that its access rule and inputs do not show, keyed by the route's
# endpoint (module and function under ``streamward.``) so that every path and method serving it
# is covered.
REFUSALS: dict[str, Sequence[Refusal]] = {
    "api.login.validate": [
        _LIMITS_DOWN,
        (401, "invalid_credentials"),
        (404, "organisation_not_found"),
        (409, "organisation_required"),
        (429, "rate_limited"),
    ],
    "api.login.logout": [(400, "not_a_session")],
    "api.login.change_password": [
        _LIMITS_DOWN,
        (400, "not_a_session"),
        (400, "wrong_password"),
        (400, "weak_password"),
        (429, "rate_limited"),
    ],
    "api.login.request_password_reset": [_LIMITS_DOWN, (429, "rate_limited")],
    "api.bintu_user.request_password_reset": [_LIMITS_DOWN, (429, "rate_limited")],
    "api.bintu_user.check_api_key": [_LIMITS_DOWN, (401, "apikey_invalid"), (429, "rate_limited")],
    "api.login.complete_password_reset": [
        _LIMITS_DOWN,
        (400, "reset_link_invalid"),
        (400, "weak_password"),
        (429, "rate_limited"),
    ],
    "api.users.change_permission": [
        (403, "escalation"),
        (404, "not_found"),
        (409, "last_admin"),
        (422, "unknown_role"),
    ],
    "api.users.reset_token_key": [
        (400, "user_id_required"),
        (403, "forbidden"),
        (403, "escalation"),
        (404, "not_found"),
    ],
    "api.users.delete_user": [(403, "escalation"), (409, "last_admin")],
    "api.invites.create_invitation": [(403, "escalation"), (409, "already_member"), (422, "unknown_role")],
    "api.invites.revoke_invitation": [(409, "invite_not_pending")],
    "api.invites.renew_invitation": [(409, "invite_not_pending")],
    "api.invites.preview_invitation": [_LIMITS_DOWN, (404, "invite_invalid"), (429, "rate_limited")],
    "api.invites.accept_invitation": [
        _LIMITS_DOWN,
        _AMBIGUOUS,
        (400, "credentials_required"),
        (400, "weak_password"),
        _UNAUTHENTICATED,
        (401, "invalid_credentials"),
        (403, "invite_email_mismatch"),
        (404, "invite_invalid"),
        (409, "already_member"),
        (409, "conflict"),
        (429, "rate_limited"),
    ],
    "api.roles.read_role": [(404, "not_found")],
    "api.roles.create_role": [
        (403, "escalation"),
        (409, "role_exists"),
        (409, "role_name_reserved"),
        (422, "unknown_permission"),
    ],
    "api.roles.update_role": [(403, "escalation"), (409, "predefined_role"), (422, "unknown_permission")],
    "api.roles.delete_role": [
        (400, "invalid_reassign"),
        (403, "escalation"),
        (409, "predefined_role"),
        (409, "role_in_use"),
        (422, "unknown_role"),
    ],
    "api.organisation.save_webhook": [(400, "webhook_target_refused"), (400, "unknown_event")],
    "api.organisation.rotate_webhook_secret": [(409, "webhook_not_configured")],
    "api.deliveries.send_test_event": [(409, "webhook_not_configured")],
    "api.organisation.create_bintu_token": [(400, "user_required"), (400, "invalid_value")],
    "api.streams.create_stream": [(400, "invalid_transcode_profile"), (403, "upgrade_needed")],
    "api.streams.set_push_url": [(400, "push_url_refused"), (409, "stream_state_conflict")],
    "api.streams.set_stream_tags": [(409, "stream_state_conflict")],
    "api.streams.set_player_access": [(403, "upgrade_needed")],
    "api.streams.stop_stream": [(409, "stream_state_conflict")],
    "api.streams.lock_stream": [(409, "stream_state_conflict")],
    "api.streams.unlock_stream": [(409, "stream_state_conflict")],
    "api.streams.delete_stream": [(409, "stream_state_conflict")],
    "api.vod.list_assets": [(403, "upgrade_needed")],
    "api.vod.read_asset": [(403, "upgrade_needed")],
    "api.vod.import_asset": [(403, "upgrade_needed"), (404, "not_found")],
    "api.vod.delete_asset": [(403, "upgrade_needed")],
    "api.ingest.publish": [(400, "wrong_call"), (403, "publish_rejected")],
    "api.ingest.update_publish": [(400, "wrong_call")],
    "api.ingest.publish_done": [(400, "wrong_call")],
    "api.operator.update_organisation": [(400, "invalid_value")],
    # The token service: its reasons, in its own envelope.
    "api.playback.issue_token": [
        (400, "scope_required"),
        (400, "invalid_parameter"),
        (400, "stream_not_in_organisation"),
        (403, "upgrade_needed"),
    ],
    "api.playback.verify_token": [
        (400, "malformed_token"),
        (400, "invalid_token"),
        (400, "invalid_parameter"),
        (400, "other_organisation"),
        (403, "token_expired"),
        (403, "token_revoked"),
        (403, "scope_mismatch"),
    ],
    "api.playback.revoke_token": [
        (400, "malformed_token"),
        (400, "invalid_token"),
        (400, "other_organisation"),
        (400, "not_revocable"),
        (403, "token_expired"),
    ],
}

# Security beyond what the access rule says: accepting an invitation may present an account's token.
SECURITY_OVERRIDES: dict[str, Security] = {
    "api.invites.accept_invitation": [{}, {BINTU_TOKEN: []}],
}


def endpoint_name(route: APIRoute) -> str:
    """The key of ``REFUSALS``: ``<module under streamward>.<function>``."""
    return f"{route.endpoint.__module__.removeprefix('streamward.')}.{route.endpoint.__name__}"


def api_routes(routes: Sequence[BaseRoute]) -> Iterator[APIRoute]:
    """The app's API routes, descending into included routers (kept as one entry each by FastAPI;
    the app includes them without an extra prefix, so their paths are complete)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from api_routes(included.routes)
        elif isinstance(route, APIRoute):
            yield route


def access_rules(dependant: Dependant) -> Iterator[str]:
    rule = getattr(dependant.call, ACCESS_RULE_ATTRIBUTE, None)
    if rule:
        yield rule
    for sub in dependant.dependencies:
        yield from access_rules(sub)


def access_rule_of(route: APIRoute) -> str:
    return next(access_rules(route.dependant), "public")


def _derived_refusals(rule: str, operation: dict[str, Any], *, splay: bool) -> list[Refusal]:
    refusals = list(rule_doc(rule).refusals)
    parameters = operation.get("parameters", [])
    if any(parameter["in"] == "path" for parameter in parameters):
        refusals.append((404, "not_found"))
    has_body = "requestBody" in operation
    if has_body:
        refusals += [(400, "malformed_json"), (400, "too_deep"), (413, "payload_too_large")]
    if has_body or parameters:
        refusals.append((400, "invalid_text"))
        if any(parameter.get("name") == "cursor" for parameter in parameters):
            refusals.append((400, "invalid_cursor"))
        # The token service reports every validation failure as a 400 of its own.
        refusals.append((400, "parameter_missing") if splay else (422, "validation_error"))
    return refusals


# Refused by middleware before any route runs (streamward.edge, BodySizeLimit): the common envelope
# on every route, the token service's included.
EDGE_CODES = frozenset({"invalid_text", "too_deep", "payload_too_large"})


def _ref(schema: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{schema}"}


def _response(status: int, codes: list[str], *, splay: bool, title: str | None) -> dict[str, Any]:
    envelopes = {ERROR_SCHEMA if code in EDGE_CODES or not splay else SPLAY_ERROR_SCHEMA for code in codes}
    schema = (
        _ref(envelopes.pop())
        if len(envelopes) == 1
        else {"anyOf": [_ref(SPLAY_ERROR_SCHEMA), _ref(ERROR_SCHEMA)]}
    )
    return {
        "description": f"{title or _STATUS_TITLES.get(status, 'Refused')}: "
        + ", ".join(f"`{c}`" for c in codes),
        "content": {"application/json": {"schema": schema}},
    }


def document_errors(schema: dict[str, Any], routes: Sequence[BaseRoute]) -> None:
    """Add every route's error responses and security requirement to ``schema`` (in place)."""
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in _FASTAPI_VALIDATION_SCHEMAS:
        schemas.pop(name, None)
    schemas.update(_ERROR_SCHEMAS)
    components["securitySchemes"] = SECURITY_SCHEMES
    for route in api_routes(routes):
        if not route.include_in_schema:
            continue
        rule, endpoint = access_rule_of(route), endpoint_name(route)
        splay = isinstance(route, SplayRoute)
        for method in route.methods or ():
            operation = schema["paths"].get(route.path_format, {}).get(method.lower())
            if operation is None:
                continue
            by_status: dict[int, list[str]] = {}
            refusals = [*_derived_refusals(rule, operation, splay=splay), *REFUSALS.get(endpoint, ())]
            for status, code in refusals:
                codes = by_status.setdefault(status, [])
                if code not in codes:
                    codes.append(code)
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)  # FastAPI's own shape: never what this API answers
            for status in sorted(by_status):
                # A description the route gives itself (``responses=`` in its decorator) stays.
                title = responses.get(str(status), {}).get("description")
                responses[str(status)] = _response(status, by_status[status], splay=splay, title=title)
            security = SECURITY_OVERRIDES.get(endpoint) or rule_doc(rule).security
            if security:
                operation["security"] = security


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` (and so ``/api/openapi.json``) return the document with its errors."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            document_errors(document, app.routes)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
