"""Issue 42, item 1: the cost arithmetic, where each price comes from, and the config that carries the prices."""

from __future__ import annotations

import json

import pytest

from components.worker_prices import PRICES_FILE, published_prices
from fleetdev.local.fake_imds import FakeIMDS
from runtime.agent_config import AgentConfigError, parse
from runtime.jobs.cost import attempt_entry, dollars, job_cost
from runtime.worker.imds import IMDSClient
from runtime.worker.prices import ON_DEMAND, SPOT, InstanceFacts, PriceSource, instance_facts

TABLE = {"g5.xlarge": 1.006}


def _entry(attempt, outcome, seconds, hourly=1.006, **phases):
    return attempt_entry(attempt=attempt, lease=attempt, outcome=outcome, gpu_seconds=seconds, phases=phases,
                         instance_type="g5.xlarge", purchase_option=ON_DEMAND, hourly_usd=hourly, price_source="t")


def test_dollars_are_seconds_times_the_hourly_price():
    assert dollars(3600, 1.006) == 1.006
    assert dollars(1.8, 1.006) == round(1.8 * 1.006 / 3600, 6)


def test_phases_not_measured_are_other_and_never_negative():
    e = _entry(1, "succeeded", 2.0, model_load=0.5, inference=1.2, upload=0.1)
    assert e["phases"] == {"model_load": 0.5, "inference": 1.2, "encode": 0.0, "upload": 0.1, "other": 0.2}
    assert _entry(1, "succeeded", 1.0, inference=3.0)["phases"]["other"] == 0.0


def test_job_cost_sums_failed_and_handed_back_attempts():
    entries = [_entry(1, "retrying", 1.0, inference=0.9), _entry(2, "handed-back", 0.5),
               _entry(2, "succeeded", 2.0, inference=1.5, upload=0.2)]
    cost = job_cost(entries)
    assert cost["gpu_seconds"] == 3.5
    assert cost["usd"] == pytest.approx(sum(e["usd"] for e in entries))
    assert cost["breakdown"]["phases"]["inference"] == 2.4
    assert [a["outcome"] for a in cost["breakdown"]["attempts"]] == ["retrying", "handed-back", "succeeded"]
    assert job_cost(None) == {"gpu_seconds": 0, "usd": 0, "breakdown": {
        "phases": dict.fromkeys(("model_load", "inference", "encode", "upload", "other"), 0), "attempts": []}}


def test_instance_facts_come_from_imds_life_cycle():
    with FakeIMDS(instance_type="g6.xlarge", life_cycle="spot") as imds:
        facts = instance_facts(IMDSClient(imds.url))
    assert facts == InstanceFacts("g6.xlarge", SPOT, "us-east-1a")
    with FakeIMDS() as imds:
        assert instance_facts(IMDSClient(imds.url)).purchase_option == ON_DEMAND
    assert instance_facts(None) == InstanceFacts("unknown", ON_DEMAND, None)


def test_on_demand_price_is_the_published_table():
    price = PriceSource(InstanceFacts("g5.xlarge", ON_DEMAND), on_demand_hourly=TABLE,
                        table_source="prices.json").current()
    assert (price.hourly_usd, price.purchase_option) == (1.006, ON_DEMAND) and "prices.json" in price.source


def test_a_type_without_a_price_says_so_and_costs_zero():
    price = PriceSource(InstanceFacts("p5.48xlarge", ON_DEMAND), on_demand_hourly=TABLE, table_source="t").current()
    assert price.hourly_usd == 0.0 and "no price for p5.48xlarge" in price.source


def test_spot_price_is_read_from_ec2_and_the_estimate_stands_until_then(aws_clients):
    source = PriceSource(InstanceFacts("g5.xlarge", SPOT, "us-east-1a"), on_demand_hourly=TABLE, table_source="t",
                         spot_discount={"g5": 0.6}, ec2=aws_clients("ec2"))
    before = source.current()
    assert before.hourly_usd == pytest.approx(1.006 * 0.4) and before.source.startswith("estimate")
    after = source.refresh()
    assert after.source.startswith("spot price history us-east-1a") and after.hourly_usd > 0  # moto: 0.00001


def test_a_failed_spot_read_keeps_the_price_in_hand():
    class Broken:
        def describe_spot_price_history(self, **_):
            raise RuntimeError("throttled")

    source = PriceSource(InstanceFacts("g5.xlarge", SPOT), on_demand_hourly=TABLE, table_source="t", ec2=Broken())
    assert source.refresh() == source.current() and source.current().source.startswith("estimate")


def test_the_stack_publishes_the_preview_table_for_its_types():
    prices = published_prices("us-east-1", ["g5.xlarge", "g6.xlarge"])
    table = json.loads(PRICES_FILE.read_text())
    hourly = table["ec2OnDemandHourly"]["us-east-1"]
    assert prices["on_demand_hourly"] == {t: hourly[t] for t in ("g5.xlarge", "g6.xlarge")}
    assert table["retrieved"] in prices["source"]
    with pytest.raises(ValueError, match=r"no us-east-1 on-demand price for x9\.huge"):
        published_prices("us-east-1", ["x9.huge"])


def _config(pricing):
    return {"stack": "s", "region": "us-east-1", "queue": {"kind": "sqs", "url": "http://q"}, "job_table": "t",
            "outputs": {"bucket": "b", "cdn_base_url": "https://c"}, "backend": "test-pattern", "pricing": pricing}


def test_agent_config_pricing_is_checked_by_key():
    assert parse(_config({"on_demand_hourly": {"g5.xlarge": 1}})).pricing.on_demand_hourly == {"g5.xlarge": 1.0}
    for bad, key in (({"on_demand_hourly": {"g5.xlarge": -1}}, "pricing.on_demand_hourly"),
                     ({"spot_refresh_seconds": 5}, "pricing.spot_refresh_seconds"),
                     ({"purchase_option": "reserved"}, "pricing.purchase_option"),
                     ({"price": 1}, "unknown key")):
        with pytest.raises(AgentConfigError, match=key):
            parse(_config(bad))


def test_the_encoder_reports_its_own_share_of_a_video_run():
    from PIL import Image

    from runtime.video.encode import encode_video

    frames = [Image.new("RGB", (64, 64), (i * 30, 0, 0)) for i in range(4)]
    video = encode_video(iter(frames), width=64, height=64, fps=8)
    assert video.encode_ms > 0


def test_a_batch_of_n_costs_its_call_once():
    import time as _time

    from runtime.backends.base import JobContext
    from runtime.jobs.attempts import Attempt
    from runtime.jobs.schema import JobSpec
    from runtime.queues.base import QueueMessage, ReceivedJob
    from runtime.worker.attempt_cost import AttemptCoster
    from runtime.worker.running_job import RunningJob

    message = QueueMessage(job_id="j1", job={"model": "m", "task": "txt2img", "inputs": {"prompt": "p"}})
    job = RunningJob(ReceivedJob(message, handle="h"), JobContext(job_id="j1", job=JobSpec.parse(message.job)),
                     Attempt("started", {}, 1, 1), claimed=_time.monotonic() - 4.0)
    job.timings.update(inference_ms=3000.0, encode_ms=1000.0, mark_running_ms=100.0)
    coster = AttemptCoster(PriceSource(InstanceFacts("g5.xlarge", ON_DEMAND), on_demand_hourly=TABLE,
                                       table_source="t"))
    alone = coster.entry(job, "succeeded")
    assert alone["gpu_seconds"] == pytest.approx(4.1, abs=0.05)
    assert (alone["phases"]["inference"], alone["phases"]["encode"]) == (2.0, 1.0)
    job.timings["batch_jobs"] = 4
    shared = coster.entry(job, "succeeded")
    assert shared["gpu_seconds"] == pytest.approx(alone["gpu_seconds"] / 4, abs=0.05)
    assert shared["phases"]["inference"] == 0.5
