"""Time limits per task (issue 36, point 3): a video may run minutes. ``taskMaxJobSeconds`` gives a task its own
limit; the worker gives each job its task's limit, and the lifecycle-hook and drain timeouts (components and the
preview's policy config) follow the longest one."""

from __future__ import annotations

import json

import pytest

from components import scaling_plan, user_data
from components.config import ConfigError
from runtime import agent_config
from runtime.jobs.time_limits import job_time_limit, longest_time_limit, parse_task_limits
from runtime.worker.claims import Claimer
from tests.unit.component_harness import fleet

VIDEO = {"txt2video": 1800, "img2video": 1200}


def test_a_task_gets_its_own_limit_and_the_others_max_job_seconds():
    assert job_time_limit("txt2video", 300, VIDEO) == 1800
    assert job_time_limit("txt2img", 300, VIDEO) == 300
    assert longest_time_limit(300, VIDEO) == 1800
    assert longest_time_limit(300, VIDEO, tasks=("txt2img", "img2img")) == 300  # a fleet without video
    assert longest_time_limit(300, {"txt2img": 60}) == 300


@pytest.mark.parametrize("raw,message", [
    ({"txt2movie": 60}, "k.txt2movie: not a task; tasks: txt2img, img2img, txt2video, img2video"),
    ({"txt2video": 5}, "k.txt2video = 5: must be a whole number of seconds from 10 to 3600"),
    ({"txt2video": 3601}, "from 10 to 3600"),
    ({"txt2video": 60.5}, "whole number"),
    ({"txt2video": True}, "whole number"),
    (["txt2video"], "k must be an object of task -> seconds"),
])
def test_bad_limits_name_the_key_the_task_and_what_is_allowed(raw, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
        parse_task_limits(raw, "k")


def _claimer(**limits) -> Claimer:
    none = None
    return Claimer(store=none, consumer=none, messages=none, metrics=none, recorder=none, backoff=none,
                   worker_id="w", max_attempts=3, lease_seconds=30, cancel_poll_seconds=1, max_job_seconds=300,
                   retry_delay_seconds=1, allow_loopback=False, interrupt=lambda *a: None, on_beat=lambda: None,
                   **limits)


def test_the_claim_gives_a_video_job_its_task_limit():
    assert _claimer(task_max_job_seconds=VIDEO).time_limit("txt2video") == 1800
    assert _claimer(task_max_job_seconds=VIDEO).time_limit("txt2img") == 300
    assert _claimer().time_limit("txt2video") == 300


def test_the_agent_config_carries_the_task_limits():
    settings = user_data.AgentSettings(
        stack="dev", region="us-east-1", queue_kind="sqs", job_table="t", outputs_bucket="b", cdn_domain="d.example",
        model_store_bucket="m", backend="test-pattern", launching_hook="l", terminating_hook="t", cache_dir="/c",
        max_cache_bytes=1, max_job_seconds=300, max_receive_count=3, visibility_timeout_seconds=30,
        queue_url="https://sqs/q", task_max_job_seconds=tuple(VIDEO.items()))
    config = agent_config.parse(json.loads(user_data.agent_config_json(settings)))
    assert config.task_max_job_seconds == VIDEO
    assert config.time_limit("txt2video") == 1800 and config.time_limit("txt2img") == 300
    assert config.longest_time_limit == 1800


def test_the_agent_refuses_a_bad_task_limit_naming_the_key():
    base = json.loads(user_data.agent_config_json(user_data.AgentSettings(
        stack="dev", region="us-east-1", queue_kind="sqs", job_table="t", outputs_bucket="b", cdn_domain="d.example",
        model_store_bucket="m", backend="test-pattern", launching_hook="l", terminating_hook="t", cache_dir="/c",
        max_cache_bytes=1, max_job_seconds=300, max_receive_count=3, visibility_timeout_seconds=30,
        queue_url="https://sqs/q")))
    with pytest.raises(agent_config.AgentConfigError, match=r"task_max_job_seconds\.txt2movie: not a task"):
        agent_config.parse({**base, "task_max_job_seconds": {"txt2movie": 60}})


def test_hook_and_drain_timeouts_follow_the_longest_task_limit():
    cfg = fleet(maxJobSeconds=300, taskMaxJobSeconds=json.dumps(VIDEO))
    assert cfg.queue.max_job_seconds == 300 and cfg.queue.longest_job_seconds == 1800
    assert scaling_plan.terminating_heartbeat(cfg.queue) == 1800 + scaling_plan.DRAIN_MARGIN_SECONDS
    plain = fleet(maxJobSeconds=300)
    assert scaling_plan.terminating_heartbeat(plain.queue) == 300 + scaling_plan.DRAIN_MARGIN_SECONDS


def test_the_stack_refuses_a_bad_task_limit_naming_the_key_and_the_tasks():
    with pytest.raises(ConfigError, match=r"genai-fleet:taskMaxJobSeconds.txt2movie: not a task; tasks: txt2img"):
        fleet(taskMaxJobSeconds='{"txt2movie": 60}')


def test_the_preview_emits_the_longest_limit_for_the_hook_policy(monkeypatch):
    from genai_policies import limits
    from tools import preview

    config = preview.stack_policy_config("dev")["lifecycle-hook-timeouts"]
    assert config["longestJobSeconds"] >= config["maxJobSeconds"] > 0
    assert "longestJobSeconds" in limits.HOOK_SCHEMA.properties
