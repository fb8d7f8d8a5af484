"""ComfyUI's binary preview frames on its websocket (issue 38), as ComfyUI 0.3.64 sends them (server.py
``encode_bytes`` / ``send_image`` / ``send_image_with_metadata``, protocol.py ``BinaryEventTypes``):

- every binary message starts with the event type, a big-endian uint32;
- ``PREVIEW_IMAGE`` (1): then the image type, a big-endian uint32 (1: JPEG, 2: PNG), then the encoded image.
  A sampler's preview (latent_preview.py) reaches clients this way unless they announced the feature flag
  ``supports_preview_metadata``; the adapter announces nothing, so this is what it gets;
- ``PREVIEW_IMAGE_WITH_METADATA`` (4): then the metadata length (uint32), the metadata JSON (``prompt_id``,
  ``node_id``, ``image_type`` as a MIME type...) and the encoded image.

ComfyUI makes previews only when started with ``--preview-method`` other than ``none`` (its default:
comfy/cli_args.py), server-wide, and sends them to the client id of the running prompt.
"""

from __future__ import annotations

import json
import struct

PREVIEW_IMAGE, PREVIEW_IMAGE_WITH_METADATA = 1, 4
_IMAGE_TYPES = {1: "image/jpeg", 2: "image/png"}


def preview_image(message: bytes, prompt_id: str) -> tuple[bytes, str] | None:
    """``(image bytes, content type)`` from one binary message, or None (another kind, another prompt, malformed)."""
    if len(message) < 8:
        return None
    event, second = struct.unpack(">II", message[:8])
    if event == PREVIEW_IMAGE:
        kind = _IMAGE_TYPES.get(second)
        return (bytes(message[8:]), kind) if kind and len(message) > 8 else None
    if event == PREVIEW_IMAGE_WITH_METADATA:
        end = 8 + second
        try:
            meta = json.loads(message[8:end])
        except ValueError:
            return None
        if not isinstance(meta, dict) or meta.get("prompt_id") not in (None, prompt_id):
            return None
        kind = meta.get("image_type")
        return (bytes(message[end:]), kind) if kind in _IMAGE_TYPES.values() and len(message) > end else None
    return None
