"""The model store and cache know the video kinds (issue 36): a video model (an AnimateDiff diffusers folder or a
ComfyUI video bundle) and an AnimateDiff motion adapter are validated at upload, uploaded, fetched by the worker's
model cache through the manifest, and counted in its budget; a wrong shape is refused before anything is sent."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from fleetdev.local.models import check
from runtime.model_cache import ModelCache, manifest_resolver
from runtime.model_store import LayoutError
from runtime.model_store.layout import KINDS
from runtime.model_store.upload import plan, upload


def animatediff_folder(root: Path, class_name: str = "AnimateDiffPipeline") -> Path:
    """The layout AnimateDiffPipeline.save_pretrained writes (configs and a few bytes of 'weights')."""
    components = ("motion_adapter", "scheduler", "text_encoder", "tokenizer", "unet", "vae")
    index = {"_class_name": class_name, "_diffusers_version": "0.35.1",
             "feature_extractor": [None, None], "image_encoder": [None, None],
             **{c: ["diffusers", "X"] for c in components}}
    root.mkdir(parents=True)
    (root / "model_index.json").write_text(json.dumps(index))
    for c in components:
        (root / c).mkdir()
        (root / c / "config.json").write_text("{}")
        (root / c / "diffusion_pytorch_model.safetensors").write_bytes(b"w" * 300)
    return root


def comfy_bundle(root: Path, extra_vae: bool = False) -> Path:
    for part, name in (("diffusion_models", "wan.safetensors"), ("text_encoders", "umt5.safetensors"),
                       ("vae", "wan_vae.safetensors")):
        (root / part).mkdir(parents=True)
        (root / part / name).write_bytes(b"b" * 200)
    if extra_vae:
        (root / "vae" / "other.safetensors").write_bytes(b"x")
    return root


def motion_adapter_folder(root: Path, class_name: str = "MotionAdapter") -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"_class_name": class_name, "block_out_channels": [8, 16]}))
    (root / "diffusion_pytorch_model.safetensors").write_bytes(b"m" * 500)
    return root


def test_the_video_kinds_are_store_kinds():
    assert {"video", "motion_adapter"} <= set(KINDS)


def test_video_models_and_motion_adapters_upload_and_are_fetched_and_counted_by_the_cache(moto_endpoint,
                                                                                          tmp_path: Path):
    from fleetdev.worker_support import Stack
    from runtime.worker.aws import ObjectStore

    stack = Stack(moto_endpoint)
    s3, bucket = stack.s3, stack.models_bucket
    single = tmp_path / "mm_sd_v15_v2.ckpt"
    single.write_bytes(b"s" * 400)
    uploads = {
        "animatediff/tiny": ("video", animatediff_folder(tmp_path / "ad")),
        "wan/ti2v": ("video", comfy_bundle(tmp_path / "wan")),
        "animatediff/adapter": ("motion_adapter", motion_adapter_folder(tmp_path / "ma")),
        "animatediff/mm-v2": ("motion_adapter", single),
    }
    for model_id, (kind, path) in uploads.items():
        entry = upload(s3, bucket, plan(model_id, kind, [path]))
        assert entry.kind == kind and all(f.key.startswith(f"models/{kind}/{model_id}/") for f in entry.files)
    cache = ModelCache(ObjectStore(s3, bucket), manifest_resolver(s3, bucket), tmp_path / uuid.uuid4().hex,
                       2500, part_size=1000)
    video = cache.ensure("animatediff/tiny")  # 6 x 300 bytes of weights + configs
    assert video.kind == "video" and video.path == video.folder  # the backend loads the folder
    assert (video.path / "motion_adapter" / "diffusion_pytorch_model.safetensors").read_bytes() == b"w" * 300
    assert json.loads((video.path / "model_index.json").read_text())["_class_name"] == "AnimateDiffPipeline"
    assert cache.used_bytes() == video.size > 1800
    adapter = cache.ensure("animatediff/mm-v2")  # a one-file adapter: the backend gets the file
    assert adapter.kind == "motion_adapter" and adapter.path.name == "mm_sd_v15_v2.ckpt"
    # the budget counts every file of the video model (2.1 kB): 400 more bytes do not fit beside it, so it is evicted
    assert {p.name.split("@")[0] for p, _, _ in cache.entries()} == {"animatediff--mm-v2"}
    bundle = cache.ensure("wan/ti2v")
    assert bundle.kind == "video" and (bundle.path / "vae" / "wan_vae.safetensors").is_file()
    assert cache.ensure("animatediff/adapter").path.is_dir()
    assert cache.used_bytes() <= 2500


@pytest.mark.parametrize(("kind", "make", "message"), [
    ("video", lambda p: animatediff_folder(p, "StableDiffusionPipeline"),
     "names pipeline 'StableDiffusionPipeline'.*AnimateDiffPipeline.*kind 'diffusers'"),
    ("video", lambda p: comfy_bundle(p, extra_vae=True), "exactly one weights file.*found 2 in vae/"),
    ("video", lambda p: motion_adapter_folder(p), "kind 'video': upload a diffusers folder of a video pipeline"),
    ("motion_adapter", lambda p: motion_adapter_folder(p, "UNetMotionModel"), "names 'UNetMotionModel'"),
    ("motion_adapter", lambda p: comfy_bundle(p), "kind 'motion_adapter': upload the folder"),
])
def test_a_video_kind_of_the_wrong_shape_is_refused_before_upload(tmp_path: Path, kind, make, message):
    folder = make(tmp_path / "m")
    with pytest.raises(LayoutError, match=message):
        plan("family/bad", kind, [folder])


def test_an_animatediff_folder_missing_a_component_is_refused(tmp_path: Path):
    folder = animatediff_folder(tmp_path / "ad")
    for f in (folder / "motion_adapter").iterdir():
        f.unlink()
    (folder / "motion_adapter").rmdir()
    with pytest.raises(LayoutError, match=r"component folder.*motion_adapter"):
        plan("family/ad", "video", [folder])


def test_local_mode_uploads_video_models_as_kind_video(tmp_path: Path):
    ad, sd = animatediff_folder(tmp_path / "ad"), animatediff_folder(tmp_path / "sd", "StableDiffusionPipeline")
    assert {m: v.kind for m, v in check({"ad": str(ad), "sd": str(sd)}, "diffusers").items()} == \
        {"ad": "video", "sd": "diffusers"}
    ckpt = tmp_path / "c.safetensors"
    ckpt.write_bytes(b"c")
    wan = comfy_bundle(tmp_path / "wan")
    assert {m: v.kind for m, v in check({"wan": str(wan), "c": str(ckpt)}, "comfyui").items()} == \
        {"wan": "video", "c": "checkpoint"}
