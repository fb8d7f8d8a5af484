"""What a model of the video kinds (``video``, ``motion_adapter``) must hold, checked when it is uploaded.

A ``video`` model is what a video job's ``model`` names: either a diffusers folder whose model_index.json names a
video pipeline the diffusers backend runs (``VIDEO_PIPELINES``: AnimateDiff, an SD 1.5 base with its motion adapter
as the ``motion_adapter`` component), or a ComfyUI video bundle (``COMFYUI_VIDEO_PARTS``: one weights file in each
of diffusion_models/, text_encoders/ and vae/, linked into ComfyUI's models/ folders by the ComfyUI backend). A
``motion_adapter`` is an AnimateDiff motion adapter on its own: the folder ``MotionAdapter.save_pretrained`` writes
(config.json naming ``MotionAdapter`` plus its weights) or one motion-module weights file, as published.

Both are fetched by the worker's model cache like any model (the cache keys on the S3 key, counts every file in its
budget, and hands a backend the folder, or the file of a one-file model). An upload of the wrong shape is refused
before anything is sent, naming what is missing, so a worker never downloads a model it cannot load.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from runtime.model_store.errors import LayoutError

VIDEO_PIPELINES = ("AnimateDiffPipeline", "AnimateDiffVideoToVideoPipeline")  # model_index.json _class_name
COMFYUI_VIDEO_PARTS = ("diffusion_models", "text_encoders", "vae")  # ComfyUI models/<folder> of each part
WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
VIDEO_KINDS = ("video", "motion_adapter")


def check_contents(kind: str, files: Sequence[tuple[Path, str]]) -> None:
    """Raise LayoutError when ``files`` ((local file, path inside the model)) are not a model of ``kind``;
    kinds other than the video ones are not checked here."""
    if kind == "video":
        _check_video(files)
    elif kind == "motion_adapter":
        _check_motion_adapter(files)


def _json(local: Path, what: str) -> dict:
    try:
        doc = json.loads(local.read_text())
    except (OSError, ValueError) as exc:
        raise LayoutError(f"{what} is not readable JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise LayoutError(f"{what} must be a JSON object")
    return doc


def _weights(rels: Sequence[str], folder: str = "") -> list[str]:
    return [r for r in rels if r.startswith(folder) and "/" not in r[len(folder):] and r.endswith(WEIGHT_SUFFIXES)]


def _check_video(files: Sequence[tuple[Path, str]]) -> None:
    by_rel = {rel: local for local, rel in files}
    if "model_index.json" in by_rel:
        doc = _json(by_rel["model_index.json"], "kind 'video': model_index.json")
        name = doc.get("_class_name")
        if name not in VIDEO_PIPELINES:
            raise LayoutError(f"kind 'video': model_index.json names pipeline {name!r}, which no backend runs as "
                              f"video; expected one of {', '.join(VIDEO_PIPELINES)} (an image pipeline is kind "
                              f"'diffusers')")
        missing = sorted(c for c, spec in doc.items() if not c.startswith("_") and isinstance(spec, list)
                         and spec[:1] != [None] and not any(r.startswith(f"{c}/") for r in by_rel))
        if missing:
            raise LayoutError(f"kind 'video': model_index.json names component folder(s) {', '.join(missing)} "
                              f"that are not in the upload")
        return
    counts = {part: len(_weights(list(by_rel), f"{part}/")) for part in COMFYUI_VIDEO_PARTS}
    if any(counts.values()):
        wrong = {part: n for part, n in counts.items() if n != 1}
        if wrong:
            raise LayoutError("kind 'video': a ComfyUI video bundle holds exactly one weights file in each of "
                              f"{', '.join(p + '/' for p in COMFYUI_VIDEO_PARTS)}; found "
                              + ", ".join(f"{n} in {p}/" for p, n in wrong.items()))
        return
    raise LayoutError("kind 'video': upload a diffusers folder of a video pipeline (model_index.json naming "
                      f"{' or '.join(VIDEO_PIPELINES)}) or a ComfyUI video bundle (one weights file in each of "
                      f"{', '.join(p + '/' for p in COMFYUI_VIDEO_PARTS)}); got {sorted(by_rel)[:5]}")


def _check_motion_adapter(files: Sequence[tuple[Path, str]]) -> None:
    by_rel = {rel: local for local, rel in files}
    if "config.json" in by_rel:
        name = _json(by_rel["config.json"], "kind 'motion_adapter': config.json").get("_class_name")
        if name != "MotionAdapter":
            raise LayoutError(f"kind 'motion_adapter': config.json names {name!r}; a diffusers motion adapter's "
                              f"config names 'MotionAdapter'")
        if not _weights(list(by_rel)):
            raise LayoutError("kind 'motion_adapter': config.json has no weights beside it "
                              "(diffusion_pytorch_model.safetensors)")
        return
    if len(by_rel) == 1 and _weights(list(by_rel)):
        return
    raise LayoutError("kind 'motion_adapter': upload the folder MotionAdapter.save_pretrained writes (config.json "
                      f"+ weights) or one motion-module weights file ({'/'.join(WEIGHT_SUFFIXES)}); got "
                      f"{sorted(by_rel)[:5]}")
