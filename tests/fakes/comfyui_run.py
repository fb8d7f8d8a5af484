"""One prompt's execution in the fake ComfyUI (execution.py ``PromptExecutor.execute_async`` and
``execute``): status messages, the node loop with cache replays, interrupts and node failures."""

from __future__ import annotations

import struct
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.fakes.fake_comfyui import FakeComfyUI

_MEMORY_BYTES = 64 * 1024**3  # what the fake "host" can allocate for one EmptyImage channel


class Stop(Exception):  # noqa: N818
    """The run ends early: ``kind`` is interrupted | error | crashed."""

    def __init__(self, kind: str, exc_type: str = "", message: str = "") -> None:
        super().__init__(message)
        self.kind, self.exc_type, self.message = kind, exc_type, message


class Run:
    """One prompt's execution: its status messages, UI outputs and the node loop."""

    def __init__(self, fake: FakeComfyUI, prompt_id: str, prompt: dict[str, Any], sid: str | None,
                 generation: int) -> None:
        self.fake, self.prompt_id, self.prompt, self.sid, self.generation = fake, prompt_id, prompt, sid, generation
        self.messages: list[list[Any]] = []
        self.ui: dict[str, Any] = {}
        self.executed: list[str] = []

    def message(self, event: str, data: dict[str, Any], broadcast: bool = False) -> None:
        data = {**data, "timestamp": int(time.time() * 1000)}
        self.messages.append([event, data])
        if self.sid is not None or broadcast:
            self.fake._send(event, data, self.sid)

    def nodes(self, order: list[str], keys: dict[str, str]) -> bool:
        fake = self.fake
        to_run = [n for n in order if keys[n] not in fake._cache]
        per_node = fake.delay / max(1, len(to_run))
        slow = fake.slow_runs > 0
        if slow:
            fake.slow_runs -= 1
        hang = fake.hang_runs > 0
        if hang:
            fake.hang_runs -= 1
        failing = None
        if fake.fail_executions > 0 and to_run:
            fake.fail_executions -= 1
            failing = next((n for n in to_run if fake.nodes[self.prompt[n]["class_type"]].stepped), to_run[0])
        for node_id in order:
            spec = fake.nodes[self.prompt[node_id]["class_type"]]
            if keys[node_id] in fake._cache:
                if spec.output:  # staged although cached: its earlier UI output is replayed
                    self.ui[node_id] = fake._cache[keys[node_id]]
                    self._event("executed", {"node": node_id, "display_node": node_id, "output": self.ui[node_id]})
                continue
            fake._last_node = node_id
            self._event("executing", {"node": node_id, "display_node": node_id})
            seconds = fake.node_seconds.get(self.prompt[node_id]["class_type"], per_node)
            if slow and spec.stepped:
                seconds = fake.slow_seconds
            try:
                if hang and spec.stepped:  # a stuck CUDA call: no step ends, nothing polls the interrupt flag
                    self._sleep(fake.hang_seconds)
                output = self._run_node(node_id, seconds, failing == node_id)
            except Stop as stop:
                if stop.kind == "crashed":
                    raise
                self._ended(node_id, stop)
                return False
            fake._cache[keys[node_id]] = output
            self.executed.append(node_id)
            if output is not None:
                self.ui[node_id] = output
                self._event("executed", {"node": node_id, "display_node": node_id, "output": output})
        self.message("execution_success", {"prompt_id": self.prompt_id})
        return True

    def _event(self, kind: str, data: dict[str, Any]) -> None:
        if self.sid is not None:
            self.fake._send(kind, {**data, "prompt_id": self.prompt_id}, self.sid)

    def _ended(self, node_id: str, stop: Stop) -> None:
        base = {"prompt_id": self.prompt_id, "node_id": node_id, "node_type": self.prompt[node_id]["class_type"],
                "executed": list(self.executed)}
        if stop.kind == "interrupted":
            self.message("execution_interrupted", base, broadcast=True)
        else:
            self.message("execution_error", {**base, "exception_message": stop.message,
                                             "exception_type": stop.exc_type, "traceback": [],
                                             "current_inputs": {}, "current_outputs": list(self.executed)})

    def _run_node(self, node_id: str, seconds: float, fail: bool) -> dict[str, Any] | None:
        fake, node = self.fake, self.prompt[node_id]
        spec, inputs = fake.nodes[node["class_type"]], node.get("inputs") or {}
        if fake._interrupt.is_set():
            raise Stop("interrupted")
        if node["class_type"] == "EmptyImage":
            size = 4 * int(inputs["width"]) * int(inputs["height"]) * int(inputs["batch_size"])  # one channel
            if size > _MEMORY_BYTES:  # the message torch 2.x gave a real ComfyUI 0.3.64 on CPU
                raise Stop("error", "RuntimeError", "[enforce fail at alloc_cpu.cpp:127] err == 0. "
                            f"DefaultCPUAllocator: can't allocate memory: you tried to allocate {size} bytes. "
                            "Error code 12 (Cannot allocate memory)\n")
        if node["class_type"] == "GenaiFleetHang":  # ignores interrupts: only a crash (restart) ends it early
            self._sleep(float(inputs["seconds"]))
            return None
        steps = max(1, int(inputs.get("steps") or 1)) if spec.stepped else 1
        for step in range(steps):
            self._sleep(seconds / steps)
            if fail:
                raise Stop("error", "RuntimeError", "CUDA error: an illegal memory access was encountered\n")
            if spec.stepped:
                if fake._interrupt.is_set():
                    raise Stop("interrupted")
                self._event("progress", {"value": step + 1, "max": steps, "node": node_id})
                if fake.preview_frames and self.sid is not None:
                    fake._send("preview", struct.pack(">II", 1, 1) + b"\xff\xd8fake-jpeg\xff\xd9", self.sid)
        if spec.writes:
            return fake.save_media(self.prompt, node_id, spec.writes)
        return fake.save_images(self.prompt, node_id, spec.saves) if spec.saves else None

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(0.02, left))
            if self.generation != self.fake._generation:
                raise Stop("crashed")
