"""A job's extra model files (``JobContext.extra_models``: fetched by the agent, pinned by the model cache for the
run) placed where an HTTP backend's loaders look (issue 40; lane D's workflow loader files use the same).

``link_extra_model`` links a file into ``<backend models>/<folder of its kind>/`` (ComfyUI's folder names, which
the AMI's backend model tree has: runtime.instance_contract.COMFYUI_MODEL_FOLDERS; A1111's ``--lora-dir`` is the
``loras`` one), named after its store id (``sd15/pix`` -> ``sd15--pix.safetensors``): the name a loader node's
list offers. ``lora_names`` links the job's LoRAs and answers (file name, weight) in the job's order.
"""

from __future__ import annotations

from pathlib import Path

from runtime.backends import _http
from runtime.backends.base import ExtraModel, JobContext, JobInputError

# Model-store kind -> ComfyUI's models folder (folder_paths; runtime.instance_contract.COMFYUI_MODEL_FOLDERS).
KIND_FOLDERS = {"checkpoint": "checkpoints", "lora": "loras", "vae": "vae", "clip": "clip",
                "controlnet": "controlnet", "upscaler": "upscale_models", "embedding": "embeddings"}


def link_extra_model(models_root: Path, model_id: str, extra: ExtraModel) -> str:
    """Link the fetched file of ``model_id`` into ``models_root/<its kind's folder>``; return the name loader nodes
    use. A folder entry must hold one weights file."""
    folder = KIND_FOLDERS.get(extra.kind)
    if folder is None:
        raise JobInputError(f"{model_id} is a {extra.kind}: ComfyUI has no model folder for that kind")
    source = extra.path
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.suffix in (".safetensors", ".ckpt", ".pt", ".pth", ".bin"))
        if len(files) != 1:
            raise JobInputError(f"{model_id}: its cache entry holds {len(files)} weights files; upload one")
        source = files[0]
    return _http.link_model(source, models_root / folder, model_id.replace("/", "--") + source.suffix)


def link_workflow_files(ctx: JobContext, models_root: Path) -> list[str]:
    """comfyui-workflow jobs (issue 41): each extra model file the agent fetched for the graph's loader nodes
    (runtime/worker/workflow_models.py) linked into its kind's folder under its own file name, which is the name the
    graph gives (the manifest file path the API checked it against). Returns the linked names."""
    names = []
    for model_id, extra in ctx.extra_models.items():
        folder = KIND_FOLDERS.get(extra.kind)
        if folder is None:
            raise JobInputError(f"{model_id} is a {extra.kind}: ComfyUI has no model folder for that kind")
        if not extra.path.is_file():
            raise JobInputError(f"{model_id}: a workflow loader names one file; its cache entry is a folder")
        names.append(_http.link_model(extra.path, models_root / folder))
    return names


def lora_names(ctx: JobContext, models_root: Path) -> list[tuple[str, float]]:
    """(file name in ``loras/``, weight) of each of the job's LoRAs, linked; in the job's order."""
    out = []
    for lora in getattr(ctx.job.inputs, "loras", ()):
        extra = ctx.extra_models.get(lora.model)
        if extra is None:
            raise JobInputError(f"LoRA {lora.model} has no local file on this worker (the agent fetches LoRAs "
                                "through its model cache: the agent config needs model_cache.store_bucket)")
        if extra.kind != "lora":
            raise JobInputError(f"inputs.loras: {lora.model} is a {extra.kind} in the model store, not a LoRA")
        out.append((link_extra_model(models_root, lora.model, extra), float(lora.weight)))
    return out
