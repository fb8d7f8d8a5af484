"""Video encoding (issue 36, point 2): frames -> MP4 (H.264, yuv420p, fast start) + a poster with PyAV; WebM and
animated WebP/GIF by ``output_format``; frames streamed (never all held); an encoder failure is an
OutputEncodingError that fails the job for good and leaves no file behind."""

from __future__ import annotations

import gc
import io
import weakref

import av
import pytest
from PIL import Image

from runtime.backends.base import JobInterrupted, OutputEncodingError
from runtime.video.encode import FORMATS, encode_video
from runtime.worker.failures import Cause, classify


def _frames(count: int, width: int = 64, height: int = 48):
    for i in range(count):
        image = Image.new("RGB", (width, height), (0, 0, 0))
        image.paste((255, 255, 255), (i * (width - 8) // max(1, count - 1), 0, i * (width - 8) // max(1, count - 1)
                                      + 8, height))
        yield image


def _decoded(data: bytes) -> tuple[int, float, int, int, str, str]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        count = sum(1 for _ in container.decode(stream))
        ctx = stream.codec_context
        return count, float(stream.average_rate), ctx.width, ctx.height, ctx.pix_fmt, stream.codec_context.name


def _top_level_boxes(data: bytes) -> list[str]:
    boxes, at = [], 0
    while at + 8 <= len(data):
        size = int.from_bytes(data[at:at + 4], "big")
        boxes.append(data[at + 4:at + 8].decode("latin-1"))
        if size < 8:
            break
        at += size
    return boxes


def test_mp4_is_h264_yuv420p_fast_start_with_the_requested_frames_fps_and_size():
    video = encode_video(_frames(30), width=64, height=48, fps=12, expected_frames=30)
    assert _decoded(video.data) == (30, 12.0, 64, 48, "yuv420p", "h264")
    boxes = _top_level_boxes(video.data)
    assert boxes.index("moov") < boxes.index("mdat")  # fast start: players begin before the whole file arrives
    assert video.content_type == "video/mp4" and video.extension == "mp4"
    assert video.info() == {"format": "mp4", "frames": 30, "fps": 12, "duration_s": 2.5, "width": 64, "height": 48,
                            "bytes": len(video.data)}
    poster = Image.open(io.BytesIO(video.poster))
    assert poster.format == "PNG" and poster.size == (64, 48)


def test_webm_is_vp9():
    video = encode_video(_frames(10), width=64, height=48, fps=8, output_format="webm")
    assert _decoded(video.data)[:5] == (10, 8.0, 64, 48, "yuv420p") and video.content_type == "video/webm"


@pytest.mark.parametrize("fmt,content_type", [("webp", "image/webp"), ("gif", "image/gif")])
def test_animated_webp_and_gif_loop_for_the_video_length(fmt, content_type):
    video = encode_video(_frames(10), width=64, height=48, fps=10, output_format=fmt)
    image = Image.open(io.BytesIO(video.data))
    assert image.format == fmt.upper() and image.size == (64, 48) and image.n_frames == 10
    assert image.info.get("loop") == 0 and video.content_type == content_type
    total = 0
    for i in range(image.n_frames):
        image.seek(i)
        image.load()  # WebP reports a frame's duration once it is loaded
        total += image.info["duration"]
    assert total == pytest.approx(1000, abs=10 * 10)  # GIF counts in centiseconds


def test_frames_are_streamed_not_held():
    """Each frame is encoded as it arrives: at most a couple of the backend's frames are alive at once."""
    refs: list[weakref.ref] = []
    most = 0

    def tracked():
        nonlocal most
        for frame in _frames(40, 128, 128):
            gc.collect()
            refs.append(weakref.ref(frame))
            most = max(most, sum(1 for r in refs if r() is not None))
            yield frame

    encode_video(tracked(), width=128, height=128, fps=8, expected_frames=40)
    assert most <= 2


def test_an_unknown_format_is_refused_by_name():
    with pytest.raises(OutputEncodingError, match="unknown output_format 'avi'; use one of mp4, webm, webp, gif"):
        encode_video(_frames(2), width=64, height=48, fps=8, output_format="avi")
    assert set(FORMATS) == {"mp4", "webm", "webp", "gif"}


def _broken(count: int):
    yield from _frames(count)
    raise OSError("device lost")  # an FFmpeg or disk error is often an OSError: not infrastructure here


@pytest.mark.parametrize("frames,expected,message", [
    (lambda: _frames(3, 32, 32), None, "frame 0 is 32x32; the video is 64x48"),
    (lambda: _broken(3), None, "libx264 encoding failed at frame 3: OSError: device lost"),
    (lambda: _frames(3), 5, "produced 3 frames; the job asks for 5"),
    (lambda: iter(()), None, "no frames"),
])
def test_an_encoder_failure_is_permanent_and_leaves_no_file(tmp_path, frames, expected, message):
    with pytest.raises(OutputEncodingError, match=message) as info:
        encode_video(frames(), width=64, height=48, fps=8, expected_frames=expected, workdir=tmp_path)
    assert list(tmp_path.iterdir()) == []  # the attempt's files are gone
    disposition = classify(info.value)
    assert disposition.cause is Cause.PERMANENT and disposition.code == "encode-failed"


def test_a_cancel_from_the_frames_passes_through_unchanged(tmp_path):
    def canceled():
        yield from _frames(2)
        raise JobInterrupted("canceled")

    with pytest.raises(JobInterrupted):
        encode_video(canceled(), width=64, height=48, fps=8, workdir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_every_kind_of_frame_encodes_to_the_same_video():
    """The encoder's input path (one reformatter per video, numpy buffers wrapped without a copy: docs/worker.md
    "Video encoding speed") gives the same H.264 stream for PIL frames, HxWx3 arrays, non-contiguous views (a
    diffusers chunk), and grey or RGBA frames the way PIL converts them; a frame of another dtype is refused."""
    import numpy as np

    images = list(_frames(6))
    arrays = [np.asarray(i) for i in images]
    views = [np.asarray(a.transpose(2, 0, 1).copy()).transpose(1, 2, 0) for a in arrays]  # CHW memory, HWC view
    assert not views[0].flags.c_contiguous

    def mp4(frames):
        return encode_video(frames, width=64, height=48, fps=8, expected_frames=6)

    reference = mp4(iter(images))
    assert mp4(iter(arrays)).data == reference.data == mp4(iter(views)).data
    assert mp4(iter(arrays)).poster == reference.poster
    grey = [i.convert("L") for i in images]
    assert mp4(iter(np.asarray(g) for g in grey)).data == mp4(iter(g.convert("RGB") for g in grey)).data
    rgba = [np.dstack([a, np.full(a.shape[:2], 255, np.uint8)]) for a in arrays]
    assert mp4(iter(rgba)).data == reference.data
    with pytest.raises(OutputEncodingError, match="frame 0 has pixels of type float32"):
        mp4(iter(a.astype(np.float32) for a in arrays))
