"""The local-mode orchestrator: the whole platform on one machine, with the real code paths.

What ``LocalPlatform.start()`` brings up, in order (``stop()`` takes it down in reverse)::

    moto server          subprocess  python -m fleetdev.local.moto_server (S3, SQS, DynamoDB, SSM; every
                                     DynamoDB request atomic, as AWS's are); SIGSTOP-able
    stack resources      bootstrap   outputs + models buckets, queue + DLQ (redrive), job table, webhook
                                     secret in SSM, checkpoints in the model store (``models``; with the
                                     diffusers backend, tiny pipelines or diffusers folders: local/models.py)
    Kafka (optional)     in-process  librdkafka mock cluster, held by this process
    CDN stand-in         in-process  serves the outputs bucket over HTTP (fleetdev.local.cdn)
    fake IMDS per worker in-process  so a spot notice can target one worker (fleetdev.local.fake_imds)
    job API              subprocess  python -m fleetdev.local_server (the Lambda handler)
    functions            subprocess  python -m fleetdev.local.functions: DLQ consumer, lease sweeper,
                                     webhook dispatcher and output-orphan sweeper (the stack's Lambdas,
                                     same handler code)
    worker agents        subprocess  python -m runtime.worker run --config <run dir>/worker-N.json

Every child runs in its own process group and is stopped with SIGTERM, then SIGKILL after a grace
period (fleetdev.local.processes); logs and agent configs live in the run directory. The same class
serves ``make local`` (``python -m fleetdev.local``), ``make demo`` (tools/demo.py) and tests/e2e.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from components.worker_prices import published_prices
from fleetdev.local import bootstrap
from fleetdev.local.audit import Ledger
from fleetdev.local.cdn import CdnServer
from fleetdev.local.cdn_signatures import SignedUrlVerifier
from fleetdev.local.fake_imds import FakeIMDS
from fleetdev.local.models import LocalModel, LocalModelError, build_tiny, build_tiny_loras, upload_source
from fleetdev.local.models import check as check_models
from fleetdev.local.processes import ManagedProcess, free_port, stop_all, wait_for
from runtime import instance_contract
from runtime.api.auth import generate_key
from runtime.api.environment import ApiConfig
from runtime.backends import base as backend_names
from runtime.backends.base import lora_tasks, served_tasks, video_capabilities
from runtime.jobs.cdn_signing import new_key_pair
from runtime.model_store import upload
from runtime.queue_names import KAFKA_TOPIC

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
WEBHOOK_SECRET_PARAMETER = "/genai-fleet/local/webhook-secret"  # noqa: S105 - a parameter name
SIGNING_KEY_PARAMETER = "/genai-fleet/local/output-signing-keys/k1/private"  # issue 43: a SecureString, as a stack's
SIGNING_KEY_ID = "KLOCALOUTPUTS1"  # the local key group's one public key id (CloudFront ids look like this)
# Local mode renders with test-pattern, runs the diffusers backend in each agent (on the CPU: tiny pipelines
# built from configs, or diffusers folders you name), or drives an HTTP backend (ComfyUI, A1111) at a URL.
# In process: the CUDA flavour's backends that are not HTTP servers (torch runs them on a CPU too; Neuron's needs
# an Inferentia device).
IN_PROCESS_BACKENDS = tuple(name for name in backend_names.NAMES if name not in instance_contract.HTTP_BACKENDS
                            and name in backend_names.flavor_backends("cuda"))
BACKENDS = (*IN_PROCESS_BACKENDS, *instance_contract.HTTP_BACKENDS)
_LEDGER_LOCK = threading.Lock()
LOCAL_INSTANCE_TYPE = "g5.xlarge"  # what each worker's fake IMDS says it is (its price: policies/prices.json)


@dataclass
class LocalOptions:
    """How to run local mode. Defaults suit ``make local``; drills shorten the timeouts."""

    queue_kind: str = "sqs"  # sqs | kafka
    workers: int = 2
    backend: str = "test-pattern"  # test-pattern | diffusers | comfyui | a1111
    backend_url: str | None = None  # ComfyUI / A1111 base URL (one for every worker, or see backend_urls)
    backend_urls: list[str] = field(default_factory=list)  # one per worker (drills: a fake backend each)
    models: dict[str, str] = field(default_factory=dict)  # model id -> checkpoint file (diffusers: folder) to store
    # diffusers backend without ``models``: model id -> (tiny family, seed) built from configs (models.TINY_MODELS)
    tiny_models: dict[str, tuple[str, int]] | None = None
    # diffusers backend: tiny LoRAs, LoRA id -> (base model id, seed) (models.build_tiny_loras; issue 40)
    tiny_loras: dict[str, tuple[str, int]] | None = None
    diffusers: dict[str, Any] = field(default_factory=dict)  # agent config diffusers block, over device cpu etc.
    max_job_seconds: int = 60  # the agents' job time limit (a real checkpoint on a CPU needs minutes)
    metrics_sink: str = "off"  # the agents' metrics: off | stdout (EMF lines in worker-N.log: agent_metrics)
    backend_model_dirs: list[str] = field(default_factory=list)  # per worker: where the backend loads checkpoints
    test_pattern_delay_seconds: float = 0.3  # stands in for inference time
    visibility_timeout_seconds: int = 30  # per receive; the agent's heartbeat extends it while a job runs
    max_receive_count: int = 3  # counted attempts per job (the record's limit)
    handback_allowance: int = 5  # SQS receives beyond the attempts before redrive to the DLQ
    stale_lease_seconds: float = 20.0  # the sweeper reconciles leases that ran out this long ago
    webhook_timeout_seconds: float = 2.0  # one delivery try (a hanging receiver holds one sender this long)
    receive_wait_seconds: int = 2  # long poll (SQS) / poll (Kafka); also bounds how long an agent takes to see SIGTERM
    retry_delay_seconds: int = 1
    kafka_session_timeout_ms: int = 6000
    lifecycle_poll_seconds: float = 0.5
    drain_margin_seconds: float = 2.0
    api_port: int = 0  # 0: a free port
    cdn_port: int = 0
    moto_port: int = 0
    prefix: str = "genai-local"
    region: str = "us-east-1"
    run_dir: Path | None = None  # default: a fresh temporary directory, removed on stop unless keep_run_dir
    keep_run_dir: bool = False
    versioned_outputs: bool = True  # S3 versioning on the outputs bucket: every write is countable (drills)
    log_level: str = "INFO"
    stop_grace_seconds: float = 10.0
    worker_overrides: dict[str, Any] = field(default_factory=dict)  # extra agent config keys (top level)
    api_env: dict[str, str] = field(default_factory=dict)  # extra GENAI_* variables for the API
    # A ComfyUI node catalog JSON (runtime/node_catalog.py): stored where make ami puts it, named to the API by
    # GENAI_NODE_CATALOG, so comfyui-workflow jobs are checked at submit as on a stack (issue 41)
    node_catalog: str | None = None
    worker_clock_offsets: dict[int, float] = field(default_factory=dict)  # worker index -> wall clock offset (s)
    # issue 43: outputs served as a stack serves them: signed URLs the CDN stand-in checks (public: plain links)
    output_access: str = "signed"
    output_url_ttl_seconds: int = 3600


@dataclass
class Worker:
    index: int
    instance_id: str
    imds: FakeIMDS
    config_path: Path
    autoscaling_log: Path
    process: ManagedProcess

    @property
    def name(self) -> str:
        return f"worker-{self.index}"


class LocalPlatform:
    """``with LocalPlatform(LocalOptions()) as p: p.api_url, p.api_key, p.ledger.submit(...)``."""

    def __init__(self, options: LocalOptions | None = None) -> None:
        self.options = options or LocalOptions()
        if self.options.queue_kind not in ("sqs", "kafka"):
            raise ValueError(f"queue kind {self.options.queue_kind!r}: must be sqs or kafka")
        if self.options.backend not in BACKENDS:
            raise ValueError(f"backend {self.options.backend!r}: must be one of {', '.join(BACKENDS)}")
        if self.options.backend not in IN_PROCESS_BACKENDS and not (self.options.backend_url or
                                                                   self.options.backend_urls):
            raise ValueError(f"backend {self.options.backend} needs a backend URL")
        # Every named model is checked now (a folder that is not a diffusers layout fails here, before anything
        # starts); the diffusers backend's tiny defaults are built at start, into the run directory.
        self.models: dict[str, LocalModel] = check_models(self.options.models, self.options.backend)
        if self.options.diffusers:
            from runtime.backends.diffusers_options import DiffusersOptions, OptionsError

            try:
                DiffusersOptions.from_mapping(self._diffusers_block())
            except OptionsError as exc:
                raise LocalModelError(str(exc)) from exc
        self._own_run_dir = self.options.run_dir is None
        self.run_dir = Path(self.options.run_dir or tempfile.mkdtemp(prefix="genai-local-"))
        self.moto: ManagedProcess | None = None
        self.moto_url = ""
        self.api: ManagedProcess | None = None
        self.functions: ManagedProcess | None = None
        self.api_url = ""
        self.api_key = ""
        self.cdn: CdnServer | None = None
        self.resources: bootstrap.LocalResources | None = None
        self.kafka_bootstrap: str | None = None
        self.node_catalog_uri: str | None = None  # s3:// URI of options.node_catalog once published
        self._kafka_holder: Any = None
        self.workers: list[Worker] = []
        self._env = self._child_env()
        self._stopped = False

    # -- lifecycle -------------------------------------------------------------------------------------
    def __enter__(self) -> LocalPlatform:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> LocalPlatform:
        t0 = time.monotonic()
        self.start_aws()
        if self.options.queue_kind == "kafka":
            self._start_kafka()
        self.cdn = self._start_cdn()
        self._start_api()
        self._start_functions()
        for i in range(self.options.workers):
            self.workers.append(self._start_worker(i))
        self._wait_workers_ready()
        log.info("local mode up in %.1fs (run dir %s)", time.monotonic() - t0, self.run_dir)
        return self

    def stop(self) -> None:
        """API first (no new jobs), then the agents (they hand back running jobs), then the rest. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self.moto is not None:
            self.thaw_aws()  # a drill that failed mid-freeze must not leave the others hanging on AWS calls
        if hasattr(self, "_ledger"):
            self._ledger.close()
        if self.api is not None:
            self.api.stop(grace=self.options.stop_grace_seconds)
        stop_all([w.process for w in self.workers], grace=self.options.stop_grace_seconds)
        if self.functions is not None:
            self.functions.stop(grace=5)
        for w in self.workers:
            w.imds.stop()
        if self.cdn is not None:
            self.cdn.stop()
            self.cdn = None
        if self.moto is not None:
            self.moto.stop(grace=5)
        if self._kafka_holder is not None:
            self._kafka_holder.flush(1)
            self._kafka_holder = None
        if self._own_run_dir and not self.options.keep_run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def start_aws(self) -> LocalPlatform:
        """Only the moto server and the stack's resources (tests that drive the API in-process use it)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._start_moto()
        self._create_resources()
        return self

    # -- pieces ----------------------------------------------------------------------------------------
    def _child_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GENAI_"))}
        env.update({"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",  # moto's dummy credentials
                    "AWS_DEFAULT_REGION": self.options.region, "AWS_REGION": self.options.region,
                    "AWS_EC2_METADATA_DISABLED": "true", "PYTHONUNBUFFERED": "1",
                    "PYTHONPATH": os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
                    "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
                    "GENAI_LOG_LEVEL": self.options.log_level})
        return env

    def _start_moto(self) -> None:
        port = self.options.moto_port or free_port()
        self.moto_url = f"http://127.0.0.1:{port}"
        self.moto = ManagedProcess("moto", [sys.executable, "-m", "fleetdev.local.moto_server", "-H", "127.0.0.1",
                                            "-p", str(port)], self.run_dir / "moto.log", self._env, cwd=ROOT).start()
        wait_for(lambda: httpx.get(f"{self.moto_url}/moto-api/", timeout=2).status_code == 200, 30, "moto server",
                 self.moto.alive)

    def aws(self, service: str) -> Any:
        """A boto3 client on the local endpoint (for the orchestrator, the CDN and test assertions)."""
        return bootstrap.client(service, self.moto_url, self.options.region)

    def _create_resources(self) -> None:
        o = self.options
        self.resources = bootstrap.create(self.moto_url, prefix=o.prefix, max_receive_count=o.max_receive_count,
                                          visibility_timeout=o.visibility_timeout_seconds, region=o.region,
                                          handback_allowance=o.handback_allowance)
        if o.versioned_outputs:
            self.aws("s3").put_bucket_versioning(Bucket=self.resources.outputs_bucket,
                                                 VersioningConfiguration={"Status": "Enabled"})
        if o.backend == "diffusers" and not self.models:
            self.models = build_tiny(self.run_dir / "tiny-models", o.tiny_models)
            if o.tiny_loras:
                self.models.update(build_tiny_loras(self.run_dir / "tiny-loras", o.tiny_loras, self.models))
        for model in self.models.values():  # the real upload path: multipart, sha256, manifest entry
            source = upload_source(model, self.run_dir / "model-uploads")
            upload.upload(self.aws("s3"), self.resources.models_bucket,
                          upload.plan(model.model_id, model.kind, [source]), source=f"local:{model.path}",
                          family=model.family)
        if o.node_catalog:
            self._publish_node_catalog(Path(o.node_catalog))
        self.webhook_secret = os.urandom(24).hex()
        self.aws("ssm").put_parameter(Name=WEBHOOK_SECRET_PARAMETER, Value=self.webhook_secret, Type="SecureString")

    def _publish_node_catalog(self, path: Path) -> None:
        """The catalog at the key make ami gives it (local account and image ids); the bucket is plain here: moto
        would enforce the real bucket's TLS-only policy against its HTTP endpoint."""
        from runtime.node_catalog import NodeCatalog, catalog_location

        text = path.read_text()
        NodeCatalog.from_json(text)  # a bad file fails the start, naming it
        bucket, key = catalog_location("000000000000", self.options.region, "cuda", "ami-local")
        self.aws("s3").create_bucket(Bucket=bucket)
        self.aws("s3").put_object(Bucket=bucket, Key=key, Body=text.encode())
        self.node_catalog_uri = f"s3://{bucket}/{key}"

    def _start_kafka(self) -> None:
        from confluent_kafka import Producer

        self._kafka_holder = Producer({"test.mock.num.brokers": 1})  # the mock cluster lives as long as this
        brokers = self._kafka_holder.list_topics(timeout=10).brokers
        self.kafka_bootstrap = ",".join(f"{b.host}:{b.port}" for b in brokers.values())
        # A metadata request for the topic makes the mock cluster auto-create it (4 partitions). The admin
        # API's CreateTopics does not complete against the mock cluster (librdkafka 2.16: it never answers).
        topic = self._kafka_holder.list_topics(topic=KAFKA_TOPIC, timeout=10).topics.get(KAFKA_TOPIC)
        if topic is None or topic.error is not None or not topic.partitions:
            raise RuntimeError(f"Kafka mock cluster did not create topic {KAFKA_TOPIC}: {topic and topic.error}")

    def _start_api(self) -> None:
        o, res = self.options, self.resources
        port = o.api_port or free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        self.api_key, _ = generate_key("local")
        kafka = o.queue_kind == "kafka"
        api = ApiConfig(
            job_table=res.job_table, queue_kind=o.queue_kind, queue_url=None if kafka else res.queue_url,
            kafka_bootstrap=(self.kafka_bootstrap or "") if kafka else None, kafka_topic=KAFKA_TOPIC,
            kafka_iam=False, auth_mode="api-key", api_keys=(self.api_key,), endpoint_url=self.moto_url,
            allow_loopback=True, average_job_seconds=max(0.1, o.test_pattern_delay_seconds),
            model_bucket=res.models_bucket if self.models else None,  # GET /v1/models lists the store's manifest
            tasks=served_tasks(o.backend),  # as a stack does: other tasks are refused with 422
            lora_tasks=lora_tasks(o.backend),  # and LoRAs where the backend cannot apply them
            video_formats=video_capabilities(o.backend)[0], video_model_kinds=video_capabilities(o.backend)[1],
            node_catalog=self.node_catalog_uri,
            event_table=res.event_table,  # GET /v1/jobs/{id}/events (issue 38)
            # as a stack does: the workers' instance type priced from policies/prices.json (budgets, quotes)
            hourly_usd=published_prices(o.region, [LOCAL_INSTANCE_TYPE])["on_demand_hourly"][LOCAL_INSTANCE_TYPE],
            **self._output_links_config())
        env = {**self._env, **api.to_env()}
        env.update(o.api_env)
        self.api = ManagedProcess("api", [sys.executable, "-m", "fleetdev.local_server", "--host", "127.0.0.1",
                                          "--port", str(port)], self.run_dir / "api.log", env, cwd=ROOT).start()
        wait_for(lambda: httpx.get(f"{self.api_url}/v1/health", timeout=2).status_code == 200, 30, "job API",
                 self.api.alive)

    def _start_functions(self) -> None:
        o, res = self.options, self.resources
        path = self.run_dir / "functions.json"
        path.write_text(json.dumps({
            "endpoint": self.moto_url, "region": o.region, "job_table": res.job_table, "dlq_url": res.dlq_url,
            "webhook_queue_url": res.webhook_queue_url, "webhook_secret": self.webhook_secret,
            "api_url": self.api_url, "max_attempts": o.max_receive_count,
            "stale_lease_seconds": o.stale_lease_seconds, "sweep_every_seconds": 1.0,
            "log_level": o.log_level, "webhook_timeout_s": o.webhook_timeout_seconds,
            "outputs_bucket": res.outputs_bucket, "outputs_prefix": "outputs",
            **self._output_links_config(),
            "event_table": res.event_table}, indent=2))  # progress webhooks (issue 38)
        self.functions = ManagedProcess("functions", [sys.executable, "-m", "fleetdev.local.functions", "--config",
                                                      str(path)], self.run_dir / "functions.log", self._env,
                                        cwd=ROOT).start()
        wait_for(lambda: "functions ready" in (self.run_dir / "functions.log").read_text(errors="replace"), 30,
                 "functions", self.functions.alive)

    def _start_cdn(self) -> CdnServer:
        """The CDN stand-in (issue 43): with signed outputs, a new key pair, its private half a SecureString in the
        local account as on a stack, its public half the stand-in's key group."""
        verifier = None
        if self.options.output_access == "signed":
            private, public = new_key_pair()
            self.aws("ssm").put_parameter(Name=SIGNING_KEY_PARAMETER, Value=private, Type="SecureString",
                                          Overwrite=True)
            verifier = SignedUrlVerifier({SIGNING_KEY_ID: public})
        return CdnServer(self.aws("s3"), self.resources.outputs_bucket, port=self.options.cdn_port,
                         verifier=verifier).start()

    def _output_links_config(self) -> dict[str, Any]:
        """How the API and the webhook sender make output links (issue 43): the CDN stand-in's URL, signed with
        the local key pair unless outputs are public."""
        signed = self.options.output_access == "signed"
        return {"outputs_base_url": self.cdn.base_url, "output_url_ttl_seconds": self.options.output_url_ttl_seconds,
                "output_signing_key_id": SIGNING_KEY_ID if signed else None,
                "output_signing_key_parameter": SIGNING_KEY_PARAMETER if signed else None}

    def agent_config(self, index: int, imds_url: str, instance_id: str) -> dict[str, Any]:
        """The agent config document of worker ``index`` (runtime.agent_config's schema)."""
        o, res = self.options, self.resources
        if o.queue_kind == "kafka":
            queue = {"kind": "kafka", "bootstrap_servers": self.kafka_bootstrap, "topic": KAFKA_TOPIC,
                     "kafka_iam_auth": False, "kafka_session_timeout_ms": o.kafka_session_timeout_ms}
        else:
            queue = {"kind": "sqs", "url": res.queue_url}
        queue.update({"max_receive_count": o.max_receive_count, "wait_time_seconds": o.receive_wait_seconds,
                      "visibility_timeout_seconds": o.visibility_timeout_seconds})
        backend_url = o.backend_urls[index] if index < len(o.backend_urls) else o.backend_url
        doc: dict[str, Any] = {
            "stack": "local", "region": o.region, "queue": queue, "job_table": res.job_table,
            "event_table": res.event_table,
            "outputs": {"bucket": res.outputs_bucket, "cdn_base_url": self.cdn.base_url, "prefix": "outputs"},
            "backend": o.backend, "backend_url": backend_url if o.backend not in IN_PROCESS_BACKENDS else None,
            "model_cache": {"cache_dir": str(self.run_dir / f"worker-{index}-models"),
                            "max_cache_bytes": max(2 * 1024**3, 2 * self._model_bytes()),
                            "store_bucket": res.models_bucket if self.models else None},
            "backend_model_dir": o.backend_model_dirs[index] if index < len(o.backend_model_dirs) else None,
            "lifecycle": {"imds_url": imds_url, "poll_seconds": o.lifecycle_poll_seconds,
                          "drain_margin_seconds": o.drain_margin_seconds,
                          "auto_scaling_group": f"{o.prefix}-workers",
                          "launching_hook": f"{o.prefix}-launching", "terminating_hook": f"{o.prefix}-terminating"},
            "max_job_seconds": o.max_job_seconds, "metrics_sink": o.metrics_sink, "allow_loopback_urls": True,
            "endpoints": {"s3": self.moto_url, "sqs": self.moto_url, "dynamodb": self.moto_url,
                          "ssm": self.moto_url,
                          # moto answers CompleteLifecycleAction with a 500; the agent's recorder stands in
                          "autoscaling": f"record:{self.run_dir / f'worker-{index}-autoscaling.jsonl'}"},
            "test_pattern_delay_seconds": o.test_pattern_delay_seconds,
            "retry_delay_seconds": o.retry_delay_seconds, "backend_ready_timeout_seconds": 30,
            "cancel_poll_seconds": 1.0,
            # the stack's published prices for the fake IMDS's instance type (components.worker_prices)
            "pricing": published_prices(o.region, [LOCAL_INSTANCE_TYPE]),
            "diffusers": self._diffusers_block() if o.backend == "diffusers" else None,
        }
        doc.update(o.worker_overrides)
        return {k: v for k, v in doc.items() if v is not None}

    def _diffusers_block(self) -> dict[str, Any]:
        """The agents' diffusers options: on the CPU, eager (an Inductor CPU compile costs more than it saves)."""
        return {"device": "cpu", "compile": "off", **self.options.diffusers}

    def _model_bytes(self) -> int:
        return sum(f.stat().st_size for m in self.models.values()
                   for f in ([m.path] if m.path.is_file() else m.path.rglob("*")) if f.is_file())

    def agent_metrics(self, index: int) -> list[dict[str, Any]]:
        """The EMF records worker ``index`` wrote (``metrics_sink="stdout"``), restarts' logs included."""
        records = []
        for log_path in sorted(self.run_dir.glob(f"worker-{index}.*log")):
            for line in log_path.read_text(errors="replace").splitlines():
                if line.startswith("{") and '"_aws"' in line:  # EMF: the record's metadata under _aws
                    try:
                        records.append(json.loads(line))
                    except ValueError:
                        continue  # a line cut short by a kill
        return records

    def add_worker(self, timeout: float = 30.0) -> Worker:
        """Start one more agent (its own instance id and fake IMDS) and wait until it is ready (drills)."""
        worker = self._start_worker(len(self.workers))
        self.workers.append(worker)
        self._wait_workers_ready(timeout, [worker])
        return worker

    def _start_worker(self, index: int) -> Worker:
        instance_id = f"i-0local{index:010d}"
        imds = FakeIMDS(instance_id=instance_id, region=self.options.region, instance_type=LOCAL_INSTANCE_TYPE,
                        group_name=f"{self.options.prefix}-workers").start()
        config_path = self.run_dir / f"worker-{index}.json"
        config_path.write_text(json.dumps(self.agent_config(index, imds.url, instance_id), indent=2) + "\n")
        process = ManagedProcess(f"worker-{index}", self._worker_argv(index, config_path),
                                 self.run_dir / f"worker-{index}.log", self.worker_env(), cwd=ROOT).start()
        return Worker(index, instance_id, imds, config_path,
                      self.run_dir / f"worker-{index}-autoscaling.jsonl", process)

    def worker_env(self) -> dict[str, str]:
        """The agents' environment. With the diffusers backend, each agent's torch gets its share of the cores
        left after one for the rest of the platform (OMP_NUM_THREADS, unless set): torch starts a thread per core
        in every process, and its threads spin while they wait, so on a busy machine more threads are slower.
        On the 2-core machine this was written on, two agents with two threads each beside a CPU burner took
        20 s for a 64x64 job; bench/bench_local_diffusers.py measured one thread against two, README)."""
        if self.options.backend != "diffusers" or "OMP_NUM_THREADS" in self._env:
            return self._env
        share = max(1, ((os.cpu_count() or 1) - 1) // max(1, self.options.workers))
        return {**self._env, "OMP_NUM_THREADS": str(share)}

    def _worker_argv(self, index: int, config_path: Path) -> list[str]:
        """The agent's command line; a worker with a clock offset runs under fleetdev.local.skewed_clock."""
        agent = ["runtime.worker", "run", "--config", str(config_path)]
        offset = self.options.worker_clock_offsets.get(index)
        if offset:
            return [sys.executable, "-m", "fleetdev.local.skewed_clock", str(offset), *agent]
        return [sys.executable, "-m", *agent]

    def restart_worker(self, index: int) -> Worker:
        """Start worker ``index`` again on its config and fake IMDS, as systemd's Restart= would."""
        old = self.workers[index]
        old.process.stop(grace=1)
        old.imds.clear()
        restarts = getattr(self, "_restarts", {})
        restarts[index] = restarts.get(index, 0) + 1
        self._restarts = restarts
        process = ManagedProcess(f"worker-{index}", self._worker_argv(index, old.config_path),
                                 self.run_dir / f"worker-{index}.restart-{restarts[index]}.log",
                                 self.worker_env(), cwd=ROOT).start()
        self.workers[index] = Worker(index, old.instance_id, old.imds, old.config_path, old.autoscaling_log, process)
        return self.workers[index]

    def _wait_workers_ready(self, timeout: float = 30.0, workers: list[Worker] | None = None) -> None:
        """Each agent logs ``backend ready`` once booted; wait for that (or fail with its log tail)."""
        for w in workers if workers is not None else self.workers:
            try:
                wait_for(lambda w=w: "backend ready" in w.process.log_path.read_text(errors="replace"), timeout,
                         w.name, w.process.alive)
            except (RuntimeError, TimeoutError) as exc:
                raise RuntimeError(f"{exc}\n--- {w.process.log_path} ---\n{w.process.tail()}") from exc

    # -- drills ----------------------------------------------------------------------------------------
    def freeze_aws(self) -> None:
        """SIGSTOP the moto server: every AWS call from the API and the agents hangs until ``thaw_aws``."""
        assert self.moto is not None
        self.moto.signal(signal.SIGSTOP)

    def thaw_aws(self) -> None:
        assert self.moto is not None
        self.moto.signal(signal.SIGCONT)

    # -- clients ---------------------------------------------------------------------------------------
    @property
    def ledger(self) -> Ledger:
        """Submit jobs, poll them, and count what happened to each (fleetdev.local.audit)."""
        with _LEDGER_LOCK:  # drills submit from threads: one ledger, or the others' submissions go uncounted
            if not hasattr(self, "_ledger"):
                self._ledger = Ledger(self.api_url, self.api_key, self.aws("s3"), self.aws("dynamodb"),
                                      self.aws("sqs"), self.resources,
                                      streams=self.aws("dynamodbstreams"))
        return self._ledger
