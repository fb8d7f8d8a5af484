"""The worker role's policies: scoped to this stack's ARNs and clean under parliament."""

from __future__ import annotations

import json

import parliament
import pytest

from components import cluster_iam
from components.cluster_iam import STAR_ACTIONS, PolicyScope, instance_policy_document, kafka_sibling_arn
from tests.unit.component_harness import Built, build, fleet
from tests.unit.test_inference_cluster import ACCT, KAFKA_CLUSTER, REGION, cluster_args

ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"


def scope(**overrides) -> PolicyScope:
    values = dict(
        partition="aws", region=REGION, account_id=ACCT, queue_kind="sqs",
        queue_arn=f"arn:aws:sqs:{REGION}:{ACCT}:genai-dev-jobs",
        model_store_bucket_arn="arn:aws:s3:::genai-dev-models-x1",
        outputs_bucket_arn="arn:aws:s3:::genai-dev-outputs-x1",
        job_table_arn=f"arn:aws:dynamodb:{REGION}:{ACCT}:table/genai-dev-jobs",
        group_names=("genai-dev-spot-1a2b", "genai-dev-ondemand-3c4d"),
        log_group_names=("/genai-fleet/dev/agent", "/genai-fleet/dev/backend", "/genai-fleet/dev/metrics"),
        parameter_names=("/genai-fleet/dev/cloudwatch-agent", "/genai-fleet/dev/webhook-secret"))
    values.update(overrides)
    return PolicyScope(**values)


def stack_prefixes(s: PolicyScope) -> tuple[str, ...]:
    """Every ARN this stack owns (or the resources the workers are handed); nothing else may appear."""
    prefixes = [s.model_store_bucket_arn, f"{s.outputs_bucket_arn}/outputs/", s.job_table_arn,
                f"{s.outputs_bucket_arn}/previews/"]  # issue 38: job previews, put only (test below)
    prefixes += [s.arn("logs", f"log-group:{n}:") for n in s.log_group_names]
    prefixes += [s.arn("autoscaling", f"autoScalingGroup:*:autoScalingGroupName/{g}") for g in s.group_names]
    prefixes += [s.arn("ssm", f"parameter/{p.lstrip('/')}") for p in s.parameter_names]
    if s.queue_kind == "sqs":
        prefixes.append(s.queue_arn)
    else:
        prefixes += [KAFKA_CLUSTER, KAFKA_CLUSTER.replace(":cluster/", ":topic/") + "/",
                     KAFKA_CLUSTER.replace(":cluster/", ":group/") + "/"]
    return tuple(prefixes)


def assert_scoped(document: dict, s: PolicyScope) -> None:
    allowed = stack_prefixes(s)
    for st in document["Statement"]:
        assert st["Effect"] == "Allow" and "NotAction" not in st and "NotResource" not in st
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        for resource in resources:
            if resource == "*":
                assert set(actions) <= STAR_ACTIONS, f"{st['Sid']}: '*' only where AWS has no resource scoping"
                continue
            assert "*" not in resource.split(":")[4], f"{st['Sid']}: wildcard account in {resource}"
            assert resource.startswith(allowed), f"{st['Sid']}: {resource} is not one of this stack's ARNs"
        for action in actions:
            assert not action.endswith("*") and action.count(":") == 1, action


def assert_parliament_clean(document: dict) -> None:
    """Stricter than "nothing above LOW": parliament rates a misspelt action (UNKNOWN_ACTION) LOW too."""
    policy = parliament.analyze_policy_string(json.dumps(document))
    findings = [parliament.enhance_finding(f) for f in policy.findings]
    assert not findings, [f"{f.issue} ({f.severity}): {f.detail}" for f in findings]


@pytest.mark.parametrize("kind", ["sqs", "kafka"])
def test_policy_document_is_scoped_and_parliament_clean(kind):
    s = scope() if kind == "sqs" else scope(queue_kind="kafka", queue_arn=None, kafka_cluster_arn=KAFKA_CLUSTER,
                                           kafka_dlq_topic="genai-jobs-dlq")
    document = instance_policy_document(s)
    assert_scoped(document, s)
    assert_parliament_clean(document)


def test_put_metric_data_is_restricted_by_namespace():
    (st,) = [st for st in instance_policy_document(scope())["Statement"] if "cloudwatch:PutMetricData" in st["Action"]]
    assert st["Condition"] == {"StringEquals": {"cloudwatch:namespace": ["GenAIFleet", "CWAgent"]}}


def test_recorded_namespaces_follow_the_flavour(recorded):
    for kind, extra in (("sqs", []), ("kafka", ["GenAIFleet/Neuron"])):
        document = json.loads(recorded[kind].one(ROLE_POLICY).inputs["policy"])
        (st,) = [st for st in document["Statement"] if st["Sid"] == "PutFleetMetrics"]
        assert st["Condition"]["StringEquals"]["cloudwatch:namespace"] == ["GenAIFleet", "CWAgent", *extra]


def test_queue_permissions_follow_the_queue_kind():
    sqs = json.dumps(instance_policy_document(scope()))
    assert "sqs:ReceiveMessage" in sqs and "kafka-cluster" not in sqs
    kafka_doc = instance_policy_document(scope(queue_kind="kafka", queue_arn=None, kafka_cluster_arn=KAFKA_CLUSTER))
    by_sid = {st["Sid"]: st for st in kafka_doc["Statement"]}
    assert "sqs:" not in json.dumps(kafka_doc)
    assert by_sid["KafkaConnect"]["Resource"] == KAFKA_CLUSTER
    assert by_sid["KafkaReadJobs"]["Resource"] == (
        f"arn:aws:kafka:{REGION}:{ACCT}:topic/genai-dev-jobs/uuid-1/genai-jobs")
    assert by_sid["KafkaConsumerGroup"]["Resource"] == (
        f"arn:aws:kafka:{REGION}:{ACCT}:group/genai-dev-jobs/uuid-1/genai-workers")
    assert set(by_sid["KafkaConsumerGroup"]["Action"]) == {"kafka-cluster:AlterGroup", "kafka-cluster:DescribeGroup"}


def test_outputs_writable_only_under_the_prefix():
    (st,) = [st for st in instance_policy_document(scope())["Statement"] if st["Sid"] == "WriteOutputs"]
    assert st["Resource"] == "arn:aws:s3:::genai-dev-outputs-x1/outputs/*"
    # issue 38: previews are written only (never read, listed or deleted by the worker), under their own prefix
    (pv,) = [st for st in instance_policy_document(scope())["Statement"] if st["Sid"] == "WritePreviews"]
    assert pv["Action"] == ["s3:PutObject"] and pv["Resource"] == "arn:aws:s3:::genai-dev-outputs-x1/previews/*"


def test_missing_queue_arn_is_an_error():
    with pytest.raises(ValueError, match="queue ARN"):
        instance_policy_document(scope(queue_arn=None))
    with pytest.raises(ValueError, match="cluster ARN"):
        kafka_sibling_arn("arn:aws:sqs:us-east-1:1:q", "topic", "t")


# --- the component's recorded policies -------------------------------------------------------------
@pytest.fixture(scope="module")
def recorded() -> dict[str, Built]:
    from components.inference_cluster import InferenceCluster

    out = {}
    configs = (("sqs", fleet(onDemandBase=1, maxSize=4)), ("kafka", fleet(queueKind="kafka", amiFlavor="neuron")))
    for kind, cfg in configs:
        args = cluster_args(cfg)
        out[kind] = build(lambda args=args: InferenceCluster("cluster", args), "group_names")
    return out


@pytest.mark.parametrize("kind", ["sqs", "kafka"])
def test_recorded_role_policy_is_scoped_and_clean(recorded, kind):
    built = recorded[kind]
    document = json.loads(built.one(ROLE_POLICY).inputs["policy"])
    s = scope(queue_kind=kind, group_names=tuple(built.outputs["group_names"]),
              **({"queue_arn": None, "kafka_cluster_arn": KAFKA_CLUSTER} if kind == "kafka" else {}))
    assert_scoped(document, s)
    assert_parliament_clean(document)
    groups = next(st for st in document["Statement"] if st["Sid"] == "LifecycleAndProtection")
    assert set(groups["Action"]) == {"autoscaling:CompleteLifecycleAction",
                                     "autoscaling:RecordLifecycleActionHeartbeat", "autoscaling:SetInstanceHealth",
                                     "autoscaling:SetInstanceProtection"}
    assert len(groups["Resource"]) == len(built.outputs["group_names"])
    params = next(st for st in document["Statement"] if st["Sid"] == "ReadOwnParameters")
    # its own CloudWatch agent config only: the webhook secret is the webhook function's, not the workers'
    assert params["Resource"] == [f"arn:aws:ssm:{REGION}:{ACCT}:parameter/genai-fleet/dev/cloudwatch-agent"]


def test_role_trusts_ec2_and_has_session_manager_without_managed_policies(recorded):
    built = recorded["sqs"]
    trust = json.loads(built.one("aws:iam/role:Role").inputs["assumeRolePolicy"])
    assert trust["Statement"] == [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                                   "Action": "sts:AssumeRole"}]
    # AmazonSSMManagedInstanceCore grants ssm:GetParameter* on every parameter: nothing managed is attached.
    assert built.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment") == []
    assert "managedPolicyArns" not in built.one("aws:iam/role:Role").inputs
    document = json.loads(built.one(ROLE_POLICY).inputs["policy"])
    session = next(st for st in document["Statement"] if st["Sid"] == "SessionManager")
    assert session["Action"] == list(cluster_iam.SESSION_MANAGER_ACTIONS)
    assert not any(a.startswith("ssm:GetParameter") for a in session["Action"])
    profile = built.one("aws:iam/instanceProfile:InstanceProfile")
    assert profile.inputs["role"] == "cluster-role"


# --- what a worker can read: never API keys, never another environment's secrets -------------------
SSM_READS = ("ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath", "ssm:GetParameterHistory",
             "ssm:DescribeParameters")


def _iam_match(pattern: str, value: str) -> bool:
    """IAM wildcard matching (``*`` any run of characters, ``?`` one), case-insensitive for actions."""
    import fnmatch

    return fnmatch.fnmatchcase(value, pattern.replace("[", "[[]"))


def _grants(document: dict, action: str, resource: str) -> list[str]:
    """Sids of the Allow statements that give ``action`` on ``resource``."""
    found = []
    for st in document["Statement"]:
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        if st["Effect"] == "Allow" and any(_iam_match(a.lower(), action.lower()) for a in actions) and any(
                _iam_match(r, resource) for r in resources):
            found.append(st.get("Sid", "?"))
    return found


def test_the_matcher_finds_what_a_broad_statement_would_grant():
    broad = {"Statement": [{"Sid": "Core", "Effect": "Allow", "Action": ["ssm:GetParameter*"], "Resource": "*"}]}
    assert _grants(broad, "ssm:GetParametersByPath", f"arn:aws:ssm:{REGION}:{ACCT}:parameter/genai-fleet/dev") == [
        "Core"]
    star = {"Statement": [{"Sid": "All", "Effect": "Allow", "Action": "ssm:*",
                           "Resource": f"arn:aws:ssm:*:{ACCT}:parameter/genai-fleet/*"}]}
    assert _grants(star, "ssm:GetParameter", f"arn:aws:ssm:{REGION}:{ACCT}:parameter/genai-fleet/prod/x") == ["All"]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_no_worker_statement_reaches_api_keys_or_other_environments_secrets(stack):
    from fleetdev.pulumi_mocks import ACCOUNT_ID, run_stack

    recording = run_stack(stack)
    role = next(r for r in recording.of_type("aws:iam/role:Role") if r.name == "cluster-role")
    attached = [r for r in recording.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
                if r.inputs.get("role") == role.outputs["name"]]
    assert attached == [], "a managed policy on the worker role escapes this check"
    (inline,) = [r for r in recording.of_type(ROLE_POLICY) if r.inputs.get("role") == role.outputs["id"]]
    document = json.loads(inline.inputs["policy"])
    other = "prod" if stack == "dev" else "dev"
    arn = f"arn:aws:ssm:us-east-1:{ACCOUNT_ID}:parameter"
    forbidden = [f"{arn}/genai-fleet/{stack}/api-keys/k3y1d", f"{arn}/genai-fleet/{stack}/api-keys",
                 f"{arn}/genai-fleet/{other}/api-keys/k3y1d", f"{arn}/genai-fleet/{other}/webhook-secret",
                 f"{arn}/genai-fleet/{other}/cloudwatch-agent", f"{arn}/genai-fleet/{stack}", f"{arn}/genai-fleet"]
    for resource in forbidden:
        for action in SSM_READS:
            assert _grants(document, action, resource) == [], f"{action} on {resource}"
    # What it may read: its own environment's CloudWatch agent config, by name, and nothing by path. Not even
    # its own webhook secret: webhooks are sent by the stack's functions (components/job_events.py).
    assert _grants(document, "ssm:GetParameter", f"{arn}/genai-fleet/{stack}/cloudwatch-agent") == [
        "ReadOwnParameters"]
    assert _grants(document, "ssm:GetParameter", f"{arn}/genai-fleet/{stack}/webhook-secret") == []
    assert not any(_grants(document, "ssm:GetParametersByPath", r) for r in (f"{arn}/genai-fleet/{stack}/x", "*"))
