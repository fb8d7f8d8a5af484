"""ComfyUI contract, part 3: animation and video writers (comfy_extras/nodes_images.py SaveAnimatedWEBP,
nodes_video.py SaveWEBM / CreateVideo / SaveVideo; comfy_api/latest/_ui.py PreviewVideo), their history entries and
cached replays, then the adapter on both. Model-free graphs (an EmptyImage batch is the frames), so a real ComfyUI on
CPU runs them: ``COMFYUI_URL=... COMFYUI_ROOT=<its folder, holding output/ input/ temp/> pytest tests/contract``
(COMFYUI_ROOT only for the adapter cases, which check that no file is left)."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import pytest

from runtime.backends.comfyui import ComfyUIBackend
from tests.contract.comfy_client import new_id
from tests.job_context import job_context

FRAMES = 4


def frames(color: int | None = None) -> dict[str, Any]:
    color = random.randrange(1, 0xFFFFFF) if color is None else color  # a random colour: a cache miss
    return {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": FRAMES, "color": color}}


def animated(prefix: str, color: int | None = None) -> dict[str, Any]:
    return {"1": frames(color),
            "2": {"class_type": "SaveAnimatedWEBP", "inputs": {"images": ["1", 0], "filename_prefix": prefix,
                                                               "fps": 8.0, "lossless": False, "quality": 80,
                                                               "method": "default"}}}


def webm(prefix: str, color: int | None = None) -> dict[str, Any]:
    return {"1": frames(color),
            "2": {"class_type": "SaveWEBM", "inputs": {"images": ["1", 0], "filename_prefix": prefix, "codec": "vp9",
                                                       "fps": 8.0, "crf": 32.0}}}


def video(prefix: str, color: int | None = None) -> dict[str, Any]:
    return {"1": frames(color),
            "3": {"class_type": "CreateVideo", "inputs": {"images": ["1", 0], "fps": 8.0}},
            "2": {"class_type": "SaveVideo", "inputs": {"video": ["3", 0], "filename_prefix": prefix, "format": "mp4",
                                                        "codec": "h264"}}}


def view(comfy, item: dict[str, Any]) -> bytes:
    response = comfy.client.http.get("/view", params={k: item[k] for k in ("filename", "subfolder", "type")})
    assert response.status_code == 200, item
    return response.content


@pytest.mark.parametrize(("graph", "extension", "magic"), [
    (animated, "webp", lambda b: b[:4] == b"RIFF" and b[8:12] == b"WEBP"),
    (webm, "webm", lambda b: b[:4] == b"\x1a\x45\xdf\xa3"),
], ids=["SaveAnimatedWEBP", "SaveWEBM"])
def test_a_writer_lists_one_file_of_the_batch_under_images_and_says_animated(comfy, graph, extension, magic):
    """One file for the whole batch, ``<prefix>_<counter:05>_.<ext>`` (get_save_image_path), listed under ``images``
    beside ``animated: [true]`` (execution.py merges each ui key into a list)."""
    prefix = new_id("anim")
    prompt_id = new_id("writer")
    assert comfy.client.submit(graph(prefix), prompt_id).status_code == 200
    out = comfy.client.wait_history(prompt_id)["outputs"]["2"]
    assert out == {"images": [{"filename": f"{prefix}_00001_.{extension}", "subfolder": "", "type": "output"}],
                   "animated": [True]}
    assert magic(view(comfy, out["images"][0]))


def test_save_video_writes_mp4_into_the_prefix_subfolder(comfy):
    """SaveVideo (CreateVideo's frames and fps): ``format`` auto/mp4 -> .mp4; a prefix with a folder
    (its default is "video/ComfyUI") is a subfolder of the output folder."""
    name = new_id("video")
    prompt_id = new_id("savevideo")
    comfy.client.submit(video(f"video/{name}"), prompt_id)
    out = comfy.client.wait_history(prompt_id)["outputs"]["2"]
    assert out == {"images": [{"filename": f"{name}_00001_.mp4", "subfolder": "video", "type": "output"}],
                   "animated": [True]}
    assert view(comfy, out["images"][0])[4:8] == b"ftyp"


def test_an_identical_writer_graph_is_replayed_with_the_first_file_name(comfy):
    """The cache (CacheKeySetInputSignature) replays a writer whose inputs did not change: the second prompt's
    history names the FIRST prompt's file, which a clean-up may have deleted by then."""
    graph = webm(new_id("replay"), color=0x123456)
    first, second = new_id("first"), new_id("second")
    comfy.client.submit(graph, first)
    before = comfy.client.wait_history(first)["outputs"]["2"]
    comfy.client.submit(graph, second)
    assert comfy.client.wait_history(second)["outputs"]["2"] == before


# -- the adapter on the same server --------------------------------------------------------------------------------
def adapter_root(comfy) -> Path:
    if comfy.fake is not None:
        return Path(comfy.fake.output_dir).parent
    root = os.environ.get("COMFYUI_ROOT")
    if not root:
        pytest.skip("set COMFYUI_ROOT to the real ComfyUI's folder (output/ input/ temp/) for the adapter cases")
    return Path(root)


def output_files(root: Path) -> set[str]:
    return {str(p) for p in (root / "output").rglob("*") if p.is_file()}


def test_the_adapter_collects_animated_and_video_files_and_an_identical_rerun_gets_its_own(comfy):
    """Both attempts of an identical animated + video graph succeed with the right content types (the second is
    not given ComfyUI's replay of the first's deleted files), and no file of either is left."""
    root = adapter_root(comfy)
    backend = ComfyUIBackend(base_url=comfy.url, model_dir=str(root / "models" / "checkpoints"),
                             output_dir=str(root / "output"), input_dir=str(root / "input"), poll_seconds=0.05)
    graph = {**animated("anim", color=0x224466), "4": {"class_type": "CreateVideo",
                                                       "inputs": {"images": ["1", 0], "fps": 8.0}},
             "5": {"class_type": "SaveVideo", "inputs": {"video": ["4", 0], "filename_prefix": "video/ComfyUI",
                                                         "format": "auto", "codec": "auto"}}}
    before = output_files(root)
    try:
        for job_id in ("j_contract_media_a", "j_contract_media_b"):
            job = job_context(job_id, "none", "comfyui-workflow", workflow=graph)
            result = backend.run(job)
            assert sorted((o.name, o.content_type) for o in result.outputs) == [
                ("2-anim_00001_.webp", "image/webp"), ("5-ComfyUI_00001_.mp4", "video/mp4")]
            assert all(o.data for o in result.outputs)
            assert output_files(root) - before == set()  # its files are gone (others may use the server: new ones)
    finally:
        backend.close()
