"""The job API under abuse (issue 29): what a schema-driven fuzzer and a hand attack found, one test each.

The app runs in-process over the Lambda event adapter (``handle_event``) with the real JobStore on moto and
an in-memory queue, so every layer but the socket is exercised. Keys are static (local mode's store); the
SSM-backed key store's side of items 4 and 5 is in tests/integration/test_api_keys.py.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from runtime.api.app import READ_BURST, ApiApp, ApiOptions
from runtime.api.auth import StaticKeyStore, generate_key
from runtime.api.handler import handle_event
from runtime.jobs.schema import MAX_JSON_DEPTH
from runtime.jobs.store import JobStore
from runtime.queues.memory import InMemoryQueue

pytestmark = pytest.mark.integration
KEY, RECORD = generate_key("abuse")
JOB = {"model": "sdxl-base-1.0", "inputs": {"prompt": "a lighthouse", "width": 512, "height": 512}}


def _workflow(value: str) -> str:
    """A workflow job whose node input ``odd`` is ``value`` (JSON text, so no test code recurses through it)."""
    return ('{"model": "sdxl-base-1.0", "task": "comfyui-workflow", "inputs": {"workflow": {"3": '
            '{"class_type": "KSampler", "inputs": {"seed": 1, "odd": ' + value + '}}}}}')


def _nested(depth: int) -> str:
    """Lists ``depth`` deep: 975 is about 2 KB, the fuzzer's case."""
    return "[" * depth + "]" * depth


@pytest.fixture
def make_app(aws_clients, job_table):
    def make(records=(RECORD,), now=None, **options) -> ApiApp:
        opts = {"auth_mode": "api-key", "max_wait_seconds": 0.0, **options}
        clock = (lambda: now[0]) if now is not None else None
        app = ApiApp(JobStore(job_table, aws_clients("dynamodb")), InMemoryQueue(), ApiOptions(**opts),
                     keys=StaticKeyStore({r.key_id: r for r in records}), **({"clock": clock} if clock else {}))
        if now is not None:  # the limiters read the same fake clock
            app.write_limits._clock = app.read_limits._clock = app.auth_failures._clock = lambda: now[0]
        return app
    return make


def _call(app, method, path, body=None, key=KEY, headers=None, source="198.51.100.7"):
    hdrs = {"content-type": "application/json", **({"authorization": f"Bearer {key}"} if key else {}),
            **(headers or {})}
    raw = body if isinstance(body, str) else (json.dumps(body) if body is not None else None)
    event = {"version": "2.0", "rawPath": path, "headers": hdrs, "body": raw, "isBase64Encoded": False,
             "requestContext": {"http": {"method": method, "path": path, "sourceIp": source}, "requestId": "t"}}
    result = handle_event(event, app)
    return result["statusCode"], json.loads(result["body"]) if result["body"] else None, result["headers"]


def _jobs(aws_clients, table) -> list[dict]:
    items = aws_clients("dynamodb").scan(TableName=table)["Items"]
    return [i for i in items if i["pk"]["S"].startswith("job#")]


# --- item 1: a task that is not a string -------------------------------------------------------------------
@pytest.mark.parametrize("task", [{}, [], 7, True, {"x": []}])
def test_a_task_that_is_not_a_string_is_a_422_naming_task(make_app, task):
    status, body, _ = _call(make_app(), "POST", "/v1/jobs", {"model": "sdxl-base-1.0", "task": task, "inputs": {}})
    assert status == 422, body
    assert "task" in {e["field"] for e in body["errors"]}


# --- item 2: deep nesting, and anything failing after the record is written -------------------------------
def test_a_workflow_nested_past_the_limit_is_a_422_naming_the_field(make_app, aws_clients, job_table):
    app = make_app(quota_per_day=5)
    for depth in (MAX_JSON_DEPTH + 1, 975):  # 975: the fuzzer's case, which made the queue send recurse
        status, body, _ = _call(app, "POST", "/v1/jobs", _workflow(_nested(depth)), headers={"idempotency-key": "d"})
        assert status == 422, body
        (error,) = body["errors"]
        assert error["rule"] == "max-depth" and error["field"].startswith("inputs.workflow.3.inputs.odd")
    assert _jobs(aws_clients, job_table) == [] and len(app.producer) == 0
    # The documented limit itself is fine: a body MAX_JSON_DEPTH deep (the body object is level 1).
    status, body, _ = _call(app, "POST", "/v1/jobs", _workflow(_nested(MAX_JSON_DEPTH - 5)))
    assert status == 202, body


def test_a_send_that_fails_after_the_write_undoes_the_job_its_key_and_its_quota_unit(make_app, aws_clients,
                                                                                    job_table, monkeypatch):
    """The queue send raising anything (the fuzzer's RecursionError) leaves no orphaned job behind."""
    app = make_app(quota_per_day=1)

    def explode(message):
        raise RecursionError("maximum recursion depth exceeded while encoding a JSON object")

    monkeypatch.setattr(app.producer, "send", explode)
    status, _, _ = _call(app, "POST", "/v1/jobs", JOB, headers={"idempotency-key": "k1"})
    assert status == 500
    assert _jobs(aws_clients, job_table) == []  # no job left queued forever
    monkeypatch.undo()
    # The Idempotency-Key is free again and the quota unit was given back: the retry makes the job.
    status, body, headers = _call(app, "POST", "/v1/jobs", JOB, headers={"idempotency-key": "k1"})
    assert status == 202, body
    assert "Idempotent-Replayed" not in headers
    assert len(app.producer) == 1 and len(_jobs(aws_clients, job_table)) == 1


def test_a_queue_outage_gives_the_quota_unit_back(make_app, monkeypatch):
    from runtime.queues import QueueUnavailableError

    app = make_app(quota_per_day=1)

    def down(message):
        raise QueueUnavailableError("down")

    monkeypatch.setattr(app.producer, "send", down)
    assert _call(app, "POST", "/v1/jobs", JOB)[0] == 503
    monkeypatch.undo()
    status, body, _ = _call(app, "POST", "/v1/jobs", JOB)
    assert status == 202, body  # not 429: the failed request used no quota


# --- item 3: one key's rate never binds another -----------------------------------------------------------
def test_each_key_is_held_to_its_own_rate_only(make_app):
    now = [1000.0]
    slow_key, slow = generate_key("slow")
    fast_key, fast = generate_key("fast")
    plain_key, plain = generate_key("plain")
    slow = replace(slow, rate_per_second=2.0)
    fast = replace(fast, rate_per_second=10.0)
    app = make_app(records=(slow, fast, plain), now=now, quota_per_day=None)
    assert [_call(app, "POST", "/v1/jobs", JOB, key=slow_key)[0] for _ in range(3)] == [202, 202, 429]
    assert [_call(app, "POST", "/v1/jobs", JOB, key=fast_key)[0] for _ in range(10)] == [202] * 10
    # A key without a rate of its own, on a stack without a default rate, is not limited by the others'.
    assert [_call(app, "POST", "/v1/jobs", JOB, key=plain_key)[0] for _ in range(15)] == [202] * 15


def test_keys_without_their_own_rate_get_the_stack_rate_each(make_app):
    now = [1000.0]
    a_key, a = generate_key("a")
    b_key, b = generate_key("b")
    fast_key, fast = generate_key("fast")
    fast = replace(fast, rate_per_second=50.0)
    app = make_app(records=(a, b, fast), now=now, rate_per_second=1.0, burst=3.0)
    assert [_call(app, "POST", "/v1/jobs", JOB, key=fast_key)[0] for _ in range(20)] == [202] * 20
    assert [_call(app, "POST", "/v1/jobs", JOB, key=a_key)[0] for _ in range(4)] == [202, 202, 202, 429]
    assert [_call(app, "POST", "/v1/jobs", JOB, key=b_key)[0] for _ in range(4)] == [202, 202, 202, 429]


# --- item 5 (local store): the same answer for an unknown key id and a wrong secret -----------------------
def _wrong_secret(key: str) -> str:
    """The same key id with another secret, tagged like a real key (the tag is a checksum without a tag secret)."""
    from runtime.api import key_format

    key_id, secret = key[3:15], key[16:-9]  # gf_<12>_<43>_<8>
    body = f"gf_{key_id}_{('A' if secret[0] != 'A' else 'B') + secret[1:]}"
    return f"{body}_{key_format.key_tag(body, None)}"


def test_unknown_key_ids_and_wrong_secrets_get_the_same_answer_before_and_after_a_flood(make_app):
    app = make_app()
    unknown, _ = generate_key("nobody")
    wrong = _wrong_secret(KEY)
    for _ in range(30):  # enough failures to put the source over its budget
        answers = {json.dumps(_call(app, "GET", "/v1/models", key=k)[:2], sort_keys=True) for k in (unknown, wrong)}
        assert len(answers) == 1, answers
    assert _call(app, "GET", "/v1/models")[0] == 200  # the real key still works from that address


# --- item 6: non-finite numbers ------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, field", [
    ('{"model": "sdxl-base-1.0", "task": "comfyui-workflow", "inputs": {"workflow": {"3": {"class_type": "K", '
     '"inputs": {"cfg": 1e400}}}}}', "inputs.workflow.3.inputs.cfg"),
    ('{"model": "sdxl-base-1.0", "task": "comfyui-workflow", "inputs": {"workflow": {"3": {"class_type": "K", '
     '"x": [-1e999]}}}}', "inputs.workflow.3.x[0]"),
    ('{"model": "sdxl-base-1.0", "inputs": {"prompt": "p", "guidance": 1e400}}', "inputs.guidance"),
])
def test_numbers_that_overflow_to_infinity_are_a_422_naming_the_field(make_app, aws_clients, job_table, raw, field):
    app = make_app()
    status, body, _ = _call(app, "POST", "/v1/jobs", raw)
    assert status == 422, body
    assert field in {e["field"] for e in body["errors"]}
    assert _jobs(aws_clients, job_table) == [] and len(app.producer) == 0


def test_responses_are_strict_json(make_app):
    status, body, _ = _call(make_app(), "POST", "/v1/jobs", _workflow("1.5e300"))
    assert status == 202 and body["status"] == "queued"  # a large finite number is fine
    from runtime.api.app import Response
    from runtime.api.handler import to_result

    result = to_result(Response(200, {"x": math.inf}))  # a bug that would send Infinity answers 500 instead
    assert result["statusCode"] == 500 and "Infinity" not in result["body"]
    json.loads(result["body"], parse_constant=lambda name: pytest.fail(f"{name} in a response"))


# --- item 7: reads are rate limited per key ------------------------------------------------------------------
def test_reads_are_rate_limited_per_key_with_a_long_poll_sized_budget(make_app):
    now = [1000.0]
    other_key, other = generate_key("other")
    app = make_app(records=(RECORD, other), now=now)
    job_id = _call(app, "POST", "/v1/jobs", JOB)[1]["id"]
    codes = []
    for i in range(6000):  # 200 requests/s for 30 s, like the attack
        now[0] = 1000.0 + i / 200
        path = f"/v1/jobs/{job_id}" if i % 2 else "/v1/models"
        codes.append(_call(app, "GET", path)[0])
    answered = codes.count(200)
    assert codes.count(429) == len(codes) - answered
    assert READ_BURST <= answered <= READ_BURST + 20 * 30 + 1  # the burst, then 20/s
    status, _, headers = _call(app, "GET", f"/v1/jobs/{job_id}")
    assert status == 429 and int(headers["Retry-After"]) >= 1
    assert _call(app, "GET", "/v1/models", key=other_key)[0] == 200  # another key has its own budget
    now[0] += 10  # and the budget refills
    assert _call(app, "GET", f"/v1/jobs/{job_id}")[0] == 200


def test_a_replay_whose_send_cannot_work_undoes_the_orphan_and_frees_its_key(make_app, aws_clients, job_table,
                                                                             monkeypatch):
    """The replay path of item 2: a creator died between write and send; the replay's send raises a bug (not a
    queue outage, which a later replay would retry): the orphan and its key are undone, so a retry makes a job."""
    from runtime.api.auth import parse_key
    from runtime.jobs.schema import fingerprint, validate_job
    from runtime.jobs.store import new_record

    app = make_app()
    spec = validate_job(JOB)
    orphan = {**new_record(spec, owner=parse_key(KEY)), "send_lease_until": 0.0}  # its lease ran out long ago
    app.store.create(orphan, idempotency_key="crash-2", fingerprint=fingerprint(spec))

    def explode(message):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(app.producer, "send", explode)
    assert _call(app, "POST", "/v1/jobs", JOB, headers={"idempotency-key": "crash-2"})[0] == 500
    assert _jobs(aws_clients, job_table) == []
    monkeypatch.undo()
    status, body, headers = _call(app, "POST", "/v1/jobs", JOB, headers={"idempotency-key": "crash-2"})
    assert status == 202 and "Idempotent-Replayed" not in headers, body
    assert len(app.producer) == 1
