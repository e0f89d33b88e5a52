"""What one signed send came to, read one way for every caller: the delivery log's status and error,
whether the worker tries again, and what a person is told (the test event's banner, the reason a
publish was refused).

The egress client reports the receiver's HTTP status when it answered, or an error when it did not
(a refused target, a timeout, a failed connection); ``outcome_of`` is the only reader of that report.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamward.egress.client import SendResult
from streamward.webhooks.schemas import DeliveryStatus


@dataclass(frozen=True)
class SendOutcome:
    status: DeliveryStatus
    response_code: int | None  # the receiver's HTTP status; None when there was no answer
    reason: str  # why there was no answer, else "HTTP <status>"
    # Another attempt may fare better: no answer, 429 or 5xx. Never a refused target: nothing was sent.
    retryable: bool
    retry_after_seconds: float | None
    duration_ms: int

    @property
    def delivered(self) -> bool:
        return self.status == "succeeded"

    @property
    def error(self) -> str | None:
        """The delivery log's error: none when delivered."""
        return None if self.delivered else self.reason

    @property
    def answer(self) -> str:
        """For a person: the receiver's answer, or why there was none."""
        if self.response_code is not None:
            return f"the receiver answered HTTP {self.response_code}"
        return f"no answer ({self.reason})"


def outcome_of(result: SendResult) -> SendOutcome:
    status: DeliveryStatus = "succeeded" if result.ok else ("refused" if result.refused else "failed")
    code = result.status_code
    return SendOutcome(
        status=status,
        response_code=code,
        reason=result.error or f"HTTP {code}",
        retryable=not result.refused and (code is None or code == 429 or code >= 500),
        retry_after_seconds=result.retry_after_seconds,
        duration_ms=result.duration_ms,
    )
