"""API component under mocks: Lambda on arm64, routes all authorised but health, throttling, logs, IAM."""

from __future__ import annotations

import dataclasses
import json

import pytest

from components.api import AUTH_ROUTES, Api, ApiArgs
from genai_policies import security
from tests.unit.component_harness import build, each, fleet, kafka_endpoint, sqs_endpoint

TOKEN = "genai:api:Api"
FN = "aws:lambda/function:Function"
ROUTE = "aws:apigatewayv2/route:Route"
TABLE_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/genai-dev-jobs"


def api(cfg, **kwargs):
    base = {"job_table_name": "genai-dev-jobs", "job_table_arn": TABLE_ARN, "queue": sqs_endpoint(),
            "stack": cfg.identity, "api": cfg.api, "storage": cfg.storage, "hot_models": cfg.cluster.hot_models,
            "average_job_seconds": cfg.cluster.average_job_seconds, "model_groups": cfg.queue.model_groups}
    return build(lambda: Api("api", ApiArgs(**{**base, **kwargs})), "api_url", "function_name")


@pytest.fixture(scope="module")
def keyed():
    return api(fleet(apiRateLimit=50, apiBurstLimit=80, apiKeyQuotaPerDay=1000, hotModels='["sdxl-base-1.0"]'),
               model_bucket_name="models", model_bucket_arn="arn:aws:s3:::models")


@pytest.fixture(scope="module")
def iam():
    return api(fleet(apiAuth="iam"))


def _policy(built, role_name):
    policy = built.one("aws:iam/rolePolicy:RolePolicy", role_name.removesuffix("-role") + "-policy")
    return json.loads(policy.inputs["policy"])


def test_lambda_is_arm64_python312_with_packaged_code(keyed):
    fn = keyed.one(FN, "api-handler-fn").inputs
    assert fn["architectures"] == ["arm64"] and fn["runtime"] == "python3.12"
    assert fn["handler"] == "runtime.api.handler.lambda_handler" and fn["timeout"] <= 29
    env = fn["environment"]["variables"]
    assert env["GENAI_JOB_TABLE"] == "genai-dev-jobs" and env["GENAI_AUTH_MODE"] == "api-key"
    assert env["GENAI_API_KEYS_PREFIX"] == "/genai-fleet/dev/api-keys" and env["GENAI_KEY_QUOTA_PER_DAY"] == "1000"
    assert json.loads(env["GENAI_HOT_MODELS"]) == ["sdxl-base-1.0"] and env["GENAI_MODEL_BUCKET"] == "models"
    assert fn["loggingConfig"]["logFormat"] == "JSON"


def test_code_archive_holds_handler_and_pure_python_deps():
    from components.lambda_package import api_code_archive

    assets = api_code_archive().assets
    for needed in ("runtime/api/handler.py", "runtime/api/authorizer.py", "runtime/jobs/store.py",
                   "runtime/queues/sqs_producer.py", "runtime/net_safety.py", "httpx/__init__.py",
                   "certifi/cacert.pem"):
        assert needed in assets, needed
    assert not any("__pycache__" in k or k.startswith("tests/") for k in assets)


def test_code_archive_holds_pydantic_with_its_core_built_for_the_lambda():
    """The handler validates with pydantic: its compiled core must be the arm64 / CPython 3.12 build."""
    import importlib.metadata

    from components.lambda_package import api_code_archive

    assets = api_code_archive().assets
    for needed in ("pydantic/__init__.py", "annotated_types/__init__.py", "typing_inspection/__init__.py",
                   "pydantic_core/__init__.py", "runtime/jobs/models.py", "runtime/api/key_format.py"):
        assert needed in assets, needed
    [core] = [k for k in assets if k.startswith("pydantic_core/_pydantic_core.") and k.endswith(".so")]
    assert "cpython-312-aarch64-linux-gnu" in core
    with open(assets[core].path, "rb") as f:
        header = f.read(20)
    assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == 183  # EM_AARCH64
    version = importlib.metadata.version("pydantic-core")
    assert any(k.startswith(f"pydantic_core-{version}.dist-info/") for k in assets)  # matches pydantic here


def test_api_key_mode_uses_request_authorizer_on_all_but_health(keyed):
    authorizer = keyed.one("aws:apigatewayv2/authorizer:Authorizer").inputs
    assert authorizer["authorizerType"] == "REQUEST" and authorizer["enableSimpleResponses"] is True
    assert authorizer["authorizerResultTtlInSeconds"] == 0
    routes = {r.inputs["routeKey"]: r.inputs for r in keyed.of_type(ROUTE)}
    assert set(routes) == {"GET /v1/health", *AUTH_ROUTES}
    assert routes["GET /v1/health"]["authorizationType"] == "NONE"
    for key in AUTH_ROUTES:
        assert routes[key]["authorizationType"] == "CUSTOM" and routes[key]["authorizerId"]


def test_iam_mode_uses_aws_iam_and_no_authorizer(iam):
    assert iam.of_type("aws:apigatewayv2/authorizer:Authorizer") == []
    routes = {r.inputs["routeKey"]: r.inputs["authorizationType"] for r in iam.of_type(ROUTE)}
    assert {k for k, v in routes.items() if v == "AWS_IAM"} == set(AUTH_ROUTES)


def test_stage_throttling_and_access_logs(keyed):
    stage = keyed.one("aws:apigatewayv2/stage:Stage").inputs
    assert stage["defaultRouteSettings"] == {"throttlingRateLimit": 50, "throttlingBurstLimit": 80}
    assert stage["autoDeploy"] is True and "$context.requestId" in stage["accessLogSettings"]["format"]
    groups = {g.name: g.inputs for g in keyed.of_type("aws:cloudwatch/logGroup:LogGroup")}
    assert all(g["retentionInDays"] == 14 for g in groups.values()) and len(groups) == 3


def test_handler_policy_is_least_privilege(keyed):
    doc = _policy(keyed, "api-handler-role")
    by_sid = {s["Sid"]: s for s in doc["Statement"]}
    assert by_sid["JobTable"]["Resource"] == TABLE_ARN and "dynamodb:Scan" not in by_sid["JobTable"]["Action"]
    assert by_sid["Queue"]["Action"] == ["sqs:GetQueueAttributes", "sqs:SendMessage"]
    assert by_sid["Parameters"]["Resource"] == \
        "arn:aws:ssm:us-east-1:123456789012:parameter/genai-fleet/dev/api-keys/*"
    assert by_sid["ModelManifest"]["Resource"] == "arn:aws:s3:::models/manifest.json"
    assert all(s["Resource"] != "*" for s in doc["Statement"])
    auth_doc = _policy(keyed, "api-authorizer-role")
    assert {s["Sid"] for s in auth_doc["Statement"]} == {"ApiKeys", "Logs"}


def test_routes_satisfy_the_policy_pack_rule(keyed):
    for route in each(keyed, ROUTE):
        assert route.inputs["routeKey"] in security.ROUTES_SCHEMA.properties["publicRoutes"]["default"] \
            or route.inputs["authorizationType"] != "NONE"


def test_kafka_mode_runs_in_vpc_with_layer(tmp_path):
    layer = tmp_path / "layer"
    (layer / "python").mkdir(parents=True)
    built = api(fleet(queueKind="kafka"), queue=kafka_endpoint(
                    bootstrap_brokers="boot:9098", cluster_arn="arn:aws:kafka:us-east-1:1:cluster/c/u",
                    client_security_group_id="sg-0kafka", subnet_ids=["subnet-a", "subnet-b"]),
                kafka_layer_dir=str(layer))
    fn = built.one(FN, "api-handler-fn").inputs
    assert fn["vpcConfig"]["subnetIds"] == ["subnet-a", "subnet-b"] and fn["layers"]
    assert fn["environment"]["variables"]["GENAI_KAFKA_BOOTSTRAP"] == "boot:9098"
    layer_res = built.one("aws:lambda/layerVersion:LayerVersion").inputs
    assert layer_res["compatibleArchitectures"] == ["arm64"]
    sids = {s["Sid"] for s in _policy(built, "api-handler-role")["Statement"]}
    assert {"KafkaConnect", "KafkaTopic"} <= sids and "Queue" not in sids


def test_the_queue_kind_comes_from_the_endpoint_alone(tmp_path):
    """ApiArgs has no queue-kind setting to disagree with: the endpoint's variant decides (VPC, env, policy)."""
    (tmp_path / "python").mkdir()
    built = api(fleet(apiAuth="iam"), queue=kafka_endpoint(), kafka_layer_dir=str(tmp_path))
    handler = built.one(FN, "api-handler-fn").inputs
    assert handler["environment"]["variables"]["GENAI_QUEUE_KIND"] == "kafka"
    assert handler["vpcConfig"]["subnetIds"] == kafka_endpoint().subnet_ids
    assert "queue_kind" not in {f.name for f in dataclasses.fields(ApiArgs)}


def test_both_functions_reserve_what_rate_burst_and_wait_need(keyed, iam):
    # keyed: rate 50, burst 80, default apiMaxWaitSeconds 20 -> handler 80 + 50 x 20, authorizer 80.
    handler, authorizer = keyed.one(FN, "api-handler-fn").inputs, keyed.one(FN, "api-authorizer-fn").inputs
    assert handler["reservedConcurrentExecutions"] == 80 + 50 * 20
    assert authorizer["reservedConcurrentExecutions"] == 80
    assert handler["environment"]["variables"]["GENAI_MAX_WAIT_SECONDS"] == "20"
    assert iam.one(FN, "api-handler-fn").inputs["reservedConcurrentExecutions"] == 200 + 100 * 20
    short = api(fleet(apiMaxWaitSeconds=5, apiHandlerConcurrency=900, apiAuthorizerConcurrency=250))
    fn = short.one(FN, "api-handler-fn").inputs
    assert fn["reservedConcurrentExecutions"] == 900
    assert fn["environment"]["variables"]["GENAI_MAX_WAIT_SECONDS"] == "5"
    assert short.one(FN, "api-authorizer-fn").inputs["reservedConcurrentExecutions"] == 250


def test_handler_may_query_only_the_owner_index(keyed):
    """GET /v1/jobs (issue 39): one Query action, on the owner index only (never Scan, never the table)."""
    doc = _policy(keyed, "api-handler-role")
    by_sid = {s["Sid"]: s for s in doc["Statement"]}
    assert by_sid["JobTableOwnerIndex"]["Resource"] == TABLE_ARN + "/index/owner-by-created"
    assert by_sid["JobTableOwnerIndex"]["Action"] == ["dynamodb:Query"]
    # POST /v1/quotes (issue 42) counts the running jobs on the sparse running-by-lease index: Query there too,
    # never on the table, never Scan
    assert by_sid["JobTableRunningIndex"]["Resource"] == TABLE_ARN + "/index/running-by-lease"
    assert by_sid["JobTableRunningIndex"]["Action"] == ["dynamodb:Query"]
    assert all("dynamodb:Query" not in s["Action"] for sid, s in by_sid.items()
               if sid not in ("JobTableOwnerIndex", "JobTableRunningIndex"))
    assert all("dynamodb:Scan" not in s["Action"] for s in by_sid.values())
    assert {"GET /v1/jobs", "POST /v1/quotes"} <= {r.inputs["routeKey"] for r in each(keyed, ROUTE)}


def test_handler_may_delete_only_its_stacks_output_objects(tmp_path):
    """DELETE /v1/jobs/{id} (issue 44): versions listed under outputs/ only, objects and versions deleted there
    only; no read or write of the outputs bucket, and no statement at all without the bucket."""
    cfg = fleet()
    built = api(cfg, outputs_bucket_name="genai-dev-outputs", outputs_bucket_arn="arn:aws:s3:::genai-dev-outputs")
    by_sid = {s["Sid"]: s for s in _policy(built, "api-handler-role")["Statement"]}
    assert by_sid["OutputVersionsList"] == {
        "Sid": "OutputVersionsList", "Effect": "Allow", "Action": ["s3:ListBucketVersions"],
        "Resource": "arn:aws:s3:::genai-dev-outputs", "Condition": {"StringLike": {"s3:prefix": ["outputs/*"]}}}
    assert by_sid["OutputDelete"]["Action"] == ["s3:DeleteObject", "s3:DeleteObjectVersion"]
    assert by_sid["OutputDelete"]["Resource"] == "arn:aws:s3:::genai-dev-outputs/outputs/*"
    touching = [s for s in by_sid.values() if "genai-dev-outputs" in json.dumps(s["Resource"])]
    assert {a for s in touching for a in s["Action"]} == {"s3:ListBucketVersions", "s3:DeleteObject",
                                                          "s3:DeleteObjectVersion"}
    fn = built.one(FN, "api-handler-fn")
    assert fn.inputs["environment"]["variables"]["GENAI_OUTPUTS_BUCKET"] == "genai-dev-outputs"
    bare = {s["Sid"] for s in _policy(api(cfg), "api-handler-role")["Statement"]}
    assert not bare & {"OutputVersionsList", "OutputDelete"}
