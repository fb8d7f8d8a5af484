"""Local mode's DynamoDB is atomic per request, as AWS's is (issue 28, finding 5).

moto 5.2.5's TransactWriteItems deep-copies the table and restores the copy when a part fails, wiping
the writes other threads made meanwhile: local mode lost an accepted job that way (measured with plain
``python -m moto.server``: 15 of 268 acknowledged puts lost in 8 s beside failing transactions). Local
mode's endpoint (fleetdev.local.moto_server) serialises every DynamoDB request."""

from __future__ import annotations

import threading
import time
from typing import Any

from botocore.config import Config

from fleetdev.local.moto_server import AtomicDynamoDB
from fleetdev.local.platform import LocalOptions, LocalPlatform


def _client(url: str) -> Any:
    import boto3

    return boto3.client("dynamodb", endpoint_url=url, region_name="us-east-1", aws_access_key_id="local",
                        aws_secret_access_key="local", config=Config(retries={"max_attempts": 1}))


def test_acknowledged_puts_survive_failing_transactions(tmp_path):
    platform = LocalPlatform(LocalOptions(run_dir=tmp_path)).start_aws()
    try:
        table, ddb = platform.resources.job_table, _client(platform.moto_url)
        ddb.put_item(TableName=table, Item={"pk": {"S": "taken"}})
        stop, acked, canceled = threading.Event(), [], []

        def put(i: int) -> None:
            client, n = _client(platform.moto_url), 0
            while not stop.is_set():
                client.put_item(TableName=table, Item={"pk": {"S": f"p{i}-{n}"}})
                acked.append(f"p{i}-{n}")
                n += 1

        def fail() -> None:
            client, n = _client(platform.moto_url), 0
            while not stop.is_set():
                try:
                    client.transact_write_items(TransactItems=[
                        {"Put": {"TableName": table, "Item": {"pk": {"S": f"tx{n}"}}}},
                        {"Put": {"TableName": table, "Item": {"pk": {"S": "taken"}},
                                 "ConditionExpression": "attribute_not_exists(pk)"}}])
                except client.exceptions.TransactionCanceledException:
                    canceled.append(n)
                n += 1

        threads = [threading.Thread(target=put, args=(i,)) for i in range(3)] + [
            threading.Thread(target=fail) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(6)
        stop.set()
        for t in threads:
            t.join(30)
        keys: set[str] = set()
        kwargs: dict[str, Any] = {"TableName": table}
        for _ in range(1000):
            page = ddb.scan(**kwargs)
            keys |= {item["pk"]["S"] for item in page["Items"]}
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        lost = [k for k in acked if k not in keys]
        assert acked and canceled, "the race did not run"
        assert not lost, f"{len(lost)} of {len(acked)} acknowledged puts lost"
        assert not any(k.startswith("tx") for k in keys)  # a canceled transaction wrote nothing
    finally:
        platform.stop()


def test_only_dynamodb_requests_are_serialised():
    inside, most, lock = [0], {"DynamoDB_20120810.PutItem": 0, "": 0}, threading.Lock()
    gate = threading.Barrier(2, timeout=0.5)

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        with lock:
            inside[0] += 1
            most[target] = max(most[target], inside[0])
        try:
            gate.wait()  # two concurrent requests meet here unless serialised
        except threading.BrokenBarrierError:
            gate.reset()
        with lock:
            inside[0] -= 1
        return [b"ok"]

    wrapped = AtomicDynamoDB(app)
    for target in ("DynamoDB_20120810.PutItem", ""):
        env = {"HTTP_X_AMZ_TARGET": target} if target else {}
        threads = [threading.Thread(target=lambda e=env: wrapped(e, lambda *a: None)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(5)
    assert most["DynamoDB_20120810.PutItem"] == 1 and most[""] == 2
