"""Issue 38 (2): previews. The worker's preview part (rate, dropped when behind, the gate, the key under previews/,
the event with key and URL), the spec's opt-in field, what each backend offers (test pattern, diffusers' latents,
ComfyUI's binary frames, A1111's current image) and the stack's storage rules for the prefix."""

from __future__ import annotations

import base64
import io
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bench.diffusers_models import tiny_sd
from runtime.backends.comfyui_previews import preview_image
from runtime.backends.test_pattern import TestPatternBackend
from runtime.jobs.errors import ValidationError
from runtime.jobs.events import events_after
from runtime.jobs.output_links import OutputLinks
from runtime.jobs.progress import Progress
from runtime.jobs.schema import JobSpec, fingerprint, validate_job
from runtime.worker.preview_uploader import PREVIEW_INTERVAL_S, PreviewUploader
from runtime.worker.progress_reporter import ProgressReporter
from tests.job_context import job_context


class Clock:
    def __init__(self) -> None:
        self.t = 10.0

    def __call__(self) -> float:
        return self.t


class Store:
    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, str, dict, str | None]] = {}

    def put(self, key: str, data: bytes, content_type: str, metadata: dict | None = None,
            cache_control: str | None = None) -> None:
        self.objects[key] = (data, content_type, dict(metadata or {}), cache_control)


class Events:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def append(self, job_id: str, events: list[dict[str, Any]]) -> None:
        self.events.extend(events)


def _uploader(gate: Any = None) -> tuple[PreviewUploader, Store, Clock]:
    store, clock = Store(), Clock()
    kwargs = {"gate": gate} if gate is not None else {}
    return PreviewUploader(store, monotonic=clock, **kwargs), store, clock


def _jpeg(data: bytes = b"jpeg") -> Any:
    return lambda: (data, "image/jpeg")


# -- the worker's preview part ---------------------------------------------------------------------------------
def test_one_preview_per_interval_and_a_frame_behind_is_dropped():
    uploader, store, clock = _uploader()
    slot = uploader.begin("j_1", 3)
    assert slot.due() and slot.offer(_jpeg(b"1"))
    assert not slot.due() and not slot.offer(_jpeg(b"2"))  # within the interval: dropped
    clock.t += PREVIEW_INTERVAL_S
    assert not slot.due() and not slot.offer(_jpeg(b"2"))  # the first is not uploaded yet (behind): dropped
    uploader.drain()
    assert [(k, v[0]) for k, v in store.objects.items()] == [("previews/j_1/3/0001.jpg", b"1")]
    assert slot.offer(_jpeg(b"4"))  # uploaded, and the interval since the first offer passed
    uploader.drain()
    assert sorted(store.objects) == ["previews/j_1/3/0001.jpg", "previews/j_1/3/0002.jpg"]
    _data, kind, meta, cache = store.objects["previews/j_1/3/0002.jpg"]
    assert (kind, meta["job-id"], cache) == ("image/jpeg", "j_1", "public, max-age=300")


def test_the_gate_can_withhold_a_preview_and_failures_never_raise():
    seen: list[tuple[str, bytes, str]] = []

    def gate(job_id: str, data: bytes, kind: str) -> bool:  # issue 45's hook: e.g. a content check
        seen.append((job_id, data, kind))
        return False

    uploader, store, clock = _uploader(gate)
    slot = uploader.begin("j_1", 3)
    slot.offer(_jpeg(b"unsafe?"))
    uploader.drain()
    assert seen == [("j_1", b"unsafe?", "image/jpeg")] and store.objects == {}

    def broken() -> tuple[bytes, str]:
        raise RuntimeError("encoder failed")

    uploader.gate = lambda *_: True
    clock.t += PREVIEW_INTERVAL_S
    slot.offer(broken)
    uploader.drain()  # logged, dropped
    assert store.objects == {} and slot.due() is False  # the interval counts from the offer
    clock.t += PREVIEW_INTERVAL_S
    assert slot.due()


def test_previews_become_events_of_the_attempt_and_none_after_it_ended():
    events = Events()
    uploader, store, clock = _uploader()
    reporter = ProgressReporter(events, interval_s=3600, monotonic=clock, previews=uploader)
    reporter.begin("j_1", 3, 1)
    sink = reporter.preview_sink("j_1", 3)
    sink.offer(_jpeg())
    uploader.drain()
    clock.t += PREVIEW_INTERVAL_S
    sink.offer(_jpeg(b"late"))  # taken, but the attempt ends before it is uploaded
    reporter.close("j_1", 3)
    uploader.drain()
    reporter.stop()
    previews = [e for e in events.events if e["kind"] == "preview"]
    # the key, never a URL: the events feed makes the link when it hands the event out (next test)
    assert [e["data"] for e in previews] == [{"key": "previews/j_1/3/0001.jpg", "content_type": "image/jpeg"}]
    assert previews[0]["attempt"] == 1 and len(store.objects) == 1
    assert not reporter.note("j_1", 3, "preview", {})  # the attempt is closed: nothing more


def test_the_events_feed_links_a_preview_through_the_output_links_when_it_hands_it_out():
    class Signer:
        def sign(self, url: str, expires_at: int) -> str:
            return f"{url}?Expires={expires_at}&Signature=s"

    stored = [{"cursor": "000003.000002", "kind": "preview", "attempt": 1, "at": 5.0,
               "key": "previews/j_1/3/0001.jpg", "content_type": "image/jpeg"},
              {"cursor": "000003.000003", "kind": "progress", "attempt": 1, "at": 6.0, "stage": "running"}]
    record = {"status": "running", "created_at": 1.0}
    public = events_after(record, stored, "000003.000001", OutputLinks("https://cdn.example.com"))
    assert public[0]["url"] == "https://cdn.example.com/previews/j_1/3/0001.jpg" and "url" not in public[1]
    signed = events_after(record, stored, "000003.000001", OutputLinks("https://cdn.example.com", Signer(), 60,
                                                                       clock=lambda: 100.0))
    assert signed[0]["url"] == "https://cdn.example.com/previews/j_1/3/0001.jpg?Expires=160&Signature=s"
    assert "url" not in stored[0]  # the stored event is not changed


def test_a_job_without_previews_gets_no_sink_and_the_context_never_raises():
    ctx = job_context("j1", "m", "txt2img", None, prompt="a cat", steps=4, width=64, height=64, seed=1)
    assert ctx.previews is None and not ctx.preview_due()
    ctx.offer_preview(_jpeg())  # nobody to take it: nothing happens

    class Broken:
        def due(self) -> bool:
            raise RuntimeError("x")

        def offer(self, frame: Any) -> bool:
            raise RuntimeError("x")

    ctx.previews = Broken()
    assert not ctx.preview_due()
    ctx.offer_preview(_jpeg())
    assert ProgressReporter(Events()).preview_sink("j", 1) is None  # no uploader configured: no previews


# -- the request ---------------------------------------------------------------------------------------------
BODY = {"model": "m", "task": "txt2img", "inputs": {"prompt": "x"}}


def test_preview_is_opt_in_and_leaves_other_specs_as_they_were():
    plain = validate_job(BODY)
    assert "preview" not in plain and not JobSpec.parse(BODY).preview
    assert fingerprint(plain) == fingerprint(validate_job({**BODY, "preview": False}))  # idempotency unchanged
    spec = validate_job({**BODY, "preview": True})
    assert spec["preview"] is True and JobSpec.parse({**BODY, "preview": True}).to_dict()["preview"] is True
    with pytest.raises(ValidationError) as err:
        validate_job({**BODY, "preview": "yes"})
    assert [p.field for p in err.value.problems] == ["preview"]


# -- what the backends offer ---------------------------------------------------------------------------------
class Sink:
    """A preview sink that takes every frame and encodes it at once (the uploader's part is tested above)."""

    def __init__(self) -> None:
        self.frames: list[tuple[bytes, str]] = []

    def due(self) -> bool:
        return True

    def offer(self, frame: Any) -> bool:
        self.frames.append(frame())
        return True


def _size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.size


def test_the_test_pattern_offers_a_jpeg_per_step_when_asked():
    ctx = job_context("j1", "m", "txt2img", None, prompt="a cat", steps=4, width=64, height=64, seed=1)
    ctx.previews = sink = Sink()
    TestPatternBackend(delay_seconds=0).run(ctx)
    assert len(sink.frames) == 4 and {k for _, k in sink.frames} == {"image/jpeg"}
    assert _size(sink.frames[-1][0]) == (64, 64)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_sd(tmp_path_factory.mktemp("models") / "a@v1", seed=0)


def test_diffusers_offers_its_latents_as_rgb_every_n_steps(tiny):
    from runtime.backends.diffusers import DiffusersBackend
    from runtime.backends.diffusers_options import DiffusersOptions
    from runtime.backends.latent_preview import PREVIEW_EVERY_STEPS

    backend = DiffusersBackend(device="cpu", options=DiffusersOptions(compile="off", buckets=((64, 64),)))
    backend.load_model("a", tiny)
    ctx = job_context("j1", "a", "txt2img", None, prompt="a cat", steps=10, width=64, height=64, seed=3)
    ctx.previews = sink = Sink()
    backend.run(ctx)
    assert len(sink.frames) == 10 // PREVIEW_EVERY_STEPS
    assert {k for _, k in sink.frames} == {"image/jpeg"}
    latent_side = 64 // 2 ** (len(backend_vae_blocks(tiny)) - 1)
    assert _size(sink.frames[0][0]) == (latent_side, latent_side)  # a pixel per latent pixel


def backend_vae_blocks(model: Path) -> list[Any]:
    config = json.loads((model / "vae" / "config.json").read_text())
    return config["block_out_channels"]


def test_latent_rgb_follows_comfyuis_factors():
    import torch

    from runtime.backends.latent_preview import latent_rgb

    zero = latent_rgb(torch.zeros(4, 2, 3), xl=False)
    assert zero.shape == (2, 3, 3) and zero.dtype.name == "uint8" and (zero == 128).all()  # (0 + 1) / 2
    one = latent_rgb(torch.tensor([1.0, 0, 0, 0]).reshape(4, 1, 1), xl=False)
    assert one[0, 0].tolist() == [round((0.3512 + 1) / 2 * 255), round((0.2297 + 1) / 2 * 255),
                                  round((0.3227 + 1) / 2 * 255)]
    assert latent_rgb(torch.zeros(4, 1, 1), xl=True)[0, 0].tolist() == [
        round((0.1084 + 1) / 2 * 255), round((-0.0175 + 1) / 2 * 255), round((-0.0011 + 1) / 2 * 255)]
    assert latent_rgb(torch.zeros(16, 2, 2), xl=False) is None  # another family's latent: no wrong preview
    assert latent_rgb(torch.zeros(1, 4, 2, 2), xl=False) is None


def test_comfyuis_binary_preview_frames_are_read_as_it_sends_them():
    jpeg, png = b"\xff\xd8\xff-jpeg", b"\x89PNG\r\n\x1a\n-png"
    assert preview_image(struct.pack(">II", 1, 1) + jpeg, "p1") == (jpeg, "image/jpeg")
    assert preview_image(struct.pack(">II", 1, 2) + png, "p1") == (png, "image/png")
    meta = json.dumps({"node_id": "3", "prompt_id": "p1", "image_type": "image/png"}).encode()
    assert preview_image(struct.pack(">II", 4, len(meta)) + meta + png, "p1") == (png, "image/png")
    assert preview_image(struct.pack(">II", 4, len(meta)) + meta + png, "p2") is None  # another prompt's
    text = struct.pack(">I", 3) + struct.pack(">I", 1) + b"3" + b"some text"  # TEXT (3): not a preview
    assert preview_image(text, "p1") is None
    assert preview_image(struct.pack(">II", 1, 9) + jpeg, "p1") is None  # unknown image type
    assert preview_image(b"\x00\x00", "p1") is None


def test_the_comfyui_adapter_offers_its_prompts_preview_frames(tmp_path: Path):
    from runtime.backends.comfyui import ComfyUIBackend
    from tests.fakes.fake_comfyui import FakeComfyUI

    fake = FakeComfyUI(tmp_path / "comfy" / "models" / "checkpoints", delay=0.3, root=tmp_path / "comfy").start()
    try:
        model = tmp_path / "cache" / "sd15@v1" / "sd15.safetensors"
        model.parent.mkdir(parents=True)
        model.write_bytes(b"weights")
        backend = ComfyUIBackend(base_url=fake.url, model_dir=str(fake.models_dir), poll_seconds=0.05)
        backend.wait_ready(5)
        backend.load_model("sd15", model)
        ctx = job_context("j1", "sd15", "txt2img", None, prompt="a cat", seed=7, steps=10)
        ctx.previews = sink = Sink()
        backend.run(ctx)
        plain = job_context("j2", "sd15", "txt2img", None, prompt="a cat", seed=8, steps=10)
        backend.run(plain)  # no sink: the frames are dropped as before
        backend.close()
    finally:
        fake.stop()
    assert sink.frames and set(sink.frames) == {(b"\xff\xd8fake-jpeg\xff\xd9", "image/jpeg")}


def test_the_a1111_adapter_asks_for_the_current_image_only_when_a_preview_is_due(tmp_path: Path):
    from runtime.backends.a1111 import A1111Backend
    from tests.fakes.fake_a1111 import FakeA1111

    class Never(Sink):
        def due(self) -> bool:
            return False

    fake = FakeA1111(tmp_path / "sd-models", delay=0.6).start()
    try:
        backend = A1111Backend(base_url=fake.url, model_dir=str(fake.models_dir), progress_seconds=0.02)
        ctx = job_context("j1", "m", "txt2img", None, prompt="a cat", seed=3, steps=30)
        ctx.previews = sink = Sink()
        backend.run(ctx)
        later = job_context("j2", "m", "txt2img", None, prompt="a cat", seed=4, steps=30)
        later.previews = never = Never()
        backend.run(later)
        backend.close()
    finally:
        fake.stop()
    assert sink.frames and {k for _, k in sink.frames} == {"image/png"}
    assert all(_size(data) for data, _ in sink.frames)
    assert never.frames == []


def test_a1111_preview_bytes_are_sniffed_not_trusted():
    from runtime.backends.a1111 import _offer_preview

    ctx = job_context("j1", "m", "txt2img", None, prompt="a cat", seed=3, steps=3)
    ctx.previews = sink = Sink()
    _offer_preview(ctx, base64.b64encode(b"not an image").decode())
    _offer_preview(ctx, "%%%")
    _offer_preview(ctx, None)
    assert sink.frames == []
    ctx.report(stage="running")  # unrelated: progress still works with a sink set
    assert isinstance(Progress("running"), Progress)
