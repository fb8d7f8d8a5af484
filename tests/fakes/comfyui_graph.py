"""The fake ComfyUI's node catalogue, prompt validation and cache signatures.

Encodes what ComfyUI's ``execution.validate_prompt`` / ``validate_inputs`` answer (read in
Comfy-Org/ComfyUI execution.py) for the node classes the tests use:

- a node without ``class_type``, or of an unknown class: ``invalid_prompt``, ``node_errors`` empty, the
  node id only in ``error.details`` ("Node ID '#7'");
- no output node (``OUTPUT_NODE``) in the graph: ``prompt_no_outputs``;
- per output, its inputs checked recursively through links: ``required_input_missing``,
  ``value_not_in_list`` (checkpoint names; more than 20 choices are shown as their count),
  ``custom_validation_failed`` (LoadImage of a file not in the input folder), a link to a missing node. Errors are
  attached to the node that has them; downstream nodes are invalid without errors of their own. When no
  output is valid: ``prompt_outputs_failed_validation`` whose ``error.details`` lists the output nodes'
  OWN errors only (empty when the error is upstream: then only ``node_errors`` names it); when some
  outputs are valid, the prompt runs those only and ``node_errors`` lists the rest.

Cache keys follow ``CacheKeySetInputSignature``: class, constant inputs and the signatures of the
ancestors a node's links reach (node ids do not matter), so an identical graph under new node ids or
a new prompt id is a cache hit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class NodeSpec:
    required: tuple[str, ...]
    output: bool = False  # OUTPUT_NODE: what a prompt executes (and its dependencies)
    stepped: bool = False  # checks for an interrupt every step (samplers); others only before they start
    saves: str | None = None  # folder type its images go to: "output" (SaveImage) or "temp" (PreviewImage)
    writes: str | None = None  # an animation / video writer: the file format it writes (FakeComfyUI.save_media)


NODES: dict[str, NodeSpec] = {
    "CheckpointLoaderSimple": NodeSpec(("ckpt_name",)),
    "CLIPTextEncode": NodeSpec(("text", "clip")),
    "EmptyLatentImage": NodeSpec(("width", "height", "batch_size")),
    "KSampler": NodeSpec(("model", "seed", "steps", "cfg", "sampler_name", "scheduler", "positive", "negative",
                          "latent_image", "denoise"), stepped=True),
    "VAEDecode": NodeSpec(("samples", "vae")),
    "VAEEncode": NodeSpec(("pixels", "vae")),
    "LoadImage": NodeSpec(("image",)),
    "LoraLoader": NodeSpec(("model", "clip", "lora_name", "strength_model", "strength_clip")),  # nodes.py
    "EmptyImage": NodeSpec(("width", "height", "batch_size", "color")),
    "ImageInvert": NodeSpec(("image",)),
    "SaveImage": NodeSpec(("images", "filename_prefix"), output=True, saves="output"),
    "PreviewImage": NodeSpec(("images",), output=True, saves="temp"),
    # The default video graph's loaders and latent (runtime/backends/comfyui_video.py): Wan 2.2 makes 4k+1 frames
    # of ``length`` (((length - 1) // 4) * 4 + 1), ImageFromBatch keeps ``length`` of them from ``batch_index``.
    "UNETLoader": NodeSpec(("unet_name", "weight_dtype")),
    "CLIPLoader": NodeSpec(("clip_name", "type")),
    "VAELoader": NodeSpec(("vae_name",)),
    "ModelSamplingSD3": NodeSpec(("model", "shift")),
    "Wan22ImageToVideoLatent": NodeSpec(("vae", "width", "height", "length", "batch_size")),
    "ImageFromBatch": NodeSpec(("image", "batch_index", "length")),
    # Animation and video writers (comfy_extras/nodes_images.py, nodes_video.py): one file per batch, ui
    # {"images": [file], "animated": [true]}; SaveVideo's default prefix is "video/ComfyUI" (a subfolder).
    "SaveAnimatedWEBP": NodeSpec(("images", "filename_prefix", "fps", "lossless", "quality", "method"), output=True,
                                 writes="webp"),
    "SaveAnimatedPNG": NodeSpec(("images", "filename_prefix", "fps", "compress_level"), output=True, writes="apng"),
    "SaveWEBM": NodeSpec(("images", "filename_prefix", "codec", "fps", "crf"), output=True, writes="webm"),
    "CreateVideo": NodeSpec(("images", "fps")),
    "SaveVideo": NodeSpec(("video", "filename_prefix", "format", "codec"), output=True, writes="mp4"),
    # VideoHelperSuite (a custom node, not in a bare ComfyUI): ui {"gifs": [file + format, frame_rate]}, file name
    # without the trailing underscore, plus a first-frame PNG it does not list.
    "VHS_VideoCombine": NodeSpec(("images", "frame_rate", "loop_count", "filename_prefix", "format", "pingpong",
                                  "save_output"), output=True, writes="vhs"),
    # comfy_extras/nodes_hunyuan3d.py: one .glb per mesh, ui {"3d": [file]} (a kind of output the fleet does not
    # collect). The fake does not check link types: any node may feed ``mesh``.
    "SaveGLB": NodeSpec(("mesh", "filename_prefix"), output=True, writes="glb"),
    # A custom node that sleeps ``seconds`` without checking the interrupt flag (as third-party nodes and a stuck
    # CUDA call do): tests/contract/custom_nodes/genai_fleet_hang.py is the same node for a real ComfyUI.
    "GenaiFleetHang": NodeSpec(("images", "seconds")),
}

# Fixed option lists (io.Combo / list inputs) of the writers: a value outside them fails validation as
# ``value_not_in_list``.
COMBOS: dict[tuple[str, str], list[str]] = {
    ("SaveAnimatedWEBP", "method"): ["default", "fastest", "slowest"],
    ("UNETLoader", "weight_dtype"): ["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"],
    ("CLIPLoader", "type"): ["stable_diffusion", "stable_cascade", "sd3", "stable_audio", "mochi", "ltxv", "pixart",
                             "cosmos", "lumina2", "wan", "hidream", "chroma", "ace", "omnigen2", "qwen_image",
                             "hunyuan_image"],
    ("SaveWEBM", "codec"): ["vp9", "av1"],
    ("SaveVideo", "format"): ["auto", "mp4"],
    ("SaveVideo", "codec"): ["auto", "h264"],
}


def is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def _error(kind: str, message: str, details: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": extra}


@dataclass
class Validation:
    ok: bool
    error: dict[str, Any] | None
    outputs: list[str]
    node_errors: dict[str, Any]


def validate(prompt: Any, choices: Callable[[str, str], list[str] | None],
             nodes: dict[str, NodeSpec] | None = None) -> Validation:
    """ComfyUI's answer to a prompt; ``choices(class_type, input)`` lists the allowed values of an input;
    ``nodes``: the classes the server loaded (default: the core ``NODES``)."""
    nodes = NODES if nodes is None else nodes
    if not isinstance(prompt, dict):
        return Validation(False, _error("invalid_prompt", "Invalid prompt", "prompt must be an object"), [], {})
    outputs = []
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or "class_type" not in node:
            return Validation(False, _error("invalid_prompt", "Cannot execute because a node is missing the "
                                            "class_type property.", f"Node ID '#{node_id}'"), [], {})
        spec = nodes.get(node["class_type"])
        if spec is None:
            return Validation(False, _error("invalid_prompt", f"Cannot execute because node {node['class_type']} "
                                            "does not exist.", f"Node ID '#{node_id}'"), [], {})
        if spec.output:
            outputs.append(node_id)
    if not outputs:
        return Validation(False, _error("prompt_no_outputs", "Prompt has no outputs", ""), [], {})
    validated: dict[str, tuple[bool, list[dict[str, Any]]]] = {}
    good, failed, node_errors = [], [], {}
    for out in sorted(outputs):
        ok, reasons = _validate_node(prompt, out, validated, choices, nodes)
        if ok:
            good.append(out)
            continue
        failed.extend(reasons)
        for node_id, (valid, errors) in validated.items():
            if not valid and errors:
                entry = node_errors.setdefault(node_id, {"errors": errors, "dependent_outputs": [],
                                                         "class_type": prompt[node_id]["class_type"]})
                entry["dependent_outputs"].append(out)
    if not good:
        details = "\n".join(f"{e['message']}: {e['details']}" for e in failed)  # the outputs' own errors only
        return Validation(False, _error("prompt_outputs_failed_validation", "Prompt outputs failed validation",
                                        details), [], node_errors)
    return Validation(True, None, good, node_errors)


def _validate_node(prompt: dict[str, Any], node_id: str, validated: dict[str, tuple[bool, list[dict[str, Any]]]],
                   choices: Callable[[str, str], list[str] | None],
                   nodes: dict[str, NodeSpec]) -> tuple[bool, list[dict[str, Any]]]:
    if node_id in validated:
        return validated[node_id]
    validated[node_id] = (True, [])  # cycles are not this fake's concern; stop recursion
    node = prompt[node_id]
    inputs = node.get("inputs") or {}
    errors: list[dict[str, Any]] = []
    valid = True
    for name in nodes[node["class_type"]].required:
        if name not in inputs:
            errors.append(_error("required_input_missing", "Required input is missing", name, input_name=name))
            continue
        value = inputs[name]
        if is_link(value):
            if value[0] not in prompt:
                errors.append(_error("exception_during_inner_validation", "Exception when validating inner node",
                                     f"'{value[0]}'", input_name=name))
            elif not _validate_node(prompt, value[0], validated, choices, nodes)[0]:
                valid = False  # upstream errors are reported on the upstream node only
            continue
        allowed = choices(node["class_type"], name)
        if allowed is None or value in allowed:
            continue
        if node["class_type"] == "LoadImage":  # its VALIDATE_INPUTS replaces the list check
            errors.append(_error("custom_validation_failed", "Custom validation failed for node",
                                 f"{name} - Invalid image file: {value}", input_name=name))
            continue
        shown = f"(list of length {len(allowed)})" if len(allowed) > 20 else str(allowed)
        errors.append(_error("value_not_in_list", "Value not in list", f"{name}: '{value}' not in {shown}",
                             input_name=name, received_value=value))
    result = (valid and not errors, errors)
    validated[node_id] = result
    return result


def execution_order(prompt: dict[str, Any], outputs: Iterable[str]) -> list[str]:
    """Every node the outputs need, dependencies first (each once)."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(node_id: str) -> None:
        if node_id in seen:
            return
        seen.add(node_id)
        for _, value in sorted((prompt[node_id].get("inputs") or {}).items()):
            if is_link(value):
                visit(value[0])
        order.append(node_id)

    for out in sorted(outputs):
        visit(out)
    return order


def signatures(prompt: dict[str, Any]) -> dict[str, str]:
    """node id -> cache key: class + constant inputs + the ancestors' keys through each link."""
    keys: dict[str, str] = {}

    def key(node_id: str) -> str:
        if node_id not in keys:
            node = prompt[node_id]
            parts: list[Any] = [node["class_type"]]
            for name, value in sorted((node.get("inputs") or {}).items()):
                parts.append([name, ["ANCESTOR", key(value[0]), value[1]] if is_link(value) else value])
            keys[node_id] = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
        return keys[node_id]

    for node_id in prompt:
        key(node_id)
    return keys


def batch_size(prompt: dict[str, Any], node_id: str) -> int:
    """How many images reach ``node_id``: the batch_size of the nearest ancestor that sets one (else 1)."""
    inputs = prompt[node_id].get("inputs") or {}
    kind = prompt[node_id].get("class_type")
    if kind == "Wan22ImageToVideoLatent":
        return ((int(inputs["length"]) - 1) // 4) * 4 + 1
    if kind == "ImageFromBatch" and is_link(inputs.get("image")):
        have = batch_size(prompt, inputs["image"][0])
        start = min(have - 1, int(inputs["batch_index"]))
        return min(have - start, int(inputs["length"]))
    if isinstance(inputs.get("batch_size"), int):
        return max(1, inputs["batch_size"])
    linked = [batch_size(prompt, v[0]) for v in inputs.values() if is_link(v) and v[0] in prompt]
    return max(linked, default=1)


def upstream(prompt: dict[str, Any], node_id: str, name: str, default: Any = None) -> Any:
    """The constant input ``name`` of ``node_id`` or of the nearest ancestor that sets it."""
    inputs = prompt[node_id].get("inputs") or {}
    if name in inputs and not is_link(inputs[name]):
        return inputs[name]
    for value in inputs.values():
        if is_link(value) and value[0] in prompt:
            found = upstream(prompt, value[0], name)
            if found is not None:
                return found
    return default
