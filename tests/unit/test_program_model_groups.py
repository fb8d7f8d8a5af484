"""The whole program with genai-fleet:modelGroups: a queue per group, wired into the API, the workers, the
scaling policy and the alarms, and the policy pack still passes."""

from __future__ import annotations

import base64
import json

import pytest

from fleetdev.pulumi_mocks import run_stack
from tools import preview

GROUPS = {"sdxl": ["sdxl/base-1.0", "sdxl/turbo"], "flux": ["flux/dev"]}
QUEUE = "aws:sqs/queue:Queue"


@pytest.fixture(scope="module")
def rec():
    return run_stack("prod", {"modelGroups": json.dumps(GROUPS)})


def test_each_group_has_its_queue_and_the_api_routes_to_them(rec):
    queues = {g: rec.one(QUEUE, f"queue-queue-{g}") for g in GROUPS}
    assert {g: q.inputs["name"] for g, q in queues.items()} == {g: f"genai-prod-jobs-{g}" for g in GROUPS}
    main = rec.one(QUEUE, "queue-queue")
    api = [r for r in rec.of_type("aws:lambda/function:Function")
           if "GENAI_MODEL_GROUPS" in (r.inputs.get("environment") or {}).get("variables", {})]
    assert len(api) == 1
    env = api[0].inputs["environment"]["variables"]
    assert json.loads(env["GENAI_MODEL_GROUPS"]) == [[g, ms] for g, ms in GROUPS.items()]
    for g, q in queues.items():  # the handler derives a group's URL from the main queue's
        assert q.outputs["url"] == f"{env['GENAI_QUEUE_URL']}-{g}" == f"{main.outputs['url']}-{g}"
    policy = rec.one("aws:iam/rolePolicy:RolePolicy", "api-handler-policy")
    (send,) = [st for st in json.loads(policy.inputs["policy"])["Statement"] if st["Sid"] == "Queue"]
    assert send["Resource"] == [main.outputs["arn"], *(q.outputs["arn"] for q in queues.values())]


def test_workers_know_the_group_queues_and_scaling_sums_them(rec):
    lt = rec.of_type("aws:ec2/launchTemplate:LaunchTemplate")[0]
    script = base64.b64decode(lt.inputs["userData"]).decode()
    agent = json.loads(_agent_json(script))
    assert {g["name"]: (g["models"], g["url"]) for g in agent["queue"]["groups"]} == {
        g: (ms, rec.one(QUEUE, f"queue-queue-{g}").outputs["url"]) for g, ms in GROUPS.items()}
    target = rec.one("aws:autoscaling/policy:Policy", "cluster-spot-backlog-target").inputs
    metrics = target["targetTrackingConfiguration"]["customizedMetricSpecification"]["metrics"]
    expression = next(m["expression"] for m in metrics if m.get("expression"))
    assert expression.startswith("(FILL(backlog, 0) + FILL(backlog_g0, 0) + FILL(backlog_g1, 0)) / (")


def test_policy_pack_passes_with_model_groups(rec):
    result = preview.evaluate(rec, preview.stack_policy_config("prod"))
    assert result.mandatory == [], "\n".join(f"{v.policy}: {v.resource}: {v.message}" for v in result.mandatory)


def _agent_json(script: str) -> str:
    from components import user_data

    return script.split(f"<<'{user_data._HEREDOC}'\n", 1)[1].split(f"\n{user_data._HEREDOC}\n", 1)[0]
