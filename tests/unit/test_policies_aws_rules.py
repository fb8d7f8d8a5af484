"""AWS's own rules in the policy pack (genai_policies.wiring and .limits): each seeded violation is caught.

The mocks accept anything, so every rule here is checked twice: the program as declared passes it (dev,
prod, dev with Kafka), and the same recording with one value changed the way AWS would reject or
silently ignore fails it with a message that names the resource and what to change. Where the program has
no such resource (interface endpoints), hand-built resources stand in.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from fleetdev.pulumi_mocks import RecordedResource, Recording, run_stack
from genai_policies import POLICIES_BY_NAME, limits, wiring
from runtime.api.environment import API_VARIABLES
from runtime.instance_contract import INPUT_URL_PORTS, INPUT_URL_SCHEMES
from runtime.queues.base import SQS_MAX_MESSAGE_BYTES
from tests.unit._policy_helpers import policy_resource, run_policy, stack_args
from tests.unit.component_harness import each
from tools import preview

QUEUE = "aws:sqs/queue:Queue"
FN = "aws:lambda/function:Function"
HOOK = "aws:autoscaling/lifecycleHook:LifecycleHook"
GROUP = "aws:autoscaling/group:Group"
INTEGRATION = "aws:apigatewayv2/integration:Integration"
EGRESS_RULE = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
SG = "aws:ec2/securityGroup:SecurityGroup"
NEW_RULES = ("sqs-event-source-visibility", "vpc-function-egress", "lifecycle-hooks-apply", "input-urls-within-egress",
             "api-integration-timeout", "sqs-message-size", "lifecycle-hook-timeouts")
KAFKA = {"queueKind": "kafka", "natGateways": "single"}


@pytest.fixture(scope="module")
def kafka_recording(tmp_path_factory) -> Recording:
    layer = tmp_path_factory.mktemp("layer")
    (layer / "python").mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GENAI_KAFKA_LAYER_DIR", str(layer))  # no pip download of the arm64 wheels under mocks
        return run_stack("dev", KAFKA)


def _copy(stack: str = "dev", recording: Recording | None = None) -> Recording:
    return copy.deepcopy(recording or run_stack(stack))


def _set(res: RecordedResource, key: str, value: Any) -> None:
    """Change one input (and the output it echoes); None removes it."""
    for props in (res.inputs, res.outputs):
        if value is None:
            props.pop(key, None)
        else:
            props[key] = value


def _found(recording: Recording, policy: str, stack: str = "dev", overrides: dict | None = None,
           extra: dict | None = None) -> list[str]:
    config = preview.merge_policy_config(preview.stack_policy_config(stack, overrides), extra)
    result = preview.evaluate(recording, config, [POLICIES_BY_NAME[policy]])
    return [f"{v.resource}: {v.message}" for v in result.violations]


# --- the program passes; the rules are in the pack and the config the stack emits ------------------
@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_program_passes_every_new_rule(stack):
    for name in NEW_RULES:
        assert _found(_copy(stack), name, stack) == [], name


def test_the_kafka_program_passes_every_new_rule(kafka_recording):
    for name in NEW_RULES:
        assert _found(_copy(recording=kafka_recording), name, overrides=KAFKA) == [], name


def test_the_emitted_policy_config_is_what_the_runtime_enforces():
    config = preview.stack_policy_config("prod")
    assert config["input-urls-within-egress"] == {"inputUrlSchemes": list(INPUT_URL_SCHEMES),
                                                  "inputUrlPorts": list(INPUT_URL_PORTS)}
    assert config["sqs-message-size"] == {"jobMessageBytes": SQS_MAX_MESSAGE_BYTES}
    assert config["lifecycle-hook-timeouts"]["maxJobSeconds"] > 0
    # the pack's defaults (what a CLI run without the emitted file uses) say the same
    assert [wiring.INPUT_URLS_SCHEMA.properties[k]["default"] for k in ("inputUrlSchemes", "inputUrlPorts")] == [
        list(INPUT_URL_SCHEMES), list(INPUT_URL_PORTS)]
    assert limits.MESSAGE_SCHEMA.properties["jobMessageBytes"]["default"] == SQS_MAX_MESSAGE_BYTES
    assert API_VARIABLES["max_wait_seconds"] == limits.SYNC_WAIT_VARIABLE
    assert set(limits.JOB_QUEUE_VARIABLES) <= set(API_VARIABLES.values())


# --- finding 1: the DLQ consumer's event source ---------------------------------------------------
@pytest.mark.parametrize(("visibility", "expected"), [(None, "30 s visibility timeout (unset: AWS's default)"),
                                                      (59, "59 s visibility timeout")])
def test_event_source_timeout_beyond_the_queue_visibility_is_caught(visibility, expected):
    rec = _copy()
    _set(rec.one(QUEUE, "queue-dlq"), "visibilityTimeoutSeconds", visibility)
    (found,) = _found(rec, "sqs-event-source-visibility")
    assert "events-dead-letters-source" in found and "events-dead-letters-fn" in found and expected in found
    assert "Lambda refuses to create the mapping" in found


def test_event_source_timeout_equal_to_the_visibility_passes():
    rec = _copy()
    _set(rec.one(QUEUE, "queue-dlq"), "visibilityTimeoutSeconds", 60)
    assert _found(rec, "sqs-event-source-visibility") == []


# --- finding 2: VPC functions reach the AWS APIs they call ----------------------------------------
def test_kafka_clients_without_https_out_strand_the_vpc_functions(kafka_recording):
    rec = _copy(recording=kafka_recording)
    rec.resources.remove(rec.one(EGRESS_RULE, "queue-kafka-clients-https"))
    found = _found(rec, "vpc-function-egress", overrides=KAFKA)
    by_fn = {f.split(": ", 1)[0].split()[-1]: f for f in found}
    assert set(by_fn) == {"api-handler-fn", "queue-kafka-fns-lag-fn"}  # the topic creator talks to brokers only
    assert "dynamodb (dynamodb:" in by_fn["api-handler-fn"] and "ssm (ssm:GetParameter)" in by_fn["api-handler-fn"]
    assert "cloudwatch:PutMetricData" in by_fn["queue-kafka-fns-lag-fn"]
    assert "tcp 9098 to" in by_fn["api-handler-fn"] and "Allow TCP 443 to 0.0.0.0/0" in by_fn["api-handler-fn"]


def _vpc_fn(egress: list[dict], endpoints: list[Any], actions: list[str]) -> list[str]:
    sg = policy_resource(SG, "fn-sg", {"id": "sg-fn", "egress": egress})
    role = policy_resource("aws:iam/role:Role", "fn-role", {"arn": "arn:aws:iam::1:role/fn", "inlinePolicies": [
        {"name": "p", "policy": json.dumps({"Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]})}]})
    fn = policy_resource(FN, "fn", {"name": "fn", "role": "arn:aws:iam::1:role/fn", "timeout": 10,
                                    "vpcConfig": {"subnetIds": ["subnet-1"], "securityGroupIds": ["sg-fn"]}})
    return run_policy(wiring.vpc_function_egress, stack_args([sg, role, fn, *endpoints]))


def test_vpc_endpoints_count_as_a_way_to_the_aws_apis():
    https_to_vpc = [{"protocol": "tcp", "fromPort": 443, "toPort": 443, "cidrBlocks": ["10.0.0.0/16"]}]
    ssm = policy_resource("aws:ec2/vpcEndpoint:VpcEndpoint", "ssm", {
        "serviceName": "com.amazonaws.us-east-1.ssm", "vpcEndpointType": "Interface", "privateDnsEnabled": True})
    assert _vpc_fn(https_to_vpc, [ssm], ["ssm:GetParameter", "logs:PutLogEvents"]) == []
    (found,) = _vpc_fn(https_to_vpc, [ssm], ["ssm:GetParameter", "dynamodb:GetItem"])
    assert "dynamodb (dynamodb:GetItem)" in found and "ssm" not in found.split("calls:")[1]
    dynamodb = policy_resource("aws:ec2/vpcEndpoint:VpcEndpoint", "ddb", {
        "serviceName": "com.amazonaws.us-east-1.dynamodb", "vpcEndpointType": "Gateway", "prefixListId": "pl-ddb"})
    to_prefix = [{"protocol": "tcp", "fromPort": 443, "toPort": 443, "prefixListIds": ["pl-ddb"]}]
    assert _vpc_fn(to_prefix, [dynamodb], ["dynamodb:GetItem"]) == []
    assert _vpc_fn([{"protocol": "-1", "fromPort": 0, "toPort": 0, "cidrBlocks": ["0.0.0.0/0"]}], [],
                   ["dynamodb:GetItem"]) == []


# --- finding 3: lifecycle hooks that apply --------------------------------------------------------
def test_hooks_only_in_initial_lifecycle_hooks_are_caught():
    rec = _copy("prod")
    for hook in each(rec, HOOK):
        rec.resources.remove(hook)
    found = _found(rec, "lifecycle-hooks-apply", "prod")
    assert len(found) == 4  # two hooks on each of prod's two groups
    assert all("applies when it creates the group" in f and "aws.autoscaling.LifecycleHook" in f for f in found)


def test_a_hook_resource_that_differs_from_the_group_s_hook_is_caught():
    rec = _copy()
    (terminating,) = [h for h in rec.of_type(HOOK) if h.inputs["name"] == "genai-terminating"
                      and h.inputs["autoscalingGroupName"] == rec.one(GROUP, "cluster-spot").outputs["name"]]
    _set(terminating, "heartbeatTimeout", 999)
    (found,) = _found(rec, "lifecycle-hooks-apply")
    assert "'genai-terminating' of group 'cluster-spot'" in found and "differs" in found


def test_a_prod_group_s_launching_hook_only_as_a_resource_is_caught():
    """prod's on-demand group starts instances when it is created; a hook resource comes after it."""
    rec = _copy("prod")
    group = rec.one(GROUP, "cluster-ondemand")
    _set(group, "initialLifecycleHooks", [h for h in group.inputs["initialLifecycleHooks"]
                                          if h["name"] != "genai-launching"])
    (found,) = _found(rec, "lifecycle-hooks-apply", "prod")
    assert "'cluster-ondemand' starts instances" in found and "without waiting" in found


# --- finding 4: input URLs inside the workers' egress ---------------------------------------------
def test_http_input_urls_against_https_only_egress_are_caught():
    found = _found(_copy(), "input-urls-within-egress",
                   extra={"input-urls-within-egress": {"inputUrlSchemes": ["https", "http"]}})
    assert found and all("80 (http://)" in f and "time out" in f for f in found)
    found = _found(_copy(), "input-urls-within-egress",
                   extra={"input-urls-within-egress": {"inputUrlPorts": [443, 8080]}})
    assert found and all("8080 (port 8080)" in f for f in found)


def test_narrowed_worker_egress_is_caught():
    rec = _copy()
    sg = rec.one(SG, "cluster-sg")
    _set(sg, "egress", [{**sg.inputs["egress"][0], "fromPort": 8443, "toPort": 8443}])
    found = _found(rec, "input-urls-within-egress")
    assert found and all("443 (https://)" in f and "cluster-sg" in f for f in found)


# --- limits ---------------------------------------------------------------------------------------
def test_integration_timeout_beyond_the_http_api_limit_is_caught():
    rec = _copy()
    _set(rec.one(INTEGRATION), "timeoutMilliseconds", 31000)
    (found,) = _found(rec, "api-integration-timeout")
    assert "outside the HTTP API's 50..30000" in found


def test_lambda_outliving_the_gateway_and_a_sync_wait_outliving_the_lambda_are_caught():
    rec = _copy()
    handler = rec.one(FN, "api-handler-fn")
    _set(handler, "timeout", 40)
    (found,) = _found(rec, "api-integration-timeout")
    assert "'api-handler-fn' may run 40 s" in found and "stops waiting after 30 s" in found
    rec = _copy()
    handler = rec.one(FN, "api-handler-fn")
    variables = {**handler.inputs["environment"]["variables"], "GENAI_MAX_WAIT_SECONDS": "29"}
    _set(handler, "environment", {"variables": variables})
    (found,) = _found(rec, "api-integration-timeout")
    assert "GENAI_MAX_WAIT_SECONDS=29 does not end before its 29 s timeout" in found


@pytest.mark.parametrize(("size", "extra", "expected"), [
    (131072, None, "at most 131072 bytes, but the job API admits job messages up to 262144"),
    (None, {"sqs-message-size": {"jobMessageBytes": 300000}}, "(unset: AWS's default, 256 KiB)"),
    (2 * 1024 * 1024, None, "outside SQS's 1024..1048576 bytes"),
])
def test_job_queue_message_size_problems_are_caught(size, extra, expected):
    rec = _copy()
    _set(rec.one(QUEUE, "queue-queue"), "maxMessageSize", size)
    found = _found(rec, "sqs-message-size", extra=extra)
    assert any("queue-queue" in f and expected in f for f in found), found


def test_the_job_queue_is_found_through_the_api_s_environment():
    rec = _copy()
    _set(rec.one(QUEUE, "queue-dlq"), "maxMessageSize", 131072)  # the DLQ is not written by the API
    assert _found(rec, "sqs-message-size") == []


def test_hook_heartbeat_beyond_7200_s_is_caught():
    rec = _copy()
    hook = rec.of_type(HOOK)[0]
    _set(hook, "heartbeatTimeout", 7201)
    (found,) = _found(rec, "lifecycle-hook-timeouts")
    assert f"lifecycle hook '{hook.name}'" in found and "outside Auto Scaling's 30..7200 s" in found


def test_a_drain_longer_than_the_hook_s_global_timeout_is_caught():
    """With heartbeats an instance waits at most min(48 h, 100 x heartbeat): video's longer jobs must fit."""
    assert limits.global_timeout(600) == 60000 and limits.global_timeout(7200) == 48 * 3600
    found = _found(_copy(), "lifecycle-hook-timeouts", extra={"lifecycle-hook-timeouts": {"maxJobSeconds": 48 * 3600}})
    assert found and all("may wait at most 42000 s" in f and "scale-in would end jobs mid-run" in f  # dev: 420 s
                         for f in found)
    rec = _copy()
    for hook in each(rec, HOOK):
        if hook.inputs["name"] == "genai-terminating":
            _set(hook, "heartbeatTimeout", 60)
    found = _found(rec, "lifecycle-hook-timeouts",  # a 6,000 s video job + 120 s margin > 100 x 60 s
                   extra={"lifecycle-hook-timeouts": {"maxJobSeconds": 6000}})
    assert found and all("min(48 h, 100 x heartbeat 60 s)" in f and "needs 6120 s" in f for f in found)
    assert _found(rec, "lifecycle-hook-timeouts") == []  # dev's own 300 s jobs fit in 6,000 s


def test_every_rule_of_the_pack_has_a_row_in_the_policy_docs():
    table = (preview.ROOT / "docs" / "policy-pack.md").read_text()
    assert [name for name in POLICIES_BY_NAME if f"| `{name}`" not in table] == []
