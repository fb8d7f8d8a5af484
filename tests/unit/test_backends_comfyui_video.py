"""ComfyUI's default txt2video / img2video graph (runtime/backends/comfyui_video.py): checked node by node against
the /object_info of ComfyUI (tests/fixtures/comfyui/object_info_video.json), then run through the adapter on the
fake ComfyUI: the file it returns decodes to the request's frames, fps and size."""

from __future__ import annotations

import io
import json
from fractions import Fraction
from pathlib import Path

import av
import pytest

from runtime.backends.base import JobInputError
from runtime.backends.comfyui_video import VideoModel, video_workflow
from runtime.jobs.models import Img2VideoInputs, Txt2VideoInputs
from tests.job_context import data_uri, job_context, png
from tests.unit import test_backends_comfyui as basics
from tests.unit.test_backends_comfyui import backend_for

comfy = basics.comfy  # the same fixture

OBJECT_INFO = json.loads((Path(__file__).parents[1] / "fixtures" / "comfyui" / "object_info_video.json").read_text())
MODEL = VideoModel("wan2.2_ti2v_5B_fp16.safetensors", "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
                   "wan2.2_vae.safetensors")


def check_against_object_info(graph: dict, info: dict) -> list[str]:
    """What ComfyUI's validate_inputs would refuse, read from a real /object_info: unknown class, missing / unknown
    input, a link to a missing node or to an output of another type, a value outside its list (legacy lists and V3
    ``["COMBO", {"options": [...]}]``; file lists excepted: the server's folders), a number outside min..max or off
    its step."""
    problems = []
    for node_id, node in graph.items():
        spec = info.get(node["class_type"])
        if spec is None:
            problems.append(f"{node_id}: no node {node['class_type']}")
            continue
        declared = {**spec["input"]["required"], **spec["input"].get("optional", {})}
        for name in spec["input"]["required"]:
            if name not in node["inputs"]:
                problems.append(f"{node_id}: {name} missing")
        for name, value in node["inputs"].items():
            if name not in declared:
                problems.append(f"{node_id}: unknown input {name}")
                continue
            kind, options = declared[name][0], (declared[name][1] if len(declared[name]) > 1 else {})
            if isinstance(value, list):
                source = graph.get(value[0])
                if source is None:
                    problems.append(f"{node_id}: {name} links to missing node {value[0]}")
                    continue
                outputs = info.get(source["class_type"], {}).get("output") or []
                received = outputs[value[1]] if value[1] < len(outputs) else None
                if received != kind and "*" not in (received, kind):
                    problems.append(f"{node_id}: {name} wants {kind}, gets {received} from node {value[0]}")
                continue
            allowed = options.get("options") if kind == "COMBO" else kind if isinstance(kind, list) else None
            if allowed and value not in allowed:
                problems.append(f"{node_id}: {name}={value!r} not in its list")
            if kind in ("INT", "FLOAT"):
                if not options.get("min", value) <= value <= options.get("max", value):
                    problems.append(f"{node_id}: {name}={value} outside {options.get('min')}..{options.get('max')}")
                if kind == "INT" and name in ("width", "height") and value % options.get("step", 1):
                    problems.append(f"{node_id}: {name}={value} not a multiple of {options['step']}")
    return problems


@pytest.mark.parametrize("output_format", ["mp4", "webm", "webp"])
@pytest.mark.parametrize("task", ["txt2video", "img2video"])
def test_the_default_video_graph_is_valid_for_the_pinned_comfyui(task, output_format):
    fields = {"prompt": "a boat", "width": 320, "height": 192, "frames": 10, "fps": 12, "steps": 9, "seed": 5,
              "output_format": output_format}
    inputs = (Img2VideoInputs(image=data_uri(png()), **fields) if task == "img2video" else Txt2VideoInputs(**fields))
    graph = video_workflow(inputs, 5, MODEL, "start.png" if task == "img2video" else None)
    assert check_against_object_info(graph, OBJECT_INFO) == []
    kinds = {n["class_type"]: n["inputs"] for n in graph.values()}
    assert kinds["Wan22ImageToVideoLatent"]["length"] == 13  # the next 4k+1 ...
    assert kinds["ImageFromBatch"]["length"] == 10  # ... cut to the request's frames
    assert (kinds["Wan22ImageToVideoLatent"]["width"], kinds["Wan22ImageToVideoLatent"]["height"]) == (320, 192)
    assert (kinds["KSampler"]["steps"], kinds["KSampler"]["seed"]) == (9, 5)
    assert ("start_image" in kinds["Wan22ImageToVideoLatent"]) == (task == "img2video")
    writer = {"mp4": "CreateVideo", "webm": "SaveWEBM", "webp": "SaveAnimatedWEBP"}[output_format]
    assert kinds[writer]["fps"] == 12.0


def test_the_checker_sees_what_comfyui_refuses():
    """The checker is no rubber stamp: each planted fault is named."""
    graph = video_workflow(Txt2VideoInputs(prompt="p", width=320, height=192), 1, MODEL, None)
    graph["2"]["inputs"]["type"] = "wan2"
    graph["8"]["inputs"]["steps"] = 0
    graph["13"]["inputs"]["quality"] = 80
    graph["9"]["inputs"]["vae"] = ["1", 0]  # the diffusion model where the VAE belongs
    graph["13"]["inputs"]["codec"] = "h265"  # a V3 combo ({"options": [...]}) of the real server
    del graph["10"]["inputs"]["batch_index"]
    assert check_against_object_info(graph, OBJECT_INFO) == [
        "2: type='wan2' not in its list", "8: steps=0 outside 1..10000", "9: vae wants VAE, gets MODEL from node 1",
        "10: batch_index missing", "13: codec='h265' not in its list", "13: unknown input quality"]


@pytest.mark.parametrize(("field", "value", "message"), [
    ("output_format", "gif", "inputs.output_format 'gif'"),
    ("width", 200, "inputs.width must be a multiple of 32"),
])
def test_what_the_graph_cannot_make_is_an_input_error_naming_the_field(field, value, message):
    inputs = Txt2VideoInputs(**{"prompt": "p", "width": 320, "height": 192, field: value})
    with pytest.raises(JobInputError, match=message):
        video_workflow(inputs, 1, MODEL, None)


def video_model(tmp_path: Path) -> Path:
    folder = tmp_path / "cache" / "wan22@v1"
    for kind, name in (("diffusion_models", MODEL.unet), ("text_encoders", MODEL.text_encoder), ("vae", MODEL.vae)):
        (folder / kind).mkdir(parents=True)
        (folder / kind / name).write_bytes(b"weights")
    return folder


@pytest.mark.parametrize("output_format", ["mp4", "webm"])
def test_a_txt2video_job_returns_a_file_with_the_requested_frames_fps_and_size(comfy, tmp_path, output_format):
    backend = backend_for(comfy)
    backend.load_model("wan22", video_model(tmp_path))
    for kind in ("diffusion_models", "text_encoders", "vae"):  # the companion files sit where their loaders look
        assert len(list((comfy.models_dir.parent / kind).iterdir())) == 1
    job = job_context("j_video", "wan22", "txt2video", prompt="a boat", width=96, height=64, frames=6, fps=12,
                      steps=2, seed=3, output_format=output_format)
    result = backend.run(job)
    (video,) = result.outputs
    assert video.content_type == f"video/{output_format}"
    with av.open(io.BytesIO(video.data)) as container:
        stream = container.streams.video[0]
        decoded = sum(1 for _ in container.decode(stream))
        rate = stream.average_rate or stream.guessed_rate
        size = (stream.codec_context.width, stream.codec_context.height)
    assert (decoded, size) == (6, (96, 64))
    assert Fraction(rate).limit_denominator(1000) == 12
    assert video.video == {"format": output_format, "frames": 6, "fps": 12, "duration_s": 0.5, "width": 96,
                           "height": 64, "bytes": len(video.data)}
    assert [p for p in comfy.output_dir.rglob("*") if p.is_file()] == []


def test_a_video_task_on_a_checkpoint_model_is_an_input_error(comfy, tmp_path):
    checkpoint = tmp_path / "sd15.safetensors"
    checkpoint.write_bytes(b"weights")
    backend = backend_for(comfy)
    backend.load_model("sd15", checkpoint)
    with pytest.raises(JobInputError, match="not a ComfyUI video model"):
        backend.run(job_context("j_video", "sd15", "txt2video", prompt="a boat"))


def test_the_pinned_comfyui_is_the_version_the_object_info_was_recorded_from():
    """The pin and the evidence agree (issue 37): the AMI installs the ComfyUI release the fixture (and the by-hand
    contract run) came from; moving the pin means recording /object_info again (docs/amis.md)."""
    import re

    import hcl2

    with (Path(__file__).resolve().parents[2] / "packer" / "release.auto.pkrvars.hcl").open() as fh:
        pinned = hcl2.load(fh)["comfyui_version"].strip('"')  # python-hcl2 keeps the quotes
    recorded = re.search(r"running ComfyUI (\d+\.\d+\.\d+) ", OBJECT_INFO["_provenance"])
    assert recorded and pinned == f"v{recorded.group(1)}", (pinned, OBJECT_INFO["_provenance"][:80])
