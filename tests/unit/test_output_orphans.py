"""Outputs of killed attempts are deleted when their job turns final (issue 28, finding 6): a worker that
died after uploading left ``outputs/<job>/<lease>/...`` live for ever while the record pointed at a later
attempt. Compared by object key; the final attempt's folder is never touched."""

from __future__ import annotations

import json
import uuid

from runtime.functions.output_orphans import OrphanSweeper, referenced_keys, unreferenced
from runtime.jobs.store import serialize

CDN = "https://d111.cloudfront.net"


def _record(status: str, lease: int, outputs: list[str], job_id: str = "j_1") -> dict:
    return {"job_id": job_id, "status": status, "lease": lease,
            "outputs": [{"url": f"{CDN}/{k}", "content_type": "image/png"} for k in outputs]}


def test_unreferenced_keys_by_status():
    keys = ["outputs/j_1/1/0.png", "outputs/j_1/2/0.png", "outputs/j_1/2/1.png", "outputs/j_10/1/0.png"]
    done = _record("succeeded", 2, ["outputs/j_1/2/0.png"])
    assert referenced_keys(done) == {"outputs/j_1/2/0.png"}
    # the killed attempt 1 goes; the final attempt's folder stays whole; another job (j_10) is not ours
    assert unreferenced(keys, done) == ["outputs/j_1/1/0.png"]
    assert unreferenced(keys, _record("failed", 2, [])) == keys[:3]
    assert unreferenced(keys, _record("running", 2, [])) == []  # never while an attempt may still upload
    assert unreferenced(["outputs/j_1/1/0.png"], {**done, "outputs": [{"key": "outputs/j_1/1/0.png"}]}) == []


def _image(record: dict) -> dict:
    item = dict(record, pk=f"job#{record['job_id']}", spec=json.dumps({}))
    item.pop("job_id")
    return serialize(item)


def test_the_stream_sweep_deletes_a_killed_attempts_objects_on_s3(aws_clients):
    s3, bucket = aws_clients("s3"), f"outputs-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for key in ("outputs/j_1/1/0.png", "outputs/j_1/2/0.png", "outputs/j_2/1/0.png"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"png")
    running = _record("running", 2, [])
    done = _record("succeeded", 2, ["outputs/j_1/2/0.png"])
    sweeper = OrphanSweeper(s3, bucket)
    event = {"Records": [{"dynamodb": {"OldImage": _image(running), "NewImage": _image(done)}},
                         {"dynamodb": {"OldImage": _image(done), "NewImage": _image(done)}}]}  # not a transition
    assert sweeper.handle(event) == 1
    live = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert live == {"outputs/j_1/2/0.png", "outputs/j_2/1/0.png"}
