"""Frames -> a video file and its poster image, with PyAV (FFmpeg's libraries, bundled in PyAV's wheel).

``encode_video`` takes the frames as an iterable (PIL images or HxWx3 uint8 arrays) and encodes each one as
it arrives, so a backend that streams its frames (the test pattern; diffusers decoding latents in chunks)
never holds the whole video decoded: memory is one frame, the encoder's look-ahead, and the encoded file.
The file is written to a temporary directory (MP4's fast start moves the index to the front, which needs a
seekable file) that is removed whatever happens; the bytes come back in ``EncodedVideo``.

=======  =================  ============  ==========  =================================================
format   codec (PyAV name)  pixels        type        notes
=======  =================  ============  ==========  =================================================
mp4      libx264            yuv420p       video/mp4   H.264 High, CRF 20, preset superfast (bench/bench_video.py:
                                                      ~1.2x veryfast's speed for ~1.3x its size; docs/worker.md
                                                      "Video encoding speed"),
                                                      ``movflags=+faststart`` (index first), plays everywhere
webm     libvpx-vp9         yuv420p       video/webm  VP9, constant quality, realtime speed
webp     libwebp_anim       yuv420p       image/webp  animated WebP, loops
gif      gif                rgb8          image/gif   animated GIF (a fixed 256-colour palette), loops
=======  =================  ============  ==========  =================================================

Any failure inside the encoder (a codec error, a frame of the wrong size, fewer frames than announced)
raises ``OutputEncodingError`` (runtime.backends.base): the attempt fails with that message, and its
temporary files are gone.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from PIL import Image

from runtime.backends.base import BackendError, OutputEncodingError


@dataclass(frozen=True)
class VideoFormat:
    container: str  # FFmpeg muxer
    codec: str
    pix_fmt: str
    content_type: str
    extension: str
    codec_options: dict[str, str] = field(default_factory=dict)
    container_options: dict[str, str] = field(default_factory=dict)


FORMATS: dict[str, VideoFormat] = {
    "mp4": VideoFormat("mp4", "libx264", "yuv420p", "video/mp4", "mp4",
                       {"preset": "superfast", "crf": "20", "profile": "high"}, {"movflags": "+faststart"}),
    "webm": VideoFormat("webm", "libvpx-vp9", "yuv420p", "video/webm", "webm",
                        {"deadline": "realtime", "cpu-used": "8", "row-mt": "1", "crf": "32", "b": "0"}),
    "webp": VideoFormat("webp", "libwebp_anim", "yuv420p", "image/webp", "webp",
                        {"quality": "80"}, {"loop": "0"}),
    "gif": VideoFormat("gif", "gif", "rgb8", "image/gif", "gif", {}, {"loop": "0"}),
}
POSTER_CONTENT_TYPE = "image/png"


@dataclass(frozen=True)
class EncodedVideo:
    data: bytes
    poster: bytes  # the first frame, PNG
    output_format: str
    frames: int
    fps: int
    width: int
    height: int
    encode_ms: float = 0.0  # time inside the encoder (not waiting for frames): the job cost's encode phase

    @property
    def content_type(self) -> str:
        return FORMATS[self.output_format].content_type

    @property
    def extension(self) -> str:
        return FORMATS[self.output_format].extension

    @property
    def duration_s(self) -> float:
        return round(self.frames / self.fps, 3)

    def info(self) -> dict[str, Any]:
        """What the job record says about the video (``outputs[].video``)."""
        return {"format": self.output_format, "frames": self.frames, "fps": self.fps,
                "duration_s": self.duration_s, "width": self.width, "height": self.height, "bytes": len(self.data)}


def encode_video(frames: Iterable[Any], *, width: int, height: int, fps: int, output_format: str = "mp4",
                 expected_frames: int | None = None, workdir: Path | None = None) -> EncodedVideo:
    """Encode ``frames`` (each ``width`` x ``height``) at ``fps``; raise ``OutputEncodingError`` on any failure.
    ``expected_frames`` (when given) must equal the number of frames the iterable yields."""
    if output_format not in FORMATS:
        raise OutputEncodingError(f"unknown output_format {output_format!r}; use one of {', '.join(FORMATS)}")
    spec = FORMATS[output_format]
    tmp = Path(tempfile.mkdtemp(prefix="genai-video-", dir=workdir))
    try:
        path = tmp / f"out.{spec.extension}"
        count, poster, encode_ms = _encode(frames, path, spec, width, height, fps)
        if count == 0:
            raise OutputEncodingError("the backend produced no frames to encode")
        if expected_frames is not None and count != expected_frames:
            raise OutputEncodingError(f"the backend produced {count} frames; the job asks for {expected_frames}")
        return EncodedVideo(path.read_bytes(), poster, output_format, count, fps, width, height, encode_ms)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _encode(frames: Iterable[Any], path: Path, spec: VideoFormat, width: int, height: int,
            fps: int) -> tuple[int, bytes, float]:
    import av  # imported on first use: only video jobs need FFmpeg
    from av.video.reformatter import VideoReformatter

    count, poster, spent = 0, b"", 0.0
    # One reformatter for the whole video: it keeps its swscale context (and its threads) from frame to frame.
    # ``VideoFrame.reformat`` builds a new one per call, which cost more than the colour conversion itself
    # (bench/bench_video.py; docs/worker.md "Video encoding speed"). Same conversion, same pixels.
    reformatter = VideoReformatter()
    try:
        with av.open(str(path), mode="w", format=spec.container, options=spec.container_options) as container:
            stream = container.add_stream(spec.codec, rate=fps, options=spec.codec_options)
            stream.width, stream.height, stream.pix_fmt = width, height, spec.pix_fmt
            stream.time_base = Fraction(1, fps)
            for frame in frames:
                t = time.monotonic()  # from here to the next frame: the encoder's share of the run
                rgb = _rgb(frame, width, height, count)
                if count == 0:
                    poster = _png(rgb)
                video_frame = reformatter.reformat(av.VideoFrame.from_numpy_buffer(rgb, format="rgb24"),
                                                   format=spec.pix_fmt)
                video_frame.pts, video_frame.time_base = count, Fraction(1, fps)
                container.mux(stream.encode(video_frame))
                count += 1
                spent += time.monotonic() - t
            t = time.monotonic()
            container.mux(stream.encode(None))  # flush the encoder's delayed frames
        spent += time.monotonic() - t
    except BackendError:  # the frames' own (JobInterrupted on cancel, JobInputError) and ours pass unchanged
        raise
    except Exception as exc:  # FFmpeg's errors (some are OSError) all mean "this encode failed"
        raise OutputEncodingError(f"{spec.codec} encoding failed at frame {count}: {type(exc).__name__}: "
                                  f"{str(exc)[:300]}") from exc
    return count, poster, round(spent * 1000, 1)


def _rgb(frame: Any, width: int, height: int, index: int) -> Any:
    """The frame as an HxWx3 uint8 array (no copy when it already is one)."""
    import numpy as np

    if isinstance(frame, Image.Image):
        frame = np.asarray(frame if frame.mode == "RGB" else frame.convert("RGB"))
    else:
        frame = np.asarray(frame)
        if frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] != 3):  # grey or RGBA: through PIL as before
            frame = np.asarray(Image.fromarray(frame).convert("RGB"))
    if frame.ndim != 3 or frame.shape[:2] != (height, width):
        shown = f"{frame.shape[1]}x{frame.shape[0]}" if frame.ndim >= 2 else f"of shape {frame.shape}"
        raise OutputEncodingError(f"frame {index} is {shown}; the video is {width}x{height}")
    if frame.dtype != np.uint8:
        raise OutputEncodingError(f"frame {index} has pixels of type {frame.dtype}; frames are uint8 RGB")
    return np.ascontiguousarray(frame)


def _png(rgb: Any) -> bytes:
    """The poster: the first frame as PNG at zlib level 1 (lossless like any level; ~15x faster to write than the
    default 6 for a slightly larger file: it is fetched once per video)."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
