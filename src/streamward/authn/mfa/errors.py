"""The refusals of second-factor ceremonies. Codes are API contract (BINTU-WIRE's error envelope)."""

from __future__ import annotations

from streamward.errors import AppError, Forbidden


class MfaRequired(AppError):
    """The password was right and the account has a second factor: the login continues at
    ``POST /api/user/validate/mfa`` with the challenge in ``details``."""

    status_code = 401
    code = "mfa_required"
    message = "Confirm the login with your second factor."
    keep_changes = True  # the challenge just stored


class InvalidSecondFactor(AppError):
    status_code = 401
    code = "invalid_second_factor"
    message = "That code or passkey was not accepted."
    keep_changes = True  # the attempt is counted


class InvalidChallenge(AppError):
    """Unknown, expired, used up, exhausted by wrong answers, or started by another client."""

    status_code = 401
    code = "invalid_challenge"
    message = "This login step has expired; start again."
    keep_changes = True


class EnrolmentRequired(Forbidden):
    """The organisation requires a second factor and the account has none: the session reaches only
    enrolment and logout."""

    code = "mfa_enrolment_required"
    message = "Your organisation requires a second factor: set one up before you continue."
