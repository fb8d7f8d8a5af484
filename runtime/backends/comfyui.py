"""ComfyUI adapter: one job = one ComfyUI prompt whose ``prompt_id`` is our job id.

Flow: readiness wait (GET /system_stats); the job's model is linked into ``models/checkpoints`` and
named in every ``CheckpointLoaderSimple`` node; input images go through POST /upload/image; POST
/prompt with ``prompt_id = job_id``; completion is read from the /ws websocket (``executing`` with
``node: null``, ``execution_success``, ``execution_error``, ``execution_interrupted`` for our
prompt id) with GET /history/{id} polling as the fallback whenever the socket cannot be used; outputs
come from GET /view. Cancel calls POST /interrupt. Using the job id as prompt id makes a redelivered
job idempotent here too: a prompt already finished or still running in ComfyUI is picked up, not rerun.

Validation errors (HTTP 400 with ``node_errors``) become JobInputError naming each node; 5xx,
refused connections and a ComfyUI that dies mid-job become BackendUnavailable (retried).
"""

from __future__ import annotations

import copy
import json
import logging
import mimetypes
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from runtime import instance_contract
from runtime.backends import _http
from runtime.backends._websocket import WebSocketClient, WebSocketError
from runtime.backends.base import (
    Backend,
    BackendError,
    BackendResult,
    BackendUnavailable,
    JobContext,
    JobInputError,
    JobInterrupted,
    OutputFile,
)

log = logging.getLogger(__name__)

# The folder the AMI points the backend at (instance contract); the agent config names it too.
DEFAULT_MODEL_DIR = instance_contract.COMFYUI.model_dir


def default_workflow(inputs: dict[str, Any], ckpt_name: str, image_name: str | None) -> dict[str, Any]:
    """A txt2img (or img2img, when an input image was uploaded) graph in ComfyUI's API format."""
    width, height = int(inputs.get("width") or 512), int(inputs.get("height") or 512)
    wf: dict[str, Any] = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt_name}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": str(inputs.get("prompt", "")), "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode",
              "inputs": {"text": str(inputs.get("negative_prompt", "")), "clip": ["4", 1]}},
        "5": {"class_type": "EmptyLatentImage",
              "inputs": {"width": width, "height": height, "batch_size": int(inputs.get("num_outputs") or 1)}},
        "3": {"class_type": "KSampler", "inputs": {
            "seed": int(inputs.get("seed", 0) or 0), "steps": int(inputs.get("steps") or 20),
            "cfg": float(inputs.get("guidance", 7.0)), "sampler_name": inputs.get("scheduler") or "euler",
            "scheduler": "normal", "denoise": float(inputs.get("strength", 1.0)) if image_name else 1.0,
            "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "genai", "images": ["8", 0]}},
    }
    if image_name:
        wf["10"] = {"class_type": "LoadImage", "inputs": {"image": image_name}}
        wf["11"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}}
        wf["3"]["inputs"]["latent_image"] = ["11", 0]
    return wf


def describe_node_errors(body: dict[str, Any]) -> str:
    """ComfyUI's 400 answer as one readable line: the error and each node's problems."""
    error = body.get("error")
    message = error.get("message", "") if isinstance(error, dict) else str(error or "invalid prompt")
    details = []
    for node_id, node in (body.get("node_errors") or {}).items():
        for err in node.get("errors", []) if isinstance(node, dict) else []:
            details.append(f"node {node_id} ({node.get('class_type', '?')}): {err.get('message', '')} "
                           f"{err.get('details', '')}".strip())
    return message + ("; " + "; ".join(details) if details else "")


class ComfyUIBackend(Backend):
    name = "comfyui"

    def __init__(self, config: Any = None, *, base_url: str | None = None, model_dir: str | None = None,
                 is_alive: Any = None, poll_seconds: float = 0.25, use_websocket: bool = True, **_: Any) -> None:
        self.base_url = (base_url or getattr(config, "backend_url", None) or instance_contract.COMFYUI.url).rstrip("/")
        self.model_dir = Path(model_dir or getattr(config, "backend_model_dir", None) or DEFAULT_MODEL_DIR)
        self.is_alive = is_alive
        self.poll_seconds = poll_seconds
        self.use_websocket = use_websocket
        self.client_id = uuid.uuid4().hex
        self._client = httpx.Client(base_url=self.base_url, timeout=httpx.Timeout(30.0, connect=5.0))
        self._ckpt_name: str | None = None

    # -- readiness and models ------------------------------------------------------------------------
    def wait_ready(self, timeout: float) -> None:
        _http.wait_until(lambda: _http.request(self._client, "GET", "/system_stats").status_code == 200,
                         timeout, "ComfyUI", self.is_alive)

    def check(self) -> dict[str, Any]:
        stats = _http.request(self._client, "GET", "/system_stats").json()
        return {"backend": self.name, "ready": True, "devices": [d.get("name") for d in stats.get("devices", [])]}

    def load_model(self, model_id: str, path: Path | None) -> None:
        if path is None:
            return
        target = path if path.is_file() else _single_checkpoint(path)
        self._ckpt_name = _http.link_model(target, self.model_dir)

    # -- one job -------------------------------------------------------------------------------------
    def run(self, ctx: JobContext) -> BackendResult:
        entry = self._history(ctx.job_id)
        if entry is None or not _succeeded(entry):
            if not self._in_queue(ctx.job_id):
                self._submit(ctx)
            entry = self._wait(ctx)
        outputs = self._download(entry)
        if not outputs:
            raise BackendError(f"ComfyUI prompt {ctx.job_id} finished without image outputs")
        return BackendResult(outputs=outputs, metadata={"backend": self.name, "prompt_id": ctx.job_id})

    def interrupt(self, ctx: JobContext) -> None:
        for path, body in (("/queue", {"delete": [ctx.job_id]}), ("/interrupt", {"prompt_id": ctx.job_id})):
            try:
                self._client.post(path, json=body, timeout=5.0)
            except httpx.HTTPError as exc:
                log.warning("ComfyUI %s failed for %s: %s", path, ctx.job_id, exc)
        ctx.cancel.set()  # after the requests, so the job thread sees the interrupt already sent

    def close(self) -> None:
        self._client.close()

    # -- helpers -------------------------------------------------------------------------------------
    def _workflow(self, ctx: JobContext) -> dict[str, Any]:
        uploaded = self._upload_inputs(ctx)
        workflow = ctx.inputs.get("workflow")
        if workflow is None:
            if not self._ckpt_name:
                raise JobInputError("no workflow given and no model loaded for the default workflow")
            return default_workflow(ctx.inputs, self._ckpt_name, uploaded.get("image"))
        if not isinstance(workflow, dict):
            raise JobInputError("inputs.workflow must be a ComfyUI API-format graph (an object of nodes)")
        workflow = copy.deepcopy(workflow)
        seed = ctx.inputs.get("seed")
        for node in workflow.values():
            if not isinstance(node, dict):
                raise JobInputError("every workflow node must be an object with class_type and inputs")
            node_inputs = node.setdefault("inputs", {})
            kind = node.get("class_type")
            if kind == "CheckpointLoaderSimple" and self._ckpt_name:
                node_inputs["ckpt_name"] = self._ckpt_name
            elif kind == "LoadImage" and node_inputs.get("image") in uploaded:
                node_inputs["image"] = uploaded[node_inputs["image"]]
            if seed is not None:
                for key in ("seed", "noise_seed"):
                    if key in node_inputs and not isinstance(node_inputs[key], list):
                        node_inputs[key] = int(seed)
        return workflow

    def _upload_inputs(self, ctx: JobContext) -> dict[str, str]:
        """Upload the job's images; returns input name -> name ComfyUI stored it under."""
        uploaded = {}
        for key, data in ctx.input_images.items():
            safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in key)[:64]
            filename = f"{ctx.job_id}-{safe}.png"
            files = {"image": (filename, data, "image/png")}
            response = _http.request(self._client, "POST", "/upload/image", files=files, data={"overwrite": "true"})
            if response.status_code != 200:
                raise JobInputError(f"ComfyUI rejected input image {key!r}: HTTP {response.status_code}")
            uploaded[key] = _json(response).get("name", filename)
        return uploaded

    def _submit(self, ctx: JobContext) -> None:
        body = {"prompt": self._workflow(ctx), "prompt_id": ctx.job_id, "client_id": self.client_id}
        response = _http.request(self._client, "POST", "/prompt", json=body)
        if response.status_code == 400:
            raise JobInputError(f"ComfyUI rejected the workflow: {describe_node_errors(_json(response))}")
        if response.status_code != 200:
            raise BackendUnavailable(f"POST /prompt: HTTP {response.status_code}")
        node_errors = _json(response).get("node_errors") or {}
        if node_errors:
            log.warning("ComfyUI accepted %s with node errors: %s", ctx.job_id, json.dumps(node_errors)[:500])

    def _history(self, prompt_id: str) -> dict[str, Any] | None:
        response = _http.request(self._client, "GET", f"/history/{prompt_id}")
        return _json(response).get(prompt_id) if response.status_code == 200 else None

    def _in_queue(self, prompt_id: str) -> bool:
        response = _http.request(self._client, "GET", "/queue")
        if response.status_code != 200:
            return False
        body = _json(response)
        items = list(body.get("queue_running", [])) + list(body.get("queue_pending", []))
        return any(len(item) > 1 and item[1] == prompt_id for item in items)

    def _wait(self, ctx: JobContext) -> dict[str, Any]:
        ws = self._open_ws() if self.use_websocket else None
        try:
            while True:
                self._check_stop(ctx)
                if ws is not None:
                    ws = self._ws_step(ws, ctx.job_id)
                else:
                    time.sleep(self.poll_seconds)
                entry = self._history(ctx.job_id)
                if entry is not None and _finished(entry):
                    return self._final(entry, ctx)
        finally:
            if ws is not None:
                ws.close()

    def _open_ws(self) -> WebSocketClient | None:
        url = self.base_url.replace("http://", "ws://", 1) + f"/ws?clientId={self.client_id}"
        try:
            return WebSocketClient(url).connect()
        except WebSocketError as exc:
            log.info("ComfyUI websocket unavailable, polling /history instead: %s", exc)
            return None

    def _ws_step(self, ws: WebSocketClient, prompt_id: str) -> WebSocketClient | None:
        """Read events until our prompt ends or ~4 poll intervals pass; None when the socket broke."""
        deadline = time.monotonic() + self.poll_seconds * 4
        while (left := deadline - time.monotonic()) > 0:
            try:
                text = ws.recv_text(timeout=left)
            except WebSocketError as exc:
                log.info("ComfyUI websocket dropped, polling /history instead: %s", exc)
                ws.close()
                return None
            if text is None:
                break
            try:
                event = json.loads(text)
            except ValueError:
                continue
            if isinstance(event, dict) and (event.get("data") or {}).get("prompt_id") == prompt_id \
                    and _is_terminal_event(event):
                break  # the history read that follows sees the end
        return ws

    def _check_stop(self, ctx: JobContext) -> None:
        if ctx.cancel.is_set():
            raise JobInterrupted(f"job {ctx.job_id} interrupted")
        if self.is_alive is not None and not self.is_alive():
            raise BackendUnavailable("ComfyUI process exited mid-job")
        if ctx.deadline is not None and time.monotonic() > ctx.deadline:
            self.interrupt(ctx)
            raise BackendError(f"ComfyUI prompt {ctx.job_id} ran past the job time limit")

    def _final(self, entry: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        status = entry.get("status") or {}
        if _succeeded(entry):
            return entry
        messages = status.get("messages") or []
        for kind, data in messages:
            if kind == "execution_interrupted":
                raise JobInterrupted(f"ComfyUI interrupted prompt {ctx.job_id}")
            if kind == "execution_error":
                raise BackendError(f"ComfyUI node {data.get('node_id')} ({data.get('node_type')}) failed: "
                                   f"{data.get('exception_type', '')}: {data.get('exception_message', '')}")
        raise BackendError(f"ComfyUI prompt {ctx.job_id} ended with status {status.get('status_str')!r}")

    def _download(self, entry: dict[str, Any]) -> list[OutputFile]:
        outputs = []
        for node_id, node_out in sorted((entry.get("outputs") or {}).items()):
            for image in node_out.get("images", []):
                if image.get("type", "output") != "output":
                    continue  # previews and temp files are not results
                params = {"filename": image["filename"], "subfolder": image.get("subfolder", ""), "type": "output"}
                response = _http.request(self._client, "GET", "/view", params=params)
                if response.status_code != 200:
                    raise BackendUnavailable(f"GET /view {image['filename']}: HTTP {response.status_code}")
                ctype = response.headers.get("content-type", "").split(";")[0] or \
                    (mimetypes.guess_type(image["filename"])[0] or "application/octet-stream")
                outputs.append(OutputFile(f"{node_id}-{Path(image['filename']).name}", response.content, ctype))
        return outputs


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _finished(entry: dict[str, Any]) -> bool:
    status = entry.get("status") or {}
    return bool(status.get("completed")) or status.get("status_str") in ("success", "error")


def _succeeded(entry: dict[str, Any]) -> bool:
    status = entry.get("status") or {}
    return status.get("status_str") == "success" or (bool(status.get("completed")) and "status_str" not in status)


def _is_terminal_event(event: dict[str, Any]) -> bool:
    kind, data = event.get("type"), event.get("data") or {}
    if kind == "executing":
        return data.get("node") is None
    return kind in ("execution_success", "execution_error", "execution_interrupted")


def _single_checkpoint(directory: Path) -> Path:
    files = sorted(p for p in directory.iterdir() if p.suffix in (".safetensors", ".ckpt", ".pt", ".pth"))
    if len(files) != 1:
        raise JobInputError(f"model folder {directory} must hold exactly one checkpoint for ComfyUI")
    return files[0]
