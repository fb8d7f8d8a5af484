"""A ComfyUI custom node that ignores interrupts, for running the contract suite by hand against a real ComfyUI.

Copy this file into ComfyUI's ``custom_nodes/`` folder and restart it. ``GenaiFleetHang`` sleeps ``seconds``
without ever calling ``comfy.model_management.throw_exception_if_processing_interrupted()``, as third-party nodes
that block (or a stuck CUDA call) do: POST /interrupt cannot end it, its prompt stays in ``queue_running`` and
every later prompt waits. tests/fakes encodes the same node (tests/fakes/comfyui_graph.py ``GenaiFleetHang``).
Not imported by the test suite.
"""

import time


class GenaiFleetHang:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",),
                             "seconds": ("FLOAT", {"default": 3600.0, "min": 0.0, "max": 86400.0})}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "hang"
    CATEGORY = "testing"

    def hang(self, images, seconds):
        time.sleep(seconds)  # never polls the interrupt flag
        return (images,)


NODE_CLASS_MAPPINGS = {"GenaiFleetHang": GenaiFleetHang}
