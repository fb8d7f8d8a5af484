"""A local fake of the EC2 instance metadata service (IMDSv2) for one simulated instance.

Local mode, the worker's tests and the end-to-end drills run one per simulated instance. It speaks
the parts of IMDSv2 the worker agent uses: ``PUT /latest/api/token`` (session token with TTL; every
GET needs the ``X-aws-ec2-metadata-token`` header or gets 401), ``meta-data/instance-id``,
``instance-type``, ``instance-life-cycle`` ("on-demand" or "spot", as EC2 answers for those purchase options),
``placement/region``, ``placement/availability-zone`` (region + "a"),
``spot/instance-action`` (404 until a notice is set),
``events/recommendations/rebalance`` (404 until set), ``autoscaling/target-lifecycle-state`` and
``tags/instance/aws:autoscaling:groupName``.

Control it in-process (``set_spot_interruption``, ``set_rebalance``, ``set_target_lifecycle_state``,
``clear``) or over HTTP from another process: ``POST /_control`` with a JSON object of the same
settings, e.g. ``{"spot_in_seconds": 120, "target_lifecycle_state": "Terminated"}``.

Run standalone: ``python -m fleetdev.local.fake_imds --port 8169 --instance-id i-0123456789abcdef0``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_TOKEN_HEADER = "X-aws-ec2-metadata-token"  # noqa: S105 - a header name
_TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeIMDS:
    """One simulated instance's metadata service on 127.0.0.1 (``url`` once started)."""

    def __init__(self, instance_id: str = "i-0fake00000000000a", region: str = "us-east-1",
                 instance_type: str = "g5.xlarge", group_name: str | None = "genai-workers",
                 port: int = 0, life_cycle: str = "on-demand") -> None:
        self.instance_id = instance_id
        self.region = region
        self.instance_type = instance_type
        self.life_cycle = life_cycle
        self.group_name = group_name
        self._lock = threading.Lock()
        self._tokens: dict[str, float] = {}
        self.spot_action: dict[str, str] | None = None
        self.rebalance: dict[str, str] | None = None
        self.target_lifecycle_state: str | None = "InService"
        self.requests: list[tuple[str, str]] = []  # (method, path) for assertions
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.imds = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- control -------------------------------------------------------------------------------------
    def set_spot_interruption(self, in_seconds: float = 120.0, action: str = "terminate") -> None:
        with self._lock:
            self.spot_action = {"action": action, "time": _iso(time.time() + in_seconds)}

    def set_rebalance(self) -> None:
        with self._lock:
            self.rebalance = {"noticeTime": _iso(time.time())}

    def set_target_lifecycle_state(self, state: str | None) -> None:
        with self._lock:
            self.target_lifecycle_state = state

    def clear(self) -> None:
        with self._lock:
            self.spot_action = None
            self.rebalance = None
            self.target_lifecycle_state = "InService"

    def apply(self, settings: dict[str, Any]) -> None:
        """Apply a control document (the body of ``POST /_control``)."""
        if settings.get("clear"):
            self.clear()
        if "spot_in_seconds" in settings:
            self.set_spot_interruption(float(settings["spot_in_seconds"]), settings.get("spot_action", "terminate"))
        if settings.get("rebalance"):
            self.set_rebalance()
        if "target_lifecycle_state" in settings:
            self.set_target_lifecycle_state(settings["target_lifecycle_state"])

    # -- server --------------------------------------------------------------------------------------
    def start(self) -> FakeIMDS:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-imds", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeIMDS:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _metadata(self, path: str) -> str | None:
        with self._lock:
            values: dict[str, str | None] = {
                "instance-id": self.instance_id,
                "instance-type": self.instance_type,
                "instance-life-cycle": self.life_cycle,
                "placement/availability-zone": f"{self.region}a",
                "placement/region": self.region,
                "spot/instance-action": json.dumps(self.spot_action) if self.spot_action else None,
                "events/recommendations/rebalance": json.dumps(self.rebalance) if self.rebalance else None,
                "autoscaling/target-lifecycle-state": self.target_lifecycle_state,
                "tags/instance/aws:autoscaling:groupName": self.group_name,
            }
        return values.get(path)

    def new_token(self, ttl: int) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = time.time() + ttl
        return token

    def _valid_token(self, token: str | None) -> bool:
        with self._lock:
            expiry = self._tokens.get(token or "")
        return expiry is not None and expiry > time.time()


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: Any) -> None:
        return None

    def _reply(self, status: int, body: str = "", ctype: str = "text/plain") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self) -> None:
        imds = self.server.imds
        imds.requests.append(("PUT", self.path))
        if self.path != "/latest/api/token":
            return self._reply(404)
        try:
            ttl = int(self.headers.get(_TTL_HEADER, ""))
        except ValueError:
            return self._reply(400, "missing or bad token TTL")
        if not 1 <= ttl <= 21600:
            return self._reply(400, "token TTL must be from 1 to 21600")
        self._reply(200, imds.new_token(ttl))

    def do_GET(self) -> None:
        imds = self.server.imds
        imds.requests.append(("GET", self.path))
        if not imds._valid_token(self.headers.get(_TOKEN_HEADER)):
            return self._reply(401)
        prefix = "/latest/meta-data/"
        value = imds._metadata(self.path[len(prefix):]) if self.path.startswith(prefix) else None
        if value is None:
            return self._reply(404)
        self._reply(200, value, "application/json" if value.startswith("{") else "text/plain")

    def do_POST(self) -> None:
        if self.path != "/_control":
            return self._reply(404)
        length = int(self.headers.get("Content-Length", "0") or 0)
        try:
            self.server.imds.apply(json.loads(self.rfile.read(length) or b"{}"))
        except (ValueError, TypeError) as exc:
            return self._reply(400, str(exc))
        self._reply(200, "{}", "application/json")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    imds: FakeIMDS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--instance-id", default="i-0fake00000000000a")
    parser.add_argument("--group-name", default="genai-workers")
    args = parser.parse_args(argv)
    imds = FakeIMDS(instance_id=args.instance_id, group_name=args.group_name, port=args.port).start()
    print(json.dumps({"url": imds.url, "instance_id": imds.instance_id}), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        imds.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
