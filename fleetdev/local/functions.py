"""Local mode's stand-in for the stack's functions, as one process beside the workers.

What runs on AWS as Lambdas (components/job_events.py) runs here with the same handler code, fed the
way the event sources feed them: the jobs DLQ consumer (runtime.functions.reconciler), the lease sweeper on a
timer, the webhook dispatcher (fleetdev.local.webhook_dispatcher) and the output-orphan sweeper
(runtime.functions.output_orphans, on its own reader of the table's stream, as its own event source mapping is).
Being its own process, it keeps going when a worker is killed or frozen, like the real functions.

    python -m fleetdev.local.functions --config <run dir>/functions.json
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
from pathlib import Path
from typing import Any

from fleetdev.local.bootstrap import client
from fleetdev.local.webhook_dispatcher import LocalWebhookDispatcher, StreamPoller
from runtime.functions.output_orphans import OrphanSweeper
from runtime.functions.reconciler import reconcile_dead_letter, sweep
from runtime.functions.webhook_dispatch import ProgressStreamHandler
from runtime.functions.webhooks import WebhookSender
from runtime.jobs.cdn_signing import output_links as cdn_output_links
from runtime.jobs.output_links import DEFAULT_TTL_SECONDS, OutputLinks
from runtime.jobs.store import JobStore
from runtime.worker.logs import configure

log = logging.getLogger("fleetdev.local.functions")


class DeadLetterPoller:
    """The SQS event source of the DLQ consumer: receive, reconcile, delete (kept on failure)."""

    def __init__(self, sqs: Any, dlq_url: str, store: JobStore) -> None:
        self.sqs, self.dlq_url, self.store = sqs, dlq_url, store
        self.reconciled: list[str] = []

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                resp = self.sqs.receive_message(QueueUrl=self.dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
                for m in resp.get("Messages", []):
                    outcome = reconcile_dead_letter(self.store, m["Body"])
                    self.reconciled.append(outcome)
                    self.sqs.delete_message(QueueUrl=self.dlq_url, ReceiptHandle=m["ReceiptHandle"])
            except Exception as exc:  # noqa: BLE001 - like the event source mapping: retry later
                log.warning("DLQ poll failed (retrying): %s", exc)
                stop.wait(1.0)


def run_sweeper(store: JobStore, max_attempts: int, stale_after_s: float, every_s: float,
                stop: threading.Event) -> None:
    while not stop.wait(every_s):
        try:
            report = sweep(store, max_attempts, stale_after_s)
            if report.expired:
                log.info("sweeper: %s", report)
        except Exception as exc:  # noqa: BLE001 - the next run retries
            log.warning("sweep failed (retrying): %s", exc)


def _start_progress_webhooks(cfg: dict[str, Any], ddb: Any, sqs: Any, store: JobStore) -> StreamPoller | None:
    """The opt-in progress webhook (issue 38): the event table's stream -> the deliveries queue, as the stack's
    ``webhook-progress`` function. The mapping's filter (marked items only) is applied by the handler here."""
    if not cfg.get("event_table"):
        return None
    handler = ProgressStreamHandler(sqs, cfg["webhook_queue_url"], store, cfg.get("api_url", ""))
    return StreamPoller(ddb, client("dynamodbstreams", cfg["endpoint"], cfg.get("region", "us-east-1")),
                        cfg["event_table"], handler, poll_s=float(cfg.get("progress_poll_seconds", 0.5))).start()


def output_links(cfg: dict[str, Any], ssm: Any) -> OutputLinks:
    """The webhook sender's output links (issue 43), as the platform configured them (signed: its key from SSM)."""
    return cdn_output_links(cfg.get("outputs_base_url", ""), cfg.get("output_signing_key_id"),
                            cfg.get("output_signing_key_parameter"), lambda: ssm,
                            int(cfg.get("output_url_ttl_seconds") or DEFAULT_TTL_SECONDS))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True)
    cfg = json.loads(Path(parser.parse_args(argv).config).read_text())
    configure(cfg.get("log_level", "INFO"), component="functions")
    endpoint, region = cfg["endpoint"], cfg.get("region", "us-east-1")
    ddb, sqs = client("dynamodb", endpoint, region), client("sqs", endpoint, region)
    store = JobStore(cfg["job_table"], ddb)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    sender = WebhookSender(cfg["webhook_secret"], allow_loopback=True, max_attempts=1,
                           timeout_s=float(cfg.get("webhook_timeout_s", 5.0)))
    dispatcher = LocalWebhookDispatcher(dynamodb=ddb, streams=client("dynamodbstreams", endpoint, region), sqs=sqs,
                                        table=cfg["job_table"], queue_url=cfg["webhook_queue_url"], sender=sender,
                                        links=output_links(cfg, client("ssm", endpoint, region)),
                                        base_url=cfg.get("api_url", ""), concurrency=int(cfg.get("senders", 16)))
    dispatcher.start()
    orphans = None
    if cfg.get("outputs_bucket"):
        sweeper = OrphanSweeper(client("s3", endpoint, region), cfg["outputs_bucket"],
                                cfg.get("outputs_prefix", "outputs"))
        # Once a second, not every 0.1 s as the webhook stream: the sweeper is on no client's path, and each poll
        # is three or four calls to the local AWS, which shares the agents' cores (make bench: moto's CPU)
        orphans = StreamPoller(ddb, client("dynamodbstreams", endpoint, region), cfg["job_table"], sweeper,
                               poll_s=float(cfg.get("orphan_poll_seconds", 1.0))).start()
    progress_hooks = _start_progress_webhooks(cfg, ddb, sqs, store)
    threads = [threading.Thread(target=DeadLetterPoller(sqs, cfg["dlq_url"], store).run, args=(stop,), daemon=True),
               threading.Thread(target=run_sweeper, args=(store, int(cfg["max_attempts"]),
                                                          float(cfg["stale_lease_seconds"]),
                                                          float(cfg.get("sweep_every_seconds", 2.0)), stop),
                                daemon=True)]
    for t in threads:
        t.start()
    log.info("functions ready")
    stop.wait()
    dispatcher.stop()
    if orphans is not None:
        orphans.stop()
    if progress_hooks is not None:
        progress_hooks.stop()
    for t in threads:
        t.join(timeout=5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
