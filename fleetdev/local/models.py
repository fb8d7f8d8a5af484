"""What local mode puts in its model store, checked before anything starts.

``--model ID=PATH`` names a model to upload with the real upload code (runtime/model_store). For the
ComfyUI and A1111 backends PATH is a checkpoint file (kind ``checkpoint``), or for ComfyUI a video bundle folder
(diffusion_models/, text_encoders/, vae/: kind ``video``). For the diffusers backend it is a diffusers folder, the
layout ``save_pretrained`` writes (model_index.json plus one folder per component), uploaded as kind
``diffusers`` (``video`` when its pipeline is a video one: AnimateDiff); without any ``--model`` the diffusers
backend gets the tiny random-weight pipelines of ``TINY_MODELS``, built from configs (bench/diffusers_models.py,
seeded) into the run directory, so the agents' model cache, the diffusers backend's host-RAM tier and model
switching run on real files with no download.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from runtime.model_store.layout import LayoutError, validate_model_id
from runtime.model_store.video_kinds import COMFYUI_VIDEO_PARTS, VIDEO_PIPELINES

# model id -> (tiny family of bench.diffusers_models.TINY_FAMILIES, seed). Two SD 1.x models of one
# architecture (different weights): switching between them goes through the RAM tier; the SDXL one does not.
TINY_MODELS: dict[str, tuple[str, int]] = {"tiny-sd": ("sd15", 0), "tiny-sd-b": ("sd15", 1),
                                           "tiny-sdxl": ("sdxl", 0)}


class LocalModelError(ValueError):
    """A ``--model`` the chosen backend cannot serve; the message says what was expected."""


@dataclass(frozen=True)
class LocalModel:
    model_id: str
    path: Path
    kind: str  # model store kind: checkpoint | diffusers | video
    tiny: bool = False  # built here from configs (random weights)
    family: str | None = None  # recorded in the manifest (a LoRA's base family; issue 40)


def diffusers_layout_problem(folder: Path) -> str | None:
    """None when ``folder`` is a diffusers pipeline folder; otherwise what is wrong with it."""
    index = folder / "model_index.json"
    if not index.is_file():
        return "it has no model_index.json"
    try:
        doc = json.loads(index.read_text())
    except (OSError, ValueError) as exc:
        return f"its model_index.json is not JSON ({exc})"
    if not isinstance(doc, dict) or not isinstance(doc.get("_class_name"), str):
        return "its model_index.json has no _class_name (the pipeline class)"
    components = {name: spec for name, spec in doc.items() if not name.startswith("_") and isinstance(spec, list)
                  and len(spec) == 2 and all(isinstance(part, str) for part in spec)}
    if not components:
        return "its model_index.json names no components"
    missing = sorted(name for name in components if not (folder / name).is_dir())
    if missing:
        return f"model_index.json names component folder(s) {', '.join(missing)} that are not there"
    return None


def store_kind(folder: Path) -> str:
    """The model store kind of a diffusers folder: ``video`` when its pipeline is a video one (AnimateDiff)."""
    name = json.loads((folder / "model_index.json").read_text()).get("_class_name")
    return "video" if name in VIDEO_PIPELINES else "diffusers"


def check(models: dict[str, str], backend: str) -> dict[str, LocalModel]:
    """The models as the chosen backend will serve them, or a LocalModelError naming the bad one."""
    out: dict[str, LocalModel] = {}
    for model_id, raw in models.items():
        try:
            validate_model_id(model_id)
        except LayoutError as exc:
            raise LocalModelError(f"--model {model_id}={raw}: {exc}") from exc
        path = Path(raw).expanduser()
        if not path.exists():
            raise LocalModelError(f"--model {model_id}={raw}: no such file or folder")
        if backend == "diffusers":
            problem = diffusers_layout_problem(path) if path.is_dir() else "it is a file"
            if problem:
                raise LocalModelError(
                    f"--model {model_id}={raw} is not a diffusers folder: {problem}. The diffusers backend takes "
                    "the layout save_pretrained writes: model_index.json plus one folder per component "
                    "(unet/, vae/, text_encoder/, tokenizer/, scheduler/ ...)")
            out[model_id] = LocalModel(model_id, path, store_kind(path))
        else:
            bundle = path.is_dir() and any((path / part).is_dir() for part in COMFYUI_VIDEO_PARTS)
            out[model_id] = LocalModel(model_id, path, "video" if bundle else "checkpoint")
    return out


def upload_source(model: LocalModel, staging: Path) -> Path:
    """What to upload for ``model``: its path, or for a folder holding hidden files (``.cache/`` of a Hugging
    Face download) a view of it without them, made of symlinks under ``staging``: the model store never holds a
    hidden path (runtime.model_store.layout.validate_path)."""
    if model.path.is_file():
        return model.path
    files = [f for f in sorted(model.path.rglob("*")) if f.is_file()]
    if all(not part.startswith(".") for f in files for part in f.relative_to(model.path).parts):
        return model.path
    view = staging / model.model_id
    for f in files:
        rel = f.relative_to(model.path)
        if any(part.startswith(".") for part in rel.parts):
            continue
        (view / rel).parent.mkdir(parents=True, exist_ok=True)
        (view / rel).symlink_to(f.resolve())
    return view


def build_tiny_loras(folder: Path, loras: dict[str, tuple[str, int]],
                     models: dict[str, LocalModel]) -> dict[str, LocalModel]:
    """Tiny LoRAs (bench.diffusers_loras), LoRA id -> (base model id, seed), each for its base's UNet and uploaded
    with the base's id as its family (the tiny bases' ids have no family prefix: each is a family of its own)."""
    from bench.diffusers_loras import tiny_lora

    out = {}
    for lora_id, (base, seed) in loras.items():
        if base not in models:
            raise LocalModelError(f"tiny LoRA {lora_id}: base {base} is not one of the models ({', '.join(models)})")
        path = tiny_lora(models[base].path, folder / lora_id.replace("/", "--"), seed=seed)
        out[lora_id] = LocalModel(lora_id, path, "lora", tiny=True, family=base)
    return out


def build_tiny(folder: Path, models: dict[str, tuple[str, int]] | None = None) -> dict[str, LocalModel]:
    """Build the tiny pipelines (``TINY_MODELS`` by default) under ``folder``: a second or two on a CPU."""
    from bench.diffusers_models import tiny

    out = {}
    for model_id, (family, seed) in (models or TINY_MODELS).items():
        path = tiny(family, folder / model_id, seed=seed)
        out[model_id] = LocalModel(model_id, path, "diffusers", tiny=True)
    return out
