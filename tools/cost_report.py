"""``genai-stack cost --stack dev --since 7d``: what the fleet's jobs cost, from the job table (issue 42, item 4).

Per model and task: jobs, images (outputs that are not video posters: an image job's every output, a video
job's video), GPU-seconds, dollars and **cost per 1,000 images**, all from the records' ``attempt_costs``
(runtime.jobs.cost: failed, retried and handed-back attempts included; a job with no output still costs). Then
the fleet's overhead: idle and boot seconds and dollars from the workers' ``OverheadSeconds`` /
``OverheadCost`` metrics (CloudWatch, namespace GenAIFleet, the stack's dimension) and their share of all
instance time (jobs + overhead). Jobs are those created since ``--since`` (a Scan of the job table with a
filter: it reads every item, so run it on a schedule, not per request).
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runtime import metric_names as m
from runtime.jobs.cost import job_cost
from runtime.jobs.items import deserialize

_SINCE = re.compile(r"^(\d+)([dh])$")
POSTER = "image/png"  # a video job's poster is not an image the user asked for


def parse_since(text: str) -> float:
    """``7d`` / ``12h`` -> seconds; errors name the flag and the form."""
    match = _SINCE.match(text.strip())
    if not match or int(match.group(1)) <= 0:
        raise ValueError(f"--since {text!r}: use a count of days or hours, e.g. 7d or 12h")
    return int(match.group(1)) * (86400 if match.group(2) == "d" else 3600)


@dataclass
class Line:
    jobs: int = 0
    images: int = 0
    gpu_seconds: float = 0.0
    usd: float = 0.0
    failed: int = 0

    @property
    def per_1000_images(self) -> float | None:
        return round(self.usd * 1000 / self.images, 4) if self.images else None


@dataclass
class Report:
    since: float
    lines: dict[tuple[str, str], Line] = field(default_factory=dict)
    overhead_seconds: dict[str, float] = field(default_factory=dict)  # idle | boot -> seconds
    overhead_usd: dict[str, float] = field(default_factory=dict)

    @property
    def job_seconds(self) -> float:
        return sum(line.gpu_seconds for line in self.lines.values())

    def share(self, kind: str) -> float | None:
        total = self.job_seconds + sum(self.overhead_seconds.values())
        return round(self.overhead_seconds.get(kind, 0.0) / total, 4) if total else None

    def as_dict(self) -> dict[str, Any]:
        return {"since": dt.datetime.fromtimestamp(self.since, dt.UTC).isoformat(),
                "by_model_task": [{"model": model, "task": task, "jobs": x.jobs, "failed": x.failed,
                                   "images": x.images, "gpu_seconds": round(x.gpu_seconds, 3),
                                   "usd": round(x.usd, 6), "usd_per_1000_images": x.per_1000_images}
                                  for (model, task), x in sorted(self.lines.items())],
                "jobs_gpu_seconds": round(self.job_seconds, 3),
                "overhead": {kind: {"seconds": round(self.overhead_seconds.get(kind, 0.0), 3),
                                    "usd": round(self.overhead_usd.get(kind, 0.0), 6), "share": self.share(kind)}
                             for kind in ("idle", "boot")}}


def images_of(record: Mapping[str, Any]) -> int:
    outputs = record.get("outputs") or []
    videos = [o for o in outputs if str(o.get("content_type", "")).startswith("video/") or o.get("video")]
    if videos:  # a video job: its videos (the poster is a preview of one)
        return len(videos)
    return len([o for o in outputs if str(o.get("content_type", "")).startswith("image/")])


def aggregate(records: Iterable[Mapping[str, Any]], since: float) -> Report:
    report = Report(since)
    lines: dict[tuple[str, str], Line] = defaultdict(Line)
    for record in records:
        if record.get("status") not in ("succeeded", "failed", "canceled"):
            continue
        cost = job_cost(record.get("attempt_costs"))
        line = lines[(str(record.get("model")), str(record.get("task")))]
        line.jobs += 1
        line.failed += record.get("status") == "failed"
        line.images += images_of(record) if record.get("status") == "succeeded" else 0
        line.gpu_seconds += cost["gpu_seconds"]
        line.usd += cost["usd"]
    report.lines = dict(lines)
    return report


def scan_jobs(dynamodb: Any, table: str, since: float) -> list[dict[str, Any]]:
    """The job records created since ``since`` (a filtered Scan, every page)."""
    records, start = [], None
    while True:
        page = {"TableName": table, "FilterExpression": "begins_with(pk, :job) AND created_at >= :since",
                "ExpressionAttributeValues": {":job": {"S": "job#"}, ":since": {"N": repr(float(since))}},
                **({"ExclusiveStartKey": start} if start else {})}
        resp = dynamodb.scan(**page)
        records += [deserialize(item) for item in resp.get("Items", [])]
        start = resp.get("LastEvaluatedKey")
        if not start:
            return records


def read_overhead(cloudwatch: Any, stack: str, since: float, now: float) -> tuple[dict[str, float], dict[str, float]]:
    """Idle and boot seconds and dollars since ``since``: the workers' overhead metrics per {Stack, Kind}."""
    seconds: dict[str, float] = defaultdict(float)
    usd: dict[str, float] = defaultdict(float)
    start, end = dt.datetime.fromtimestamp(since, dt.UTC), dt.datetime.fromtimestamp(now + 60, dt.UTC)
    for name, into in ((m.OVERHEAD_SECONDS, seconds), (m.OVERHEAD_COST, usd)):
        for kind in ("idle", "boot"):
            dims = [{"Name": m.DIM_STACK, "Value": stack}, {"Name": m.DIM_KIND, "Value": kind}]
            stats = cloudwatch.get_metric_statistics(Namespace=m.NAMESPACE, MetricName=name, Dimensions=dims,
                                                     StartTime=start, EndTime=end, Period=86400, Statistics=["Sum"])
            into[kind] += sum(p["Sum"] for p in stats["Datapoints"])
    return dict(seconds), dict(usd)


def render(report: Report) -> str:
    doc = report.as_dict()
    rows = [f"{'model':<28} {'task':<10} {'jobs':>6} {'failed':>6} {'images':>7} {'GPU-s':>10} {'USD':>10} "
            f"{'USD/1k img':>10}"]
    for r in doc["by_model_task"]:
        per = "-" if r["usd_per_1000_images"] is None else f"{r['usd_per_1000_images']:.4f}"
        rows.append(f"{r['model']:<28} {r['task']:<10} {r['jobs']:>6} {r['failed']:>6} {r['images']:>7} "
                    f"{r['gpu_seconds']:>10.1f} {r['usd']:>10.4f} {per:>10}")
    for kind in ("idle", "boot"):
        o = doc["overhead"][kind]
        share = "-" if o["share"] is None else f"{100 * o['share']:.1f} %"
        rows.append(f"{kind} overhead: {o['seconds']:.0f} s, {o['usd']:.4f} USD, {share} of instance time")
    return "\n".join(rows)
