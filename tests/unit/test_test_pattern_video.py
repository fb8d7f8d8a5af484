"""The test-pattern backend's videos (issue 36, point 2): txt2video and img2video end with a video whose decoded
frame count, fps and size equal the request, plus a poster; the frames visibly move (a bar sweeping across,
with the frame number); a cancel stops the render between frames; the record keeps the video's facts."""

from __future__ import annotations

import io
import threading

import av
import pytest
from PIL import Image

from runtime.backends.base import JobContext, JobInterrupted
from runtime.backends.test_pattern import TestPatternBackend
from runtime.jobs.errors import ValidationError
from runtime.jobs.models import MAX_VIDEO_PIXELS
from runtime.jobs.schema import JobSpec, validate_job
from runtime.jobs.store import JobStore, new_record


def _ctx(task: str, images: dict | None = None, **inputs) -> JobContext:
    body = {"model": "m", "task": task, "inputs": {"prompt": "a wave", "seed": 7, **inputs}}
    if task == "img2video":
        body["inputs"]["image"] = "https://example.com/start.png"
    return JobContext(job_id="j_1", job=JobSpec.parse(body), input_images=images or {})


def _decode(data: bytes) -> tuple[list[Image.Image], float]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        return [f.to_image() for f in container.decode(stream)], float(stream.average_rate)


def test_txt2video_makes_an_mp4_of_the_requested_frames_fps_and_size_and_a_poster():
    result = TestPatternBackend(delay_seconds=0).run(_ctx("txt2video", frames=24, fps=12, width=128, height=96))
    video, poster = result.outputs
    assert (video.name, video.content_type, poster.name, poster.content_type) == (
        "video-0.mp4", "video/mp4", "poster-0.png", "image/png")
    frames, fps = _decode(video.data)
    assert len(frames) == 24 and fps == 12 and frames[0].size == (128, 96)
    assert video.video == {"format": "mp4", "frames": 24, "fps": 12, "duration_s": 2.0, "width": 128, "height": 96,
                           "bytes": len(video.data)}
    assert Image.open(io.BytesIO(poster.data)).size == (128, 96)


def _bar_x(frame: Image.Image) -> int:
    """Where the white bar is: the column of the top row with the most white pixels around it."""
    row = [frame.getpixel((x, 2)) for x in range(frame.width)]
    whites = [x for x, p in enumerate(row) if min(p) > 235]
    return sum(whites) // len(whites)


def test_the_frames_move_a_bar_sweeps_left_to_right():
    result = TestPatternBackend(delay_seconds=0).run(_ctx("txt2video", frames=16, fps=8, width=256, height=128))
    frames, _ = _decode(result.outputs[0].data)
    xs = [_bar_x(frames[i]) for i in (0, 8, 15)]
    assert xs[0] < 40 < xs[1] < 200 < xs[2], xs


def test_img2video_starts_from_the_input_image():
    start = Image.new("RGB", (64, 64), (0, 0, 255))
    buf = io.BytesIO()
    start.save(buf, format="PNG")
    result = TestPatternBackend(delay_seconds=0).run(
        _ctx("img2video", images={"image": buf.getvalue()}, frames=8, fps=8, width=128, height=128))
    frames, _ = _decode(result.outputs[0].data)
    r, g, b = frames[4].getpixel((100 if _bar_x(frames[4]) < 64 else 20, 40))
    assert b > 200 and r < 40 and g < 40  # the input image's blue, away from the bar
    assert len(frames) == 8


@pytest.mark.parametrize("fmt,content_type", [("webm", "video/webm"), ("webp", "image/webp"), ("gif", "image/gif")])
def test_output_format_picks_the_file(fmt, content_type):
    result = TestPatternBackend(delay_seconds=0).run(_ctx("txt2video", frames=4, fps=4, width=64, height=64,
                                                          output_format=fmt))
    assert result.outputs[0].name == f"video-0.{fmt}" and result.outputs[0].content_type == content_type


def test_a_cancel_stops_the_render_between_frames():
    ctx = _ctx("txt2video", frames=240, fps=24, width=64, height=64)
    backend = TestPatternBackend(delay_seconds=0)
    seen = threading.Event()
    original = backend._interruptible

    def cancel_after_first(c, frames):
        for i, frame in enumerate(original(c, frames)):
            if i == 3:
                c.cancel.set()
                seen.set()
            yield frame

    backend._interruptible = cancel_after_first
    with pytest.raises(JobInterrupted, match="interrupted while rendering its video"):
        backend.run(ctx)
    assert seen.is_set()


def test_a_video_runs_alone_in_a_batch():
    assert TestPatternBackend(delay_seconds=0).batch_key(_ctx("txt2video")) is None


@pytest.mark.parametrize("inputs,field,rule", [
    ({"frames": 240, "width": 1024, "height": 1024}, "inputs.frames", "max-video-pixels"),
    ({"output_format": "avi"}, "inputs.output_format", "enum"),
])
def test_bad_video_input_is_refused_naming_the_field(inputs, field, rule):
    with pytest.raises(ValidationError) as info:
        validate_job({"model": "m", "task": "txt2video", "inputs": {"prompt": "p", **inputs}})
    (problem,) = info.value.problems
    assert (problem.field, problem.rule) == (field, rule)
    if rule == "max-video-pixels":
        assert str(MAX_VIDEO_PIXELS) in problem.message and "240 x 1024 x 1024" in problem.message
    validate_job({"model": "m", "task": "txt2video", "inputs": {"prompt": "p", "frames": 240, "width": 1024,
                                                                 "height": 576}})  # the bound itself is fine


@pytest.fixture
def store(aws_clients, job_table):
    return JobStore(job_table, aws_clients("dynamodb"))


def test_the_record_carries_the_videos_frames_fps_duration_and_size(store):
    spec = validate_job({"model": "m", "task": "txt2video", "inputs": {"prompt": "p"}})
    record, _ = store.create(new_record(spec, owner="k1"))
    store.attempts.start_attempt(record["job_id"], "w-1", 3, 30)
    facts = {"format": "mp4", "frames": 48, "fps": 12, "duration_s": 4.0, "width": 512, "height": 512, "bytes": 9}
    outputs = [{"key": "outputs/v.mp4", "content_type": "video/mp4", "video": facts},
               {"key": "outputs/p.png", "content_type": "image/png"}]
    assert store.mark_succeeded(record["job_id"], outputs, {}) is True
    assert store.get(record["job_id"])["outputs"] == outputs


def test_settlement_writes_the_video_facts_and_content_types_into_the_record():
    from runtime.backends.base import BackendResult, OutputFile
    from tests.unit.test_settlement_rules import Journal, Store, _job, _settlement

    class Recording(Store):
        def mark_succeeded(self, job_id, outputs, timings, lease, cost=None):
            self.outputs = outputs
            return super().mark_succeeded(job_id, outputs, timings, lease)

    journal = Journal()
    store = Recording(journal)
    facts = {"format": "mp4", "frames": 4, "fps": 4, "duration_s": 1.0, "width": 64, "height": 64, "bytes": 3}
    _settlement(journal, store).settle(_job(), BackendResult([OutputFile("video-0.mp4", b"mp4", "video/mp4",
                                                                         video=facts),
                                                              OutputFile("poster-0.png", b"png", "image/png")]))
    assert [(o["content_type"], o.get("video")) for o in store.outputs] == [("video/mp4", facts), ("image/png", None)]
