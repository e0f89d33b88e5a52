"""What the OpenAPI document says about refusals and credentials: the security schemes, the error
envelopes, what each access rule refuses, and what each route's service refuses beyond that
(``REFUSALS``). ``streamward.openapi`` applies it to the route table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from streamward.api.ingest import INGEST_SECRET_HEADER
from streamward.api.stream_readers import PLAYER_KEY_HEADER
from streamward.web.authenticate import API_KEY_HEADER, TOKEN_HEADER

ERROR_SCHEMA = "Error"
SPLAY_ERROR_SCHEMA = "SplayError"
FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")

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

ERROR_SCHEMAS: dict[str, dict[str, Any]] = {
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

STATUS_TITLES = {
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
# A member whose organisation requires a second factor they have not set up (enrolment routes only).
_ENROLMENT_REQUIRED: Refusal = (403, "mfa_enrolment_required")


@dataclass(frozen=True)
class RuleDoc:
    """What an access rule refuses, and the credentials it takes."""

    refusals: tuple[Refusal, ...]
    security: Security


_PERMISSION = RuleDoc((_AMBIGUOUS, _UNAUTHENTICATED, _FORBIDDEN, _ENROLMENT_REQUIRED), _MEMBER_OR_KEY)
ACCESS_RULES: dict[str, RuleDoc] = {
    "public": RuleDoc((), []),
    "authenticated": RuleDoc((_AMBIGUOUS, _UNAUTHENTICATED, _ENROLMENT_REQUIRED), _MEMBER_OR_KEY),
    # Setting up a second factor, and logout: an enrolment session is accepted.
    "enrolment": RuleDoc((_AMBIGUOUS, _UNAUTHENTICATED), _MEMBER_OR_KEY),
    # The token service answers bad or missing credentials with 403, as its documentation says.
    "token-service": RuleDoc(
        (_AMBIGUOUS, (403, "unauthenticated"), _FORBIDDEN, _ENROLMENT_REQUIRED), _MEMBER_OR_KEY
    ),
    # Anonymous when the organisation's VOD is public (the empty requirement: none needed); the
    # organisation is named by id, and may not exist.
    "vod-visibility": RuleDoc(
        (_AMBIGUOUS, _UNAUTHENTICATED, _FORBIDDEN, _ENROLMENT_REQUIRED, (404, "not_found")),
        [{}, *_MEMBER_OR_KEY],
    ),
    # Players: a member's credentials, the player key, or nothing (public streams).
    "player": RuleDoc(
        (_AMBIGUOUS, _UNAUTHENTICATED, _FORBIDDEN, _ENROLMENT_REQUIRED),
        [{}, *_MEMBER_OR_KEY, {PLAYER_KEY: []}],
    ),
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
        (401, "mfa_required"),
        (404, "organisation_not_found"),
        (409, "organisation_required"),
        (429, "rate_limited"),
    ],
    "api.login.validate_second_factor": [
        _LIMITS_DOWN,
        (401, "invalid_second_factor"),
        (401, "invalid_challenge"),
        (429, "rate_limited"),
    ],
    # One's own second factors (a person's: the API key has none).
    "api.mfa.read_second_factors": [(400, "user_required")],
    "api.mfa.start_authenticator_app": [
        _LIMITS_DOWN,
        (400, "user_required"),
        (400, "invalid_proof"),
        (403, "proof_required"),
        (409, "too_many_factors"),
        (429, "rate_limited"),
    ],
    "api.mfa.confirm_authenticator_app": [
        (400, "user_required"),
        (400, "invalid_code"),
        (409, "factor_already_confirmed"),
    ],
    "api.mfa.remove_authenticator_app": [
        _LIMITS_DOWN,
        (400, "user_required"),
        (400, "invalid_proof"),
        (429, "rate_limited"),
    ],
    "api.mfa.replace_recovery_codes": [
        _LIMITS_DOWN,
        (400, "user_required"),
        (400, "invalid_proof"),
        (400, "no_second_factor"),
        (429, "rate_limited"),
    ],
    "api.users.reset_second_factors": [
        (400, "own_factors"),
        (403, "escalation"),
        (403, "mfa_reset_not_allowed"),
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
    # Passkeys: one's own (a person's: the API key has none), and signing in with one alone.
    "api.passkeys.registration_options": [
        _LIMITS_DOWN,
        (400, "user_required"),
        (400, "invalid_proof"),
        (403, "proof_required"),
        (429, "rate_limited"),
    ],
    "api.passkeys.register_passkey": [
        (400, "user_required"),
        (400, "invalid_passkey"),
        (401, "invalid_challenge"),
        (409, "conflict"),
        (409, "too_many_factors"),
    ],
    "api.passkeys.remove_passkey": [_LIMITS_DOWN, (400, "invalid_proof"), (429, "rate_limited")],
    "api.passkeys.passwordless_options": [_LIMITS_DOWN, (429, "rate_limited")],
    "api.passkeys.validate_passkey": [
        _LIMITS_DOWN,
        (401, "invalid_second_factor"),
        (401, "invalid_challenge"),
        (401, "invalid_credentials"),
        (404, "organisation_not_found"),
        (409, "organisation_required"),
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
        (403, "mfa_sign_in_required"),
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
