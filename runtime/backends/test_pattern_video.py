"""The test pattern's video frames: a bar sweeping left to right over the job's colours, with the frame number.

``frames`` yields one frame at a time (the encoder takes each as it comes), so a 240-frame job never holds
more than one decoded frame. The background is the job's test-pattern colours (seed and prompt hash, as the
still image), or the input image for img2video, so a video visibly comes from its job; the bar's position and
the ``frame i/n`` label change every frame, so a player shows motion and a viewer can count frames.
"""

from __future__ import annotations

import hashlib
import io
import random
from collections.abc import Iterator

from PIL import Image, ImageDraw

LABEL = "test-pattern"


def background(prompt: str, seed: int, width: int, height: int, image: bytes | None = None) -> Image.Image:
    """The still every frame starts from: the input image (img2video) scaled to the size, or colour bands."""
    if image is not None:
        return Image.open(io.BytesIO(image)).convert("RGB").resize((width, height))
    digest = hashlib.sha256(f"{seed}:{prompt}".encode()).digest()
    rng = random.Random(digest)
    still = Image.new("RGB", (width, height), tuple(digest[:3]))
    draw = ImageDraw.Draw(still)
    for i in range(8):
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        draw.rectangle([i * width // 8, 0, (i + 1) * width // 8 - 1, height // 2], fill=colour)
    return still


def frames(still: Image.Image, count: int, seed: int) -> Iterator[Image.Image]:
    """``count`` frames over ``still``: a white bar one sixteenth of the width sweeping across, and a label."""
    width, height = still.size
    bar = max(2, width // 16)
    for i in range(count):
        frame = still.copy()
        draw = ImageDraw.Draw(frame)
        x = (width - bar) * i // max(1, count - 1)
        draw.rectangle([x, 0, x + bar - 1, height - 1], fill=(255, 255, 255))
        draw.rectangle([4, height - 22, 4 + 8 * 28, height - 4], fill=(0, 0, 0))
        draw.text((8, height - 20), f"{LABEL}  frame {i + 1}/{count}  seed {seed}", fill=(255, 255, 255))
        yield frame
