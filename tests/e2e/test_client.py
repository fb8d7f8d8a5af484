"""The Python client and the ``genai-fleet`` command against local mode's API (issue 39).

Everything on the other side is the real code: the job API (fleetdev.local_server), the agents, moto,
the CDN stand-in. Nothing of the client's own HTTP is mocked; where a test needs the network to misbehave
it puts a real loopback server in the way (a proxy that drops connections, a CDN that answers 403).
"""

from __future__ import annotations

import asyncio
import io
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from PIL import Image

from fleetdev.local.platform import LocalOptions, LocalPlatform
from fleetdev.local.processes import free_port
from genai_fleet_client import (
    AsyncClient,
    AuthenticationError,
    Client,
    JobFailedError,
    NotFoundError,
    RequestRejectedError,
)
from genai_fleet_client.types import Job, Output

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
MODEL = "sdxl-base-1.0"
BAD_IMAGE = "data:image/png;base64,AAAA"  # valid base64, not an image: the worker fails the job for good


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    with LocalPlatform(LocalOptions(run_dir=tmp_path_factory.mktemp("client"), workers=2,
                                    test_pattern_delay_seconds=1.0, stop_grace_seconds=8)) as started:
        yield started


def cli(platform: LocalPlatform | None, *args: str, key: str | None = None, url: str | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENAI_FLEET_")}
    if platform is not None:
        env.update({"GENAI_FLEET_API_KEY": key or platform.api_key, "GENAI_FLEET_API_URL": url or platform.api_url})
    return subprocess.run([sys.executable, "-m", "genai_fleet_client", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def _png_size(path: Path) -> tuple[int, int]:
    image = Image.open(io.BytesIO(path.read_bytes()))
    assert image.format == "PNG"
    return image.size


def test_command_draws_a_progress_bar_and_writes_the_output(platform, tmp_path):
    done = cli(platform, "run", "--model", MODEL, "--prompt", "a lighthouse at dawn", "--steps", "30",
               "--width", "256", "--height", "192", "-o", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    written = [Path(line) for line in done.stdout.split()]
    assert len(written) == 1 and written[0].parent == tmp_path / "out" and _png_size(written[0]) == (256, 192)
    assert "running (attempt 1)" in done.stderr and "3/3 phases" in done.stderr
    for secret in (platform.api_key, platform.api_url):
        assert secret not in done.stdout + done.stderr


def test_python_client_runs_downloads_and_lists(platform, tmp_path):
    with Client(platform.api_key, platform.api_url) as client:
        seen: list[tuple[str, int]] = []
        job = client.run(MODEL, {"prompt": "sync", "steps": 30, "width": 128, "height": 128},
                         on_update=lambda j: seen.append((j.status, j.attempts)))
        assert job.status == "succeeded" and job.outputs[0].content_type == "image/png"
        assert seen[-1] == ("succeeded", 1) and ("running", 1) in seen
        quick = client.run(MODEL, {"prompt": "sync wait", "width": 64, "height": 64})  # Prefer: wait
        paths = client.download(job, tmp_path)
        assert paths == [tmp_path / f"{job.id}-0.png"] and _png_size(paths[0]) == (128, 128)
        page = client.list(limit=1, status="succeeded")
        assert [j.id for j in page.jobs] == [quick.id] and page.next_cursor
        listed = [j.id for j in client.iter_jobs(status=["succeeded"], page_size=1)]
        assert listed.index(quick.id) < listed.index(job.id)
        again = client.submit(MODEL, {"prompt": "once"}, idempotency_key="client-test-once")
        assert client.submit(MODEL, {"prompt": "once"}, idempotency_key="client-test-once").id == again.id

    async def in_asyncio() -> tuple[Job, list[Path], Job]:
        async with AsyncClient(platform.api_key, platform.api_url) as client:
            done = await client.run(MODEL, {"prompt": "async", "width": 96, "height": 64})
            files = await client.download(done, tmp_path / "async")
            newest = (await client.list(limit=1)).jobs[0]
            return done, files, newest

    done, files, newest = asyncio.run(in_asyncio())
    assert done.status == "succeeded" and _png_size(files[0]) == (96, 64) and newest.id == done.id


def test_api_errors_are_exceptions_carrying_the_problem_document(platform):
    with Client("gf_wrongwrongwr_" + "x" * 43 + "_AAAAAAAA", platform.api_url) as wrong, \
            pytest.raises(AuthenticationError) as auth:
        wrong.get("j_01M995CC5Z24ZTTWVA2Z3FXWTJ")
    assert auth.value.status == 403 and auth.value.problem["status"] == 403
    with Client(platform.api_key, platform.api_url) as client:
        with pytest.raises(RequestRejectedError) as bad:
            client.submit(MODEL, {"prompt": "x", "width": 513})
        with pytest.raises(NotFoundError):
            client.get("j_01M995CC5Z24ZTTWVA2Z3FXWTJ")
        with pytest.raises(JobFailedError) as failed:
            client.run(MODEL, {"prompt": "x", "image": BAD_IMAGE}, task="img2img")
    assert bad.value.status == 422 and bad.value.type == "validation-failed"
    assert bad.value.errors[0]["field"] == "inputs.width" and "inputs.width" in str(bad.value)
    assert failed.value.job.status == "failed" and "not an image" in str(failed.value)


@pytest.mark.parametrize(("args", "code", "says"), [
    (("run", "--prompt", "x"), 2, "--model"),                                              # usage
    (("run", "--model", MODEL, "--prompt", "x", "--width", "513"), 3, "inputs.width"),       # refused
    (("run", "--model", MODEL, "--task", "img2img", "--prompt", "x", "--input", f"image={BAD_IMAGE}"), 4,
     "not an image"),                                                                        # failed
])
def test_command_exit_codes_name_the_class_and_say_the_apis_text(platform, tmp_path, args, code, says):
    done = cli(platform, *args, "-o", str(tmp_path))
    assert done.returncode == code, done.stderr
    assert says in done.stderr and len(done.stderr.strip().splitlines()[-1]) < 400


def test_command_never_prints_the_key_or_the_url(platform, tmp_path):
    wrong_key = "gf_wrongwrongwr_" + "y" * 43 + "_AAAAAAAA"
    refused = cli(platform, "run", "--model", MODEL, "--prompt", "x", key=wrong_key)
    assert refused.returncode == 3 and "403" in refused.stderr and wrong_key not in refused.stderr
    closed = f"http://127.0.0.1:{free_port()}"
    unreachable = cli(platform, "list", "--network-retry", "1", url=closed)
    assert unreachable.returncode == 6, unreachable.stderr
    assert "could not reach the API" in unreachable.stderr and closed not in unreachable.stderr
    no_url = cli(None, "list")
    assert no_url.returncode == 2 and "GENAI_FLEET_API_URL" in no_url.stderr


def test_command_lists_and_cancels(platform):
    with Client(platform.api_key, platform.api_url) as client:
        newest = client.run(MODEL, {"prompt": "to list", "width": 64, "height": 64})
    listed = cli(platform, "list", "--limit", "2", "--status", "succeeded")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].startswith(f"{newest.id}  succeeded")
    canceled = cli(platform, "cancel", newest.id)  # a finished job comes back unchanged
    assert canceled.returncode == 0 and canceled.stdout.strip() == f"{newest.id}: succeeded"
    unknown = cli(platform, "cancel", "j_01M995CC5Z24ZTTWVA2Z3FXWTJ")
    assert unknown.returncode == 3 and "404" in unknown.stderr


class _StaleCdn(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:
        type(self).hits.append(self.path)
        self.send_error(403)

    def log_message(self, *args: object) -> None:
        return None


def test_download_refetches_the_job_when_the_cdn_answers_403(platform, tmp_path):
    handler = type("Stale", (_StaleCdn,), {"hits": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with Client(platform.api_key, platform.api_url) as client:
            job = client.run(MODEL, {"prompt": "stale", "width": 64, "height": 64})
            stale_url = f"http://127.0.0.1:{server.server_address[1]}/outputs/{job.id}/1/image-0.png?expired"
            stale = Job(id=job.id, status=job.status, outputs=[Output(stale_url, "image/png")])
            paths = client.download(stale, tmp_path)
        assert handler.hits == ["/outputs/" + job.id + "/1/image-0.png?expired"]
        assert paths[0].read_bytes() == httpx.get(job.outputs[0].url).content
        assert not list(tmp_path.glob("*.part"))
    finally:
        server.shutdown()
        server.server_close()


class _DroppingProxy:
    """A loopback TCP proxy to the API that, while ``down``, drops every connection, open ones included."""

    def __init__(self, target_port: int):
        self.target = target_port
        self.down = False
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def set_down(self, down: bool) -> None:
        self.down = down
        if down:
            with self._lock:
                for sock in self._open:
                    self._close(sock)
                self._open.clear()

    @staticmethod
    def _close(sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.down:
                self._close(client)
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self._lock:
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _DroppingProxy._close(dst)

    def close(self) -> None:
        self.listener.close()
        self.set_down(True)


def test_wait_resumes_after_the_connection_drops(platform):
    proxy = _DroppingProxy(int(platform.api_url.rsplit(":", 1)[1]))
    retries: list[str] = []
    updates: list[str] = []
    try:
        with Client(platform.api_key, proxy.url, network_retry_s=60, poll_interval_s=0.2,
                    on_retry=lambda why, _s: retries.append(why)) as client:
            job = client.submit(MODEL, {"prompt": "through a bad link", "width": 64, "height": 64})

            def on_update(current: Job) -> None:
                updates.append(current.status)
                if len(updates) == 1:  # the link goes down once the wait has begun, and comes back later
                    proxy.set_down(True)
                    threading.Timer(1.5, proxy.set_down, args=(False,)).start()

            final = client.wait(job, timeout_s=60, on_update=on_update)
        assert final.status == "succeeded"
        assert retries and all("connection lost" in why for why in retries)
    finally:
        proxy.close()
