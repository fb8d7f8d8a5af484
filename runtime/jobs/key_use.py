"""When each API key was last used, to the day, beside the quota counters in the job table (issue 43, item 3).

One item per key, ``keyuse#<key id>``, attribute ``day`` (``YYYY-MM-DD``, UTC). The API writes it without a
write per request: each API instance remembers the day it last recorded per key (a bounded memo), and the
first successful request of a key on a new day in that instance makes one conditional update (``day`` absent
or older), so at most one write per key per instance per day is tried and at most one per key per day
succeeds. The record is best effort: a failed write is logged and never fails the request. ``genai-stack
api-key list`` reads the items. Key records in SSM are never written by the API (it may only read them).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from runtime.jobs.spend import utc_day

log = logging.getLogger(__name__)

MAX_REMEMBERED = 10_000  # keys whose recorded day an instance remembers (least recently used dropped)


def key_use_pk(key_id: str) -> str:
    return f"keyuse#{key_id}"


class KeyUse:
    """Last-used days of the keys of one job table (``client``: a boto3 DynamoDB client)."""

    def __init__(self, table_name: str, client: Any, clock: Callable[[], float] = time.time,
                 max_remembered: int = MAX_REMEMBERED) -> None:
        self.table_name, self.client, self._clock, self.max_remembered = table_name, client, clock, max_remembered
        self._recorded: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def note(self, key_id: str) -> None:
        """Record that ``key_id`` was used today, unless this instance already did so today."""
        day = utc_day(self._clock())
        with self._lock:
            if self._recorded.get(key_id) == day:
                self._recorded.move_to_end(key_id)
                return
            self._recorded[key_id] = day
            self._recorded.move_to_end(key_id)
            while len(self._recorded) > self.max_remembered:
                self._recorded.popitem(last=False)
        try:
            self.client.update_item(
                TableName=self.table_name, Key={"pk": {"S": key_use_pk(key_id)}}, UpdateExpression="SET #d = :d",
                ConditionExpression="attribute_not_exists(#d) OR #d < :d", ExpressionAttributeNames={"#d": "day"},
                ExpressionAttributeValues={":d": {"S": day}})
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                log.warning("recording the use of key %s failed: %s", key_id, exc)
                self._forget(key_id, day)
        except BotoCoreError as exc:
            log.warning("recording the use of key %s failed: %s", key_id, exc)
            self._forget(key_id, day)

    def _forget(self, key_id: str, day: str) -> None:
        with self._lock:
            if self._recorded.get(key_id) == day:
                del self._recorded[key_id]

    def last_used(self, key_ids: Iterable[str]) -> dict[str, str]:
        """``{key id: day}`` for the keys with a recorded use (keys never used are absent)."""
        days: dict[str, str] = {}
        for key_id in key_ids:
            item = self.client.get_item(TableName=self.table_name, Key={"pk": {"S": key_use_pk(key_id)}},
                                        ConsistentRead=True).get("Item")
            if item and "day" in item:
                days[key_id] = item["day"]["S"]
        return days
