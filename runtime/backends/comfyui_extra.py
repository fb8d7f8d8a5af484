"""ComfyUI's default graph with the job's LoRAs (issue 40): ``with_loras`` chains one ``LoraLoader`` per LoRA
between the checkpoint loader and its users (ComfyUI nodes.py ``LoraLoader``: inputs ``model``, ``clip``,
``lora_name``, ``strength_model``, ``strength_clip``; outputs MODEL, CLIP; read at ComfyUI 0.3.64): the sampler's
model and the text encoders' clip come from the last one. A LoRA's weight is both its strengths; its file is
linked into ``models/loras`` by runtime.backends.extra_files.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def with_loras(workflow: dict[str, Any], loras: Sequence[tuple[str, float]], loader: str = "4") -> dict[str, Any]:
    """``workflow`` with a LoraLoader chain after the checkpoint loader node ``loader``: every link to its MODEL
    (output 0) or CLIP (output 1) now comes from the last LoraLoader."""
    if not loras:
        return workflow
    model, clip = [loader, 0], [loader, 1]
    for i, (name, weight) in enumerate(loras):
        node_id = f"lora{i}"
        workflow[node_id] = {"class_type": "LoraLoader", "inputs": {
            "model": model, "clip": clip, "lora_name": name, "strength_model": weight, "strength_clip": weight}}
        model, clip = [node_id, 0], [node_id, 1]
    for node_id, node in workflow.items():
        if node_id.startswith("lora"):
            continue
        for key, value in node["inputs"].items():
            if value == [loader, 0]:
                node["inputs"][key] = model
            elif value == [loader, 1]:
                node["inputs"][key] = clip
    return workflow
