"""ComfyUI adapter: one attempt = one ComfyUI prompt whose ``prompt_id`` is the attempt's own id.

Flow: readiness wait (GET /system_stats); the job's model is linked into ``models/checkpoints`` and
named in every ``CheckpointLoaderSimple`` node; input images go through POST /upload/image; the /ws
websocket is opened, then POST /prompt with ``prompt_id = <job_id>.<attempt_id>`` (so that a fully
cached prompt's events, which come within milliseconds, are not missed); completion is read from the
websocket (``executing`` with ``node: null`` for our prompt, sent after ComfyUI wrote the history
entry) with GET /history/{id} polling as the fallback whenever the socket cannot be used; outputs come
from GET /view. Cancel calls POST /queue delete and POST /interrupt for our prompt id only.

Attempts cannot see each other: ComfyUI keeps one history entry per prompt id and replaces it only when
a rerun finishes, so reusing the job id would let a retry read its previous attempt's entry. Before
submitting, an earlier attempt of the same job still queued here is deleted and one still running is
interrupted (a restarted agent, or a hand-back between two agents on one ComfyUI). Every file-writing
node's ``filename_prefix`` (SaveImage, SaveAnimatedWEBP / PNG, SaveWEBM, SaveVideo, SaveAudio,
VideoHelperSuite's VHS_VideoCombine: any node with that input) carries the attempt id: its files are the
attempt's own (ComfyUI's cache would otherwise replay an identical earlier prompt's file names, deleted by
then: /view 404 on every attempt), and they are deleted with the attempt's uploaded inputs and history entry
when the attempt ends (also after an interrupt or the time limit), so ComfyUI's output folder does not grow.

Outputs: every file a node lists under a key of ``FILE_KEYS`` (``images`` for images, animated images and the
core video nodes, whose ``ui`` is ``{"images": [...], "animated": [true]}``; VideoHelperSuite's ``gifs``;
``audio``), with the content type of its extension (``CONTENT_TYPES``: a server without /etc/mime.types
answers application/octet-stream for .webm). A key the adapter does not know fails the job naming the node
and the key: never a success without the file.

txt2video / img2video jobs run the default Wan graph of comfyui_video.py on a video model folder (its three parts
linked into ComfyUI's models folders by ``load_model``); the returned file is decoded and must hold the request's
frames.

Validation errors (HTTP 400 with ``node_errors`` / ``error.details``), a workflow with no file-writing node
(its nodes are named) and one that saved nothing (PreviewImage only) become JobInputError; 5xx, refused
connections and a ComfyUI that dies mid-job become BackendUnavailable (retried); a node's execution error is
a retryable BackendError.
"""

from __future__ import annotations

import glob
import json
import logging
import mimetypes
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from runtime import instance_contract
from runtime.backends import _http
from runtime.backends._websocket import WebSocketClient, WebSocketError
from runtime.backends.base import (
    Backend,
    BackendBusy,
    BackendError,
    BackendResult,
    BackendUnavailable,
    JobContext,
    JobInputError,
    JobInterrupted,
    OutputFile,
)
from runtime.backends.comfyui_extra import with_loras
from runtime.backends.comfyui_previews import preview_image
from runtime.backends.comfyui_video import VideoModel, video_info, video_workflow
from runtime.backends.extra_files import link_workflow_files, lora_names
from runtime.jobs.models import Img2ImgInputs, Txt2ImgInputs, Txt2VideoInputs, WorkflowInputs

log = logging.getLogger(__name__)

# The folder the AMI points the backend at (instance contract); the agent config names it too.
DEFAULT_MODEL_DIR = instance_contract.COMFYUI.model_dir

# Keys of a node's ``ui`` output (history ``outputs[node]``) that list files ({filename, subfolder, type}), and keys
# that carry no file. execution.py merges a node's ui dicts key by key into lists; comfy_api/latest/_ui.py:
# SavedImages / PreviewVideo -> images (+ animated), PreviewAudio -> audio, PreviewText -> text; VideoHelperSuite's
# VHS_VideoCombine -> gifs.
FILE_KEYS = ("images", "gifs", "audio")
NON_FILE_KEYS = frozenset({"animated", "text"})
# The content type of each file a node writes, from its name (ComfyUI's /view guesses it with the host's mimetypes).
CONTENT_TYPES = {
    ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp", ".gif": "image/gif",
    ".mp4": "video/mp4", ".webm": "video/webm", ".mov": "video/quicktime", ".mkv": "video/x-matroska",
    ".flac": "audio/flac", ".wav": "audio/wav", ".mp3": "audio/mpeg", ".opus": "audio/ogg", ".ogg": "audio/ogg",
}


def default_workflow(inputs: Txt2ImgInputs, seed: int, ckpt_name: str, image_name: str | None) -> dict[str, Any]:
    """A txt2img (or img2img, when an input image was uploaded) graph in ComfyUI's API format.

    Every value comes from the job's typed inputs (the API's limits and defaults). ComfyUI's KSampler needs a
    sampler name: a job without ``scheduler`` gets ``euler``. For img2img the latent comes from the encoded
    input image, so its size is the image's (the API's default), width/height are not read and it makes one
    image (``num_outputs`` is not applied to img2img here).
    """
    wf: dict[str, Any] = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt_name}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": inputs.prompt, "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": inputs.negative_prompt, "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {
            "seed": seed, "steps": inputs.steps, "cfg": inputs.guidance,
            "sampler_name": inputs.scheduler or "euler", "scheduler": "normal", "denoise": 1.0,
            "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "genai", "images": ["8", 0]}},
    }
    if isinstance(inputs, Img2ImgInputs) and image_name:
        wf["10"] = {"class_type": "LoadImage", "inputs": {"image": image_name}}
        wf["11"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}}
        wf["3"]["inputs"].update(latent_image=["11", 0], denoise=inputs.strength)
    else:
        wf["5"] = {"class_type": "EmptyLatentImage", "inputs": {"width": inputs.width, "height": inputs.height,
                                                               "batch_size": inputs.num_outputs}}
    return wf


def describe_node_errors(body: dict[str, Any]) -> str:
    """ComfyUI's 400 answer as one readable line: the error (with its details) and each node's problems.

    For an unknown node class or a missing ``class_type`` ``node_errors`` is empty and the node id is only
    in ``error.details``; for failed input validation the details repeat the per-node errors.
    """
    error = body.get("error")
    message = error.get("message", "") if isinstance(error, dict) else str(error or "invalid prompt")
    lines = []
    for node_id, node in (body.get("node_errors") or {}).items():
        for err in node.get("errors", []) if isinstance(node, dict) else []:
            lines.append(f"node {node_id} ({node.get('class_type', '?')}): {err.get('message', '')} "
                         f"{err.get('details', '')}".strip())
    details = error.get("details") if isinstance(error, dict) else None
    if details and not lines:
        message = f"{message} ({details})"
    return message + ("; " + "; ".join(lines) if lines else "")


class ComfyUIBackend(Backend):
    name = "comfyui"
    # Issue 44: KSampler draws the noise of a whole EmptyLatentImage batch from one seed (comfy.sample.prepare_noise)
    seeds_each_image = False

    def __init__(self, config: Any = None, *, base_url: str | None = None, model_dir: str | None = None,
                 output_dir: str | None = None, input_dir: str | None = None, is_alive: Any = None,
                 poll_seconds: float = 0.25, use_websocket: bool = True, interrupt_grace_seconds: float = 10.0,
                 **_: Any) -> None:
        self.base_url = (base_url or getattr(config, "backend_url", None) or instance_contract.COMFYUI.url).rstrip("/")
        self.model_dir = Path(model_dir or getattr(config, "backend_model_dir", None) or DEFAULT_MODEL_DIR)
        # The folders ComfyUI writes to are the ones its command line names: the agent config carries the instance
        # contract's (components/user_data.py). Without them (a hand-run agent), ComfyUI's own default layout.
        root = self.model_dir.parent.parent  # <root>/models/checkpoints, <root>/output
        self.output_dir = Path(output_dir or getattr(config, "backend_output_dir", None) or root / "output")
        self.input_dir = Path(input_dir or getattr(config, "backend_input_dir", None) or root / "input")
        self.temp_dir = Path(getattr(config, "backend_temp_dir", None) or root / "temp")
        self.is_alive = is_alive
        self.poll_seconds = poll_seconds
        self.use_websocket = use_websocket
        self.client_id = uuid.uuid4().hex
        self._client = httpx.Client(base_url=self.base_url, timeout=httpx.Timeout(30.0, connect=5.0))
        self._ckpt_name: str | None = None
        self._video: VideoModel | None = None  # a video model's linked parts (comfyui_video)
        # How long a prompt told to stop (POST /interrupt) may stay in ``queue_running`` before the server counts
        # as wedged: a node that ignores the interrupt flag (a sleeping custom node, a stuck CUDA call) never
        # returns, and every prompt after it would wait behind it.
        self.interrupt_grace_seconds = interrupt_grace_seconds
        self._restart_reason: str | None = None

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
        if VideoModel.is_bundle(path):
            self._video, self._ckpt_name = VideoModel.link(path, self.model_dir.parent), None
            return
        self._video = None
        target = path if path.is_file() else _single_checkpoint(path)
        self._ckpt_name = _http.link_model(target, self.model_dir)

    # -- one attempt ---------------------------------------------------------------------------------
    def run(self, ctx: JobContext) -> BackendResult:
        prompt_id = ctx.backend_id
        uploaded: list[str] = []
        entry: dict[str, Any] | None = None
        ws = None
        try:
            workflow = self._workflow(ctx, prompt_id, uploaded)
            self._drop_earlier_attempts(ctx.job_id, prompt_id)
            ws = self._open_ws() if self.use_websocket else None
            ctx.check_before_submit()
            self._submit(workflow, prompt_id)
            ctx.submitted()
            entry = self._wait(ctx, prompt_id, ws)
            outputs = self._download(entry, prompt_id)
            if isinstance(ctx.job.inputs, Txt2VideoInputs):
                outputs = [OutputFile(o.name, o.data, o.content_type, video_info(o.data, ctx.job.inputs))
                           for o in outputs]
        finally:
            if ws is not None:
                ws.close()
            self._clean_up(prompt_id, entry, uploaded)
        return BackendResult(outputs=outputs, metadata={"backend": self.name, "prompt_id": prompt_id})

    def interrupt(self, ctx: JobContext) -> None:
        prompt_id = ctx.backend_id
        for path, body in (("/queue", {"delete": [prompt_id]}), ("/interrupt", {"prompt_id": prompt_id})):
            try:
                self._client.post(path, json=body, timeout=5.0)
            except httpx.HTTPError as exc:
                log.warning("ComfyUI %s failed for %s: %s", path, prompt_id, exc)
        ctx.cancel.set()  # after the requests, so the job thread sees the interrupt already sent

    def restart_needed(self) -> str | None:
        reason, self._restart_reason = self._restart_reason, None
        return reason

    def sweep(self, older_than_s: float) -> int:
        """Delete history entries and files in ComfyUI's output / input / temp folders older than ``older_than_s``:
        what an attempt whose clean-up could not finish left (an agent killed mid-job, a prompt that ran on after
        its attempt gave up). Entries exist only for prompts that ended, so no running prompt loses its entry."""
        cutoff = time.time() - older_than_s
        gone = 0
        try:
            response = _http.request(self._client, "GET", "/history")
            entries = _json(response) if response.status_code == 200 else {}
            old = [pid for pid, entry in entries.items() if isinstance(entry, dict) and _ended_before(entry, cutoff)]
            if old:
                _http.request(self._client, "POST", "/history", json={"delete": old})
                gone += len(old)
        except BackendError as exc:
            log.info("ComfyUI history sweep skipped: %s", exc)
        for folder in {self.output_dir, self.input_dir, self.temp_dir}:
            gone += _delete_older(folder, cutoff)
        if gone:
            log.info("ComfyUI sweep deleted %d leftover(s) older than %.0f s", gone, older_than_s)
        return gone

    def close(self) -> None:
        self._client.close()

    # -- before submission ---------------------------------------------------------------------------
    def _workflow(self, ctx: JobContext, prompt_id: str, uploaded_files: list[str]) -> dict[str, Any]:
        uploaded = self._upload_inputs(ctx, prompt_id, uploaded_files)
        workflow, seed = self._graph(ctx, uploaded)
        for node in workflow.values():
            node_inputs = node.setdefault("inputs", {})
            if not isinstance(node_inputs, dict):
                raise JobInputError("every workflow node's inputs must be an object")
            kind = node.get("class_type")
            if kind == "CheckpointLoaderSimple" and self._ckpt_name:
                node_inputs["ckpt_name"] = self._ckpt_name
            elif kind == "LoadImage" and node_inputs.get("image") in uploaded:
                node_inputs["image"] = uploaded[node_inputs["image"]]
            if "filename_prefix" in node_inputs and not isinstance(node_inputs["filename_prefix"], list):
                node_inputs["filename_prefix"] = f"{node_inputs['filename_prefix'] or 'genai'}_{prompt_id}"
            if seed is not None:
                for key in ("seed", "noise_seed"):
                    if key in node_inputs and not isinstance(node_inputs[key], list):
                        node_inputs[key] = seed
        return workflow

    def _graph(self, ctx: JobContext, uploaded: dict[str, str]) -> tuple[dict[str, Any], int | None]:
        """The job's graph and the seed to write into it (None: a workflow without seed keeps its graph's)."""
        inputs = ctx.job.inputs
        if isinstance(inputs, WorkflowInputs):
            workflow = inputs.graph()
            _require_file_writer(workflow)
            link_workflow_files(ctx, self.model_dir.parent)  # issue 41: the files its loader nodes name
            return workflow, inputs.seed
        if isinstance(inputs, Txt2VideoInputs):
            if inputs.loras:
                raise JobInputError("LoRAs on ComfyUI's default video graph are not supported yet: send the job "
                                    "without inputs.loras, or as a comfyui-workflow with its own LoRA nodes")
            if self._video is None:
                raise JobInputError(f"model {ctx.job.model!r} is not a ComfyUI video model (a folder of "
                                    "diffusion_models/, text_encoders/ and vae/): it cannot run a video task")
            seed = ctx.seed()
            return video_workflow(inputs, seed, self._video, uploaded.get("image")), seed
        if not self._ckpt_name:
            raise JobInputError("no workflow given and no model loaded for the default workflow")
        seed = ctx.seed()
        workflow = default_workflow(ctx.image_inputs(), seed, self._ckpt_name, uploaded.get("image"))
        return with_loras(workflow, lora_names(ctx, self.model_dir.parent)), seed  # issue 40: LoraLoader nodes

    def _upload_inputs(self, ctx: JobContext, prompt_id: str, files: list[str]) -> dict[str, str]:
        """Upload the job's images; returns input name -> name ComfyUI stored it under."""
        uploaded = {}
        for key, data in ctx.input_images.items():
            safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in key)[:64]
            filename = f"{prompt_id}-{safe}.png"
            form = {"image": (filename, data, "image/png")}
            response = _http.request(self._client, "POST", "/upload/image", files=form, data={"overwrite": "true"})
            if response.status_code != 200:
                raise JobInputError(f"ComfyUI rejected input image {key!r}: HTTP {response.status_code}")
            uploaded[key] = _json(response).get("name", filename)
            files.append(uploaded[key])
        return uploaded

    def _drop_earlier_attempts(self, job_id: str, prompt_id: str) -> None:
        """Delete queued / interrupt running prompts of this job's earlier attempts (they serve nobody now)."""
        response = _http.request(self._client, "GET", "/queue")
        body = _json(response) if response.status_code == 200 else {}
        mine = f"{job_id}."
        # Pending ones first: interrupting the running one first lets ComfyUI start the next pending one.
        for where in ("pending", "running"):
            for item in body.get(f"queue_{where}") or []:
                other = item[1] if isinstance(item, list) and len(item) > 1 else None
                if not isinstance(other, str) or not other.startswith(mine) or other == prompt_id:
                    continue
                log.info("ComfyUI: stopping earlier attempt %s (%s) of job %s", other, where, job_id)
                if where == "pending":
                    _http.request(self._client, "POST", "/queue", json={"delete": [other]})
                else:
                    self._stop_prompt(other, f"an earlier attempt of job {job_id}")
        if self._restart_reason is not None:  # this attempt would wait behind it: not sent, not counted
            raise BackendBusy(f"ComfyUI is held by an earlier attempt of job {job_id} that ignores interrupts")

    def _submit(self, workflow: dict[str, Any], prompt_id: str) -> None:
        body = {"prompt": workflow, "prompt_id": prompt_id, "client_id": self.client_id}
        response = _http.request(self._client, "POST", "/prompt", json=body)
        if response.status_code == 400:
            raise JobInputError(f"ComfyUI rejected the workflow: {describe_node_errors(_json(response))}")
        if response.status_code != 200:
            raise BackendUnavailable(f"POST /prompt: HTTP {response.status_code}")
        node_errors = _json(response).get("node_errors") or {}
        if node_errors:
            log.warning("ComfyUI accepted %s with node errors: %s", prompt_id, json.dumps(node_errors)[:500])

    # -- waiting -------------------------------------------------------------------------------------
    def _history(self, prompt_id: str) -> dict[str, Any] | None:
        response = _http.request(self._client, "GET", f"/history/{prompt_id}")
        return _json(response).get(prompt_id) if response.status_code == 200 else None

    def _wait(self, ctx: JobContext, prompt_id: str, ws: WebSocketClient | None) -> dict[str, Any]:
        while True:
            self._check_stop(ctx)
            if ws is not None:
                ws = self._ws_step(ws, prompt_id, ctx)
            else:
                time.sleep(self.poll_seconds)
            entry = self._history(prompt_id)
            if entry is not None and _finished(entry):
                ctx.executing()
                return self._final(entry, ctx, prompt_id)
            if ctx.executing_since is None and prompt_id in self._queue()[0]:
                ctx.executing()  # the time limit counts from here (no websocket, or its event was missed)
                if ws is None:
                    # Without the websocket ComfyUI's REST says only queued (/queue pending), running (/queue
                    # running) or done (/history, written at the end): the stage, honestly, and no step counts
                    ctx.report("running")

    def _queue(self) -> tuple[set[str], set[str]]:
        """The prompt ids ComfyUI is running and holding pending (GET /queue)."""
        response = _http.request(self._client, "GET", "/queue")
        body = _json(response) if response.status_code == 200 else {}

        def ids(where: str) -> set[str]:
            return {item[1] for item in body.get(f"queue_{where}") or []
                    if isinstance(item, list) and len(item) > 1 and isinstance(item[1], str)}

        return ids("running"), ids("pending")

    def _open_ws(self) -> WebSocketClient | None:
        url = self.base_url.replace("http://", "ws://", 1) + f"/ws?clientId={self.client_id}"
        try:
            return WebSocketClient(url).connect()
        except WebSocketError as exc:
            log.info("ComfyUI websocket unavailable, polling /history instead: %s", exc)
            return None

    def _ws_step(self, ws: WebSocketClient, prompt_id: str, ctx: JobContext) -> WebSocketClient | None:
        """Read events until our prompt ends or ~4 poll intervals pass; None when the socket broke."""
        deadline = time.monotonic() + self.poll_seconds * 4
        while (left := deadline - time.monotonic()) > 0:
            try:
                text = ws.recv_text(timeout=left, on_binary=_previews_of(ctx, prompt_id))
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
            if not isinstance(event, dict) or (event.get("data") or {}).get("prompt_id") != prompt_id:
                continue
            if event.get("type") == "execution_start":
                ctx.executing()  # execution.py sends it when the prompt leaves the queue: the time limit starts
            elif event.get("type") == "progress":
                _report_progress(ctx, event["data"])
            if _is_terminal_event(event):
                break  # the history read that follows sees the end (or the next step does)
        return ws

    def _check_stop(self, ctx: JobContext) -> None:
        prompt_id = ctx.backend_id
        if ctx.cancel.is_set():
            self._stop_prompt(prompt_id, "canceled")
            raise JobInterrupted(f"job {ctx.job_id} interrupted")
        if self.is_alive is not None and not self.is_alive():
            raise BackendUnavailable("ComfyUI process exited mid-job")
        now = time.monotonic()
        if ctx.deadline is not None and now > ctx.deadline:
            self._stop_prompt(prompt_id, "past the job time limit")
            limit = f" ({ctx.time_limit_s:g} s from when ComfyUI started it)" if ctx.time_limit_s else ""
            raise BackendError(f"ComfyUI prompt {prompt_id} ran past the job time limit{limit}")
        if ctx.executing_since is None and ctx.start_deadline is not None and now > ctx.start_deadline:
            self._stop_prompt(prompt_id, "never started")
            raise BackendBusy(f"ComfyUI had not started prompt {prompt_id} by its start limit: other work held "
                              "the server; handed back uncounted")

    def _stop_prompt(self, prompt_id: str, why: str) -> None:
        """Delete the prompt if pending, interrupt it if running, and confirm that it left ``queue_running``
        within the grace period (ComfyUI writes its history entry in the same step, PromptQueue.task_done).
        A prompt still running then is held by a node that ignores interrupts: the server must be restarted
        (``restart_needed``), or every prompt after it waits behind it."""
        for path, body in (("/queue", {"delete": [prompt_id]}), ("/interrupt", {"prompt_id": prompt_id})):
            try:
                self._client.post(path, json=body, timeout=5.0)
            except httpx.HTTPError as exc:
                log.warning("ComfyUI %s failed for %s: %s", path, prompt_id, exc)
        end = time.monotonic() + self.interrupt_grace_seconds
        while True:
            try:
                running, _ = self._queue()
            except BackendError as exc:  # the server went away: nothing of ours runs there now
                log.info("ComfyUI did not answer while stopping %s: %s", prompt_id, exc)
                return
            if prompt_id not in running:
                return
            if time.monotonic() >= end:
                break
            time.sleep(min(self.poll_seconds, max(0.0, end - time.monotonic())))
        self._restart_reason = (f"ComfyUI prompt {prompt_id} ({why}) still running {self.interrupt_grace_seconds:g} s "
                                "after POST /interrupt: a node ignores interrupts")
        log.error("%s; the server must be restarted", self._restart_reason)

    def _final(self, entry: dict[str, Any], ctx: JobContext, prompt_id: str) -> dict[str, Any]:
        status = entry.get("status") or {}
        if _succeeded(entry):
            return entry
        for kind, data in status.get("messages") or []:
            if kind == "execution_interrupted":
                # Ours (cancel, drain, time limit) or someone else's: the agent tells them apart.
                raise JobInterrupted(f"ComfyUI interrupted prompt {prompt_id} at node {data.get('node_id')}")
            if kind == "execution_error":
                detail = str(data.get("exception_message", "")).strip()
                raise BackendError(f"ComfyUI node {data.get('node_id')} ({data.get('node_type')}) failed: "
                                   f"{data.get('exception_type', '')}: {detail}")
        raise BackendError(f"ComfyUI prompt {prompt_id} ended with status {status.get('status_str')!r}")

    # -- after the run -------------------------------------------------------------------------------
    def _download(self, entry: dict[str, Any], prompt_id: str) -> list[OutputFile]:
        outputs, previews = [], 0
        for node_id, node_out in sorted((entry.get("outputs") or {}).items()):
            if not isinstance(node_out, dict):
                continue
            unknown = sorted(k for k in node_out if k not in FILE_KEYS and k not in NON_FILE_KEYS)
            if unknown:
                raise JobInputError(f"ComfyUI node {node_id} output {', '.join(map(repr, unknown))}, a kind of output "
                                    f"this fleet does not collect (known: {', '.join(FILE_KEYS)}); save the result "
                                    "with SaveImage, SaveAnimatedWEBP, SaveWEBM or SaveVideo")
            for key, item in _files(node_out):
                if item.get("type", "output") != "output":
                    previews += 1  # PreviewImage / a preview-only video (type temp) are not results
                    continue
                filename = str(item["filename"])
                params = {"filename": filename, "subfolder": item.get("subfolder", ""), "type": "output"}
                response = _http.request(self._client, "GET", "/view", params=params)
                if response.status_code != 200:
                    raise BackendError(f"GET /view {filename} (node {node_id} {key}): HTTP {response.status_code}")
                name = Path(filename).name.replace(f"_{prompt_id}", "")
                outputs.append(OutputFile(f"{node_id}-{name}", response.content, _content_type(filename, response)))
        if not outputs:
            what = "only previews (temporary files)" if previews else "no files"
            raise JobInputError(f"the workflow produced {what}; add a SaveImage, SaveAnimatedWEBP, SaveWEBM or "
                                "SaveVideo node for the results")
        return outputs

    def _clean_up(self, prompt_id: str, entry: dict[str, Any] | None, uploaded: list[str]) -> None:
        """Delete the attempt's files on this instance and its history entry; never raises.

        A prompt that did not end for us (cancel, time limit, error) is stopped first and confirmed out of
        ``queue_running`` (``_stop_prompt``), so its history entry, when it has one, is written before it is read
        here: reading it earlier missed the entry of an interrupted prompt and left it and its files behind."""
        try:
            if entry is None:  # it did not end for us: it must not run on for nobody
                if self._restart_reason is None:
                    self._stop_prompt(prompt_id, "abandoned")
                entry = self._history(prompt_id)
            if entry is not None:
                _http.request(self._client, "POST", "/history", json={"delete": [prompt_id]})
        except BackendError as exc:
            log.info("ComfyUI cleanup of %s incomplete: %s", prompt_id, exc)
        files = [(self.input_dir, "", name) for name in uploaded]
        for node_out in ((entry or {}).get("outputs") or {}).values():
            for _, item in _files(node_out, every_key=True):
                if item.get("type") == "output" and prompt_id in str(item.get("filename", "")):
                    files.append((self.output_dir, str(item.get("subfolder", "")), str(item["filename"])))
        for folder, subfolder, name in files:
            _delete_inside(folder, Path(subfolder) / Path(name).name)
        for folder in (self.output_dir, self.temp_dir):  # what writers do not list (VHS's first-frame PNG, previews)
            for path in _named_for(folder, prompt_id):
                _delete_inside(folder, path.relative_to(folder))


def _require_file_writer(workflow: dict[str, Any]) -> None:
    """A graph whose results would be lost: no node writes a file (``filename_prefix``) to the output folder."""
    if any(isinstance(node, dict) and isinstance(node.get("inputs"), dict) and "filename_prefix" in node["inputs"]
           for node in workflow.values()):
        return
    nodes = ", ".join(f"{node_id} ({node.get('class_type', '?') if isinstance(node, dict) else '?'})"
                      for node_id, node in workflow.items())
    raise JobInputError(f"the workflow has no node that saves a file (its nodes: {nodes}); add a SaveImage, "
                        "SaveAnimatedWEBP, SaveWEBM or SaveVideo node (one with a filename_prefix input)")


def _files(node_out: Any, every_key: bool = False) -> list[tuple[str, dict[str, Any]]]:
    """(key, file) for each file a node output lists: under ``FILE_KEYS``, or (for clean-up) under any key."""
    if not isinstance(node_out, dict):
        return []
    keys = node_out if every_key else [k for k in FILE_KEYS if k in node_out]
    return [(key, item) for key in keys for item in (node_out[key] if isinstance(node_out[key], list) else [])
            if isinstance(item, dict) and isinstance(item.get("filename"), str)]


def _content_type(filename: str, response: httpx.Response) -> str:
    known = CONTENT_TYPES.get(Path(filename).suffix.lower())
    if known:
        return known
    served = response.headers.get("content-type", "").split(";")[0]
    if served and served != "application/octet-stream":
        return served
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"


def _named_for(folder: Path, prompt_id: str) -> list[Path]:
    """Files under ``folder`` whose name carries the attempt's prefix (``<prefix>_<prompt_id>_<counter>...``)."""
    try:
        return [p for p in folder.rglob(f"*_{glob.escape(prompt_id)}*") if p.is_file() and not p.is_symlink()]
    except OSError as exc:
        log.warning("could not list ComfyUI folder %s: %s", folder, exc)
        return []


def _delete_inside(folder: Path, relative: Path) -> None:
    try:
        base = folder.resolve()
        target = (base / relative).resolve()
        if base in target.parents:
            target.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("could not delete ComfyUI file %s/%s: %s", folder, relative, exc)


def _ended_before(entry: dict[str, Any], cutoff: float) -> bool:
    """The entry's last status message (ms timestamps, execution.py) is older than ``cutoff`` (epoch seconds)."""
    stamps = [data.get("timestamp") for _, data in (entry.get("status") or {}).get("messages") or []
              if isinstance(data, dict) and isinstance(data.get("timestamp"), int | float)]
    return bool(stamps) and max(stamps) / 1000 < cutoff


def _delete_older(folder: Path, cutoff: float) -> int:
    """Files (not dot files) under ``folder`` last modified before ``cutoff``."""
    gone = 0
    try:
        paths = [p for p in folder.rglob("*") if not p.name.startswith(".")]
    except OSError:
        return 0
    for path in paths:
        try:
            if path.is_file() and not path.is_symlink() and path.stat().st_mtime < cutoff:
                path.unlink()
                gone += 1
        except OSError as exc:
            log.warning("could not sweep ComfyUI file %s: %s", path, exc)
    return gone


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


def _report_progress(ctx: JobContext, data: dict[str, Any]) -> None:
    """ComfyUI's ``progress`` message (main.py ``hijack_progress``: ``{"value", "max", "prompt_id", "node"}``, one per
    step of a stepped node such as KSampler) as the job's progress: the running node's step of its steps."""
    value, total = data.get("value"), data.get("max")
    if isinstance(value, int | float) and isinstance(total, int | float) and total > 0:
        ctx.report(step=int(value), steps=int(total))


def _previews_of(ctx: JobContext, prompt_id: str) -> Callable[[bytes], None] | None:
    """Where this job's binary websocket messages go: its preview sink (issue 38) while its prompt runs (ComfyUI
    sends a prompt's previews to that prompt's client id: ours, one prompt at a time); None: dropped."""
    if ctx.previews is None:
        return None

    def offer(message: bytes) -> None:
        if ctx.executing_since is None or not ctx.preview_due():
            return
        image = preview_image(message, prompt_id)
        if image is not None:
            ctx.offer_preview(lambda: image)  # already encoded by ComfyUI

    return offer


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
