"""ComfyUI animation and video outputs (issue 37): every file a node writes is collected with its content type,
written under the attempt's own prefix and deleted when the attempt ends, whatever the node and the key."""

from __future__ import annotations

import threading

import pytest

from runtime.backends.base import BackendError, JobInputError, JobInterrupted
from tests.unit import test_backends_comfyui as basics
from tests.unit.test_backends_comfyui import backend_for, ctx

comfy = basics.comfy  # the same fixture

FRAMES = 4


def frames_source(color: int = 0x336699) -> dict:
    return {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": FRAMES, "color": color}}


def media_graph(color: int = 0x336699) -> dict:
    """An image batch into every animation / video writer (core nodes and VideoHelperSuite's)."""
    return {
        "1": frames_source(color),
        "2": {"class_type": "SaveAnimatedWEBP", "inputs": {"images": ["1", 0], "filename_prefix": "anim", "fps": 8.0,
                                                           "lossless": False, "quality": 80, "method": "default"}},
        "3": {"class_type": "SaveWEBM", "inputs": {"images": ["1", 0], "filename_prefix": "clip", "codec": "vp9",
                                                   "fps": 8.0, "crf": 32.0}},
        "4": {"class_type": "CreateVideo", "inputs": {"images": ["1", 0], "fps": 8.0}},
        "5": {"class_type": "SaveVideo", "inputs": {"video": ["4", 0], "filename_prefix": "video/ComfyUI",
                                                    "format": "mp4", "codec": "h264"}},
        "6": {"class_type": "VHS_VideoCombine", "inputs": {"images": ["1", 0], "frame_rate": 8, "loop_count": 0,
                                                           "filename_prefix": "vhs", "format": "video/h264-mp4",
                                                           "pingpong": False, "save_output": True}},
        "7": {"class_type": "SaveAnimatedPNG", "inputs": {"images": ["1", 0], "filename_prefix": "apng", "fps": 8.0,
                                                          "compress_level": 4}},
    }


def left_files(fake) -> list[str]:
    return sorted(str(p.relative_to(fake.output_dir)) for p in fake.output_dir.rglob("*") if p.is_file())


def test_every_writer_is_collected_with_its_content_type_and_attempt_prefix_and_cleaned_up(comfy):
    job = ctx(workflow=media_graph())
    result = backend_for(comfy).run(job)
    sent = comfy.prompts[0]["prompt"]
    for node_id in ("2", "3", "5", "6", "7"):
        assert sent[node_id]["inputs"]["filename_prefix"].endswith(f"_{job.backend_id}"), node_id
    assert sent["5"]["inputs"]["filename_prefix"] == f"video/ComfyUI_{job.backend_id}"  # the subfolder is kept
    got = {(o.name, o.content_type) for o in result.outputs}
    assert got == {("2-anim_00001_.webp", "image/webp"), ("3-clip_00001_.webm", "video/webm"),
                   ("5-ComfyUI_00001_.mp4", "video/mp4"), ("6-vhs_00001.mp4", "video/mp4"),
                   ("7-apng_00001_.png", "image/png")}
    data = {o.name: o.data for o in result.outputs}
    assert data["3-clip_00001_.webm"].startswith(b"\x1a\x45\xdf\xa3")  # EBML: a real WebM file
    assert data["2-anim_00001_.webp"][8:12] == b"WEBP"
    assert left_files(comfy) == []  # VHS's unlisted first-frame PNG too
    assert job.backend_id not in comfy.history


def test_a_cached_replay_after_the_first_files_are_gone_gets_files_of_its_own(comfy):
    """The issue's failure: the writer's prefix was not the attempt's, so an identical job got ComfyUI's cached
    replay of the earlier (deleted) file name and /view answered 404 on every attempt."""
    backend = backend_for(comfy)
    backend.run(ctx("j_first", workflow=media_graph()))
    for path in comfy.output_dir.rglob("*"):  # the sweep (or the first attempt's clean-up) removed them
        if path.is_file():
            path.unlink()
    again = backend.run(ctx("j_again", workflow=media_graph()))
    assert {o.content_type for o in again.outputs} == {"image/webp", "video/webm", "video/mp4", "image/png"}
    assert left_files(comfy) == []


def test_an_interrupted_attempt_leaves_no_file_of_the_writers_that_ran(comfy):
    graph = {
        "1": frames_source(),
        "3": {"class_type": "SaveWEBM", "inputs": {"images": ["1", 0], "filename_prefix": "clip", "codec": "vp9",
                                                   "fps": 8.0, "crf": 32.0}},
        "4": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "5": {"class_type": "SaveAnimatedWEBP", "inputs": {"images": ["4", 0], "filename_prefix": "anim", "fps": 8.0,
                                                           "lossless": False, "quality": 80, "method": "default"}},
    }
    comfy.node_seconds = {"ImageInvert": 3.0}  # runs after SaveWEBM wrote its file; the interrupt lands meanwhile
    backend = backend_for(comfy)
    job = ctx(workflow=graph)
    wrote = threading.Event()

    def interrupt_once_written() -> None:
        while not wrote.wait(0.02):
            if any(p.suffix == ".webm" for p in comfy.output_dir.rglob("*")):
                wrote.set()
        backend.interrupt(job)

    watcher = threading.Thread(target=interrupt_once_written, daemon=True)
    watcher.start()
    with pytest.raises(JobInterrupted):
        backend.run(job)
    watcher.join(5)
    assert wrote.is_set()
    assert left_files(comfy) == []


def test_a_workflow_with_no_file_writing_node_is_an_input_error_naming_its_nodes(comfy):
    graph = {"1": frames_source(), "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
    with pytest.raises(JobInputError, match=r"1 \(EmptyImage\), 2 \(PreviewImage\)"):
        backend_for(comfy).run(ctx(workflow=graph))
    assert comfy.prompts == []  # refused before anything ran


def test_an_output_kind_the_adapter_does_not_know_fails_naming_node_and_key_and_its_file_is_deleted(comfy):
    graph = {"1": frames_source(),
             "2": {"class_type": "SaveGLB", "inputs": {"mesh": ["1", 0], "filename_prefix": "mesh/ComfyUI"}},
             "3": {"class_type": "SaveWEBM", "inputs": {"images": ["1", 0], "filename_prefix": "clip", "codec": "vp9",
                                                        "fps": 8.0, "crf": 32.0}}}
    with pytest.raises(BackendError, match=r"node 2 output '3d'"):
        backend_for(comfy).run(ctx(workflow=graph))
    assert left_files(comfy) == []


def test_a_preview_only_video_is_not_a_result(comfy):
    graph = media_graph()
    graph = {"1": graph["1"], "6": graph["6"]}
    graph["6"]["inputs"]["save_output"] = False  # VHS writes it to the temp folder
    with pytest.raises(JobInputError, match="only previews"):
        backend_for(comfy).run(ctx(workflow=graph))
