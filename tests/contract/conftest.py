"""The ComfyUI contract suite's server: the fake (default, part of ``make test``) or a real ComfyUI.

``COMFYUI_URL=http://127.0.0.1:8188 pytest tests/contract`` runs the same tests against a real server
(model-free workflows only: EmptyImage -> ImageInvert -> SaveImage; the hang case also needs the custom node
tests/contract/custom_nodes/genai_fleet_hang.py installed in that server). Against a real server a "slow"
prompt is a big EmptyImage (``COMFYUI_SLOW_SIZE``, default 2048 px, ``COMFYUI_SLOW_BATCH``, default 8);
against the fake it is a node that runs ``SLOW_SECONDS``.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.contract.comfy_client import ComfyClient

SLOW_SECONDS = 3.0
NODE_PACK = Path(__file__).resolve().parents[1] / "fixtures" / "comfyui" / "node_packs" / "genai_fleet_nodes"


class Target:
    """Where the suite runs, and how to build prompts that behave the same on the fake and the real one."""

    def __init__(self, url: str, fake: Any = None) -> None:
        self.url, self.fake = url, fake
        self.client = ComfyClient(url)

    @property
    def real(self) -> bool:
        return self.fake is None

    def workflow(self, prefix: str = "contract", size: int | None = None, batch: int = 1,
                 output: str = "SaveImage") -> dict[str, Any]:
        """EmptyImage -> ImageInvert -> output node; a random colour makes it a cache miss."""
        side = size or 64
        save: dict[str, Any] = {"images": ["2", 0]}
        if output == "SaveImage":
            save["filename_prefix"] = prefix
        return {
            "1": {"class_type": "EmptyImage", "inputs": {"width": side, "height": side, "batch_size": batch,
                                                          "color": random.randrange(1, 0xFFFFFF)}},
            "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
            "3": {"class_type": output, "inputs": save},
        }

    def hanging_workflow(self, seconds: float, prefix: str = "contract-hang") -> dict[str, Any]:
        """EmptyImage -> GenaiFleetHang (sleeps ``seconds``, never polls the interrupt flag) -> SaveImage. A real
        server needs tests/contract/custom_nodes/genai_fleet_hang.py in its custom_nodes folder (else: skipped)."""
        if self.real and "GenaiFleetHang" not in self.client.http.get("/object_info").json():
            pytest.skip("copy tests/contract/custom_nodes/genai_fleet_hang.py into ComfyUI's custom_nodes/ first")
        workflow = self.workflow(prefix)
        workflow["2"] = {"class_type": "GenaiFleetHang", "inputs": {"images": ["1", 0], "seconds": seconds}}
        return workflow

    def slow_workflow(self, prefix: str = "contract-slow") -> dict[str, Any]:
        """A prompt that runs for seconds: its EmptyImage and ImageInvert take the time."""
        if self.real:
            return self.workflow(prefix, size=int(os.environ.get("COMFYUI_SLOW_SIZE", "2048")),
                                 batch=int(os.environ.get("COMFYUI_SLOW_BATCH", "8")))
        self.fake.node_seconds = {"EmptyImage": SLOW_SECONDS / 2, "ImageInvert": SLOW_SECONDS / 2}
        return self.workflow(prefix)


@pytest.fixture
def comfy(tmp_path: Path) -> Iterator[Target]:
    url = os.environ.get("COMFYUI_URL")
    if url:
        target = Target(url.rstrip("/"))
        yield target
        target.client.close()
        return
    from tests.fakes.fake_comfyui import FakeComfyUI

    # The fixture custom node pack, where a ComfyUI folder keeps packs (test_comfyui_custom_nodes.py)
    shutil.copytree(NODE_PACK, tmp_path / "custom_nodes" / NODE_PACK.name)
    fake = FakeComfyUI(tmp_path / "models" / "checkpoints", delay=0.05, root=tmp_path).start()
    target = Target(fake.url, fake)
    try:
        yield target
    finally:
        target.client.close()
        fake.stop()
