"""Output formats (issue 44): a job's still images in the format it asked for, converted once on the worker.

Every backend hands back its images as it makes them (PNG; a ComfyUI workflow whatever its save nodes write).
Here, before the upload, each still image (PNG, JPEG or WebP) not already in the job's ``output_format`` is
re-encoded with Pillow at ``output_quality`` (null: ``DEFAULT_QUALITY``); its file name's extension and its
content type follow the format. Video jobs are left alone: their ``output_format`` is the video encoder's
(runtime.video.encode, where ``webp`` is animated WebP), and their poster stays PNG. An animated image a workflow
wrote (an animated WebP) is left as it is: converting would keep only its first frame.

JPEG has no alpha channel: an image with transparency is flattened onto white. A file that cannot be decoded
or encoded is an ``OutputEncodingError`` (the same bytes would fail again: the job fails, runtime.worker.failures).
"""

from __future__ import annotations

import io
from dataclasses import replace
from typing import Any

from runtime.backends.base import OutputEncodingError, OutputFile
from runtime.jobs.models import DEFAULT_IMAGE_FORMAT, IMAGE_FORMATS, OUTPUT_FORMATS
from runtime.jobs.schema import JobSpec

CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}
DEFAULT_QUALITY = {"jpeg": 85, "webp": 80}  # Pillow's defaults are 75 and 80; 85 keeps JPEG's banding out of skies
_STILL_TYPES = frozenset(CONTENT_TYPES.values())


def requested_format(spec: JobSpec) -> tuple[str, int | None] | None:
    """(format, quality) a job's still images are written in; None: a video job (its encoder decides)."""
    if OUTPUT_FORMATS.get(spec.task) != IMAGE_FORMATS:
        return None
    inputs = spec.inputs
    fmt = getattr(inputs, "output_format", DEFAULT_IMAGE_FORMAT)
    quality = getattr(inputs, "output_quality", None)
    return fmt, (quality if quality is not None else DEFAULT_QUALITY.get(fmt))


def encode_outputs(files: list[OutputFile], spec: JobSpec) -> list[OutputFile]:
    """``files`` with every still image in the job's format (the others, and a video job's files, unchanged);
    ``files`` itself when nothing needed converting."""
    wanted = requested_format(spec)
    if wanted is None:
        return files
    fmt, quality = wanted
    out = [_converted(f, fmt, quality) if f.video is None and f.content_type in _STILL_TYPES else f for f in files]
    return files if all(a is b for a, b in zip(out, files, strict=True)) else out


def _converted(f: OutputFile, fmt: str, quality: int | None) -> OutputFile:
    from PIL import Image, UnidentifiedImageError

    if f.content_type == CONTENT_TYPES[fmt]:
        return f  # already in the format (a PNG backend's PNG, a workflow's own JPEG): written as it came
    try:
        with Image.open(io.BytesIO(f.data)) as image:
            if getattr(image, "is_animated", False):
                return f
            image.load()
            buf = io.BytesIO()
            _save(image, buf, fmt, quality)
    except (OSError, ValueError, UnidentifiedImageError) as exc:
        raise OutputEncodingError(f"output {f.name} could not be written as {fmt}: {exc}") from exc
    stem = f.name.rsplit(".", 1)[0] if "." in f.name else f.name
    return replace(f, name=f"{stem}.{EXTENSIONS[fmt]}", data=buf.getvalue(), content_type=CONTENT_TYPES[fmt])


def _save(image: Any, buf: io.BytesIO, fmt: str, quality: int | None) -> None:
    from PIL import Image

    if fmt == "jpeg":
        if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            flat = Image.new("RGB", rgba.size, (255, 255, 255))
            flat.paste(rgba, mask=rgba.getchannel("A"))
            image = flat
        elif image.mode != "RGB":
            image = image.convert("RGB")
        image.save(buf, format="JPEG", quality=quality, optimize=True)
    elif fmt == "webp":
        if image.mode not in ("RGB", "RGBA"):
            image = image.convert("RGBA" if "transparency" in image.info or image.mode == "LA" else "RGB")
        image.save(buf, format="WEBP", quality=quality, method=4)
    else:
        image.save(buf, format="PNG", optimize=False)
