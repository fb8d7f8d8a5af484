"""A fake ComfyUI server speaking the documented HTTP + websocket API (server.py of ComfyUI).

Routes: GET /system_stats, GET /object_info, POST /prompt (honours a client ``prompt_id``; validates
that every CheckpointLoaderSimple ``ckpt_name`` exists in ``models_dir`` and answers 400 with
``node_errors`` otherwise), GET /queue, POST /queue (delete), GET /history/{id}, GET /view, POST
/upload/image, POST /interrupt, GET /ws (RFC 6455: status, executing, execution_success /
execution_error / execution_interrupted events).

Controls: ``delay`` (seconds a prompt runs), ``fail_prompts`` (next N POST /prompt answer 500),
``fail_executions`` (next N prompts end in execution_error), ``die_on_execute`` (the server stops
listening when the next prompt starts, as if ComfyUI crashed), ``websocket`` (False: /ws refused).
"""

from __future__ import annotations

import base64
import email
import hashlib
import json
import queue
import struct
import threading
import time
from pathlib import Path
from typing import Any

from tests.fakes._server import FakeServer, Handler, png

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class FakeComfyUI(FakeServer):
    def __init__(self, models_dir: str | Path, delay: float = 0.2) -> None:
        super().__init__()
        self.models_dir = Path(models_dir)
        self.models_dir.mkdir(parents=True, exist_ok=True)
        self.delay = delay
        self.fail_prompts = 0
        self.fail_executions = 0
        self.die_on_execute = False
        self.websocket = True
        self.history: dict[str, Any] = {}
        self.files: dict[str, bytes] = {}
        self.uploads: dict[str, bytes] = {}
        self.prompts: list[dict[str, Any]] = []
        self.interrupts = 0
        self._queue: queue.Queue = queue.Queue()
        self._running: str | None = None
        self._pending: list[str] = []
        self._interrupt = threading.Event()
        self._sockets: dict[str, tuple[Any, threading.Lock]] = {}
        self._lock = threading.Lock()
        threading.Thread(target=self._executor, daemon=True).start()

    # -- routes ---------------------------------------------------------------------------------------
    def dispatch(self, h: Handler, method: str) -> None:
        self.requests.append((method, h.route))
        route = h.route.removeprefix("/api")
        if method == "GET" and route == "/ws":
            return self._ws(h)
        handler = getattr(self, f"_{method.lower()}_{route.strip('/').split('/')[0].replace('_', '')}", None)
        if handler is None:
            return h.send(404)
        handler(h, route)

    def _get_systemstats(self, h: Handler, route: str) -> None:
        h.send_json({"system": {"comfyui_version": "fake"}, "devices": [{"name": "fake-gpu", "type": "cuda"}]})

    def _get_objectinfo(self, h: Handler, route: str) -> None:
        names = sorted(p.name for p in self.models_dir.iterdir())
        h.send_json({"CheckpointLoaderSimple": {"input": {"required": {"ckpt_name": [names]}}}})

    def _post_prompt(self, h: Handler, route: str) -> None:
        body = h.json_body()
        if self.fail_prompts > 0:
            self.fail_prompts -= 1
            return h.send_json({"error": "internal"}, 500)
        prompt = body.get("prompt")
        if not isinstance(prompt, dict):
            return h.send_json({"error": {"type": "no_prompt", "message": "No prompt provided"},
                                "node_errors": {}}, 400)
        errors = self._validate(prompt)
        if errors:
            return h.send_json({"error": {"type": "prompt_outputs_failed_validation",
                                          "message": "Prompt outputs failed validation"}, "node_errors": errors}, 400)
        prompt_id = str(body.get("prompt_id") or hashlib.sha1(json.dumps(prompt).encode()).hexdigest())
        self.prompts.append(body)
        with self._lock:
            self._pending.append(prompt_id)
        self._queue.put((prompt_id, prompt, body.get("client_id")))
        h.send_json({"prompt_id": prompt_id, "number": len(self.prompts), "node_errors": {}})

    def _validate(self, prompt: dict[str, Any]) -> dict[str, Any]:
        errors = {}
        for node_id, node in prompt.items():
            if node.get("class_type") == "CheckpointLoaderSimple":
                name = node.get("inputs", {}).get("ckpt_name")
                if not name or not (self.models_dir / name).exists():
                    errors[node_id] = {"class_type": "CheckpointLoaderSimple", "dependent_outputs": [],
                                       "errors": [{"type": "value_not_in_list", "message": "Value not in list",
                                                   "details": f"ckpt_name: '{name}' not in list"}]}
        return errors

    def _get_queue(self, h: Handler, route: str) -> None:
        with self._lock:
            running = [[0, self._running, {}, {}, []]] if self._running else []
            pending = [[i + 1, pid, {}, {}, []] for i, pid in enumerate(self._pending)]
        h.send_json({"queue_running": running, "queue_pending": pending})

    def _post_queue(self, h: Handler, route: str) -> None:
        body = h.json_body()
        with self._lock:
            self._pending = [p for p in self._pending if p not in body.get("delete", [])]
        h.send(200)

    def _get_history(self, h: Handler, route: str) -> None:
        prompt_id = route.split("/", 2)[2] if route.count("/") >= 2 else None
        with self._lock:
            data = {prompt_id: self.history[prompt_id]} if prompt_id in self.history else {}
        h.send_json(data if prompt_id else dict(self.history))

    def _get_view(self, h: Handler, route: str) -> None:
        q = h.query
        if ".." in q.get("filename", "") or q.get("filename") not in self.files:
            return h.send(404)
        h.send(200, self.files[q["filename"]], "image/png")

    def _post_upload(self, h: Handler, route: str) -> None:
        raw = h.body()
        msg = email.message_from_bytes(b"Content-Type: " + h.headers["Content-Type"].encode() + b"\r\n\r\n" + raw)
        for part in msg.get_payload():
            if part.get_param("name", header="content-disposition") == "image":
                name = part.get_filename()
                self.uploads[name] = part.get_payload(decode=True)
                return h.send_json({"name": name, "subfolder": "", "type": "input"})
        h.send(400)

    def _post_interrupt(self, h: Handler, route: str) -> None:
        h.body()
        self.interrupts += 1
        self._interrupt.set()
        h.send(200)

    # -- execution ------------------------------------------------------------------------------------
    def _executor(self) -> None:
        while True:
            prompt_id, prompt, client_id = self._queue.get()
            with self._lock:
                if prompt_id not in self._pending:
                    continue  # deleted from the queue
                self._pending.remove(prompt_id)
                self._running = prompt_id
            self._interrupt.clear()
            if self.die_on_execute:
                self.die_on_execute = False
                with self._lock:
                    self._running = None
                self.stop()
                continue
            self._emit(client_id, "execution_start", {"prompt_id": prompt_id})
            deadline = time.monotonic() + self.delay
            while time.monotonic() < deadline and not self._interrupt.is_set():
                time.sleep(0.01)
            self._finish(prompt_id, prompt, client_id)

    def _finish(self, prompt_id: str, prompt: dict[str, Any], client_id: str | None) -> None:
        if self._interrupt.is_set():
            status, event = {"status_str": "error", "completed": False,
                             "messages": [["execution_interrupted", {"prompt_id": prompt_id}]]}, "execution_interrupted"
            outputs: dict[str, Any] = {}
        elif self.fail_executions > 0:
            self.fail_executions -= 1
            status = {"status_str": "error", "completed": False, "messages": [["execution_error", {
                "prompt_id": prompt_id, "node_id": "3", "node_type": "KSampler", "exception_type": "RuntimeError",
                "exception_message": "CUDA error: an illegal memory access was encountered"}]]}
            event, outputs = "execution_error", {}
        else:
            filename = f"{prompt_id}_00001_.png"
            self.files[filename] = png(prompt_id + json.dumps(prompt, sort_keys=True))
            outputs = {"9": {"images": [{"filename": filename, "subfolder": "", "type": "output"}]}}
            status = {"status_str": "success", "completed": True, "messages": []}
            event = "execution_success"
        with self._lock:
            self.history[prompt_id] = {"prompt": [0, prompt_id, prompt, {}, ["9"]], "outputs": outputs,
                                       "status": status}
            self._running = None
        self._emit(client_id, "executing", {"node": None, "prompt_id": prompt_id})
        self._emit(client_id, event, {"prompt_id": prompt_id})

    # -- websocket ------------------------------------------------------------------------------------
    def _ws(self, h: Handler) -> None:
        key = h.headers.get("Sec-WebSocket-Key")
        if not self.websocket or not key:
            return h.send(404)
        accept = base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()
        h.send_response(101)
        h.send_header("Upgrade", "websocket")
        h.send_header("Connection", "Upgrade")
        h.send_header("Sec-WebSocket-Accept", accept)
        h.end_headers()
        h.wfile.flush()
        sid = h.query.get("clientId", "anon")
        lock = threading.Lock()
        self._sockets[sid] = (h.wfile, lock)
        self._send_frame(h.wfile, lock, {"type": "status", "data": {"sid": sid}})
        try:
            while True:  # read client frames until close
                head = h.rfile.read(2)
                if len(head) < 2 or head[0] & 0x0F == 0x8:
                    break
                n = head[1] & 0x7F
                if n == 126:
                    n = struct.unpack(">H", h.rfile.read(2))[0]
                elif n == 127:
                    n = struct.unpack(">Q", h.rfile.read(8))[0]
                h.rfile.read(4 + n)
        except OSError:
            pass
        finally:
            self._sockets.pop(sid, None)
            h.close_connection = True

    @staticmethod
    def _send_frame(wfile: Any, lock: threading.Lock, event: dict[str, Any]) -> None:
        data = json.dumps(event).encode()
        size = bytes([len(data)]) if len(data) < 126 else bytes([126]) + struct.pack(">H", len(data))
        header = bytes([0x81]) + size
        with lock:
            wfile.write(header + data)
            wfile.flush()

    def _emit(self, client_id: str | None, kind: str, data: dict[str, Any]) -> None:
        target = self._sockets.get(client_id or "")
        if target is None:
            return
        try:
            self._send_frame(*target, {"type": kind, "data": data})
        except (OSError, ValueError):  # ValueError: the client's handler already closed the socket's file
            # Like ComfyUI, a client that went away is dropped; the executor carries on with the queue.
            self._sockets.pop(client_id or "", None)
