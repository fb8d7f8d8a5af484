"""In-process Hugging Face diffusers backend (CUDA; CPU in tests and local mode).

One pipeline is resident at a time. Loading (folder or single-file checkpoint, dtype, SDPA attention,
channels_last) is in diffusers_loading; the compiled UNet is used only at the configured shape buckets and
batch sizes (diffusers_options), with Inductor's caches kept per key (diffusers_compile) so a new instance
starts warm; switching to a model of the same architecture goes through the host-RAM tier
(diffusers_ram) when one is given; ``run_batch`` runs compatible jobs as one call (diffusers_batch).
Cancellation is observed between steps through ``callback_on_step_end``. ``diffusers`` and ``torch`` are
imported on the first model load, so the agent runs where they are not installed. Tests may inject
``pipeline_factory`` (path, task) -> pipeline and ``generator_factory`` (seed) -> generator.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.backends import diffusers_loading as loading
from runtime.backends import diffusers_video as video
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
from runtime.backends.diffusers_batch import JobArgs, call_arguments, chunks, job_args, split
from runtime.backends.diffusers_compile import CacheStore, CompileCache, CompileKey, DirectoryStore, S3Store
from runtime.backends.diffusers_lora import Adapters, LoraSet, lora_set
from runtime.backends.diffusers_options import DiffusersOptions
from runtime.backends.diffusers_ram import HostRamTier, NoRamTier, architecture, restore_into, snapshot
from runtime.backends.latent_preview import PREVIEW_EVERY_STEPS, jpeg_frame, latent_rgb
from runtime.jobs.models import Img2VideoInputs, Txt2VideoInputs
from runtime.video.encode import POSTER_CONTENT_TYPE, encode_video

VIDEO_TASKS = ("txt2video", "img2video")
log = logging.getLogger(__name__)


@dataclass
class Resident:
    """The pipeline on the device: whose weights it holds, and its eager and compiled UNets."""

    model_id: str
    pipe: Any
    arch: str
    eager_unet: Any
    compiled_unet: Any = None
    compile_warm: bool = False
    cold_compile_skipped: bool = False
    by_task: dict[str, Any] = field(default_factory=dict)
    scheduler: Any = None  # the model's own scheduler, the template of each call's fresh one


class DiffusersBackend(Backend):
    name = "diffusers"
    supports_batching = True

    def __init__(self, config: Any = None, *, pipeline_factory: Callable[[Path, str], Any] | None = None,
                 generator_factory: Callable[[int], Any] | None = None, device: str | None = None,
                 options: DiffusersOptions | None = None, ram_tier: HostRamTier | None = None,
                 compile_cache: CompileCache | None = None, **_: Any) -> None:
        self._config = config
        self.options = options or DiffusersOptions.from_mapping(getattr(config, "diffusers", None))
        self.device = device or self.options.device  # the agent config's diffusers.device unless a test names one
        self._factory = pipeline_factory
        self._generator_factory = generator_factory or self._torch_generator
        if ram_tier is None and self.options.host_ram_bytes() > 0:
            from runtime.model_cache.ram_tier import HostRamTier as RamTier

            ram_tier = RamTier(self.options.host_ram_bytes())
        self.ram_tier = ram_tier  # the agent reads its keys (model affinity) and sets its metrics sink
        self._ram: HostRamTier = ram_tier or NoRamTier()
        self._compile_cache = compile_cache
        self._pipelines: dict[tuple[str, str], Any] = {}  # injected factories only
        self._model: tuple[str, Path] | None = None
        self.resident: Resident | None = None
        self.loads = {"disk": 0, "ram": 0}
        self.adapters = Adapters(self._ram)  # the LoRAs on the resident pipeline (runtime.backends.diffusers_lora)

    def _torch_generator(self, seed: int) -> Any:
        import torch

        return torch.Generator(device=self.device).manual_seed(seed)

    # -- Backend -------------------------------------------------------------------------------------
    def wait_ready(self, timeout: float) -> None:
        return None  # in-process: ready once imported; model loads and warm-up are timed separately

    def check(self) -> dict[str, Any]:
        return {"backend": self.name, "ready": True, "device": self.device,
                "model": self._model[0] if self._model else None}

    def load_model(self, model_id: str, path: Path | None) -> None:
        if path is None:
            raise JobInputError(f"model {model_id!r} has no local files; the {self.name} backend needs them")
        if self._model and self._model[0] != model_id:
            self._pipelines.clear()  # injected factories: one model at a time
        self._model = (model_id, path)

    def run(self, ctx: JobContext) -> BackendResult:
        if ctx.task in VIDEO_TASKS:
            return self._run_video(ctx)
        outcome = self._run_group([ctx], [self._job_args(ctx)])[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def run_batch(self, ctxs: Sequence[JobContext]) -> list[BackendResult | BackendError]:
        """Run several jobs of the loaded model, compatible ones as one pipeline call (up to ``max_batch``).

        Returns one entry per job, in order: its result, or the error that job alone ends with (an invalid
        input fails only its own job; a cancelled job gets JobInterrupted while the others finish).
        """
        outcomes: list[BackendResult | BackendError | None] = [None] * len(ctxs)
        groups: dict[tuple[Any, ...], list[tuple[int, JobArgs]]] = {}
        for i, ctx in enumerate(ctxs):
            if ctx.task in VIDEO_TASKS:  # a video runs alone (batch_key None); here only when handed one
                try:
                    outcomes[i] = self._run_video(ctx)
                except BackendError as exc:
                    outcomes[i] = exc
                continue
            try:
                args = self._job_args(ctx)
            except JobInputError as exc:
                outcomes[i] = exc
                continue
            groups.setdefault((ctx.task, args.compat), []).append((i, args))
        compiled = self.options.batch_sizes if self.options.compiles(self.device) else ()
        for members in groups.values():
            for picks in chunks([args.count for _, args in members], compiled, self.options.max_batch):
                chunk = [members[k] for k in picks]
                results = self._run_group([ctxs[i] for i, _ in chunk], [a for _, a in chunk])
                for (i, _), result in zip(chunk, results, strict=True):
                    outcomes[i] = result
        return [o if o is not None else BackendError("job was not run") for o in outcomes]

    def batch_key(self, ctx: JobContext) -> tuple[Any, ...] | None:
        """Jobs with equal keys can share one pipeline call (the agent's dynamic batching): same model, task,
        size, steps, guidance, strength, scheduler and LoRAs with their weights; a video runs alone. An invalid
        input raises JobInputError."""
        if ctx.task in VIDEO_TASKS:
            return None
        return (ctx.model, ctx.task, self._job_args(ctx).compat)

    def batch_default_jobs(self) -> int:
        """Batching is on by default on CUDA only, where it measured a gain (eager SDXL on an H100: 0.624
        images/s at batch 4 against 0.330 at batch 1, README). With torch.compile, a batch size that was not
        compiled at warm-up runs eager, so the default is then the largest compiled size
        (``diffusers.batch_sizes``); a worker that skipped a cold compile at boot serves eager and batches."""
        if not self.device.startswith("cuda"):
            return 1
        serving_eager = self.resident is not None and self.resident.cold_compile_skipped
        if self.options.compiles(self.device) and not serving_eager:
            return min(self.options.max_batch, max(self.options.batch_sizes))
        return self.options.max_batch

    def warm_up(self, model_id: str, path: Path | None) -> dict[str, Any]:
        """Boot hook: load the model, compile every bucket x batch size (from the cache when warm), save.

        Any failure is a BackendError: the agent then boots without the warm-up (jobs compile on demand).
        """
        started = time.monotonic()
        self.load_model(model_id, path)
        resident = self._ensure_resident()
        buckets = self.options.buckets_for(loading.family(resident.pipe))
        try:
            for width, height in buckets:
                for batch in self.options.batch_sizes:
                    pipe = self._pipe_for(resident, "txt2img", width, height, batch)
                    pipe(prompt=[""] * batch, width=width, height=height, num_inference_steps=2)
        except (RuntimeError, ValueError, TypeError) as exc:  # torch compile / CUDA errors, out of memory
            raise BackendError(f"{self.name} warm-up of {model_id} failed: {exc}") from exc
        saved = self._compile_cache.save() if resident.compiled_unet is not None and self._compile_cache else 0
        return {"model": model_id, "buckets": len(buckets), "batch_sizes": list(self.options.batch_sizes),
                "compiled": resident.compiled_unet is not None, "cache_was_warm": resident.compile_warm,
                "cold_compile_skipped": resident.cold_compile_skipped,
                "cache_bytes": saved, "seconds": round(time.monotonic() - started, 3)}

    def close(self) -> None:
        self._pipelines.clear()
        self.resident = None

    # -- jobs ----------------------------------------------------------------------------------------
    def _job_args(self, ctx: JobContext) -> JobArgs:
        return job_args(ctx)

    def _call_arguments(self, jobs: Sequence[JobArgs]) -> dict[str, Any]:
        return call_arguments(jobs, self._generator_factory)

    def _run_group(self, ctxs: list[JobContext], jobs: list[JobArgs]) -> list[BackendResult | BackendError]:
        live: list[int] = []
        outcomes: list[BackendResult | BackendError | None] = [None] * len(ctxs)
        for i, ctx in enumerate(ctxs):
            try:
                ctx.check_before_submit()
                live.append(i)
            except JobInterrupted as exc:
                outcomes[i] = exc
        if live:
            self._call([ctxs[i] for i in live], [jobs[i] for i in live], outcomes, live)
        return [o if o is not None else BackendError("no outcome") for o in outcomes]

    def _call(self, ctxs: list[JobContext], jobs: list[JobArgs], outcomes: list, slots: list[int]) -> None:
        task = "img2img" if jobs[0].image is not None else "txt2img"
        images = sum(job.count for job in jobs)
        pipe = self._pipeline(task, jobs[0].width, jobs[0].height, images if jobs[0].guidance > 1.0 else 0)
        args = self._call_arguments(jobs)
        if self.resident is not None and self._factory is None:
            pipe.scheduler = loading.make_scheduler(self.resident.scheduler, jobs[0].scheduler)
            self._apply_loras(pipe, jobs[0].loras, ctxs)

        on_step_end = _step_check(ctxs, self.name, [job.count for job in jobs])
        started = time.monotonic()
        for ctx in ctxs:
            ctx.executing(started)  # in process: the call starts now, and so does each job's time limit
        try:
            result = pipe(**args, callback_on_step_end=on_step_end)
        except BackendError as exc:  # the step callback: a cancel (JobInterrupted) or the time limit
            for slot in slots:
                outcomes[slot] = exc
            return
        except (RuntimeError, ValueError, TypeError) as exc:
            error: BackendError
            if "out of memory" in str(exc).lower():
                error = BackendUnavailable(f"{self.name} ran out of device memory: {exc}")
            else:
                error = BackendError(f"{self.name} pipeline failed: {exc}")
            error.__cause__ = exc
            for slot in slots:
                outcomes[slot] = error
            return
        seconds = round(time.monotonic() - started, 3)
        for slot, ctx, job, pictures in zip(slots, ctxs, jobs, split(result.images, jobs), strict=True):
            if ctx.cancel.is_set():
                outcomes[slot] = JobInterrupted(f"job {ctx.job_id} interrupted during its batch")
                continue
            outcomes[slot] = BackendResult(outputs=[_png(i, image) for i, image in enumerate(pictures)], metadata={
                "backend": self.name, "model": self._model[0] if self._model else None, "seed": job.seed,
                "width": job.width, "height": job.height, "steps": job.steps, "batch_jobs": len(jobs),
                "batch_images": images, "compiled": self._compiled_in_use(pipe), "pipeline_seconds": seconds})

    # -- video ---------------------------------------------------------------------------------------
    def _run_video(self, ctx: JobContext) -> BackendResult:
        """txt2video / img2video (runtime.backends.diffusers_video): latents, then frames decoded in chunks and
        streamed into the encoder (runtime.video.encode)."""
        inputs = ctx.job.inputs
        if not isinstance(inputs, Txt2VideoInputs):
            raise JobInputError(f"a {ctx.task} job needs video inputs")
        pipe = self._pipeline("txt2video", inputs.width, inputs.height, 0)
        if not video.is_video(pipe):
            raise JobInputError(f"model {ctx.model!r} is not a video model: {ctx.task} on the diffusers backend needs "
                                f"a diffusers folder of an AnimateDiff pipeline (an SD 1.5 base with its motion "
                                f"adapter; README \"The diffusers backend\")")
        image = None
        if isinstance(inputs, Img2VideoInputs):
            try:
                from PIL import Image

                image = Image.open(io.BytesIO(ctx.input_images["image"]))
                image.load()
            except (KeyError, OSError, ValueError) as exc:
                raise JobInputError(f"inputs.image is not an image: {exc}") from exc
        ctx.check_before_submit()
        if self.resident is not None and self._factory is None:
            pipe.scheduler = loading.make_scheduler(self.resident.scheduler, inputs.scheduler)
            self._apply_loras(pipe, lora_set(inputs.loras), [ctx])

        on_step_end = _step_check([ctx], self.name)  # a cancel, or the time limit (issue 34), at the next step
        started = time.monotonic()
        ctx.executing(started)  # in process: the call starts now, and so does the job's time limit
        seed = ctx.seed()
        try:
            frames = video.render(pipe, inputs, self._generator_factory(seed), on_step_end, image)
            encoded = encode_video(ctx.report_frames(frames, inputs.frames), width=inputs.width,
                                   height=inputs.height, fps=inputs.fps,
                                   output_format=inputs.output_format, expected_frames=inputs.frames)
        except (RuntimeError, ValueError, TypeError) as exc:
            if "out of memory" in str(exc).lower():
                raise BackendUnavailable(f"{self.name} ran out of device memory: {exc}") from exc
            raise BackendError(f"{self.name} video pipeline failed: {exc}") from exc
        return BackendResult(
            outputs=[OutputFile(f"video-0.{encoded.extension}", encoded.data, encoded.content_type,
                                video=encoded.info()),
                     OutputFile("poster-0.png", encoded.poster, POSTER_CONTENT_TYPE)],
            metadata={"backend": self.name, "model": self._model[0] if self._model else None, "seed": seed,
                      "width": inputs.width, "height": inputs.height, "steps": inputs.steps,
                      "frames": encoded.frames, "fps": encoded.fps, "encode_ms": encoded.encode_ms,
                      "pipeline_seconds": round(time.monotonic() - started, 3)})

    def _apply_loras(self, pipe: Any, loras: LoraSet, ctxs: Sequence[JobContext]) -> None:
        """The call's LoRAs on the resident base (runtime.backends.diffusers_lora): one LoRA (or none) through the
        compiled UNet's hotswap slot when it has one, else adapters on the eager UNet."""
        files = {model_id: extra for ctx in ctxs for model_id, extra in ctx.extra_models.items()}
        try:
            if self._compiled_in_use(pipe) and self.adapters.hotswap_rank and len(loras) <= 1:
                self.adapters.swap(pipe, loras, files)
                return
            if self._compiled_in_use(pipe) and loras:
                pipe.unet = self.resident.eager_unet if self.resident else pipe.unet  # no adapter on a compiled graph
            self.adapters.apply(pipe, loras, files)
        except (OSError, RuntimeError, TypeError) as exc:
            raise BackendError(f"{self.name} could not apply LoRAs {[m for m, _ in loras]}: {exc}") from exc

    # -- pipelines -----------------------------------------------------------------------------------
    def _pipeline(self, task: str, width: int, height: int, images: int) -> Any:
        if self._model is None:
            raise JobInputError("no model loaded")
        if self._factory is not None:
            key = (self._model[0], task)
            if key not in self._pipelines:
                self._pipelines[key] = self._factory(self._model[1], task)
            return self._pipelines[key]
        return self._pipe_for(self._ensure_resident(), task, width, height, images)

    def _pipe_for(self, resident: Resident, task: str, width: int, height: int, images: int) -> Any:
        if video.is_video(resident.pipe):  # one pipeline serves both video tasks (diffusers_video.render)
            return resident.pipe
        if task not in resident.by_task:
            import diffusers

            resident.by_task[task] = loading.image_to_image(diffusers, resident.pipe)
        pipe = resident.by_task[task]
        buckets = self.options.buckets_for(loading.family(resident.pipe))
        # Compiled for classifier-free guidance (2 x images per UNet call); images=0 marks a call without it.
        use_compiled = (resident.compiled_unet is not None and (width, height) in buckets
                        and images in self.options.batch_sizes)
        pipe.unet = resident.compiled_unet if use_compiled else resident.eager_unet  # odd shapes never recompile
        return pipe

    def _compiled_in_use(self, pipe: Any) -> bool:
        return self.resident is not None and self.resident.compiled_unet is not None and \
            getattr(pipe, "unet", None) is self.resident.compiled_unet

    def _ensure_resident(self) -> Resident:
        if self._model is None:
            raise JobInputError("no model loaded")
        model_id, path = self._model
        current = self.resident
        if current is not None and current.model_id == model_id:
            return current
        if current is not None:
            self.adapters.unload(current.pipe)  # the base's own modules back before its weights move
        if current is not None and self._switch_through_ram(current, model_id):
            return current
        self.resident = None
        self._free_device()
        pipe = loading.load(path, self.options, self.device)
        self.loads["disk"] += 1
        resident = Resident(model_id, pipe, architecture(pipe), pipe.unet, scheduler=pipe.scheduler)
        resident.by_task["txt2img"] = pipe
        if self.options.compiles(self.device) and not video.is_video(pipe):  # video runs its motion UNet eager
            self._compile(resident)
        self.resident = resident
        return resident

    def _switch_through_ram(self, current: Resident, model_id: str) -> bool:
        """Keep the outgoing weights in the RAM tier; bring the incoming ones from it if it has them."""
        if isinstance(self._ram, NoRamTier):
            return False  # no tier: do not copy gigabytes to host memory for nothing
        outgoing = f"{current.model_id}@{current.arch}"
        held = self._ram.keys()  # a look, not a use: no hit or miss counted
        if outgoing not in held:  # came from the tier and is still there: nothing to copy
            tensors, nbytes = snapshot(current.pipe, pin=self.device.startswith("cuda"))
            self._ram.put(outgoing, tensors, nbytes)
        incoming = self._ram.get(f"{model_id}@{current.arch}")
        if incoming is None or not restore_into(current.pipe, incoming):
            return False
        current.model_id = model_id
        self.loads["ram"] += 1
        return True

    def _compile(self, resident: Resident) -> None:
        import diffusers
        import torch

        buckets = self.options.buckets_for(loading.family(resident.pipe))
        torch._dynamo.config.cache_size_limit = max(8, 2 * len(buckets) * len(self.options.batch_sizes))
        cache = self._compile_cache or CompileCache(self.options.compile_cache_dir, self._cache_stores())
        self._compile_cache = cache
        gpu = torch.cuda.get_device_name() if self.device.startswith("cuda") else "cpu"
        key = CompileKey(resident.arch, ",".join(f"{w}x{h}" for w, h in buckets) + ";b" + ",".join(
            map(str, self.options.batch_sizes)), gpu, self.options.compile_mode, torch.__version__,
            diffusers.__version__)
        resident.compile_warm = cache.activate(key)
        if not resident.compile_warm and self.options.cold_compile == "skip":
            resident.cold_compile_skipped = True
            log.warning("no compile cache for %s in any store: serving the eager UNet (diffusers.cold_compile=skip; "
                        "genai-compile-cache on this GPU type fills it)", key.slug)
            return
        if self.options.lora_hotswap_rank:  # before compiling: the graph is traced with the LoRA slot in it
            self.adapters.prepare_hotswap(resident.pipe, self.options.lora_hotswap_rank)
        resident.compiled_unet = loading.compile_unet(resident.pipe, self.options.compile_mode, self.device)

    def _cache_stores(self) -> list[CacheStore]:
        """The configured stores in order (folders, ``s3://`` URLs), then the model store's ``compile-cache/``
        (the fleet's shared one, when the agent has a model store), then the instance's own saved copy."""
        urls = list(self.options.compile_cache_stores)
        bucket = getattr(getattr(self._config, "model_cache", None), "store_bucket", None)
        if bucket and f"s3://{bucket}/compile-cache" not in urls:
            urls.append(f"s3://{bucket}/compile-cache")
        stores: list[CacheStore] = []
        for url in urls:
            if url.startswith("s3://"):
                from runtime import aws_clients

                client = aws_clients.client("s3", profile="worker", region=getattr(self._config, "region", None),
                                            endpoint_url=(getattr(self._config, "endpoints", None) or {}).get("s3"))
                stores.append(S3Store.from_url(url, client))
            else:
                stores.append(DirectoryStore(url))
        return [*stores, DirectoryStore(self.options.compile_cache_dir + "/saved")]

    def _free_device(self) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()


def _png(index: int, image: Any) -> OutputFile:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return OutputFile(f"image-{index}.png", buf.getvalue(), "image/png")


def _offer_previews(ctxs: list[JobContext], counts: list[int] | None, pipeline: Any, latents: Any) -> None:
    """Issue 38: each job that wants a preview now gets its first image's latent as a rough RGB image
    (runtime.backends.latent_preview); the JPEG is encoded off this thread. A job's images follow the previous
    jobs' in the batch (``counts``)."""
    if latents is None:
        return
    first = 0
    for i, ctx in enumerate(ctxs):
        if ctx.preview_due() and first < len(latents):
            rgb = latent_rgb(latents[first], xl="XL" in type(pipeline).__name__)
            if rgb is not None:
                ctx.offer_preview(jpeg_frame(rgb))
        first += counts[i] if counts else 1


def _step_check(ctxs: list[JobContext], name: str, counts: list[int] | None = None) -> Any:
    """The pipeline's ``callback_on_step_end``: stop at the next step on a cancel of every job of the call, or when
    any job's time limit ran out (one call: its jobs end together). Each step is reported as every job's progress
    (``step`` is the index of the step just done; ``num_timesteps`` the steps the pipeline runs: fewer than
    ``steps`` for img2img below strength 1)."""

    def on_step_end(pipeline: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        total = getattr(pipeline, "num_timesteps", None)
        for ctx in ctxs:
            steps = total if isinstance(total, int) and total > 0 else getattr(ctx.job.inputs, "steps", None)
            ctx.report(step=min(step + 1, steps) if steps else step + 1, steps=steps)
        if (step + 1) % PREVIEW_EVERY_STEPS == 0:
            _offer_previews(ctxs, counts, pipeline, kwargs.get("latents"))
        if all(ctx.cancel.is_set() for ctx in ctxs):  # one cancelled member does not stop the others
            raise JobInterrupted(f"job(s) {', '.join(c.job_id for c in ctxs)} interrupted at step {step}")
        if any(ctx.deadline is not None and time.monotonic() > ctx.deadline for ctx in ctxs):
            raise BackendError(f"{name} call of job(s) {', '.join(c.job_id for c in ctxs)} ran past the job time "
                               f"limit at step {step}")
        return kwargs

    return on_step_end
