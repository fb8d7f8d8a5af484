"""Where things live in the model store bucket.

``manifest.json`` at the root lists every registered model; artifacts live under
``models/<kind>/<model_id>/<version>/<path>``. Keys are immutable: a new upload of a model gets a new
version (by default the first 16 hex digits of its content hash), so caches may key on the S3 key.
"""

from __future__ import annotations

import re

from runtime.model_ids import MODEL_ID
from runtime.model_store.errors import LayoutError

MANIFEST_KEY = "manifest.json"
MODELS_PREFIX = "models"
SCHEMA_VERSION = 1

# Kind -> what it is. Kinds name the folder a backend loads from (ComfyUI models/<folder>, A1111 models/...).
KINDS: dict[str, str] = {
    "checkpoint": "full model weights (.safetensors / .ckpt)",
    "diffusers": "a diffusers-format model directory (model_index.json plus component folders)",
    "lora": "LoRA / LyCORIS adapter",
    "vae": "VAE weights",
    "controlnet": "ControlNet / T2I adapter weights",
    "embedding": "textual inversion embedding",
    "upscaler": "upscale model (ESRGAN and friends)",
    "clip": "text encoder weights",
    "neuron": "a model compiled for AWS Inferentia2 / Trainium (optimum-neuron output directory)",
    "workflow": "ComfyUI workflow (API format JSON)",
    # Video (issue 36): what runtime/model_store/video_kinds.py checks at upload, and the backends load.
    "video": "a video model: a diffusers folder of a video pipeline (model_index.json naming AnimateDiffPipeline), "
             "or a ComfyUI video bundle (diffusion_models/, text_encoders/, vae/: one file each)",
    "motion_adapter": "an AnimateDiff motion adapter: a diffusers MotionAdapter folder (config.json + weights) or "
                      "one motion-module weights file",
}

# Same rule as components.config's hotModels: lowercase 'name' or 'family/name'.
_MODEL_ID = MODEL_ID
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+-]{0,254}$")


def validate_model_id(model_id: str) -> str:
    if not isinstance(model_id, str) or not _MODEL_ID.match(model_id):
        raise LayoutError(f"model id {model_id!r}: must be lowercase 'name' or 'family/name' of letters, digits, "
                          f"'.', '_' and '-' (each part 1-63 characters)")
    return model_id


def validate_kind(kind: str) -> str:
    if kind not in KINDS:
        raise LayoutError(f"model kind {kind!r}: must be one of {', '.join(KINDS)}")
    return kind


def validate_version(version: str) -> str:
    if not isinstance(version, str) or not _VERSION.match(version):
        raise LayoutError(f"version {version!r}: must be 1-64 characters of letters, digits, '.', '_', '-'")
    return version


def validate_path(path: str) -> str:
    """A file's path inside the model: relative, '/'-separated, no '..', no hidden files."""
    parts = path.split("/") if isinstance(path, str) else [""]
    if not all(_SEGMENT.match(p) for p in parts) or any(p in (".", "..") for p in parts):
        raise LayoutError(f"file path {path!r}: must be relative, '/'-separated, each part made of letters, "
                          f"digits, '.', '_', '+', '-' and not starting with '.'")
    return path


def model_prefix(kind: str, model_id: str, version: str) -> str:
    """Folder of one version of one model: ``models/<kind>/<model_id>/<version>/``."""
    return f"{MODELS_PREFIX}/{validate_kind(kind)}/{validate_model_id(model_id)}/{validate_version(version)}/"


def artifact_key(kind: str, model_id: str, version: str, path: str) -> str:
    return model_prefix(kind, model_id, version) + validate_path(path)
