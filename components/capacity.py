"""Lambda concurrency the job API needs, checked when the stack config is read.

A request that sends ``Prefer: wait=N`` holds one execution of the API function for up to N seconds.
API Gateway admits at most ``apiBurstLimit`` requests at once and ``apiRateLimit`` a second after that
(a token bucket), so over one wait window at most ``burst + rate x wait`` requests are in flight:

    handler needs    = apiBurstLimit + apiRateLimit x max(apiMaxWaitSeconds, 1)
    authorizer needs = apiBurstLimit          (each check ends well inside a second; burst >= rate)
    account needs    = handler + authorizer + 100   (AWS keeps 100 executions unreserved per region)

Both functions get that much *reserved* concurrency, so neither starves the other nor the rest of the
account; the account's "Concurrent executions" quota (L-B99A9384, 1,000 by default and often 10 on new
accounts) must cover the total, which the preview checks (``components/prerequisites.py``).
"""

from __future__ import annotations

import math
from typing import Any

from components.config_settings import NAMESPACE

UNRESERVED_MINIMUM = 100  # Lambda refuses reservations that leave fewer unreserved executions
QUOTA_CODE = "L-B99A9384"  # Service Quotas: AWS Lambda "Concurrent executions"


def handler_needed(rate: int, burst: int, max_wait: int) -> int:
    """Executions the API function can hold at once at the configured rate, burst and sync wait."""
    return burst + rate * max(max_wait, 1)


def authorizer_needed(burst: int) -> int:
    return burst


def account_needed(handler: int, authorizer: int | None) -> int:
    """The regional concurrency quota the stack needs: its reservations plus AWS's unreserved minimum."""
    return handler + (authorizer or 0) + UNRESERVED_MINIMUM


def largest_wait(reserved: int, rate: int, burst: int) -> int:
    """The longest ``apiMaxWaitSeconds`` a reservation supports (0 when even async calls do not fit)."""
    return max(0, math.floor((reserved - burst) / rate)) if reserved > burst else 0


def check(v: dict[str, Any]) -> list[str]:
    """Config errors when an explicit reservation is below what rate, burst and wait need."""
    rate, burst, wait = v.get("apiRateLimit"), v.get("apiBurstLimit"), v.get("apiMaxWaitSeconds")
    if rate is None or burst is None or wait is None:
        return []
    problems = []
    handler, need = v.get("apiHandlerConcurrency"), handler_needed(rate, burst, wait)
    if handler is not None and handler < need:
        problems.append(
            f"{NAMESPACE}:apiHandlerConcurrency = {handler} is below what the API can hold at once: apiBurstLimit "
            f"+ apiRateLimit x apiMaxWaitSeconds = {burst} + {rate} x {max(wait, 1)} = {need}: raise "
            f"apiHandlerConcurrency to {need}, or lower apiMaxWaitSeconds to {largest_wait(handler, rate, burst)} "
            f"(longer waits get 202 and a status URL), or lower apiRateLimit / apiBurstLimit")
    authorizer, need_auth = v.get("apiAuthorizerConcurrency"), authorizer_needed(burst)
    if authorizer is not None and authorizer < need_auth:
        problems.append(
            f"{NAMESPACE}:apiAuthorizerConcurrency = {authorizer} is below apiBurstLimit = {burst}, the requests "
            f"API Gateway admits at once: raise apiAuthorizerConcurrency to {need_auth} or lower apiBurstLimit")
    return problems
