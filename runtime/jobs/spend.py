"""Spend per tenant per day, beside the daily quota counters in the job table (issue 42, item 2).

A tenant is the owner of one or more API keys; until the access issue introduces tenants, a key is its own
tenant (the job's ``owner``). One item per tenant and UTC day, ``spend#<tenant>#<YYYY-MM-DD>``::

    usd          dollars of the tenant's settled attempts (runtime.jobs.cost), failed and handed-back ones too
    gpu_seconds  their GPU-seconds
    committed    usd + what the API reserved for the tenant's jobs not final yet: the budget's measure
    expires_at   TTL, 35 days later

The day is the day the job was submitted (``budget_day`` on the record), for the reservation and for every
attempt of the job, so a job that runs past midnight settles against the day that admitted it.

A daily budget is enforced like the quota, by one conditional write: the API reserves the job's expected
cost (``ADD committed``) only while ``committed <= budget - expected``, else 429. Each settled attempt adds
its dollars to ``usd`` and ``committed``; the attempt that makes the job final also gives the reservation
back (``committed - reserved``), so once every job is final ``committed == usd``. DynamoDB conditions have no
arithmetic: the limit is computed by the caller. A job made final without a worker (canceled while queued,
dead-lettered, its lease expired on the last attempt) keeps its reservation until the day ends: the budget
errs on the side of refusing. The counters are written after the job record (best effort, logged on
failure); the job records stay the truth (``genai-stack cost`` reads them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from runtime.jobs.errors import StoreUnavailableError
from runtime.jobs.items import deserialize, serialize_value

log = logging.getLogger(__name__)

KEEP_SECONDS = 35 * 86400


def utc_day(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


def spend_pk(tenant: str, day: str) -> str:
    return f"spend#{tenant}#{day}"


class TenantSpend:
    """The spend counters of one job table (``client``: a boto3 DynamoDB client)."""

    def __init__(self, table_name: str, client: Any, clock: Callable[[], float] = time.time) -> None:
        self.table_name, self.client, self._clock = table_name, client, clock

    def reserve(self, tenant: str, day: str, expected_usd: float, budget_usd: float) -> bool:
        """Reserve ``expected_usd`` of ``tenant``'s budget for ``day``; False when it would exceed the budget."""
        limit = float(budget_usd) - float(expected_usd)
        if limit < 0:
            return False
        try:
            self._update(tenant, day, "ADD committed :e SET expires_at = :exp",
                         {":e": float(expected_usd), ":limit": limit},
                         condition="attribute_not_exists(committed) OR committed <= :limit")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise StoreUnavailableError(f"budget update failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StoreUnavailableError(f"budget update failed: {exc}") from exc
        return True

    def release(self, tenant: str, day: str, usd: float) -> None:
        """Give a reservation back (a job the API undid, or an Idempotency-Key replay that created nothing)."""
        self._call(tenant, day, "ADD committed :e SET expires_at = :exp", {":e": -float(usd)})

    def charge(self, tenant: str, day: str, usd: float, gpu_seconds: float, reserved_usd: float = 0.0) -> None:
        """One settled attempt's dollars; ``reserved_usd`` (the final attempt) gives the job's reservation back."""
        self._call(tenant, day, "ADD usd :u, gpu_seconds :g, committed :c SET expires_at = :exp",
                   {":u": float(usd), ":g": float(gpu_seconds), ":c": float(usd) - float(reserved_usd)})

    def read(self, tenant: str, day: str) -> dict[str, float]:
        """``{usd, gpu_seconds, committed}`` of ``tenant`` on ``day`` (zeros when nothing was spent)."""
        try:
            item = self.client.get_item(TableName=self.table_name, Key={"pk": {"S": spend_pk(tenant, day)}},
                                        ConsistentRead=True).get("Item")
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailableError(f"reading spend failed: {exc}") from exc
        values = deserialize(item) if item else {}
        return {k: float(values.get(k) or 0.0) for k in ("usd", "gpu_seconds", "committed")}

    def _call(self, tenant: str, day: str, expression: str, values: dict[str, float]) -> None:
        try:
            self._update(tenant, day, expression, values)
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailableError(f"spend update failed: {exc}") from exc

    def _update(self, tenant: str, day: str, expression: str, values: dict[str, float],
                condition: str | None = None) -> None:
        attrs = {k: serialize_value(v) for k, v in values.items()}
        attrs[":exp"] = {"N": str(int(self._clock()) + KEEP_SECONDS)}
        kwargs: dict[str, Any] = {"TableName": self.table_name, "Key": {"pk": {"S": spend_pk(tenant, day)}},
                                  "UpdateExpression": expression, "ExpressionAttributeValues": attrs}
        if condition:
            kwargs["ConditionExpression"] = condition
        self.client.update_item(**kwargs)
