"""The job request as pydantic models: the one definition that validates requests (``schema.validate_job``)
and that the published OpenAPI document is generated from (``runtime.api.openapi``).

Every bound lives in a ``Field`` here, so the document cannot drift from the validator. Checks JSON Schema
cannot express (URL safety, data URIs, workflow graph shape and size, width x height) are validators on the
same fields; they raise ``PydanticCustomError`` whose type is the API's stable rule code. ``ValidationInfo``
context carries ``allow_loopback`` (local mode).

Numbers are strict (``"512"`` and ``true`` are not integers) except that integral floats (``512.0``) count
as integers, as JSON does not tell them apart.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import re
from typing import Annotated, Any, ClassVar, Literal, Self, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from runtime import model_ids
from runtime.instance_contract import INPUT_URL_PORTS, INPUT_URL_SCHEMES
from runtime.jobs.deadlines import MAX_DEADLINE_SECONDS, MIN_DEADLINE_SECONDS
from runtime.jobs.priorities import DEFAULT_PRIORITY
from runtime.net_safety import UnsafeURLError, check_url_syntax

TASKS = ("txt2img", "img2img", "txt2video", "img2video", "comfyui-workflow")
WEBHOOK_EVENTS = ("start", "output", "completed", "progress")  # progress: opt-in, rate-limited (issue 38)
DEFAULT_WEBHOOK_EVENTS = ("completed",)
MODEL_ID = model_ids.MODEL_ID
SCHEDULER = re.compile(r"^[A-Za-z0-9_+. -]{1,64}$")
IMAGE_NAME = r"^[A-Za-z0-9._-]{1,100}$"
MAX_PROMPT = 4000
MIN_SIDE, MAX_SIDE, MAX_PIXELS = 64, 2048, 2048 * 2048
MAX_STEPS, MAX_GUIDANCE, MAX_SEED, MAX_OUTPUTS = 150, 30.0, 2**32 - 1, 4
MAX_FRAMES, MAX_FPS = 240, 60
MAX_VIDEO_PIXELS = 240 * 1024 * 576  # frames x width x height of one video job (bounds its time and memory)
VIDEO_FORMATS = ("mp4", "webm", "webp", "gif")
MAX_INLINE_IMAGE_CHARS = 150_000
MAX_WORKFLOW_BYTES = 200_000
MAX_WORKFLOW_IMAGES = 8
MAX_URL_CHARS = 2048
MAX_LORAS = 4  # LoRAs of one job (issue 40): each is a file the worker fetches and an adapter on the base
MIN_LORA_WEIGHT, MAX_LORA_WEIGHT = -2.0, 2.0
_DATA_URI = re.compile(r"^data:image/(png|jpeg|webp);base64,([A-Za-z0-9+/=\r\n]*)$")


_INT_FIELDS = frozenset({"width", "height", "steps", "seed", "num_outputs", "frames", "fps", "output_quality"})


def _not_blank(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("required", "must not be empty")
    return value


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise PydanticCustomError("characters", "must not contain NUL characters")
    return value


def _safe_url(value: str, info: ValidationInfo) -> str:
    try:
        check_url_syntax(value, allow_loopback=bool((info.context or {}).get("allow_loopback")))
    except UnsafeURLError as exc:
        raise PydanticCustomError(f"url-{exc.rule}", str(exc)) from None
    return value


def _input_url(value: str, info: ValidationInfo) -> str:
    """An input image URL: the workers fetch it, and their security group lets out HTTPS on 443 only
    (``instance_contract.INPUT_URL_*``); local mode applies the same rule."""
    try:
        check_url_syntax(value, allow_loopback=bool((info.context or {}).get("allow_loopback")),
                         schemes=INPUT_URL_SCHEMES, ports=INPUT_URL_PORTS)
    except UnsafeURLError as exc:
        raise PydanticCustomError(f"url-{exc.rule}", f"{exc} (input images are fetched by the workers, which "
                                                     f"connect out over HTTPS on port 443 only)") from None
    return value


def _image_ref(value: str, info: ValidationInfo) -> str:
    if not value.startswith("data:"):
        return _input_url(value, info)
    if len(value) > MAX_INLINE_IMAGE_CHARS:
        raise PydanticCustomError("max-length", f"inline images must be at most {MAX_INLINE_IMAGE_CHARS} "
                                                "characters; pass larger images by URL")
    m = _DATA_URI.match(value)
    if not m:
        raise PydanticCustomError("data-uri", "must be data:image/png|jpeg|webp;base64,<data>")
    try:
        base64.b64decode(m.group(2), validate=False)
    except (binascii.Error, ValueError):
        raise PydanticCustomError("data-uri", "has invalid base64 data") from None
    return value


Int = Annotated[int, Field(strict=True)]
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Side = Annotated[Int, Field(ge=MIN_SIDE, le=MAX_SIDE, multiple_of=8, description="pixels, a multiple of 8")]
Seed = Annotated[Int | None, Field(ge=0, le=MAX_SEED, description="null: random")]
# Published with the fields (the validators below enforce them, with the API's rule codes).
_NO_NUL = {"pattern": "^[^\\u0000]*$"}
_HTTP_URL = {"format": "uri", "pattern": "^https?://"}
_IMAGE = {"pattern": "^(https://|data:image/(png|jpeg|webp);base64,)"}

Prompt = Annotated[str, Field(strict=True, min_length=1, max_length=MAX_PROMPT, json_schema_extra=_NO_NUL),
                   AfterValidator(_not_blank), AfterValidator(_no_nul)]
Text = Annotated[str, Field(strict=True, max_length=MAX_PROMPT, json_schema_extra=_NO_NUL), AfterValidator(_no_nul)]
Url = Annotated[str, Field(strict=True, min_length=1, max_length=MAX_URL_CHARS, json_schema_extra=_HTTP_URL,
                           description="public http(s) URL; private, loopback and link-local addresses are refused"),
                AfterValidator(_safe_url)]
ImageRef = Annotated[str, Field(strict=True, min_length=1, json_schema_extra=_IMAGE, description=(
    "public https URL on port 443 (what the workers can reach), or data:image/png|jpeg|webp;base64,... "
    f"(at most {MAX_INLINE_IMAGE_CHARS} characters)")), AfterValidator(_image_ref)]

# -- Output formats (issue 44, lane F) ------------------------------------------------------------------------------
# A still image is written as the backend makes it (PNG) and converted by the worker (runtime/worker/output_encoding.py)
# when the job asks for another format; a video's format is its encoder's (VideoFormat below, webp: animated WebP).
# The allowed values per task are the ``output_format`` field of the task's inputs model: OUTPUT_FORMATS reads them.
ImageFormat = Literal["png", "jpeg", "webp"]
IMAGE_FORMATS: tuple[str, ...] = get_args(ImageFormat)
DEFAULT_IMAGE_FORMAT = "png"  # lossless and what every client got before issue 44: a format change is opted into
LOSSY_IMAGE_FORMATS = ("jpeg", "webp")
MIN_QUALITY, MAX_QUALITY = 1, 100
OutputQuality = Annotated[Int | None, Field(ge=MIN_QUALITY, le=MAX_QUALITY, description=(
    "1-100, for jpeg and webp images (null: 85 for jpeg, 80 for webp); png is lossless and takes none"))]
ImageFormatField = Field(default=DEFAULT_IMAGE_FORMAT, description=(
    "png (lossless, the default), jpeg or webp: the format of every output image"))


def _quality_problem(quality: int | None, info: ValidationInfo, formats: tuple[str, ...]) -> int | None:
    """``output_quality`` only where the format has one (a lossy image format; ``formats``)."""
    fmt = info.data.get("output_format")
    if quality is None or fmt is None or fmt in formats:
        return quality
    if not formats:
        raise PydanticCustomError("quality-format", (
            "video outputs take no output_quality (each video format's quality is its encoder's); leave it out"))
    raise PydanticCustomError("quality-format", (
        f"applies to {' and '.join(formats)} outputs, not {fmt}; leave output_quality out or ask for "
        f"output_format {' or '.join(formats)}"))


class _Inputs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)  # read-only once validated: the worker shares it

    @model_validator(mode="before")
    @classmethod
    def _integral_floats(cls, data: Any) -> Any:
        """512.0 -> 512 (JSON has one number type); anything else is left for the strict checks."""
        if not isinstance(data, dict):
            return data
        return {k: int(v) if k in _INT_FIELDS and isinstance(v, float) and v.is_integer() else v
                for k, v in data.items()}

    def normalized(self) -> dict[str, Any]:
        """The inputs as the queue message carries them: defaults filled in, unset optional images left out."""
        out = self.model_dump()
        for optional in ("scheduler", "mask", "images"):
            if out.get(optional) is None:
                out.pop(optional, None)
        _drop_format_defaults(out)  # issue 44
        if "loras" in out:  # no LoRA: left out, so a job without one reads (and fingerprints) as before
            out["loras"] = list(out["loras"])
            if not out["loras"]:
                del out["loras"]
        return out


def _drop_format_defaults(out: dict[str, Any]) -> None:
    """Issue 44: a job that asks for no output format or quality reads (and fingerprints) as before."""
    if out.get("output_format") == DEFAULT_IMAGE_FORMAT:
        del out["output_format"]
    if "output_quality" in out and out["output_quality"] is None:
        del out["output_quality"]


class LoraRef(BaseModel):
    """One LoRA of a job (issue 40): a model-store id of kind ``lora`` and the weight it is applied with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Annotated[str, Field(strict=True, pattern=MODEL_ID.pattern, description=(
        "model-store id of a LoRA whose base family is the job's model's (see GET /v1/models)"))]
    weight: Annotated[Number, Field(ge=MIN_LORA_WEIGHT, le=MAX_LORA_WEIGHT, description=(
        "scale the adapter is applied with; 1.0 is its full strength"))] = 1.0


def _distinct_loras(loras: tuple[LoraRef, ...]) -> tuple[LoraRef, ...]:
    seen: set[str] = set()
    for lora in loras:
        if lora.model in seen:
            raise PydanticCustomError("duplicate", f"names LoRA {lora.model!r} twice; give each LoRA once, with "
                                                   "the sum of its weights")
        seen.add(lora.model)
    return loras


Loras = Annotated[tuple[LoraRef, ...], Field(max_length=MAX_LORAS, description=(
    f"LoRAs applied to the job's model, at most {MAX_LORAS}, each once")), AfterValidator(_distinct_loras)]


class Txt2ImgInputs(_Inputs):
    prompt: Prompt
    negative_prompt: Text = ""
    width: Side = 1024
    height: Side = 1024
    steps: Annotated[Int, Field(ge=1, le=MAX_STEPS)] = 30
    guidance: Annotated[Number, Field(ge=0, le=MAX_GUIDANCE)] = 7.0
    seed: Seed = None
    num_outputs: Annotated[Int, Field(ge=1, le=MAX_OUTPUTS)] = 1
    scheduler: Annotated[str, Field(strict=True, pattern=SCHEDULER.pattern)] | None = None
    loras: Loras = ()
    # issue 44: output format and quality (video tasks narrow output_format to VideoFormat and take no quality)
    output_format: ImageFormat = ImageFormatField
    output_quality: OutputQuality = None
    quality_formats: ClassVar[tuple[str, ...]] = LOSSY_IMAGE_FORMATS

    @field_validator("output_quality")
    @classmethod
    def _quality(cls, quality: int | None, info: ValidationInfo) -> int | None:
        return _quality_problem(quality, info, cls.quality_formats)

    def with_seed(self, rng: random.Random | None = None) -> Self:
        """These inputs with a null ``seed`` drawn at random ("null: random"); unchanged when it is set."""
        if self.seed is not None:
            return self
        # issue 44: drawn so that every output's seed (seed + i, runtime.backends.base.output_seeds) can be sent back
        return self.model_copy(update={"seed": (rng or random).randrange(MAX_SEED + 2 - self.num_outputs)})

    @field_validator("height")
    @classmethod
    def _pixels(cls, height: int | None, info: ValidationInfo) -> int | None:
        width = info.data.get("width")
        if width and height and width * height > MAX_PIXELS:
            raise PydanticCustomError("max-pixels", f"width x height must be at most {MAX_PIXELS} pixels")
        return height


class Img2ImgInputs(Txt2ImgInputs):
    image: ImageRef
    mask: ImageRef | None = None
    strength: Annotated[Number, Field(ge=0, le=1)] = 0.75
    width: Side | None = Field(default=None, description="null: the input image's width")
    height: Side | None = Field(default=None, description="null: the input image's height")


VideoFormat = Literal["mp4", "webm", "webp", "gif"]  # VIDEO_FORMATS; runtime.video.encode.FORMATS encodes each


class Txt2VideoInputs(Txt2ImgInputs):
    width: Side = 512
    height: Side = 512
    num_outputs: Annotated[Int, Field(ge=1, le=1)] = 1
    frames: Annotated[Int, Field(ge=1, le=MAX_FRAMES, description=(
        f"frames x width x height must be at most {MAX_VIDEO_PIXELS} (240 frames of 1024x576)"))] = 16
    fps: Annotated[Int, Field(ge=1, le=MAX_FPS)] = 8
    output_format: VideoFormat = Field(default="mp4", description=(
        "mp4 (H.264, yuv420p, fast start), webm (VP9), webp (animated WebP) or gif (animated GIF); "
        "a poster image (PNG, the first frame) comes with it"))
    quality_formats: ClassVar[tuple[str, ...]] = ()  # issue 44: each video format's quality is its encoder's

    @field_validator("frames")
    @classmethod
    def _video_pixels(cls, frames: int, info: ValidationInfo) -> int:
        width, height = info.data.get("width"), info.data.get("height")
        if width and height and frames * width * height > MAX_VIDEO_PIXELS:
            raise PydanticCustomError("max-video-pixels", (
                f"frames x width x height must be at most {MAX_VIDEO_PIXELS} (240 frames of 1024x576); "
                f"got {frames} x {width} x {height} = {frames * width * height}: ask for fewer frames or a "
                "smaller size"))
        return frames


class Img2VideoInputs(Txt2VideoInputs):
    """A video that starts from ``image`` (image -> video); size, frames and fps as txt2video."""

    image: ImageRef


class WorkflowNode(BaseModel):
    model_config = ConfigDict(extra="allow")

    class_type: Annotated[str, Field(strict=True, min_length=1)]


def _workflow_size(workflow: dict[str, WorkflowNode]) -> dict[str, WorkflowNode]:
    size = len(json.dumps({k: v.model_dump() for k, v in workflow.items()}, separators=(",", ":")).encode())
    if size > MAX_WORKFLOW_BYTES:
        raise PydanticCustomError("max-size", f"must be at most {MAX_WORKFLOW_BYTES} bytes of JSON (got {size})")
    return workflow


class WorkflowInputs(_Inputs):
    workflow: Annotated[dict[str, WorkflowNode], Field(min_length=1, description=(
        "ComfyUI API-format graph: node id -> {class_type, inputs}")), AfterValidator(_workflow_size)]
    images: Annotated[dict[Annotated[str, Field(pattern=IMAGE_NAME)], ImageRef],
                      Field(max_length=MAX_WORKFLOW_IMAGES, json_schema_extra={"propertyNames": {
                          "pattern": IMAGE_NAME}})] | None = None
    seed: Annotated[Int | None, Field(ge=0, le=MAX_SEED, description=(
        "written into every seed / noise_seed input of the graph; null: the graph's own seeds"))] = None
    # issue 44: the graph's still images are converted by the worker like every backend's
    output_format: ImageFormat = ImageFormatField
    output_quality: OutputQuality = None
    quality_formats: ClassVar[tuple[str, ...]] = LOSSY_IMAGE_FORMATS

    @field_validator("output_quality")
    @classmethod
    def _quality(cls, quality: int | None, info: ValidationInfo) -> int | None:
        return _quality_problem(quality, info, cls.quality_formats)

    def normalized(self) -> dict[str, Any]:
        out = {k: v for k, v in self.model_dump().items() if v is not None}  # nulls inside the graph stay
        _drop_format_defaults(out)  # issue 44
        return out

    def with_seed(self, rng: random.Random | None = None) -> Self:
        """Unchanged: a workflow without a seed keeps the seeds its graph holds."""
        return self

    def graph(self) -> dict[str, dict[str, Any]]:
        """The workflow as ComfyUI's API format takes it: node id -> {class_type, inputs, ...} (a fresh copy)."""
        return {node_id: node.model_dump() for node_id, node in self.workflow.items()}


# The typed inputs of a job, one class per task: what the worker and the backends read (runtime.jobs.schema.JobSpec).
JobInputs = Txt2ImgInputs | Img2ImgInputs | Txt2VideoInputs | Img2VideoInputs | WorkflowInputs
TASK_INPUTS: dict[str, type[_Inputs]] = {"txt2img": Txt2ImgInputs, "img2img": Img2ImgInputs,
                                         "txt2video": Txt2VideoInputs, "img2video": Img2VideoInputs,
                                         "comfyui-workflow": WorkflowInputs}
# issue 44: the output formats of each task, read from its inputs model (the one definition of them)
OUTPUT_FORMATS: dict[str, tuple[str, ...]] = {
    task: get_args(model.model_fields["output_format"].annotation) for task, model in TASK_INPUTS.items()}
Task = Literal["txt2img", "img2img", "txt2video", "img2video", "comfyui-workflow"]
Event = Literal["start", "output", "completed", "progress"]


# -- Labels (issue 44, lane F) -------------------------------------------------------------------------------------
# ``metadata``: the app's own labels on a job (an end-user id, tags), returned on the job and in webhooks and usable
# as a filter of GET /v1/jobs. Bounded so that a record and a queue message stay small (16 x (64 + 256) < 6 KB).
MAX_METADATA_KEYS, MAX_METADATA_KEY, MAX_METADATA_VALUE = 16, 64, 256
METADATA_KEY = rf"^[A-Za-z0-9_.:-]{{1,{MAX_METADATA_KEY}}}$"
MetadataValue = Annotated[str, Field(strict=True, max_length=MAX_METADATA_VALUE, json_schema_extra=_NO_NUL),
                          AfterValidator(_no_nul)]
Metadata = Annotated[dict[Annotated[str, Field(pattern=METADATA_KEY)], MetadataValue], Field(
    max_length=MAX_METADATA_KEYS, json_schema_extra={"propertyNames": {"pattern": METADATA_KEY}}, description=(
        f"your own labels: at most {MAX_METADATA_KEYS} keys of 1-{MAX_METADATA_KEY} characters (letters, digits, "
        f"_ . : -), each a string of at most {MAX_METADATA_VALUE} characters; returned on the job and in webhooks, "
        "and a filter of GET /v1/jobs (metadata.<key>=<value>)"))]


# -- Retention (issue 44, lane F) -----------------------------------------------------------------------------------
# ``retention_seconds``: how long the job's record and outputs are kept, shorter than the stack's (the record's 30
# days; the outputs bucket's outputRetentionDays bounds the outputs anyway). ``store_inputs: false``: the record never
# holds the prompt or the input images (runtime/jobs/retention.py).
MIN_RETENTION_SECONDS, MAX_RETENTION_SECONDS = 3600, 30 * 86400


class JobEnvelope(BaseModel):
    """The fields every job has; ``inputs`` is checked against ``TASK_INPUTS[task]`` (see ``job_request_models``)."""

    model_config = ConfigDict(extra="forbid")

    model: Annotated[str, Field(strict=True, pattern=MODEL_ID.pattern,
                                description="lowercase model id: 'name' or 'family/name' (see GET /v1/models)")]
    task: Task = "txt2img"
    inputs: Annotated[dict[str, Any], Field(strict=True)]
    webhook: Url | None = None
    webhook_events_filter: list[Event] = Field(default_factory=lambda: list(DEFAULT_WEBHOOK_EVENTS))
    # issue 44 (lane D): the seconds the job may wait for its start (runtime.jobs.deadlines)
    deadline_seconds: Annotated[Int, Field(ge=MIN_DEADLINE_SECONDS, le=MAX_DEADLINE_SECONDS, description=(
        "seconds after creation by which a worker must start the job; not started by then it ends canceled "
        "(cancel_reason: deadline), not run and not charged. Default: the stack's (sync or async)"))] | None = None
    metadata: Metadata = Field(default_factory=dict)  # issue 44: labels
    # issue 44: retention
    retention_seconds: Annotated[Int, Field(ge=MIN_RETENTION_SECONDS, le=MAX_RETENTION_SECONDS, description=(
        "delete the job's record and outputs this long after it was created (1 hour to 30 days; shorter than "
        "the stack's retention, which applies without it)"))] | None = None
    store_inputs: Annotated[bool, Field(strict=True, description=(
        "false: the job record never holds the prompt, negative prompt, input images or workflow (the worker "
        "reads them from the queue message); GET and webhooks show the other inputs"))] = True
    priority: Annotated[Literal["high", "normal", "low"], Field(description=(
        f"the job's class (runtime.jobs.priorities); within the key's ceiling (max_priority), else 403. "
        f"Default: {DEFAULT_PRIORITY}"))] | None = None
    # issue 38 (lane P): previews of the running job, linked from its events; off by default
    preview: Annotated[bool, Field(strict=True, description="low-resolution previews while the job runs, linked "
                                   "from GET /v1/jobs/{id}/events (kind preview); kept a day")] = False


def job_request_models() -> list[type[BaseModel]]:
    """One request model per task, ``task`` a required literal and ``inputs`` that task's model: the variants
    of the published ``JobRequest`` (a ``oneOf``: ``task`` tells them apart), built from the same classes."""
    from pydantic import create_model

    fields = {name: (info.annotation, info) for name, info in JobEnvelope.model_fields.items()
              if name not in ("task", "inputs")}
    variants: list[type[BaseModel]] = []
    default = JobEnvelope.model_fields["task"].default
    for task, inputs_model in TASK_INPUTS.items():
        name = "".join(part.capitalize() for part in task.replace("2", " 2 ").replace("-", " ").split()) + "Job"
        # The default task's variant does not require ``task``: a body without it is that task, as the
        # validator reads it; every other variant requires its own name.
        task_field = (Field(default=task, description=f"selects the inputs; defaults to {task} when left out")
                      if task == default else Field(description="selects the inputs"))
        variants.append(create_model(name, __config__=ConfigDict(extra="forbid"),
                                     task=(Literal[task], task_field), inputs=(inputs_model, ...), **fields))
    return variants
