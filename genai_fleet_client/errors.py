"""What the client raises: API errors carry the problem document (RFC 9457) the API answered with.

=========================  ==========================================================================
``ApiError``               any error answer; ``.status``, ``.problem`` (the document), ``.type``
                           (its last path segment: ``validation-failed``, ``rate-limited`` ...),
                           ``.detail``, ``.errors`` (``[{field, rule, message}]``), ``.retry_after``
``AuthenticationError``    401 / 403: no key, or a wrong or disabled one
``NotFoundError``          404: no such job for this key
``RequestRejectedError``   400, 409, 413, 415, 422: the request itself is wrong
``RateLimitedError``       429 ``rate-limited`` still answered after the retry cap
``QuotaExceededError``     429 ``quota-exceeded``: never slept on (``retry_after`` runs to midnight UTC)
``UnavailableError``       503 (or a 5xx) still answered after the retry cap
``NetworkError``           the API could not be reached, after retrying for the network budget
``DownloadError``          an output could not be fetched from the CDN
``JobFailedError``         the job ended ``failed``; ``.job`` is the final job
``JobCanceledError``       the job ended ``canceled``
``WaitTimeoutError``       the job was not final when the wait ran out; ``.job`` is the last view
=========================  ==========================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from genai_fleet_client.types import Job


class GenaiFleetError(Exception):
    """Base of every error of this package."""


class ApiError(GenaiFleetError):
    def __init__(self, status: int, problem: Mapping[str, Any], retry_after: float | None = None):
        self.status = status
        self.problem = dict(problem)
        self.retry_after = retry_after
        self.type = str(self.problem.get("type") or "").rstrip("/").rsplit("/", 1)[-1]
        self.title = str(self.problem.get("title") or "")
        self.detail = str(self.problem.get("detail") or self.title or f"HTTP {status}")
        self.errors: list[dict[str, Any]] = list(self.problem.get("errors") or [])
        super().__init__(self.message())

    def message(self) -> str:
        """One line: the status, the problem type and the API's own text (with the first broken rules)."""
        text = f"{self.status} {self.type or self.title}: {self.detail}"
        fields = "; ".join(f"{e.get('field')}: {e.get('message')}" for e in self.errors[:3])
        return f"{text} ({fields})" if fields and fields not in text else text


class AuthenticationError(ApiError):
    pass


class NotFoundError(ApiError):
    pass


class RequestRejectedError(ApiError):
    pass


class RateLimitedError(ApiError):
    pass


class QuotaExceededError(ApiError):
    pass


class UnavailableError(ApiError):
    pass


class NetworkError(GenaiFleetError):
    pass


class DownloadError(GenaiFleetError):
    """An output could not be fetched (the CDN answered neither 200 nor, after fresh URLs, anything but 403)."""


class JobEndedError(GenaiFleetError):
    def __init__(self, job: Job, message: str):
        self.job = job
        super().__init__(message)


class JobFailedError(JobEndedError):
    def __init__(self, job: Job):
        error = job.error or {}
        super().__init__(job, f"job {job.id} failed: {error.get('code', 'error')}: {error.get('message', '')}")


class JobCanceledError(JobEndedError):
    def __init__(self, job: Job):
        super().__init__(job, f"job {job.id} was canceled")


class WaitTimeoutError(JobEndedError):
    def __init__(self, job: Job, waited: float):
        super().__init__(job, f"job {job.id} is still {job.status} after {waited:.0f} s")


def error_for(status: int, problem: Mapping[str, Any], retry_after: float | None) -> ApiError:
    """The exception class for an error answer."""
    kind = str(problem.get("type") or "").rstrip("/").rsplit("/", 1)[-1]
    if status in (401, 403):
        return AuthenticationError(status, problem, retry_after)
    if status == 404:
        return NotFoundError(status, problem, retry_after)
    if status == 429:
        cls = QuotaExceededError if kind == "quota-exceeded" else RateLimitedError
        return cls(status, problem, retry_after)
    if status >= 500:
        return UnavailableError(status, problem, retry_after)
    return RequestRejectedError(status, problem, retry_after)
