"""AUTOMATIC1111 Stable Diffusion WebUI adapter (its ``--api`` HTTP API).

Model switch: the cached checkpoint is linked into ``models/Stable-diffusion``, POST
/sdapi/v1/refresh-checkpoints, the title looked up in GET /sdapi/v1/sd-models, then POST
/sdapi/v1/options ``{"sd_model_checkpoint": title}`` (skipped when it is already active). Jobs call
POST /sdapi/v1/txt2img or /sdapi/v1/img2img (base64 images in and out) with ``force_task_id`` set to the
attempt's own id; the WebUI runs one request at a time behind its queue lock.

The WebUI's interrupt is global and an interrupted generation still answers 200 with (unfinished)
images, so a side thread reads GET /sdapi/v1/progress (``current_task``, ``state.interrupted``) while the
blocking call runs: it interrupts only while ``current_task`` is this attempt (on cancel or at the job
time limit) or an earlier attempt of the same job (a restarted agent's leftover), and it notes when this
attempt was interrupted by anyone, which then raises JobInterrupted instead of returning the images. The time
limit counts from when ``current_task`` first names this attempt (it may wait for the WebUI's queue lock). A
generation still current ``interrupt_grace_seconds`` after the interrupt gets POST /sdapi/v1/skip, and after
twice that the adapter asks for a restart (``restart_needed``): both flags are only polled by the sampler.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from runtime import instance_contract
from runtime.backends import _http
from runtime.backends.a1111_loras import lora_name, strip_extra_networks, with_lora_tags
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
from runtime.backends.extra_files import lora_names
from runtime.jobs.models import Img2ImgInputs

log = logging.getLogger(__name__)

# The folder the AMI points the backend at (instance contract); the agent config names it too.
DEFAULT_MODEL_DIR = instance_contract.A1111.model_dir


def payload(ctx: JobContext, loras: Sequence[tuple[str, float]] = ()) -> tuple[str, dict[str, Any]]:
    """The WebUI request for a job: (endpoint path, JSON body), every value from the job's typed inputs. Extra-network
    tags typed into the prompts are stripped; ``loras`` ((A1111 name, weight), linked) become ``<lora:...>`` tags."""
    inputs = ctx.image_inputs()
    body: dict[str, Any] = {"prompt": with_lora_tags(inputs.prompt, loras),
                            "negative_prompt": strip_extra_networks(inputs.negative_prompt), "seed": ctx.seed(),
                            "steps": inputs.steps, "cfg_scale": inputs.guidance, "batch_size": inputs.num_outputs,
                            "send_images": True, "save_images": False}
    if inputs.scheduler:
        body["sampler_name"] = inputs.scheduler
    if not isinstance(inputs, Img2ImgInputs):
        body["width"], body["height"] = inputs.width, inputs.height
        return "/sdapi/v1/txt2img", body
    image = ctx.input_images.get("image")
    if image is None:
        raise JobInputError("an img2img job reached the backend without its input image")
    # The WebUI's own default is 512x512; the API's is the input image's size.
    body["width"], body["height"] = (inputs.width, inputs.height) if inputs.width and inputs.height \
        else _image_size(image)
    body["init_images"] = [base64.b64encode(image).decode()]
    if "mask" in ctx.input_images:
        body["mask"] = base64.b64encode(ctx.input_images["mask"]).decode()
    body["denoising_strength"] = inputs.strength
    return "/sdapi/v1/img2img", body


def _image_size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    try:
        return Image.open(io.BytesIO(data)).size
    except (OSError, ValueError) as exc:
        raise JobInputError(f"inputs.image is not an image: {exc}") from exc


@dataclass
class _Watch:
    """What the progress thread learnt about one attempt."""

    ctx: JobContext
    done: threading.Event = field(default_factory=threading.Event)
    requested: bool = False  # this attempt asked for the interrupt (cancel or time limit)
    interrupted: bool = False  # the WebUI said this attempt's generation was interrupted, not on our request
    timed_out: bool = False
    requested_at: float = 0.0
    skipped: bool = False  # POST /sdapi/v1/skip sent (the interrupt did not end it within the grace period)
    stopped: set[str] = field(default_factory=set)  # earlier attempts interrupted


class A1111Backend(Backend):
    name = "a1111"

    def __init__(self, config: Any = None, *, base_url: str | None = None, model_dir: str | None = None,
                 is_alive: Any = None, progress_seconds: float = 1.0, interrupt_grace_seconds: float = 10.0,
                 **_: Any) -> None:
        self.base_url = (base_url or getattr(config, "backend_url", None) or instance_contract.A1111.url).rstrip("/")
        self.model_dir = Path(model_dir or getattr(config, "backend_model_dir", None) or DEFAULT_MODEL_DIR)
        self.is_alive = is_alive
        self.progress_seconds = progress_seconds
        max_job = float(getattr(config, "max_job_seconds", 300))
        self._client = httpx.Client(base_url=self.base_url, timeout=httpx.Timeout(max_job, connect=5.0))
        self._side = httpx.Client(base_url=self.base_url, timeout=httpx.Timeout(5.0))
        self.last_progress: float | None = None
        # A generation told to stop that is still the current task this long after the interrupt gets a skip, and
        # after twice as long the WebUI counts as wedged (restart_needed): both flags are only polled by the
        # sampler, so a stuck call ignores them and the WebUI's queue lock holds every later request.
        self.interrupt_grace_seconds = interrupt_grace_seconds
        self._restart_reason: str | None = None

    def wait_ready(self, timeout: float) -> None:
        _http.wait_until(lambda: _http.request(self._side, "GET", "/sdapi/v1/options").status_code == 200,
                         timeout, "A1111 WebUI", self.is_alive)

    def check(self) -> dict[str, Any]:
        options = _http.request(self._side, "GET", "/sdapi/v1/options").json()
        return {"backend": self.name, "ready": True, "model": options.get("sd_model_checkpoint")}

    def load_model(self, model_id: str, path: Path | None) -> None:
        if path is None:
            return
        filename = _http.link_model(path, self.model_dir)
        _http.request(self._client, "POST", "/sdapi/v1/refresh-checkpoints")
        models = _http.request(self._client, "GET", "/sdapi/v1/sd-models").json()
        match = next((m for m in models if Path(m.get("filename", "")).name == filename
                      or m.get("model_name") == Path(filename).stem), None)
        if match is None:
            raise JobInputError(f"A1111 does not list model {filename} after refreshing checkpoints")
        current = _http.request(self._client, "GET", "/sdapi/v1/options").json().get("sd_model_checkpoint")
        if current == match["title"]:
            return
        body = {"sd_model_checkpoint": match["title"]}
        response = _http.request(self._client, "POST", "/sdapi/v1/options", json=body)
        if response.status_code != 200:
            raise BackendUnavailable(f"A1111 model switch to {match['title']}: HTTP {response.status_code}")

    def run(self, ctx: JobContext) -> BackendResult:
        path, body = payload(ctx, self._link_loras(ctx))
        body["force_task_id"] = ctx.backend_id
        watch = _Watch(ctx)
        watcher = threading.Thread(target=self._watch, args=(watch,), name="a1111-progress", daemon=True)
        ctx.check_before_submit()
        watcher.start()
        try:
            response = _http.request(self._client, "POST", path, json=body)
        finally:
            watch.done.set()
            watcher.join(timeout=5)
        if not (ctx.cancel.is_set() or watch.timed_out or watch.interrupted):
            self._observe(watch, self._progress())  # an interrupt in the last moments of the generation
        if ctx.cancel.is_set():
            raise JobInterrupted(f"job {ctx.job_id} interrupted")
        if watch.timed_out:
            raise BackendError(f"A1111 task {ctx.backend_id} ran past the job time limit")
        if watch.interrupted:
            raise JobInterrupted(f"A1111 task {ctx.backend_id} was interrupted (not by this attempt)")
        if response.status_code in (400, 404, 422):
            raise JobInputError(f"A1111 rejected the job: HTTP {response.status_code}: {response.text[:300]}")
        if response.status_code != 200:
            raise BackendError(f"{path}: HTTP {response.status_code}")
        return self._result(response)

    def _link_loras(self, ctx: JobContext) -> list[tuple[str, float]]:
        """The job's LoRAs linked into A1111's LoRA folder, refreshed and checked listed: (name, weight) each."""
        loras = getattr(ctx.job.inputs, "loras", ())
        if not loras:
            return []
        linked = [(lora_name(Path(name)), weight) for name, weight in lora_names(ctx, self.model_dir.parent)]
        _http.request(self._client, "POST", "/sdapi/v1/refresh-loras")
        listed = {entry.get("name") for entry in _http.request(self._client, "GET", "/sdapi/v1/loras").json()}
        missing = [name for name, _ in linked if name not in listed]
        if missing:
            raise JobInputError(f"A1111 does not list LoRA(s) {', '.join(missing)} after refreshing them: its "
                                f"--lora-dir must be {self.model_dir.parent / 'loras'}")
        return linked

    def interrupt(self, ctx: JobContext) -> None:
        """Interrupt now if this attempt is the one generating; else the watcher does when it starts."""
        ctx.cancel.set()
        progress = self._progress()
        if progress is not None and progress.get("current_task") == ctx.backend_id:
            self._post_interrupt(ctx.backend_id)

    def restart_needed(self) -> str | None:
        reason, self._restart_reason = self._restart_reason, None
        return reason

    def close(self) -> None:
        self._client.close()
        self._side.close()

    def _progress(self, with_image: bool = False) -> dict[str, Any] | None:
        try:
            body = self._side.get("/sdapi/v1/progress",
                                  params={"skip_current_image": "false" if with_image else "true"}).json()
        except (httpx.HTTPError, ValueError):
            return None
        return body if isinstance(body, dict) else None

    def _post_interrupt(self, task: str) -> None:
        try:
            self._side.post("/sdapi/v1/interrupt")
        except httpx.HTTPError as exc:
            log.warning("A1111 interrupt of %s failed: %s", task, exc)

    def _watch(self, watch: _Watch) -> None:
        while not watch.done.wait(self.progress_seconds):
            progress = self._progress(with_image=watch.ctx.preview_due())  # the live image only when one is due
            if progress is None:
                continue
            self._observe(watch, progress)
            self.last_progress = float(progress.get("progress") or 0.0)
            log.debug("a1111 task %s progress %.2f", watch.ctx.backend_id, self.last_progress)

    def _observe(self, watch: _Watch, progress: dict[str, Any] | None) -> None:
        """Act on one progress reading: interrupt what must stop, note an interrupt of this attempt."""
        if progress is None:
            return
        ctx, current = watch.ctx, progress.get("current_task")
        state = progress.get("state") or {}
        mine = current == ctx.backend_id or (current is None and watch.done.is_set())
        if mine and state.get("interrupted") and not watch.requested:
            watch.interrupted = True
        if current == ctx.backend_id:
            now = time.monotonic()
            ctx.executing(now)  # the WebUI started this attempt's generation: its time limit counts from here
            _report_progress(ctx, progress, state)
            _offer_preview(ctx, progress.get("current_image"))
            if ctx.deadline is not None and now > ctx.deadline:
                watch.timed_out = True
            if (ctx.cancel.is_set() or watch.timed_out) and not watch.requested:
                watch.requested, watch.requested_at = True, now
                self._post_interrupt(current)
            elif watch.requested and now - watch.requested_at > self.interrupt_grace_seconds:
                self._escalate(watch, current, now)
        elif isinstance(current, str) and current.startswith(f"{ctx.job_id}.") and current not in watch.stopped:
            log.info("A1111: interrupting earlier attempt %s of job %s", current, ctx.job_id)
            watch.stopped.add(current)
            self._post_interrupt(current)

    def _escalate(self, watch: _Watch, task: str, now: float) -> None:
        """Still generating after the interrupt: skip, then ask for a restart."""
        if not watch.skipped:
            watch.skipped = True
            log.warning("A1111 task %s ignored the interrupt; POST /sdapi/v1/skip", task)
            try:
                self._side.post("/sdapi/v1/skip")
            except httpx.HTTPError as exc:
                log.warning("A1111 skip of %s failed: %s", task, exc)
        elif now - watch.requested_at > 2 * self.interrupt_grace_seconds and self._restart_reason is None:
            self._restart_reason = (f"A1111 task {task} still generating {now - watch.requested_at:.0f} s after "
                                    "POST /sdapi/v1/interrupt and /skip: a call ignores them")
            log.error("%s; the WebUI must be restarted", self._restart_reason)

    def _result(self, response: httpx.Response) -> BackendResult:
        body = response.json()
        outputs = []
        for i, b64 in enumerate(body.get("images") or []):
            try:
                data = base64.b64decode(b64.split(",", 1)[-1])
            except (binascii.Error, ValueError) as exc:
                raise BackendError(f"A1111 returned an undecodable image: {exc}") from exc
            outputs.append(OutputFile(f"image-{i}.png", data, "image/png"))
        if not outputs:
            raise BackendError("A1111 returned no images")
        info = body.get("info")
        try:
            info = json.loads(info) if isinstance(info, str) else (info or {})
        except ValueError:
            info = {}
        meta = {"backend": self.name, "seed": info.get("seed"), "model": info.get("sd_model_name")}
        return BackendResult(outputs=outputs, metadata={k: v for k, v in meta.items() if v is not None})


def _offer_preview(ctx: JobContext, image: Any) -> None:
    """Issue 38: ``current_image`` of /sdapi/v1/progress (asked for only when a preview is due) is the WebUI's live
    preview, base64 in its samples format (``encode_pil_to_base64``: PNG by default, JPEG or WebP by setting)."""
    if not isinstance(image, str) or not image:
        return
    try:
        data = base64.b64decode(image.split(",", 1)[-1], validate=True)
    except ValueError:
        return
    kind = _image_type(data)
    if kind is not None:
        ctx.offer_preview(lambda: (data, kind))


def _image_type(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _report_progress(ctx: JobContext, progress: dict[str, Any], state: dict[str, Any]) -> None:
    """GET /sdapi/v1/progress as the job's progress (modules/api/api.py ``progressapi``): ``progress`` (0..1, the
    WebUI's own figure), ``eta_relative`` (seconds) and ``state.sampling_step`` / ``sampling_steps``."""
    fraction, eta = progress.get("progress"), progress.get("eta_relative")
    step, steps = state.get("sampling_step"), state.get("sampling_steps")
    ctx.report(percent=float(fraction) * 100 if isinstance(fraction, int | float) else None,
               step=int(step) if isinstance(step, int) else None,
               steps=int(steps) if isinstance(steps, int) and steps > 0 else None,
               eta_s=float(eta) if isinstance(eta, int | float) and eta > 0 else None)
