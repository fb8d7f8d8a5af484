"""The API's environment is defined once: what the stack writes is what the Lambdas read back."""

from __future__ import annotations

import dataclasses

import pytest

from components import api as api_component
from runtime import aws_clients
from runtime.api.environment import API_VARIABLES, ApiConfig, AuthorizerConfig
from tests.unit.component_harness import build, fleet, kafka_endpoint, sqs_endpoint

FN = "aws:lambda/function:Function"
TABLE_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/genai-dev-jobs"

EVERY_FIELD_SET = ApiConfig(
    job_table="jobs", queue_kind="kafka", queue_url="https://sqs/q", kafka_bootstrap="b:9098", kafka_topic="t",
    kafka_iam=False, kafka_create_topic=False, auth_mode="iam", api_keys_prefix="/p", api_keys_file="/k.json",
    api_keys=("k1", "k2"), accept_untagged_keys=True, quota_per_day=7, rate_per_second=2.5, burst=4.0,
    hot_models=("sd15", "org/sdxl"), model_bucket="models", enforce_known_models=True, allow_loopback=True,
    average_job_seconds=4.5, max_wait_seconds=12.0, endpoint_url="http://127.0.0.1:5000",
    model_groups=(("sdxl", ("sdxl-base", "org/sdxl-turbo")),), tasks=("txt2img", "txt2video"),
    lora_tasks=("txt2img",),
    node_catalog="s3://amis/node-catalogs/cuda/ami-0abc.json",
    video_formats=("mp4", "webm"), video_model_kinds=("video",),
    event_table="events",
    budget_usd_per_day=25.5, hourly_usd=1.006,
    outputs_base_url="https://d111.cloudfront.net", output_url_ttl_seconds=900,  # issue 43
    output_signing_key_id="K2JCJMDEHXQW5F",
    output_signing_key_parameter="/genai-fleet/dev/output-signing-keys/k1/private")


@pytest.mark.parametrize("cfg", [
    EVERY_FIELD_SET,
    ApiConfig(job_table="jobs"),
    ApiConfig(job_table="jobs", queue_url="https://sqs/q", max_wait_seconds=0.0),
    ApiConfig(job_table="jobs", queue_kind="kafka", kafka_bootstrap="b:9098"),
], ids=["every-field", "defaults", "sqs-no-wait", "kafka-defaults"])
def test_api_config_round_trips_through_the_environment(cfg):
    env = cfg.to_env()
    assert all(isinstance(v, str) for v in env.values())
    assert ApiConfig.from_env(env) == cfg


def test_every_field_but_the_region_has_a_variable():
    names = {f.name for f in dataclasses.fields(ApiConfig)}
    assert set(API_VARIABLES) == names - {"region"}
    assert set(EVERY_FIELD_SET.to_env()) == set(API_VARIABLES.values())
    assert dataclasses.replace(EVERY_FIELD_SET, region="eu-west-1") != ApiConfig.from_env(EVERY_FIELD_SET.to_env())


@pytest.mark.parametrize("cfg", [AuthorizerConfig("/genai-fleet/dev/api-keys"),
                                 AuthorizerConfig("/p", accept_untagged_keys=True, endpoint_url="http://x:1")])
def test_authorizer_config_round_trips(cfg):
    assert AuthorizerConfig.from_env(cfg.to_env()) == cfg


def test_authorizer_without_a_prefix_fails_naming_the_variable():
    with pytest.raises(RuntimeError, match="GENAI_API_KEYS_PREFIX"):
        AuthorizerConfig.from_env({})


def _function_env(built, name):
    return built.one(FN, name).inputs["environment"]["variables"]


def test_the_stack_writes_what_the_handler_and_the_authorizer_read():
    cfg = fleet(apiKeyQuotaPerDay=1000, hotModels='["sdxl-base-1.0"]', apiMaxWaitSeconds=15)
    built = build(lambda: api_component.Api("api", api_component.ApiArgs(
        stack=cfg.identity, api=cfg.api, storage=cfg.storage, job_table_name="genai-dev-jobs",
        job_table_arn=TABLE_ARN, queue=sqs_endpoint(), average_job_seconds=cfg.cluster.average_job_seconds,
        hot_models=cfg.cluster.hot_models, model_bucket_name="models")), "api_url")
    handler = ApiConfig.from_env(_function_env(built, "api-handler-fn"))
    assert handler == ApiConfig(
        job_table="genai-dev-jobs", queue_kind="sqs", queue_url=sqs_endpoint().queue_url, auth_mode="api-key",
        api_keys_prefix="/genai-fleet/dev/api-keys", quota_per_day=1000, hot_models=("sdxl-base-1.0",),
        model_bucket="models", average_job_seconds=cfg.cluster.average_job_seconds, max_wait_seconds=15.0)
    authorizer = AuthorizerConfig.from_env(_function_env(built, "api-authorizer-fn"))
    assert authorizer == AuthorizerConfig(api_keys_prefix="/genai-fleet/dev/api-keys")


def test_a_kafka_stack_tells_the_handler_not_to_create_topics(tmp_path):
    (tmp_path / "python").mkdir()
    cfg = fleet(queueKind="kafka", apiAuth="iam")
    built = build(lambda: api_component.Api("api", api_component.ApiArgs(
        stack=cfg.identity, api=cfg.api, storage=cfg.storage, job_table_name="genai-dev-jobs",
        job_table_arn=TABLE_ARN, queue=kafka_endpoint(), average_job_seconds=cfg.cluster.average_job_seconds,
        kafka_layer_dir=str(tmp_path))), "api_url")
    handler = ApiConfig.from_env(_function_env(built, "api-handler-fn"))
    assert (handler.queue_kind, handler.kafka_bootstrap, handler.kafka_iam, handler.kafka_create_topic) == (
        "kafka", "boot-abc.kafka:9098", True, False)
    assert handler.auth_mode == "iam" and handler.api_keys_prefix is None and handler.queue_url is None
    assert not built.of_type(FN) or "api-authorizer-fn" not in {r.name for r in built.of_type(FN)}


@pytest.mark.parametrize(("profile", "budget"), [("api", api_component.LAMBDA_TIMEOUT_S),
                                                 ("authorizer", api_component.AUTHORIZER_TIMEOUT_S)])
def test_one_aws_call_fits_inside_its_lambda(profile, budget):
    p = aws_clients.PROFILES[profile]
    assert p.worst_case_seconds + 1 <= budget  # a second of backoff between attempts at most
    client = aws_clients.client("dynamodb", profile=profile, region="us-east-1")
    config = client.meta.config
    assert (config.connect_timeout, config.read_timeout) == (p.connect_timeout, p.read_timeout)
    assert config.retries == {"mode": "standard", "total_max_attempts": p.max_attempts}


def test_an_unknown_profile_names_the_ones_there_are():
    with pytest.raises(ValueError, match="api, authorizer, function, worker"):
        aws_clients.client("sqs", profile="lambda", region="us-east-1")


def test_the_agent_keeps_its_clients_long_reads_and_retries():
    from runtime.worker import aws

    config = aws.client("s3", "us-east-1").meta.config
    assert (config.connect_timeout, config.read_timeout, config.max_pool_connections) == (5, 30, 32)
    assert config.retries == {"mode": "standard", "total_max_attempts": 5}
    assert aws.client("s3", "us-east-1", read_timeout=120).meta.config.read_timeout == 120
