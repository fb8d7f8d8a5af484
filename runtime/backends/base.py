"""The backend interface every adapter implements, and the registry that picks one from config.

Error hierarchy (foreign exceptions are mapped at each adapter's boundary, chained with ``from``)::

    BackendError                 any failure inside a backend adapter
    ├── BackendUnavailable       the backend is down, crashed or answered 5xx: retry (another attempt)
    ├── BackendBusy              the backend never started this attempt's work (other work held it): handed
    │                            back uncounted
    ├── JobInputError            the job cannot succeed as given (bad workflow, unknown node): fail now
    ├── OutputEncodingError      frames could not be encoded into the requested file (runtime.video): fail now
    └── JobInterrupted           the job was interrupted on request (cancel or drain)

Backends are chosen by name through ``REGISTRY`` (name -> "module:Class"), imported lazily so that a
GPU-only backend's heavy imports never happen on an instance that runs another backend. ``CATALOG`` is the
one list of backend names: the agent config's check, the stack's per-flavour check (components/config_settings.py)
and local mode derive theirs from it. It also says which tasks each backend serves (``served_tasks``): the stack
passes them to the API (``GENAI_TASKS``), which refuses any other task with 422 before anything is written.
For the video tasks it also says which ``output_format`` values the backend writes and which model store kinds
it makes a video from (``video_capabilities``): the stack passes them on too (``GENAI_VIDEO_FORMATS``,
``GENAI_VIDEO_MODEL_KINDS``), and the API refuses a format or a model the fleet cannot make a video with.
"""

from __future__ import annotations

import abc
import importlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from runtime.jobs.models import TASK_INPUTS, TASKS, VIDEO_FORMATS, Txt2ImgInputs
from runtime.jobs.progress import Progress
from runtime.jobs.schema import JobSpec
from runtime.model_cache.ram_tier import HostRamTier


class BackendError(Exception):
    """A failure inside a backend adapter."""


class BackendUnavailable(BackendError):  # noqa: N818 - reads as a state, like ConnectionRefused
    """The backend is down, crashed or answered with a server error; the job may be retried."""


class BackendBusy(BackendError):  # noqa: N818 - reads as a state
    """The backend never started this attempt's work (it waited behind other work): handed back uncounted."""


class JobInputError(BackendError):
    """The job can never succeed as given (bad workflow, unknown model, rejected input URL)."""


class OutputEncodingError(BackendError):
    """The backend's frames could not be encoded into the requested video file (runtime.video.encode): the
    same frames would fail again, so the job fails now with this message (runtime.worker.failures)."""


class JobInterrupted(BackendError):  # noqa: N818
    """The job was interrupted on request (cancellation or drain)."""


@dataclass(frozen=True)
class OutputFile:
    """One produced file, ready to upload."""

    name: str  # file name under outputs/<job_id>/
    data: bytes
    content_type: str
    video: dict[str, Any] | None = None  # a video's format, frames, fps, duration_s, width, height, bytes


@dataclass
class BackendResult:
    outputs: list[OutputFile]
    metadata: dict[str, Any] = field(default_factory=dict)  # merged into the job record's outputs metadata


@dataclass(frozen=True)
class ExtraModel:
    """A model file a job needs beyond its model (a LoRA, a file a workflow's loader node names), made local by
    the agent from the model cache and pinned for the run (runtime.jobs.extra_models, runtime.worker.extra_models).
    """

    path: Path  # the local weights file (or folder) in the model cache
    kind: str  # the model store's kind: lora, checkpoint, vae, controlnet... (runtime.model_store.layout)


class PreviewSink(Protocol):
    """Where a job's previews go (runtime/worker/preview_uploader.py): ``due`` before making one, ``offer`` it."""

    def due(self) -> bool: ...

    def offer(self, frame: Callable[[], tuple[bytes, str]]) -> bool: ...


@dataclass
class JobContext:
    """What a backend needs to run one job.

    ``job`` is the typed spec the API validated (runtime.jobs.schema.JobSpec): backends read its fields
    (``ctx.job.inputs.steps``) and hold no limits or defaults of their own for them.
    """

    job_id: str
    job: JobSpec  # model, task, inputs (the task's model from runtime.jobs.models), webhook
    model_path: Path | None = None  # local file (or directory) of the job's model, from the model cache
    # store id -> ExtraModel for every id of runtime.jobs.extra_models.extra_model_ids(job), from the model cache
    # (pinned until the run ends); empty where the agent has no model cache or the backend uses no model files
    extra_models: dict[str, ExtraModel] = field(default_factory=dict)
    input_images: dict[str, bytes] = field(default_factory=dict)  # name -> bytes, fetched and checked by the agent
    cancel: threading.Event = field(default_factory=threading.Event)
    # The job's time limit counts from when the backend starts executing this attempt's work (``executing``), not
    # from the claim: work queued inside the backend behind other work is not charged for the wait.
    time_limit_s: float | None = None
    deadline: float | None = None  # time.monotonic() value after which the backend should give up (set by executing)
    # Until when the work may wait inside the backend before it starts (``submitted`` sets it one time limit after
    # the submission); past it the attempt goes back uncounted (BackendBusy).
    start_deadline: float | None = None
    executing_since: float | None = None
    # One id per attempt (a JobContext is built per attempt): backends name their server-side work with
    # ``backend_id`` so that no attempt can read or stop another attempt's prompt, task or files.
    attempt_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    # Called right before a backend submits work (the agent's cancel check); raises JobInterrupted to stop.
    before_submit: Callable[[], None] | None = None
    # Where this attempt's progress goes (the worker's ProgressReporter, runtime/worker/progress_reporter.py);
    # None: nobody follows it. Backends call ``report``, never this directly.
    progress: Callable[[Progress], None] | None = None
    # This attempt's preview sink when the job asked for previews (runtime/worker/preview_uploader.py); None: no
    # previews. Backends call ``preview_due`` / ``offer_preview``, never this directly (issue 38).
    previews: PreviewSink | None = None

    @property
    def backend_id(self) -> str:
        """The id of this attempt's work on the backend: ``<job_id>.<attempt_id>``."""
        return f"{self.job_id}.{self.attempt_id}"

    def submitted(self) -> None:
        """The backend accepted this attempt's work into its queue: it may wait there one time limit."""
        if self.start_deadline is None and self.time_limit_s is not None:
            self.start_deadline = time.monotonic() + self.time_limit_s

    def executing(self, now: float | None = None) -> None:
        """The backend started executing this attempt's work: the time limit starts counting (once)."""
        if self.executing_since is not None:
            return
        self.executing_since = time.monotonic() if now is None else now
        if self.time_limit_s is not None:
            self.deadline = self.executing_since + self.time_limit_s

    def report(self, stage: str = "running", **fields: Any) -> None:
        """The backend's progress (runtime.jobs.progress.Progress fields: step, steps, frames_done, frames, percent):
        as often as it likes (per step, per frame); cheap, and it never raises into the backend."""
        sink = self.progress
        if sink is None:
            return
        try:
            sink(Progress(stage=stage, **fields))
        except Exception:  # progress must never fail a job
            logging.getLogger(__name__).debug("progress report dropped", exc_info=True)

    def preview_due(self) -> bool:
        """Whether a preview offered now would be taken (the job asked for previews and its rate allows one): ask
        before making a frame, so a backend spends nothing on previews nobody takes. Cheap, never raises."""
        sink = self.previews
        try:
            return sink is not None and sink.due()
        except Exception:  # noqa: BLE001 - previews must never fail a job
            return False

    def offer_preview(self, frame: Callable[[], tuple[bytes, str]]) -> None:
        """Offer a preview: ``frame()`` returns ``(image bytes, content type)`` and runs on the uploader's thread,
        off the backend's path (encode there). Dropped when not due; never raises."""
        sink = self.previews
        if sink is None:
            return
        try:
            sink.offer(frame)
        except Exception:  # previews must never fail a job
            logging.getLogger(__name__).debug("preview dropped", exc_info=True)

    def report_frames(self, frames: Iterable[Any], total: int) -> Iterator[Any]:
        """``frames``, each one the encoder takes reported as progress (stage ``encoding``)."""
        done = 0
        for frame in frames:
            self.report("encoding", frames_done=done, frames=total)
            yield frame
            done += 1
        self.report("encoding", frames_done=done, frames=total)

    def check_before_submit(self) -> None:
        """Backends call this last thing before submitting, so a cancel that came in meanwhile wins."""
        if self.before_submit is not None:
            self.before_submit()
        if self.cancel.is_set():
            raise JobInterrupted(f"job {self.job_id} interrupted before submission")

    @property
    def model(self) -> str:
        return self.job.model

    @property
    def task(self) -> str:
        return self.job.task

    def seed(self) -> int:
        """The seed of an image or video job: the request's, or the one this attempt drew for a null seed
        (``JobSpec.with_seed``, which the agent applies before the run; drawn here for a caller that did not)."""
        self.job = self.job.with_seed()
        seed = self.job.inputs.seed
        if seed is None:
            raise JobInputError(f"a {self.task} job has no seed to draw (a workflow keeps its graph's seeds)")
        return int(seed)

    def image_inputs(self) -> Txt2ImgInputs:
        """The inputs of an image task (txt2img and the tasks built on its fields: img2img, txt2video), for the
        backends that build their own graph or call; a workflow job is a JobInputError there."""
        inputs = self.job.inputs
        if not isinstance(inputs, Txt2ImgInputs):
            raise JobInputError(f"this backend does not run {self.task} jobs")
        return inputs


class Backend(abc.ABC):
    """One inference backend. The agent calls ``wait_ready`` once, then ``load_model``/``run`` per job.

    Dynamic batching (runtime.worker.batching) is optional: a backend that sets ``supports_batching`` answers
    ``batch_key`` (equal keys can share one call) and ``run_batch``; the defaults never batch.
    """

    name: str = "backend"
    supports_batching: bool = False  # True: batch_key and run_batch serve compatible jobs as one call
    uses_model_files: bool = True  # False: the agent fetches no model files for it (the test pattern)
    ram_tier: HostRamTier | None = None  # models kept in host RAM, where the backend has such a tier (diffusers)

    @abc.abstractmethod
    def wait_ready(self, timeout: float) -> None:
        """Block until the backend answers; raise BackendUnavailable after ``timeout`` seconds."""

    def check(self) -> dict[str, Any]:
        """A cheap health probe; raise BackendUnavailable when the backend is not usable."""
        self.wait_ready(timeout=5.0)
        return {"backend": self.name, "ready": True}

    def load_model(self, model_id: str, path: Path | None) -> None:  # noqa: B027 - optional hook
        """Make ``model_id`` (local ``path``) the active model. Default: nothing to do."""

    def warm_up(self, model_id: str, path: Path | None) -> dict[str, Any] | None:
        """Boot hook, before the launching lifecycle action completes: load (and compile) a hot model."""
        return None

    @abc.abstractmethod
    def run(self, ctx: JobContext) -> BackendResult:
        """Run one job; observe ``ctx.cancel`` and raise JobInterrupted when it is set."""

    def batch_key(self, ctx: JobContext) -> Hashable | None:
        """Jobs with equal keys can share one ``run_batch`` call; None: this job runs alone.
        An invalid input raises JobInputError (the job then runs alone and fails with it)."""
        return None

    def run_batch(self, ctxs: Sequence[JobContext]) -> list[BackendResult | BackendError]:
        """Run jobs with one batch key; one outcome per job, in order (its result or its own error).
        Default: one ``run`` per job."""
        outcomes: list[BackendResult | BackendError] = []
        for ctx in ctxs:
            try:
                outcomes.append(self.run(ctx))
            except BackendError as exc:
                outcomes.append(exc)
        return outcomes

    # Issue 44: how this backend seeds the images of one job. True: image i is drawn from its own generator seeded
    # seed + i, so a job of one output with that seed makes it again; False: one seed draws the whole batch.
    seeds_each_image = True

    def output_seeds(self, ctx: JobContext, result: BackendResult) -> list[int | None]:
        """The seed used for each of ``result``'s outputs, written on the job (issue 44): the seed that, in the same
        request, makes that output again. Image i: seed + i where ``seeds_each_image`` (a request with that seed and
        num_outputs 1 reproduces it), else the job's seed (the same request with the same num_outputs reproduces
        the set). A video and its poster: the job's seed. A workflow: its seed, None where the graph kept its own."""
        seed = getattr(ctx.job.inputs, "seed", None)
        files = result.outputs
        if seed is None:
            return [None] * len(files)
        if ctx.task in ("txt2img", "img2img") and self.seeds_each_image:
            return [int(seed) + i for i in range(len(files))]
        return [int(seed)] * len(files)

    def batch_default_jobs(self) -> int:
        """The most jobs per call when the agent config does not say (1: no batching)."""
        return 1

    def interrupt(self, ctx: JobContext) -> None:
        """Ask the backend to stop the running job (called from another thread)."""
        ctx.cancel.set()

    def sweep(self, older_than_s: float) -> int:
        """Delete what attempts left on the backend (history entries, files) older than ``older_than_s``; returns how
        many things went. Called between calls, so nothing of a running attempt is touched. Default: nothing kept."""
        return 0

    def restart_needed(self) -> str | None:
        """Why the backend must be restarted before it runs more work, once (the reason is taken): work it was
        told to stop (a cancel or a time limit) did not stop within the adapter's grace period, so everything
        sent to it after would wait behind that work. The agent restarts the backend's service and waits until it
        answers (runtime.worker.backend_supervisor). Default: never (in-process backends end the agent instead)."""
        return None

    def close(self) -> None:  # noqa: B027
        """Release clients and in-process models."""


@dataclass(frozen=True)
class BackendEntry:
    """One backend: where its class lives, and the AMI flavours that install what it needs."""

    target: str  # "module:Class"; the class takes (config, **deps) where deps are keyword-only services
    flavors: tuple[str, ...]  # packer/: cuda (NVIDIA GPU) and neuron (Inferentia2 / Trainium)
    tasks: tuple[str, ...]  # the job tasks it serves (runtime.jobs.models.TASKS): the API refuses the others
    # The tasks on which it applies inputs.loras (issue 40); None: every served task that has them. The API refuses
    # LoRAs on the others with 422.
    lora_tasks: tuple[str, ...] | None = None
    # For its video tasks: the output formats it writes, and the model store kinds a video is made from ((): any
    # model: the test pattern draws its frames). The API refuses the others (runtime/api/video_capabilities.py).
    video_formats: tuple[str, ...] = VIDEO_FORMATS
    video_model_kinds: tuple[str, ...] = ()


# The only list of backend names (order: the per-flavour lists and error messages show them in this order).
_IMAGE_TASKS = ("txt2img", "img2img")
CATALOG: dict[str, BackendEntry] = {
    # ComfyUI's video tasks run its default Wan graph (runtime/backends/comfyui_video.py) on a video model folder.
    # LoRAs: LoraLoader nodes in its default image graph; its default video graph takes none yet.
    # No core ComfyUI node writes GIF (comfyui_video.WRITERS); its video graph loads a kind 'video' bundle.
    "comfyui": BackendEntry("runtime.backends.comfyui:ComfyUIBackend", ("cuda",),
                            (*_IMAGE_TASKS, "txt2video", "img2video", "comfyui-workflow"), lora_tasks=_IMAGE_TASKS,
                            video_formats=("mp4", "webm", "webp"), video_model_kinds=("video",)),
    "a1111": BackendEntry("runtime.backends.a1111:A1111Backend", ("cuda",), _IMAGE_TASKS),
    "diffusers": BackendEntry("runtime.backends.diffusers:DiffusersBackend", ("cuda",),
                              (*_IMAGE_TASKS, "txt2video", "img2video"), video_model_kinds=("video",)),
    # Neuron runs graphs compiled ahead of time with their weights: no adapter can be added per job.
    "neuron": BackendEntry("runtime.backends.neuron:NeuronBackend", ("neuron",), _IMAGE_TASKS, lora_tasks=()),
    "test-pattern": BackendEntry("runtime.backends.test_pattern:TestPatternBackend", ("cuda", "neuron"),
                                 (*_IMAGE_TASKS, "txt2video", "img2video", "comfyui-workflow")),
}
NAMES: tuple[str, ...] = tuple(CATALOG)
REGISTRY: dict[str, str] = {name: entry.target for name, entry in CATALOG.items()}


def flavor_backends(flavor: str) -> tuple[str, ...]:
    """The backends an AMI flavour can run, in catalog order (empty for an unknown flavour)."""
    return tuple(name for name, entry in CATALOG.items() if flavor in entry.flavors)


def served_tasks(name: str) -> tuple[str, ...]:
    """The tasks backend ``name`` serves, in ``runtime.jobs.models.TASKS`` order (what the stack tells the API)."""
    try:
        entry = CATALOG[name]
    except KeyError as exc:
        raise BackendError(f"unknown backend {name!r}; known: {', '.join(NAMES)}") from exc
    return tuple(task for task in TASKS if task in entry.tasks)


def lora_tasks(name: str) -> tuple[str, ...]:
    """The served tasks on which backend ``name`` applies a job's LoRAs (what the stack tells the API as
    ``GENAI_LORA_TASKS``): those whose inputs have ``loras``, or none where the backend cannot apply them."""
    applied = CATALOG[name].lora_tasks
    return tuple(t for t in served_tasks(name) if "loras" in TASK_INPUTS[t].model_fields
                 and (applied is None or t in applied))


def video_capabilities(name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(output formats, model store kinds) of backend ``name``'s video tasks; () when it serves no video task.
    Kinds () mean any model."""
    entry = CATALOG.get(name)
    if entry is None:
        raise BackendError(f"unknown backend {name!r}; known: {', '.join(NAMES)}")
    if not {"txt2video", "img2video"} & set(entry.tasks):
        return (), ()
    return tuple(f for f in VIDEO_FORMATS if f in entry.video_formats), entry.video_model_kinds


def backend_class(name: str) -> Callable[..., Backend]:
    """Resolve a backend name to its class (imports the module on first use)."""
    try:
        target = REGISTRY[name]
    except KeyError as exc:
        raise BackendError(f"unknown backend {name!r}; known: {', '.join(sorted(REGISTRY))}") from exc
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def create(config: Any, **deps: Any) -> Backend:
    """Build the backend the agent config names."""
    return backend_class(config.backend)(config, **deps)
