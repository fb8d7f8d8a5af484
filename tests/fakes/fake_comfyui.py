"""A fake ComfyUI that behaves as the real server does (read in Comfy-Org/ComfyUI: server.py,
execution.py, main.py ``prompt_worker``), for the points the adapter depends on.

- POST /prompt: validation as ``validate_prompt`` (see comfyui_graph.py: error bodies, ``node_errors``,
  ``error.details``); a client ``prompt_id`` is honoured, and an id already used is accepted again (its
  history entry is replaced only when the new run finishes); ``number`` / ``front`` ordering.
- One worker thread runs the queue, node by node. Run time: ``delay`` seconds per prompt spread over the
  nodes that execute, or ``node_seconds[class_type]``. Events, in the real order, to the prompt's
  ``client_id`` only: ``execution_start``, ``execution_cached`` (nodes replayed from the cache),
  ``executing`` per node, ``progress`` per sampler step (plus a binary preview frame), ``executed`` per
  output node (cached ones too, with the earlier run's file names), then the terminal event
  (``execution_success`` / ``execution_error`` / ``execution_interrupted``); then the history entry is
  written; then ``executing`` with ``node: null``. ``status`` events (queue size) go to every client.
- Cache: a node whose signature (class, constants, ancestors) was computed before and is still in the
  cache is not run again; the cache keeps only the signatures of the latest prompt (CLASSIC cache).
- POST /interrupt: with ``prompt_id``, only when that prompt is the one running; without, the running
  prompt. It takes effect before the next node starts or at the next sampler step; the flag is cleared
  when a prompt starts (an interrupt with nothing running does nothing). The flag is only polled
  (comfy.model_management.throw_exception_if_processing_interrupted): a node that never polls it (the
  ``GenaiFleetHang`` custom node: it sleeps ``seconds``) keeps its prompt in ``queue_running``, and every prompt
  after it pending, until it returns; only a restart ends it sooner.
- The history entry is written and the prompt leaves ``queue_running`` in one step (PromptQueue.task_done).
- /history (GET all or one id, POST ``delete`` / ``clear``), /queue (GET, POST ``delete`` / ``clear``),
  /view (the file's content type from its name; 400 for ``..`` or absolute names, 403 outside the folder,
  404 when missing), /upload/image (into the input folder, `` (1)`` suffix unless ``overwrite``),
  /system_stats, /object_info (and /object_info/{class}), /ws.
- Custom nodes: the packs in ``custom_nodes_dir`` (default ``root/custom_nodes``) are loaded at start as nodes.py's
  ``init_external_custom_nodes`` loads them (tests/fakes/comfyui_custom_nodes.py): their NODE_CLASS_MAPPINGS are
  listed by /object_info as server.py ``node_info`` writes them and run as pass-through nodes; a pack whose import
  fails is logged ("IMPORT FAILED") and its nodes are missing.
- A crash (``crash()`` / ``stop()``, or ``die_on_execute``) resets every connection and forgets the queue,
  history and cache, as a dead process does; ``start()`` is the restarted server.

Files live on disk as ComfyUI keeps them: ``root/output``, ``root/input``, ``root/temp`` (``root``
defaults to the models folder's parent), or the folders given as ``output_dir`` / ``input_dir`` / ``temp_dir``
(main.py's ``--output-directory`` / ``--input-directory`` / ``--temp-directory``). Controls: ``delay``,
``node_seconds``, ``fail_prompts`` (next N POST /prompt answer 500), ``fail_executions`` (next N prompts fail in
their sampler, or first node run), ``die_on_execute``, ``websocket`` (False: /ws refused), ``preview_frames``,
``slow_runs`` / ``slow_seconds`` (the next N prompts' samplers take that long), ``hang_runs`` / ``hang_seconds``
(the next N prompts' samplers first hang that long, deaf to interrupts), ``upload_gate`` (uploads wait for
the event). An EmptyImage too large to
allocate fails as torch does on CPU.
"""

from __future__ import annotations

import email
import io
import mimetypes
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from tests.fakes._server import FakeServer, Handler, png
from tests.fakes._ws import ServerSocket
from tests.fakes.comfyui_custom_nodes import load_custom_nodes, node_info
from tests.fakes.comfyui_graph import (
    COMBOS,
    NODES,
    NodeSpec,
    batch_size,
    execution_order,
    signatures,
    upstream,
    validate,
)
from tests.fakes.comfyui_run import Run, Stop


class FakeComfyUI(FakeServer):
    def __init__(self, models_dir: str | Path, delay: float = 0.2, *, root: str | Path | None = None,
                 node_seconds: dict[str, float] | None = None, output_dir: str | Path | None = None,
                 input_dir: str | Path | None = None, temp_dir: str | Path | None = None,
                 custom_nodes_dir: str | Path | None = None) -> None:
        super().__init__()
        self.models_dir = Path(models_dir)
        root = Path(root) if root is not None else self.models_dir.parent
        # main.py's --output-directory / --input-directory / --temp-directory, else <root>/output ... as ComfyUI's
        # folder_paths does
        self.output_dir = Path(output_dir) if output_dir else root / "output"
        self.input_dir = Path(input_dir) if input_dir else root / "input"
        self.temp_dir = Path(temp_dir) if temp_dir else root / "temp"
        for folder in (self.models_dir, self.output_dir, self.input_dir, self.temp_dir):
            folder.mkdir(parents=True, exist_ok=True)
        # <ComfyUI folder>/custom_nodes (folder_paths' "custom_nodes"), loaded once at start as main.py does
        self.custom_nodes_dir = Path(custom_nodes_dir) if custom_nodes_dir else root / "custom_nodes"
        self.custom_nodes = load_custom_nodes(self.custom_nodes_dir, set(NODES))
        self.nodes: dict[str, NodeSpec] = dict(NODES)
        for name, cls in self.custom_nodes.classes.items():
            required = tuple((cls.INPUT_TYPES().get("required") or {}).keys())
            self.nodes[name] = NodeSpec(required, output=getattr(cls, "OUTPUT_NODE", False) is True)
        self.delay = delay
        self.node_seconds = dict(node_seconds or {})
        self.fail_prompts = 0
        self.fail_executions = 0
        self.die_on_execute = False
        self.websocket = True
        self.preview_frames = True
        self.slow_runs = 0  # the next N prompts spend ``slow_seconds`` in their sampler (drills)
        self.slow_seconds = 30.0
        self.hang_runs = 0  # the next N prompts' samplers hang ``hang_seconds`` ignoring interrupts (a stuck CUDA call)
        self.hang_seconds = 3600.0
        self.upload_gate: threading.Event | None = None  # set: /upload/image waits for it (at most 60 s)
        self.prompts: list[dict[str, Any]] = []  # accepted POST /prompt bodies
        self.interrupts = 0
        self.history: dict[str, Any] = {}
        self.outcomes: dict[str, str] = {}  # prompt id -> its last status message, kept when history is deleted
        self._cond = threading.Condition()
        self._queue: list[list[Any]] = []
        self._running: list[Any] | None = None
        self._number = 0
        self._cache: dict[str, Any] = {}
        self._sockets: dict[str, ServerSocket] = {}
        self._interrupt = threading.Event()
        self._generation = 0
        self._last_node: str | None = None
        threading.Thread(target=self._worker, name="fake-comfyui-worker", daemon=True).start()

    # -- process life ---------------------------------------------------------------------------------
    def stop(self) -> None:
        """The process dies: connections reset, queue, history and cache gone."""
        with self._cond:
            self._generation += 1
            self._queue.clear()
            self._running = None
            self.history.clear()
            self._cache.clear()
            self._sockets.clear()
        super().stop()

    crash = stop

    # -- routes ---------------------------------------------------------------------------------------
    def dispatch(self, h: Handler, method: str) -> None:
        self.requests.append((method, h.route))
        route = h.route.removeprefix("/api")
        if method == "GET" and route == "/ws":
            return self._ws(h)
        name = route.strip("/").split("/")[0].replace("_", "")
        handler = getattr(self, f"_{method.lower()}_{name}", None)
        if handler is None:
            return h.send(404, b"404: Not Found", "text/plain")
        handler(h, route)

    def _get_systemstats(self, h: Handler, route: str) -> None:
        h.send_json({"system": {"os": os.name, "comfyui_version": "fake", "embedded_python": False},
                     "devices": [{"name": "cpu", "type": "cpu", "index": None, "vram_total": 0, "vram_free": 0}]})

    def _get_objectinfo(self, h: Handler, route: str) -> None:
        info = {}
        for cls, spec in NODES.items():
            required = {name: [self._choices(cls, name) or "*", {}] for name in spec.required}
            info[cls] = {"input": {"required": required}, "output_node": spec.output, "name": cls}
        for cls, node_cls in self.custom_nodes.classes.items():
            info[cls] = node_info(cls, node_cls, self.custom_nodes)
        parts = route.strip("/").split("/")
        if len(parts) > 1:  # /object_info/{node_class}: that class only, {} when not loaded
            info = {parts[1]: info[parts[1]]} if parts[1] in info else {}
        h.send_json(info)

    def _choices(self, cls: str, name: str) -> list[str] | None:
        if cls in self.custom_nodes.classes:  # a list-typed input (COMBO) of a custom node: its options
            spec = (self.custom_nodes.classes[cls].INPUT_TYPES().get("required") or {}).get(name)
            return list(spec[0]) if spec and isinstance(spec[0], (list, tuple)) else None
        models = self.models_dir.parent  # <root>/models/<kind>: folder_paths' model folders
        folder = {("CheckpointLoaderSimple", "ckpt_name"): self.models_dir, ("LoadImage", "image"): self.input_dir,
                  ("UNETLoader", "unet_name"): models / "diffusion_models",
                  ("CLIPLoader", "clip_name"): models / "text_encoders", ("VAELoader", "vae_name"): models / "vae",
                  ("LoraLoader", "lora_name"): models / "loras"}
        path = folder.get((cls, name))
        if path is None:
            return COMBOS.get((cls, name))
        return sorted(p.name for p in path.iterdir() if p.is_file()) if path.is_dir() else []

    def _post_prompt(self, h: Handler, route: str) -> None:
        body = h.json_body()
        if self.fail_prompts > 0:
            self.fail_prompts -= 1
            return h.send(500, b"500 Internal Server Error\n\nServer got itself in trouble", "text/plain")
        with self._cond:
            number = body.get("number")
            if number is None:
                number = -self._number if body.get("front") else self._number
                self._number += 1
        if "prompt" not in body:
            return h.send_json({"error": {"type": "no_prompt", "message": "No prompt provided",
                                          "details": "No prompt provided", "extra_info": {}}, "node_errors": {}}, 400)
        prompt = body["prompt"]
        prompt_id = str(body.get("prompt_id") or uuid.uuid4())
        checked = validate(prompt, self._choices, self.nodes)
        if not checked.ok:
            return h.send_json({"error": checked.error, "node_errors": checked.node_errors}, 400)
        extra = dict(body.get("extra_data") or {})
        if "client_id" in body:
            extra["client_id"] = body["client_id"]
        self.prompts.append(body)
        with self._cond:
            self._queue.append([number, prompt_id, prompt, extra, checked.outputs])
            self._queue.sort(key=lambda item: item[0])
            self._cond.notify()
        self._status()
        h.send_json({"prompt_id": prompt_id, "number": number, "node_errors": checked.node_errors})

    def _get_queue(self, h: Handler, route: str) -> None:
        with self._cond:
            running = [list(self._running)] if self._running else []
            h.send_json({"queue_running": running, "queue_pending": [list(i) for i in self._queue]})

    def _post_queue(self, h: Handler, route: str) -> None:
        body = h.json_body()
        with self._cond:
            if body.get("clear"):
                self._queue.clear()
            for prompt_id in body.get("delete", []):
                self._queue = [item for item in self._queue if item[1] != prompt_id]
        self._status()
        h.send(200, b"", "application/octet-stream")

    def _get_history(self, h: Handler, route: str) -> None:
        parts = route.strip("/").split("/")
        with self._cond:
            if len(parts) > 1:
                h.send_json({parts[1]: self.history[parts[1]]} if parts[1] in self.history else {})
                return
            items = list(self.history.items())
        max_items = int(h.query.get("max_items", "0") or 0)
        h.send_json(dict(items[-max_items:] if max_items else items))

    def _post_history(self, h: Handler, route: str) -> None:
        body = h.json_body()
        with self._cond:
            if body.get("clear"):
                self.history.clear()
            for prompt_id in body.get("delete", []):
                self.history.pop(prompt_id, None)
        h.send(200, b"", "application/octet-stream")

    def _get_view(self, h: Handler, route: str) -> None:
        q = h.query
        name = q.get("filename", "")
        folders = {"output": self.output_dir, "input": self.input_dir, "temp": self.temp_dir}
        folder = folders.get(q.get("type", "output"))
        if not name or name.startswith("/") or ".." in name or folder is None:
            return h.send(400, b"", "text/plain")
        base = os.path.abspath(folder)
        full = os.path.abspath(os.path.join(base, q.get("subfolder", "")))
        if os.path.commonpath((full, base)) != base:
            return h.send(403, b"", "text/plain")
        path = Path(full) / os.path.basename(name)
        if not path.is_file():
            return h.send(404, b"404: Not Found", "text/plain")
        h.send(200, path.read_bytes(), mimetypes.guess_type(path.name)[0] or "application/octet-stream")

    def _post_upload(self, h: Handler, route: str) -> None:
        raw = h.body()
        if self.upload_gate is not None:
            self.upload_gate.wait(60)
        msg = email.message_from_bytes(b"Content-Type: " + h.headers["Content-Type"].encode() + b"\r\n\r\n" + raw)
        fields = {part.get_param("name", header="content-disposition"): part for part in msg.get_payload()}
        image = fields.get("image")
        if image is None or not image.get_filename():
            return h.send(400, b"", "text/plain")
        overwrite = str(fields["overwrite"].get_payload()) if "overwrite" in fields else ""
        name = os.path.basename(image.get_filename())
        target = self.input_dir / name
        stem, suffix, i = target.stem, target.suffix, 1
        while target.exists() and overwrite.lower() not in ("true", "1"):
            target = self.input_dir / f"{stem} ({i}){suffix}"
            i += 1
        target.write_bytes(image.get_payload(decode=True))
        h.send_json({"name": target.name, "subfolder": "", "type": "input"})

    def _post_interrupt(self, h: Handler, route: str) -> None:
        try:
            body = h.json_body()
        except ValueError:
            body = {}
        self.interrupts += 1
        target = body.get("prompt_id") if isinstance(body, dict) else None
        with self._cond:
            running = self._running[1] if self._running else None
        if not target or target == running:
            self._interrupt.set()
        h.send(200, b"", "application/octet-stream")

    # -- events ---------------------------------------------------------------------------------------
    def _ws(self, h: Handler) -> None:
        if not self.websocket:
            return h.send(404, b"404: Not Found", "text/plain")
        sock = ServerSocket.accept(h)
        if sock is None:
            return None
        sid = h.query.get("clientId") or uuid.uuid4().hex
        with self._cond:
            self._sockets[sid] = sock
            reconnect = self._running is not None and self._running[3].get("client_id") == sid and self._last_node
        sock.send_json({"type": "status", "data": {"status": self._queue_info(), "sid": sid}})
        if reconnect:
            sock.send_json({"type": "executing", "data": {"node": self._last_node}})
        try:
            sock.read_until_closed()
        finally:
            with self._cond:
                if self._sockets.get(sid) is sock:
                    del self._sockets[sid]

    def _queue_info(self) -> dict[str, Any]:
        return {"exec_info": {"queue_remaining": len(self._queue) + (1 if self._running else 0)}}

    def _send(self, event: str, data: Any, sid: str | None) -> None:
        with self._cond:
            targets = list(self._sockets.values()) if sid is None else [s for s in [self._sockets.get(sid)] if s]
        for sock in targets:
            if isinstance(data, bytes):
                sock.send_bytes(data)
            else:
                sock.send_json({"type": event, "data": data})

    def _status(self) -> None:
        with self._cond:
            info = self._queue_info()
        self._send("status", {"status": info}, None)

    # -- the worker (main.py prompt_worker + execution.PromptExecutor) --------------------------------
    def _worker(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                item = self._running = self._queue.pop(0)
                generation = self._generation
            self._status()
            try:
                self._execute(item, generation)
            except Stop:
                pass  # crashed mid-run: nothing is recorded

    def _execute(self, item: list[Any], generation: int) -> None:
        number, prompt_id, prompt, extra, outputs = item
        sid = extra.get("client_id")
        self._interrupt.clear()
        if self.die_on_execute:
            self.die_on_execute = False
            self.crash()
            return
        run = Run(self, prompt_id, prompt, sid, generation)
        run.message("execution_start", {"prompt_id": prompt_id})
        keys = signatures(prompt)
        self._cache = {k: v for k, v in self._cache.items() if k in set(keys.values())}
        cached = [n for n in prompt if keys[n] in self._cache]
        run.message("execution_cached", {"nodes": cached, "prompt_id": prompt_id})
        success = run.nodes(execution_order(prompt, outputs), keys)
        with self._cond:
            if generation != self._generation:
                return
            self.history[prompt_id] = {
                "prompt": [number, prompt_id, prompt, {k: v for k, v in extra.items() if k != "auth_token_comfy_org"},
                           outputs],
                "outputs": run.ui,
                "status": {"status_str": "success" if success else "error", "completed": success,
                           "messages": run.messages},
                "meta": {n: {"node_id": n, "display_node": n, "parent_node": None, "real_node_id": n} for n in run.ui},
            }
            self.outcomes[prompt_id] = run.messages[-1][0]
            self._running = None
            self._last_node = None
        self._status()
        if sid is not None:
            self._send("executing", {"node": None, "prompt_id": prompt_id}, sid)

    def _save_path(self, prefix: str, folder: Path | None = None) -> tuple[Path, str, int, str]:
        """folder_paths.get_save_image_path: (folder, file name base, next counter, subfolder) for ``prefix``."""
        folder = folder or self.output_dir
        subfolder = os.path.dirname(os.path.normpath(prefix))
        base = os.path.basename(os.path.normpath(prefix))
        full = Path(os.path.abspath(folder / subfolder))
        if os.path.commonpath((full, os.path.abspath(folder))) != os.path.abspath(folder):
            raise Stop("error", "Exception", "**** ERROR: Saving image outside the output folder is not allowed.")
        full.mkdir(parents=True, exist_ok=True)
        taken = [p.name[len(base) + 1:].split("_")[0] for p in full.iterdir() if p.name.startswith(f"{base}_")]
        counter = max((int(t) for t in taken if t.isdigit()), default=0) + 1
        return full, base, counter, subfolder

    def save_images(self, prompt: dict[str, Any], node_id: str, kind: str) -> dict[str, Any]:
        """SaveImage / PreviewImage: PNG files named ``<prefix>_<counter:05>_.png`` in the folder of ``kind``."""
        if kind == "output":
            full, base, counter, subfolder = self._save_path(str(prompt[node_id]["inputs"]["filename_prefix"]))
        else:
            full, base, counter, subfolder = self.temp_dir, f"ComfyUI_temp_{uuid.uuid4().hex[:5]}", 1, ""
        images = []
        for i in range(batch_size(prompt, node_id)):
            name = f"{base}_{counter + i:05}_.png"
            (full / name).write_bytes(png(f"{node_id}-{base}-{counter + i}-{time.time_ns()}"))
            images.append({"filename": name, "subfolder": subfolder, "type": kind})
        return {"images": images}

    def save_media(self, prompt: dict[str, Any], node_id: str, kind: str) -> dict[str, Any]:
        """The animation / video writers: one real, playable file of the whole batch (one frame per image) at the
        node's fps (SaveVideo: CreateVideo's), sized as the upstream EmptyImage / latent, named and reported as
        the real node does (see comfyui_graph.NODES)."""
        inputs = prompt[node_id]["inputs"]
        saved = kind != "vhs" or bool(inputs.get("save_output", True))  # VHS: save_output false -> temp folder
        full, base, counter, subfolder = self._save_path(str(inputs["filename_prefix"]),
                                                         self.output_dir if saved else self.temp_dir)
        frames = batch_size(prompt, node_id)
        width, height = int(upstream(prompt, node_id, "width", 64)), int(upstream(prompt, node_id, "height", 64))
        fps = float(inputs.get("fps") or inputs.get("frame_rate") or upstream(prompt, node_id, "fps", 24.0))
        if kind == "vhs":
            fmt = str(inputs["format"])
            extension = {"video/h264-mp4": "mp4", "video/webm": "webm", "image/gif": "gif", "image/webp": "webp"}[fmt]
            name = f"{base}_{counter:05}.{extension}"
            (full / name).write_bytes(clip(frames, width, height, fps, extension))
            (full / f"{base}_{counter:05}.png").write_bytes(png(f"{node_id}-{base}-{counter}"))  # first frame, unlisted
            return {"gifs": [{"filename": name, "subfolder": subfolder, "type": "output" if saved else "temp",
                              "format": fmt, "frame_rate": fps, "workflow": f"{base}_{counter:05}.png",
                              "fullpath": str(full / name)}]}
        if kind == "glb":
            name = f"{base}_{counter:05}_.glb"
            (full / name).write_bytes(b"glTF\x02\x00\x00\x00")
            return {"3d": [{"filename": name, "subfolder": subfolder, "type": "output"}]}
        extension = {"apng": "png", "mp4": "mp4", "webm": "webm", "webp": "webp"}[kind]
        name = f"{base}_{counter:05}_.{extension}"
        (full / name).write_bytes(clip(frames, width, height, fps, kind))
        return {"images": [{"filename": name, "subfolder": subfolder, "type": "output"}], "animated": [True]}


def clip(frames: int, width: int, height: int, fps: float, kind: str) -> bytes:
    """A playable file of ``frames`` frames (each a different grey) at ``fps``."""
    from PIL import Image

    images = [Image.new("RGB", (width, height), (40 * i % 256,) * 3) for i in range(frames)]
    if kind == "apng":
        buffer = io.BytesIO()
        images[0].save(buffer, format="PNG", save_all=True, append_images=images[1:], duration=int(1000 / fps))
        return buffer.getvalue()
    from runtime.video.encode import encode_video

    return encode_video(images, width=width, height=height, fps=round(fps), output_format=kind).data
