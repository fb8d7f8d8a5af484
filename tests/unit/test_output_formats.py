"""Issue 44, points 4 and 5: output formats (png | jpeg | webp, output_quality) and the seed used per output.

The formats are checked on the real worker path (runtime.worker.settlement -> output_encoding -> the uploader) with
the tiny diffusers pipeline's images, which are noise-like as a model's are (a test pattern of flat bands is smaller
as PNG than as JPEG, so it would prove nothing). The seeds are checked through the real Executor, which draws a
null seed and asks the backend's ``output_seeds`` hook."""

from __future__ import annotations

import contextlib
import io
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image

from bench.diffusers_models import tiny_sd
from runtime.backends.base import BackendResult, JobContext, OutputFile
from runtime.backends.comfyui import ComfyUIBackend
from runtime.backends.diffusers import DiffusersBackend
from runtime.backends.diffusers_options import DiffusersOptions
from runtime.backends.test_pattern import TestPatternBackend
from runtime.jobs.attempts import Attempt
from runtime.jobs.errors import ValidationError
from runtime.jobs.models import IMAGE_FORMATS, OUTPUT_FORMATS, VIDEO_FORMATS
from runtime.jobs.output_links import OutputLinks
from runtime.jobs.schema import JobSpec, fingerprint, validate_job
from runtime.jobs.views import public_view
from runtime.queues.base import QueueMessage, ReceivedJob
from runtime.worker.backoff import InfraBackoff
from runtime.worker.messages import MessageActions
from runtime.worker.metrics import Metrics
from runtime.worker.outcomes import Outcome
from runtime.worker.output_encoding import encode_outputs
from runtime.worker.outputs import OutputUploader
from runtime.worker.running_job import RunningJob
from runtime.worker.settlement import Settlement
from runtime.worker.stop_signal import StopSignal
from tests.job_context import job_context, png
from tests.unit.test_worker_parts import build_executor

CPU = DiffusersOptions(compile="off", buckets=((64, 64),))


# -- the spec ------------------------------------------------------------------------------------------------------
def _problems(body: dict[str, Any]) -> list[tuple[str, str, str]]:
    with pytest.raises(ValidationError) as info:
        validate_job(body)
    return [(p.field, p.rule, p.message) for p in info.value.problems]


def test_the_formats_of_each_task_are_the_inputs_models_own():
    assert OUTPUT_FORMATS == {"txt2img": IMAGE_FORMATS, "img2img": IMAGE_FORMATS, "comfyui-workflow": IMAGE_FORMATS,
                              "txt2video": VIDEO_FORMATS, "img2video": VIDEO_FORMATS}
    assert IMAGE_FORMATS == ("png", "jpeg", "webp")


def test_a_job_asking_for_no_format_reads_and_fingerprints_as_before():
    plain = validate_job({"model": "m", "inputs": {"prompt": "p"}})
    explicit = validate_job({"model": "m", "inputs": {"prompt": "p", "output_format": "png", "output_quality": None}})
    assert "output_format" not in plain["inputs"] and "output_quality" not in plain["inputs"]
    assert fingerprint(plain) == fingerprint(explicit)
    webp = validate_job({"model": "m", "inputs": {"prompt": "p", "output_format": "webp", "output_quality": 60.0}})
    assert webp["inputs"]["output_format"] == "webp" and webp["inputs"]["output_quality"] == 60
    assert JobSpec.parse(webp).inputs.output_quality == 60  # the worker reads the same typed field


@pytest.mark.parametrize("inputs, field, rule, says", [
    ({"output_format": "gif"}, "inputs.output_format", "enum", "'png', 'jpeg' or 'webp'"),
    ({"output_format": "jpeg", "output_quality": 0}, "inputs.output_quality", "range", "greater than or equal to 1"),
    ({"output_format": "webp", "output_quality": 101}, "inputs.output_quality", "range", "less than or equal to 100"),
    ({"output_format": "jpeg", "output_quality": "90"}, "inputs.output_quality", "type", "integer"),
    ({"output_quality": 80}, "inputs.output_quality", "quality-format", "jpeg and webp outputs, not png"),
])
def test_bad_formats_and_qualities_name_the_field_and_the_bound(inputs, field, rule, says):
    [(got_field, got_rule, message)] = _problems({"model": "m", "inputs": {"prompt": "p", **inputs}})
    assert (got_field, got_rule) == (field, rule) and says in message


def test_video_keeps_its_formats_webp_is_animated_and_takes_no_quality():
    spec = validate_job({"model": "m", "task": "txt2video", "inputs": {"prompt": "p", "output_format": "webp"}})
    assert spec["inputs"]["output_format"] == "webp"
    [(field, rule, message)] = _problems({"model": "m", "task": "txt2video",
                                          "inputs": {"prompt": "p", "output_format": "webp", "output_quality": 50}})
    assert field == "inputs.output_quality" and rule == "quality-format" and "video" in message
    assert _problems({"model": "m", "task": "txt2video", "inputs": {"prompt": "p", "output_format": "jpeg"}})[0][:2] \
        == ("inputs.output_format", "enum")


# -- the worker's output path --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_sd(Path(tmp_path_factory.mktemp("models")) / "a@v1", seed=0)


@pytest.fixture(scope="module")
def diffusers(model_path: Path) -> DiffusersBackend:
    backend = DiffusersBackend(device="cpu", options=CPU)
    backend.load_model("a", model_path)
    return backend


class ModelCache:
    """The worker's model cache for one model already on disk (runtime.model_cache's ``use``)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def use(self, model: str):
        yield SimpleNamespace(hit=True, path=self.path, load_ms=0.0)


class Objects:
    def __init__(self) -> None:
        self.put_calls: dict[str, tuple[bytes, str]] = {}

    def put(self, key, data, content_type, metadata=None, cache_control=None):
        self.put_calls[key] = (data, content_type)

    def delete(self, key):
        self.put_calls.pop(key, None)


class Store:
    def __init__(self) -> None:
        self.outputs: list[dict[str, Any]] = []
        self.attempts = self

    def mark_succeeded(self, job_id, outputs, timings, lease, cost=None):
        self.outputs = list(outputs)
        return True


class Consumer:
    def ack(self, received):
        pass


def _settle(ctx: JobContext, result: BackendResult) -> tuple[list[dict[str, Any]], Objects, dict[str, Any]]:
    objects, store = Objects(), Store()
    settlement = Settlement(store=store, messages=MessageActions(Consumer()),
                            uploader=OutputUploader(objects, "https://cdn.example.com"),
                            metrics=Metrics(sink="memory"), backoff=InfraBackoff(StopSignal()),
                            checkpoint=lambda job, fresh_s=0.0: None, worker_id="w", generator="diffusers",
                            max_attempts=3, retry_delay_seconds=1)
    message = QueueMessage(job_id=ctx.job_id, job=ctx.job.to_dict())
    job = RunningJob(ReceivedJob(message, handle="h"), ctx, Attempt("started", {}, 1, 1))
    job.timings.update(queue_wait_ms=1.0, model_load_ms=1.0, inference_ms=1.0)
    assert settlement.settle(job, result) is Outcome.SUCCEEDED
    return store.outputs, objects, job.timings


@pytest.mark.parametrize("fmt, pillow, content_type, ext", [("webp", "WEBP", "image/webp", "webp"),
                                                            ("jpeg", "JPEG", "image/jpeg", "jpg")])
def test_webp_and_jpeg_decode_as_asked_and_are_smaller_than_the_png_of_the_same_job(diffusers, fmt, pillow,
                                                                                   content_type, ext):
    base = {"prompt": "a cat", "steps": 2, "width": 64, "height": 64, "seed": 3, "num_outputs": 2}
    png_ctx = job_context("png-job", "a", **base)
    png_outputs, png_objects, _ = _settle(png_ctx, diffusers.run(png_ctx))
    ctx = job_context("job", "a", output_format=fmt, **base)
    outputs, objects, timings = _settle(ctx, diffusers.run(ctx))
    assert [o["content_type"] for o in outputs] == [content_type] * 2
    assert [o["key"].rsplit("/", 1)[1] for o in outputs] == [f"image-0.{ext}", f"image-1.{ext}"]
    pngs = sorted(png_objects.put_calls.items())
    for (key, (data, stored_type)), (_, (png_data, png_type)) in zip(sorted(objects.put_calls.items()), pngs,
                                                                      strict=True):
        assert key.endswith(f".{ext}") and stored_type == content_type and png_type == "image/png"
        image = Image.open(io.BytesIO(data))
        assert image.format == pillow and image.size == (64, 64)
        assert len(data) < len(png_data), f"{fmt} {len(data)} B is not smaller than the PNG's {len(png_data)} B"
        # the same picture, lossy
        diff = np.abs(np.asarray(image.convert("RGB"), dtype=np.int16)
                      - np.asarray(Image.open(io.BytesIO(png_data)).convert("RGB"), dtype=np.int16))
        assert diff.mean() < 25
    assert "output_encode_ms" in timings
    assert [o["content_type"] for o in png_outputs] == ["image/png"] * 2


def test_quality_is_applied():
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    buf = io.BytesIO()
    noisy.save(buf, format="PNG")
    files = [OutputFile("image-0.png", buf.getvalue(), "image/png")]
    low = encode_outputs(files, job_context(output_format="jpeg", output_quality=10).job)[0]
    high = encode_outputs(files, job_context(output_format="jpeg", output_quality=95).job)[0]
    assert len(low.data) < len(high.data) and low.name == "image-0.jpg"


def test_png_jobs_video_files_and_animations_are_left_as_they_came():
    still = OutputFile("image-0.png", png(16, 16), "image/png")
    assert encode_outputs([still], job_context().job)[0] is still  # png asked, png made: not re-encoded
    video = [OutputFile("video.webp", b"RIFF....WEBP", "image/webp", video={"format": "webp"}),
             OutputFile("poster-0.png", png(16, 16), "image/png")]
    video_inputs = job_context(task="txt2video", output_format="webp").job
    assert encode_outputs(video, video_inputs) is video  # a video job: its encoder's format, poster PNG
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, format="WEBP", save_all=True, append_images=frames[1:])
    animated = OutputFile("anim.webp", buf.getvalue(), "image/webp")
    assert encode_outputs([animated], job_context(output_format="png").job)[0] is animated


def test_a_file_that_cannot_be_decoded_fails_the_job_with_its_name():
    from runtime.backends.base import OutputEncodingError

    with pytest.raises(OutputEncodingError, match=r"image-0\.png could not be written as webp"):
        encode_outputs([OutputFile("image-0.png", b"not a png", "image/png")],
                       job_context(output_format="webp").job)


def test_jpeg_flattens_transparency_onto_white():
    buf = io.BytesIO()
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(buf, format="PNG")
    out = encode_outputs([OutputFile("i.png", buf.getvalue(), "image/png")],
                         job_context(output_format="jpeg").job)[0]
    assert Image.open(io.BytesIO(out.data)).convert("RGB").getpixel((4, 4)) >= (250, 250, 250)


# -- the seed used -------------------------------------------------------------------------------------------------
SMALL = {"prompt": "a cat", "steps": 2, "width": 64, "height": 64}


def _run_on_worker(backend: Any, path: Path, inputs: dict[str, Any]) -> BackendResult:
    executor, settled, _ = build_executor(backend, model_cache=ModelCache(path))
    spec = {"model": "a", "task": "txt2img", "inputs": inputs}
    message = QueueMessage(job_id="j", job=spec)
    job = RunningJob(ReceivedJob(message, handle="h"), JobContext("j", JobSpec.parse(spec)),
                     Attempt("started", {}, 1, 1))
    assert executor.execute([job]) == [Outcome.SUCCEEDED]
    return settled.answers["j"]


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def test_the_seed_shown_for_each_output_reproduces_it_on_the_tiny_diffusers_pipeline(diffusers, model_path):
    drawn = _run_on_worker(diffusers, model_path, {**SMALL, "num_outputs": 2})
    seeds = drawn.metadata["output_seeds"]
    assert len(seeds) == 2 and seeds[1] == seeds[0] + 1 and all(isinstance(s, int) for s in seeds)
    for n, seed in enumerate(seeds):
        again = _run_on_worker(diffusers, model_path, {**SMALL, "seed": seed})
        assert again.metadata["output_seeds"] == [seed]
        # image i of a job is drawn from its own generator seeded seed + i (up to batched-kernel rounding)
        assert np.abs(_pixels(again.outputs[0].data) - _pixels(drawn.outputs[n].data)).max() <= 2


def test_the_seeds_are_written_on_the_record_and_shown_per_output():
    ctx = job_context("j", "m", prompt="p", seed=41, num_outputs=2, width=64, height=64)
    result = TestPatternBackend().run(ctx)
    result.metadata["output_seeds"] = TestPatternBackend().output_seeds(ctx, result)
    outputs, _, _ = _settle(ctx, result)
    assert [o["seed"] for o in outputs] == [41, 42]
    record = {"job_id": "j", "status": "succeeded", "outputs": [{**o, "seed": Decimal(o["seed"])} for o in outputs]}
    view = public_view(record, "", OutputLinks("https://cdn.example.com"))
    assert [o["seed"] for o in view["outputs"]] == [41, 42] and all(type(o["seed"]) is int for o in view["outputs"])
    old = {"job_id": "k", "status": "succeeded", "outputs": [{"key": "outputs/k/1/image-0.png",
                                                                "content_type": "image/png"}]}
    assert "seed" not in public_view(old, "", None)["outputs"][0]  # a record from before issue 44


def test_backends_that_draw_a_batch_from_one_seed_say_so():
    ctx = job_context("j", "m", prompt="p", seed=7, num_outputs=3)
    result = BackendResult([OutputFile(f"image-{i}.png", b"", "image/png") for i in range(3)])
    assert ComfyUIBackend(base_url="http://127.0.0.1:1").output_seeds(ctx, result) == [7, 7, 7]
    assert TestPatternBackend().output_seeds(ctx, result) == [7, 8, 9]
    workflow = job_context("w", "m", task="comfyui-workflow", workflow={"1": {"class_type": "X", "inputs": {}}})
    assert TestPatternBackend().output_seeds(workflow, result) == [None, None, None]
    video = job_context("v", "m", task="txt2video", prompt="p", seed=5)
    assert TestPatternBackend().output_seeds(video, BackendResult(result.outputs[:2])) == [5, 5]


def test_the_job_store_keeps_each_outputs_seed(store):
    from runtime.jobs.store import new_record

    record, _ = store.create(new_record({"model": "m", "task": "txt2img", "inputs": {"prompt": "x"}, "webhook": None,
                                         "webhook_events_filter": ["completed"]}, owner="k1"))
    attempt = store.attempts.start_attempt(record["job_id"], "w-1", 3, 30)
    outputs = [{"key": "outputs/j/1/image-0.webp", "content_type": "image/webp", "seed": 4294967295},
               {"key": "outputs/j/1/image-1.webp", "content_type": "image/webp", "seed": None}]
    assert store.mark_succeeded(record["job_id"], outputs, {}, lease=attempt.lease)
    view = public_view(store.get(record["job_id"]), "", None)
    assert [(o.get("seed"), o["content_type"]) for o in view["outputs"]] == [(4294967295, "image/webp"),
                                                                              (None, "image/webp")]
