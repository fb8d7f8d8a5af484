"""Job API: API Gateway HTTP API -> Lambda (arm64, python3.12) running ``runtime.api.handler``.

Packaging reads files only (no pip, no network during preview): the Lambda code is an ``AssetArchive``
(``lambda_package.api_code_archive``) of the runtime modules the API imports plus ``.build/lambda/api``, the
pinned dependencies of ``runtime/api/lambda-requirements.txt`` built for arm64 / python3.12 by
``make lambda-deps`` (part of ``make install``; see ``components/lambda_package.py``). With
``queueKind: kafka`` the function runs in the private subnets with the Kafka client security group and a
layer made of ``.build/lambda/kafka-layer`` (confluent-kafka and the MSK IAM signer, same step), or of
``ApiArgs.kafka_layer_dir``.

Both functions get reserved concurrency (``components/capacity.py``): the handler what rate, burst and
``apiMaxWaitSeconds`` can hold at once, the authorizer the burst, so neither starves the other.

Auth by ``apiAuth``: ``api-key`` -> a Lambda REQUEST authorizer (simple responses, no cache) on every
route but ``GET /v1/health``; keys are SSM SecureString parameters under ``/genai-fleet/<env>/api-keys/``.
``iam`` -> ``AWS_IAM`` authorization (SigV4, ``execute-api:Invoke``). A ``$default`` route sends
unknown paths to the handler so clients get its 404/405 problem details.
Stage throttling from ``apiRateLimit`` / ``apiBurstLimit``; JSON access logs with the stack's retention.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components import lambda_package, naming, worker_prices
from components.config import ApiSettings, StackIdentity, StorageSettings
from components.function_policy import policy_json
from components.output_link_access import OutputLinkAccess
from components.queue_endpoint import KafkaEndpoint, QueueEndpoint, SqsEndpoint
from runtime.api.environment import ApiConfig, AuthorizerConfig
from runtime.jobs.attempts import RUNNING_INDEX
from runtime.jobs.store import OWNER_INDEX
from runtime.node_catalog import catalog_location
from runtime.queue_names import KAFKA_TOPIC

PUBLIC_ROUTES = ("GET /v1/health",)
AUTH_ROUTES = ("POST /v1/jobs", "GET /v1/jobs", "GET /v1/jobs/{id}", "POST /v1/jobs/{id}/cancel", "GET /v1/models",
               "GET /v1/openapi.json", "POST /v1/quotes", "$default")
LAMBDA_TIMEOUT_S = 29  # API Gateway HTTP APIs stop waiting at 30 s; Prefer: wait is capped at 25 s
AUTHORIZER_TIMEOUT_S = 5  # one SSM read; runtime/aws_clients.py's "authorizer" profile fits inside
ACCESS_LOG_FORMAT = json.dumps({k: f"$context.{v}" for k, v in {
    "requestId": "requestId", "ip": "identity.sourceIp", "method": "httpMethod", "route": "routeKey",
    "status": "status", "latencyMs": "responseLatency", "integrationError": "integrationErrorMessage",
    "authorizerError": "authorizer.error", "keyId": "authorizer.key_id"}.items()})


@dataclass
class ApiArgs:
    stack: StackIdentity
    """``FleetConfig.identity``: function and API names, the API key prefix and its ARN (region)."""

    api: ApiSettings
    """``FleetConfig.api``: auth mode, rate and burst limits, key quota, ``Prefer: wait`` cap, reserved concurrency."""

    storage: StorageSettings
    """``FleetConfig.storage``: ``log_retention_days`` of the function and access log groups."""

    job_table_name: pulumi.Input[str]
    """The job table (components/job_store.py)."""

    job_table_arn: pulumi.Input[str]
    """Its ARN, for the function's least-privilege policy."""

    queue: QueueEndpoint
    """Where jobs go (RequestQueue.endpoint); a Kafka endpoint puts the functions in its private subnets."""

    average_job_seconds: float
    """``FleetConfig.cluster.average_job_seconds``: the queue-position estimate in job responses."""

    hot_models: tuple[str, ...] = ()
    """``FleetConfig.cluster.hot_models``: ``GET /v1/models`` lists them when the store has no manifest."""

    model_groups: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """``FleetConfig.queue.model_groups``: which group queue a job for a model goes to (SQS only)."""

    tasks: tuple[str, ...] = ()
    """The tasks the fleet's backend serves (``runtime.backends.base.served_tasks``); the API refuses others."""
    lora_tasks: tuple[str, ...] | None = None
    """The tasks whose jobs may name LoRAs (``runtime.backends.base.lora_tasks``); None: every task."""

    video_formats: tuple[str, ...] = ()
    """The video output formats the backend writes (``runtime.backends.base.video_capabilities``); (): all."""

    video_model_kinds: tuple[str, ...] = ()
    """The model store kinds the backend makes a video from (``video_capabilities``); (): any model."""

    instance_type: str | None = None
    """The fleet's preferred instance type: its on-demand price (``policies/prices.json``) prices a job's expected
    cost (tenant budgets, quotes)."""

    model_bucket_name: pulumi.Input[str] | None = None
    """Model store bucket: ``GET /v1/models`` reads its manifest; without it, the hot models are listed."""

    model_bucket_arn: pulumi.Input[str] | None = None
    """Model store bucket ARN (read access to the manifest only)."""

    comfyui_image: tuple[str, pulumi.Input[str]] | None = None
    """(flavour, image id) of the fleet's AMI when its backend is ComfyUI (``InferenceCluster.ami_id``: the one
    lookup the launch templates use): the API checks comfyui-workflow jobs against that image's node catalog, stored
    by ``make ami`` at ``runtime.node_catalog.catalog_location`` (docs/amis.md "Node catalog"), and may read that one
    object. None: no catalog (workflows are accepted with a Warning header)."""

    kafka_layer_dir: str | None = None
    """Pre-built layer directory (``python/...``) for Kafka; default: ``.build/lambda/kafka-layer``."""

    event_table_name: pulumi.Input[str] | None = None
    """The job event log (components/job_event_log.py): GET /v1/jobs/{id}/events; None: no events route."""

    event_table_arn: pulumi.Input[str] | None = None
    """Its ARN (Query only)."""

    # issue 43: output links
    output_links: OutputLinkAccess | None = None
    """The CDN serving the outputs and the key links are signed with: output URLs are made when handed out
    (runtime/jobs/output_links.py); the job record stores object keys. None: links without a CDN (tests)."""


class Api(pulumi.ComponentResource):
    api_url: pulumi.Output[str]
    api_id: pulumi.Output[str]
    function_name: pulumi.Output[str]
    access_log_group_name: pulumi.Output[str]
    api_keys_prefix: str

    def __init__(self, name: str, args: ApiArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("genai:api:Api", name, None, opts)
        self._name, self._args = name, args
        stack, settings = args.stack, args.api
        self.api_keys_prefix = naming.api_keys_prefix(stack)
        self._account = aws.get_caller_identity_output(opts=pulumi.InvokeOptions(parent=self)).account_id
        self._param_arn = self._account.apply(
            lambda acct: f"arn:aws:ssm:{stack.region}:{acct}:parameter{self.api_keys_prefix}/*")
        self._node_catalog = self._node_catalog_location()
        code = lambda_package.api_code_archive()
        handler_fn, handler_log = self._create_function(
            "handler", "runtime.api.handler.lambda_handler", code, self._handler_statements(), 512,
            self._environment(), kafka=isinstance(args.queue, KafkaEndpoint), reserved=settings.reserved_handler)
        api = aws.apigatewayv2.Api(f"{name}-http", name=f"{stack.resource_prefix()}-api", protocol_type="HTTP",
                                   description="genai-fleet job API", opts=self._opts())
        integration = aws.apigatewayv2.Integration(
            f"{name}-integration", api_id=api.id, integration_type="AWS_PROXY",
            integration_uri=handler_fn.invoke_arn, payload_format_version="2.0", timeout_milliseconds=30000,
            opts=self._opts())
        self._allow_invoke("handler", handler_fn, api)
        authorizer = self._create_authorizer(api, code) if settings.auth == "api-key" else None
        self._create_routes(api, integration, authorizer)
        access_logs = self._create_stage(api)
        self.api_url = api.api_endpoint
        self.api_id = api.id
        self.function_name = handler_fn.name
        self.function_log_group_name = handler_log.name
        self.access_log_group_name = access_logs.name
        self.register_outputs({"api_url": self.api_url, "api_id": self.api_id, "function_name": self.function_name,
                               "access_log_group_name": self.access_log_group_name,
                               "api_keys_prefix": self.api_keys_prefix})

    def _opts(self, **kwargs) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, **kwargs)

    # --- configuration ---------------------------------------------------------------------------
    def _environment(self) -> dict[str, pulumi.Input[str]]:
        """The handler's ``GENAI_*`` variables, written by the same dataclass the handler reads them with."""
        a, settings = self._args, self._args.api
        sqs = a.queue if isinstance(a.queue, SqsEndpoint) else None
        kafka = a.queue if isinstance(a.queue, KafkaEndpoint) else None
        return ApiConfig(
            job_table=a.job_table_name, queue_kind=a.queue.kind, queue_url=sqs and sqs.queue_url,
            kafka_bootstrap=kafka and kafka.bootstrap_brokers, kafka_topic=kafka.topic if kafka else KAFKA_TOPIC,
            kafka_iam=True, kafka_create_topic=kafka is None,  # topics are created at deploy time
            auth_mode=settings.auth, api_keys_prefix=self.api_keys_prefix if settings.auth == "api-key" else None,
            quota_per_day=settings.key_quota_per_day or None, hot_models=tuple(a.hot_models),
            model_bucket=a.model_bucket_name, average_job_seconds=a.average_job_seconds,
            max_wait_seconds=settings.max_wait_seconds, model_groups=a.model_groups, tasks=tuple(a.tasks),
            lora_tasks=None if a.lora_tasks is None else tuple(a.lora_tasks),
            node_catalog=self._node_catalog and self._node_catalog.apply(lambda loc: f"s3://{loc[0]}/{loc[1]}"),
            video_formats=tuple(a.video_formats), video_model_kinds=tuple(a.video_model_kinds),
            event_table=a.event_table_name,
            budget_usd_per_day=settings.tenant_budget_usd_per_day, hourly_usd=self._hourly_usd(),
            **self._output_links_config(),
        ).to_env()

    def _output_links_config(self) -> dict[str, Any]:
        """Issue 43: the ApiConfig fields of the output links (CDN, lifetime, signing key)."""
        links = self._args.output_links
        if links is None:
            return {}
        return {"outputs_base_url": links.base_url, "output_url_ttl_seconds": links.ttl_seconds,
                "output_signing_key_id": links.key_id, "output_signing_key_parameter": links.key_parameter}

    def _node_catalog_location(self) -> pulumi.Output[tuple[str, str]] | None:
        """(bucket, key) of the node catalog of the image the fleet runs (issue 41); None without ComfyUI."""
        if self._args.comfyui_image is None:
            return None
        flavor, image_id = self._args.comfyui_image
        region = self._args.stack.region
        return pulumi.Output.all(self._account, image_id).apply(
            lambda v: catalog_location(v[0], region, flavor, v[1]))

    def _hourly_usd(self) -> float | None:
        itype = self._args.instance_type
        if itype is None:
            return None
        return worker_prices.published_prices(self._args.stack.region, [itype])["on_demand_hourly"][itype]

    def _handler_statements(self) -> list[dict[str, pulumi.Input]]:
        a = self._args
        statements: list[dict[str, pulumi.Input]] = [
            {"sid": "JobTable", "actions": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
                                            "dynamodb:DeleteItem", "dynamodb:ConditionCheckItem"],
             "resources": [a.job_table_arn]},
            # GET /v1/jobs: one Query on the owner index (the handler always keys it by the caller).
            {"sid": "JobTableOwnerIndex", "actions": ["dynamodb:Query"],
             "resources": [pulumi.Output.concat(a.job_table_arn, f"/index/{OWNER_INDEX}")]},
            # POST /v1/quotes: the running jobs, counted on the sparse running-by-lease index.
            {"sid": "JobTableRunningIndex", "actions": ["dynamodb:Query"],
             "resources": [pulumi.Output.concat(a.job_table_arn, f"/index/{RUNNING_INDEX}")]}]
        if a.event_table_arn is not None:  # GET /v1/jobs/{id}/events and a running job's progress: Query only
            statements.append({"sid": "JobEventLog", "actions": ["dynamodb:Query"], "resources": [a.event_table_arn]})
        if isinstance(a.queue, SqsEndpoint):
            statements.append({"sid": "Queue", "actions": ["sqs:SendMessage", "sqs:GetQueueAttributes"],
                               "resources": a.queue.queue_arns()})
        else:
            # MSK "produce data idempotently": Connect + WriteDataIdempotently on the cluster (Kafka's
            # IDEMPOTENT_WRITE is a cluster ACL), DescribeTopic + WriteData on the topic. Topics are made
            # at deploy time (components/kafka_functions.py), so no CreateTopic here.
            statements.append({"sid": "KafkaConnect", "actions": [
                "kafka-cluster:Connect", "kafka-cluster:WriteDataIdempotently"], "resources": [a.queue.cluster_arn]})
            statements.append({"sid": "KafkaTopic", "resources": [a.queue.topic_arn],
                               "actions": ["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"]})
        params: list[pulumi.Input[str]] = [self._param_arn] if a.api.auth == "api-key" else []
        if params:
            statements.append({"sid": "Parameters", "actions": ["ssm:GetParameter"], "resources": params})
        if a.model_bucket_arn is not None:
            statements.append({"sid": "ModelManifest", "actions": ["s3:GetObject"],
                               "resources": [pulumi.Output.concat(a.model_bucket_arn, "/manifest.json")]})
        if self._node_catalog is not None:  # the one catalog object of the fleet's image, nothing else there
            statements.append({"sid": "NodeCatalog", "actions": ["s3:GetObject"], "resources": [
                self._node_catalog.apply(lambda loc: f"arn:aws:s3:::{loc[0]}/{loc[1]}")]})
        if a.output_links is not None:  # issue 43: the signing key's private half, nothing else
            statements.extend(a.output_links.statements(a.stack.region, self._account))
        return statements

    # --- functions -------------------------------------------------------------------------------
    def _create_function(self, suffix: str, handler: str, code: pulumi.Archive,
                         statements: list[dict[str, pulumi.Input]], memory: int,
                         environment: dict[str, pulumi.Input[str]], kafka: bool = False,
                         timeout: int = LAMBDA_TIMEOUT_S,
                         reserved: int | None = None) -> tuple[aws.lambda_.Function, aws.cloudwatch.LogGroup]:
        name, prefix = f"{self._name}-{suffix}", self._args.stack.resource_prefix()
        fn_name = f"{prefix}-api-{suffix}"
        log_group = aws.cloudwatch.LogGroup(f"{name}-logs", name=f"/aws/lambda/{fn_name}",
                                            retention_in_days=self._args.storage.log_retention_days,
                                            opts=self._opts())
        statements = [*statements, {"sid": "Logs", "actions": ["logs:CreateLogStream", "logs:PutLogEvents"],
                                    "resources": [pulumi.Output.concat(log_group.arn, ":*")]}]
        role = aws.iam.Role(f"{name}-role", assume_role_policy=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                    "Principal": {"Service": "lambda.amazonaws.com"}}]}),
            opts=self._opts())
        # The function waits for every permission its role gets, so its first invocation has them all.
        grants: list[pulumi.Resource] = [aws.iam.RolePolicy(
            f"{name}-policy", role=role.id, name="least-privilege", policy=policy_json(statements), opts=self._opts())]
        extra: dict = {}
        queue = self._args.queue
        if kafka and isinstance(queue, KafkaEndpoint):
            grants.append(aws.iam.RolePolicyAttachment(f"{name}-vpc", role=role.name, policy_arn=(
                "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"), opts=self._opts()))
            layer = aws.lambda_.LayerVersion(
                f"{name}-kafka-layer", layer_name=f"{prefix}-api-kafka",
                code=(pulumi.FileArchive(self._args.kafka_layer_dir) if self._args.kafka_layer_dir
                      else lambda_package.files_archive(lambda_package.KAFKA_LAYER.require())),
                compatible_runtimes=["python3.12"], compatible_architectures=["arm64"], opts=self._opts())
            extra = {"layers": [layer.arn], "vpc_config": {
                "subnet_ids": queue.subnet_ids, "security_group_ids": [queue.client_security_group_id]}}
        fn = aws.lambda_.Function(
            f"{name}-fn", name=fn_name, role=role.arn, runtime="python3.12", architectures=["arm64"],
            handler=handler, code=code, memory_size=memory, timeout=timeout,
            reserved_concurrent_executions=reserved, environment={"variables": environment},
            logging_config={"log_format": "JSON", "log_group": log_group.name, "application_log_level": "INFO",
                            "system_log_level": "WARN"},
            opts=self._opts(depends_on=[log_group, *grants]), **extra)
        return fn, log_group

    def _allow_invoke(self, suffix: str, fn: aws.lambda_.Function, api: aws.apigatewayv2.Api) -> None:
        aws.lambda_.Permission(f"{self._name}-{suffix}-invoke", action="lambda:InvokeFunction", function=fn.name,
                               principal="apigateway.amazonaws.com",
                               source_arn=pulumi.Output.concat(api.execution_arn, "/*"), opts=self._opts())

    def _create_authorizer(self, api: aws.apigatewayv2.Api, code: pulumi.Archive) -> aws.apigatewayv2.Authorizer:
        fn, _ = self._create_function(
            "authorizer", "runtime.api.authorizer.handler", code,
            [{"sid": "ApiKeys", "actions": ["ssm:GetParameter"], "resources": [self._param_arn]}], 256,
            AuthorizerConfig(api_keys_prefix=self.api_keys_prefix).to_env(), timeout=AUTHORIZER_TIMEOUT_S,
            reserved=self._args.api.reserved_authorizer)
        self._allow_invoke("authorizer", fn, api)
        return aws.apigatewayv2.Authorizer(
            f"{self._name}-authorizer", api_id=api.id, authorizer_type="REQUEST", name="api-key",
            authorizer_uri=fn.invoke_arn, authorizer_payload_format_version="2.0", enable_simple_responses=True,
            authorizer_result_ttl_in_seconds=0, opts=self._opts())

    # --- routes and stage ------------------------------------------------------------------------
    def _create_routes(self, api: aws.apigatewayv2.Api, integration: aws.apigatewayv2.Integration,
                       authorizer: aws.apigatewayv2.Authorizer | None) -> None:
        target = pulumi.Output.concat("integrations/", integration.id)
        for key in (*PUBLIC_ROUTES, *AUTH_ROUTES):
            auth: dict = {"authorization_type": "NONE"}
            if key not in PUBLIC_ROUTES:
                auth = ({"authorization_type": "CUSTOM", "authorizer_id": authorizer.id} if authorizer is not None
                        else {"authorization_type": "AWS_IAM"})
            slug = re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-")
            aws.apigatewayv2.Route(f"{self._name}-route-{slug}", api_id=api.id,
                                   route_key=key, target=target, opts=self._opts(), **auth)

    def _create_stage(self, api: aws.apigatewayv2.Api) -> aws.cloudwatch.LogGroup:
        a = self._args
        logs = aws.cloudwatch.LogGroup(f"{self._name}-access-logs",
                                       name=f"/aws/apigateway/{a.stack.resource_prefix()}-api",
                                       retention_in_days=a.storage.log_retention_days, opts=self._opts())
        aws.apigatewayv2.Stage(
            f"{self._name}-stage", api_id=api.id, name="$default", auto_deploy=True,
            default_route_settings={"throttling_rate_limit": a.api.rate_limit,
                                    "throttling_burst_limit": a.api.burst_limit},
            access_log_settings={"destination_arn": logs.arn, "format": ACCESS_LOG_FORMAT}, opts=self._opts())
        return logs
