"""Issue 38 through the API over HTTP (local server, the Lambda handler): GET /v1/jobs/{id}/events with a cursor,
long-polled; 400 for a bad cursor or wait, 404 for another key's job; the running job's view shows its progress."""

from __future__ import annotations

import threading
import uuid

import httpx
import pytest

from fleetdev.local_server import LocalApiServer
from runtime.api.auth import generate_key
from runtime.api.handler import ApiConfig, build_app
from runtime.jobs.events import FINAL_CURSOR, EventLog, create_events_table
from runtime.jobs.progress import Progress
from runtime.worker.progress_reporter import ProgressReporter

pytestmark = pytest.mark.integration
KEY, _ = generate_key("alice")
OTHER, _ = generate_key("bob")
JOB = {"model": "sdxl-base-1.0", "inputs": {"prompt": "a lighthouse", "width": 512, "height": 512, "steps": 30}}


@pytest.fixture
def api(moto_endpoint, job_table, sqs_queue, aws_clients):
    ddb = aws_clients("dynamodb")
    events = f"events-{uuid.uuid4().hex[:8]}"
    create_events_table(ddb, events)
    cfg = ApiConfig(job_table=job_table, queue_url=sqs_queue, api_keys=(KEY, OTHER), hot_models=("sdxl-base-1.0",),
                    endpoint_url=moto_endpoint, region="us-east-1", event_table=events,
                    outputs_base_url="https://cdn")
    app = build_app(cfg, clients={"dynamodb": ddb})
    with LocalApiServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        client.headers["Authorization"] = f"Bearer {KEY}"
        yield client, app, ProgressReporter(EventLog(events, ddb), interval_s=0.05)


def _attempt(app, reporter, job_id, steps=range(1, 16)):
    """A worker's attempt: claim, progress over ``steps`` of 30 (written by the reporter's flush thread)."""
    attempt = app.store.attempts.start_attempt(job_id, "i-test", 3, 30)
    sink = reporter.begin(job_id, attempt.lease, attempt.number)
    for step in steps:
        sink(Progress(step=step, steps=30))
    return attempt


def test_events_resume_from_a_cursor_without_loss_or_repeat_and_end_with_the_final_status(api):
    client, app, reporter = api
    job_id = client.post("/v1/jobs", json=JOB).json()["id"]
    first = client.get(f"/v1/jobs/{job_id}/events", params={"wait": "0"}).json()
    assert [e["status"] for e in first["events"]] == ["queued"] and first["final"] is False
    attempt = _attempt(app, reporter, job_id)
    # long-poll: answered as soon as the flush thread wrote the attempt's events
    second = client.get(f"/v1/jobs/{job_id}/events", params={"after": first["next_cursor"], "wait": "15"}).json()
    assert second["events"] and second["events"][0]["status"] == "running"
    reporter.close(job_id, attempt.lease)
    view = client.get(f"/v1/jobs/{job_id}").json()
    assert view["status"] == "running" and view["progress"]["percent"] == 50.0 and view["progress"]["attempt"] == 1
    app.store.mark_succeeded(job_id, [{"key": "outputs/x.png", "content_type": "image/png"}], {},
                             lease=attempt.lease)
    seen = first["events"] + second["events"]
    cursor = second["next_cursor"]
    while True:
        page = client.get(f"/v1/jobs/{job_id}/events", params={"after": cursor, "wait": "0"}).json()
        seen += page["events"]
        cursor = page["next_cursor"]
        if page["final"]:
            break
    cursors = [e["cursor"] for e in seen]
    assert cursors == sorted(cursors) and len(cursors) == len(set(cursors))
    assert seen[-1] == {**seen[-1], "cursor": FINAL_CURSOR, "status": "succeeded", "outputs": ["https://cdn/outputs/x.png"]}
    percents = [e["percent"] for e in seen if e["kind"] == "progress"]
    assert len(percents) >= 5 and percents == sorted(percents)
    after_final = client.get(f"/v1/jobs/{job_id}/events", params={"after": FINAL_CURSOR, "wait": "1"}).json()
    assert after_final["events"] == [] and after_final["final"] is True  # no events after final


def test_bad_cursor_or_wait_is_400_naming_the_parameter_and_another_keys_job_is_404(api):
    client, _, _ = api
    job_id = client.post("/v1/jobs", json=JOB).json()["id"]
    for params, field in (({"after": "banana"}, "query.after"), ({"after": "000009.000000"}, "query.after"),
                          ({"wait": "60"}, "query.wait"), ({"wait": "-1"}, "query.wait"),
                          ({"since": "x"}, "query.since")):
        r = client.get(f"/v1/jobs/{job_id}/events", params=params)
        assert r.status_code == 400, (params, r.text)
        assert r.json()["errors"][0]["field"] == field
    other = client.get(f"/v1/jobs/{job_id}/events", headers={"Authorization": f"Bearer {OTHER}"})
    assert other.status_code == 404
    assert client.get("/v1/jobs/j_nosuchjob/events").status_code == 404


def test_a_waiting_request_answers_when_the_event_arrives(api):
    client, app, reporter = api
    job_id = client.post("/v1/jobs", json=JOB).json()["id"]
    first = client.get(f"/v1/jobs/{job_id}/events", params={"wait": "0"}).json()
    timer = threading.Timer(0.5, lambda: _attempt(app, reporter, job_id, steps=()))
    timer.start()
    page = client.get(f"/v1/jobs/{job_id}/events", params={"after": first["next_cursor"], "wait": "20"}).json()
    timer.join()
    assert [e.get("status") for e in page["events"]] == ["running"]


def _sse(client: httpx.Client, job_id: str, **headers: str) -> list[dict]:
    """The events of a text/event-stream answer, each frame's id checked against its data's cursor."""
    import json

    events = []
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers={"Accept": "text/event-stream", **headers}) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream"
        fields: dict[str, str] = {}
        for line in r.iter_lines():
            if line.startswith(":"):
                continue
            if not line:
                if fields:
                    event = json.loads(fields["data"])
                    assert fields["id"] == event["cursor"] and fields["event"] == event["kind"]
                    events.append(event)
                fields = {}
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
    return events


def test_server_sent_events_in_local_mode_resume_from_last_event_id_and_end_after_final(api):
    client, app, reporter = api
    job_id = client.post("/v1/jobs", json=JOB).json()["id"]
    attempt = _attempt(app, reporter, job_id, steps=range(1, 31))
    timer = threading.Timer(0.5, lambda: (reporter.close(job_id, attempt.lease), app.store.mark_succeeded(
        job_id, [{"key": "outputs/x.png", "content_type": "image/png"}], {}, lease=attempt.lease)))
    timer.start()
    everything = _sse(client, job_id)  # streams until the final status, then the server ends it
    timer.join()
    assert everything[0]["status"] == "queued" and everything[-1]["status"] == "succeeded"
    middle = everything[len(everything) // 2]["cursor"]
    assert _sse(client, job_id, **{"Last-Event-ID": middle}) == [e for e in everything if e["cursor"] > middle]
    refused = client.get(f"/v1/jobs/{job_id}/events", headers={"Accept": "text/event-stream",
                                                               "Authorization": f"Bearer {OTHER}"})
    assert refused.status_code == 404 and refused.headers["content-type"] == "application/problem+json"
