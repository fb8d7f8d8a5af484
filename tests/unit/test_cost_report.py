"""Issue 42, item 4: ``genai-stack cost`` -- cost per 1,000 images per model and task and the idle and boot share,
from the job table (moto) and the workers' overhead metrics (moto's CloudWatch)."""

from __future__ import annotations

import json
import time

import pytest

from runtime import metric_names as m
from runtime.jobs.cost import attempt_entry
from runtime.jobs.items import serialize
from runtime.jobs.store import create_table, job_pk
from tools import stack_setup
from tools.cost_report import aggregate, images_of, parse_since


def _entry(attempt: int, outcome: str, seconds: float) -> dict:
    return attempt_entry(attempt=attempt, lease=attempt, outcome=outcome, gpu_seconds=seconds, phases={},
                         instance_type="g5.xlarge", purchase_option="on-demand", hourly_usd=3.6, price_source="t")


def _record(job_id: str, model: str, status: str, entries: list[dict], outputs: list[dict], created: float) -> dict:
    return {"pk": job_pk(job_id), "job_id": job_id, "model": model, "task": "txt2img", "status": status,
            "created_at": created, "attempt_costs": entries, "outputs": outputs, "owner": "k"}


PNG = {"key": "outputs/x.png", "content_type": "image/png"}


def test_since_is_days_or_hours():
    assert parse_since("7d") == 7 * 86400 and parse_since("12h") == 12 * 3600
    with pytest.raises(ValueError, match="--since"):
        parse_since("1w")


def test_a_video_job_counts_its_video_not_its_poster():
    video = {"key": "outputs/v.mp4", "content_type": "video/mp4", "video": {"frames": 16}}
    assert images_of({"outputs": [video, PNG]}) == 1 and images_of({"outputs": [PNG, PNG]}) == 2


def test_cost_per_1000_images_counts_every_attempt_and_failed_jobs():
    now = time.time()
    records = [_record("j1", "sd15", "succeeded", [_entry(1, "retrying", 2.0), _entry(2, "succeeded", 2.0)],
                       [PNG, PNG], now),
               _record("j2", "sd15", "failed", [_entry(1, "failed", 1.0)], [], now),
               _record("j3", "sdxl", "queued", [], [], now)]
    report = aggregate(records, now - 86400).as_dict()
    (line,) = report["by_model_task"]
    assert (line["model"], line["jobs"], line["failed"], line["images"]) == ("sd15", 2, 1, 2)
    assert line["usd"] == pytest.approx(5.0 * 3.6 / 3600) and line["usd_per_1000_images"] == pytest.approx(
        round(5.0 * 3.6 / 3600 * 1000 / 2, 4))


def test_the_command_reads_the_stacks_table_and_overhead_metrics(aws_clients, moto_endpoint, capsys):
    cfg = stack_setup.stack_settings("dev")
    table = f"{cfg.identity.resource_prefix()}-jobs"
    ddb = aws_clients("dynamodb")
    if table not in ddb.list_tables()["TableNames"]:
        create_table(ddb, table)
    now = time.time()
    for rec in (_record("j_new", "sd15", "succeeded", [_entry(1, "succeeded", 10.0)], [PNG], now),
                _record("j_old", "sd15", "succeeded", [_entry(1, "succeeded", 99.0)], [PNG], now - 10 * 86400)):
        ddb.put_item(TableName=table, Item=serialize(rec))
    cw = aws_clients("cloudwatch")
    for kind, seconds in (("idle", 30.0), ("boot", 60.0)):
        cw.put_metric_data(Namespace=m.NAMESPACE, MetricData=[{
            "MetricName": m.OVERHEAD_SECONDS, "Value": seconds, "Unit": "Seconds",
            "Dimensions": [{"Name": m.DIM_STACK, "Value": cfg.identity.stack}, {"Name": m.DIM_KIND, "Value": kind}]}])
    assert stack_setup.main(["--endpoint-url", moto_endpoint, "cost", "--stack", "dev", "--since", "7d",
                             "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (line,) = report["by_model_task"]
    assert (line["jobs"], line["gpu_seconds"]) == (1, 10.0)  # the job of 10 days ago is outside --since 7d
    assert report["overhead"]["idle"]["seconds"] == 30.0 and report["overhead"]["boot"]["share"] == 0.6
