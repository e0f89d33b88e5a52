"""The refusals of second-factor ceremonies. Codes are API contract (BINTU-WIRE's error envelope)."""

from __future__ import annotations

from streamward.errors import AppError, BadRequest, Forbidden


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


class ChallengeEndedMeanwhile(InvalidChallenge):
    """The answer was judged, but the challenge was used up or ended (a password change, another
    answer) while this step waited for its account: the same refusal, and nothing the step wrote
    stays (a recovery code it used up is not lost)."""

    keep_changes = False


class EnrolmentRequired(Forbidden):
    """The organisation requires a second factor and the account has none: the session reaches only
    enrolment and logout."""

    code = "mfa_enrolment_required"
    message = "Your organisation requires a second factor: set one up before you continue."


class InvalidCode(AppError):
    """The first code of an authenticator app being set up is wrong (not a login: no 401)."""

    status_code = 400
    code = "invalid_code"
    message = "That code is not right; check the app's clock and enter the code it shows now."


class InvalidProof(AppError):
    """Removing a factor or replacing the recovery codes needs the password or a fresh code."""

    status_code = 400
    code = "invalid_proof"
    message = "Confirm with your password or a code from your authenticator app."


class NoSecondFactor(AppError):
    status_code = 400
    code = "no_second_factor"
    message = "Set up an authenticator app or a passkey first."


class FactorAlreadyConfirmed(AppError):
    status_code = 409
    code = "factor_already_confirmed"
    message = "This authenticator app is already set up."


class TooManyFactors(AppError):
    status_code = 409
    code = "too_many_factors"
    message = "This account has as many authenticator apps as it may have; remove one first."


class ProofRequired(Forbidden):
    """Adding a factor from a session that did not just sign in (or from a named token): a stolen
    session must not be able to plant a factor of its own, which would be a lasting way in."""

    code = "proof_required"
    message = (
        "Confirm with your password or a code from your authenticator app: adding a second factor "
        "needs a sign-in of the last 10 minutes or that proof."
    )


class ResetElsewhere(Forbidden):
    """An administrator resets the factors of their own organisation's member; the factors are the
    person's, guarding every organisation they belong to, which this administrator does not run."""

    code = "mfa_reset_not_allowed"
    message = (
        "This person also belongs to other organisations, which their second factors protect too: "
        "they can sign in with a recovery code, or the platform operator can help."
    )


class OwnReset(BadRequest):
    code = "own_factors"
    message = "Your own second factors are removed on your security page (with your password or a code)."
