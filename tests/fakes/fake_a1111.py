"""A fake AUTOMATIC1111 WebUI behaving as its ``--api`` does (read in AUTOMATIC1111/stable-diffusion-webui:
modules/api/api.py, modules/progress.py, modules/shared_state.py), for the points the adapter relies on.

- POST /sdapi/v1/txt2img and /img2img block until the generation ends; a request first joins the
  pending tasks (``force_task_id`` names it, else ``task(<random>)``), then waits for the one queue
  lock: one generation at a time, in arrival order. ``img2img`` without ``init_images``: 404
  "Init image not found"; fields of the wrong type: 422 with FastAPI's ``detail`` list.
- POST /sdapi/v1/interrupt is global: it flags the generation running now (the flag is reset when the
  next generation begins, so an interrupt with nothing running does nothing). An interrupted generation
  still answers 200 with images (A1111 decodes the latent it had), only ``state.interrupted`` says so.
- GET /sdapi/v1/progress: ``progress``, ``eta_relative``, ``state`` (``interrupted``, ``job_count``,
  ``sampling_step``, ``sampling_steps``...) and ``current_task``; POST /internal/progress ``{"id_task"}``:
  ``active`` / ``queued`` / ``completed`` of one task.
- GET/POST /sdapi/v1/options (``sd_model_checkpoint`` must be a listed title, else 500 as the real
  RuntimeError), GET /sdapi/v1/sd-models (files in ``models_dir``), POST /sdapi/v1/refresh-checkpoints.
- POST /sdapi/v1/refresh-loras, GET /sdapi/v1/loras (the Lora extension's api: ``name`` is the file's stem, from
  ``lora_dir``, default ``<models_dir>/../loras``, the folder ``--lora-dir`` names on the AMI).
- POST /sdapi/v1/skip: flags the running generation as skipped (shared.state.skip()); polled like the interrupt.
Controls: ``delay`` (seconds per generation, spread over its steps), ``fail_generations`` (next N answer
500), ``switch_delay``, ``hang_generations`` / ``hang_seconds`` (the next N generations block first, deaf to
interrupt and skip: a stuck CUDA call).
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from tests.fakes._server import FakeServer, Handler, png

_INT_FIELDS = ("width", "height", "steps", "batch_size", "n_iter")


class FakeA1111(FakeServer):
    def __init__(self, models_dir: str | Path, delay: float = 0.2) -> None:
        super().__init__()
        self.models_dir = Path(models_dir)
        self.models_dir.mkdir(parents=True, exist_ok=True)
        self.lora_dir = self.models_dir.parent / "loras"
        self.delay = delay
        self.switch_delay = 0.0
        self.fail_generations = 0
        self.options: dict[str, Any] = {"sd_model_checkpoint": None}
        self.switches: list[str] = []
        self.generations: list[dict[str, Any]] = []
        self.interrupts = 0
        self.skips = 0
        self.hang_generations = 0  # the next N generations first block ``hang_seconds``, polling no flag
        self.hang_seconds = 3600.0
        self.queue_lock = threading.Lock()
        self.current_task: str | None = None
        self.pending_tasks: dict[str, float] = {}
        self.finished_tasks: list[str] = []
        self.state: dict[str, Any] = {"skipped": False, "interrupted": False, "job": "", "job_count": 0,
                                      "job_timestamp": "0", "job_no": 0, "sampling_step": 0, "sampling_steps": 0}

    def _models(self) -> list[dict[str, Any]]:
        return [{"title": f"{p.name} [abc123]", "model_name": p.stem, "hash": "abc123", "filename": str(p)}
                for p in sorted(self.models_dir.iterdir())]

    def _loras(self) -> list[dict[str, Any]]:
        files = sorted(self.lora_dir.iterdir()) if self.lora_dir.is_dir() else []
        return [{"name": p.stem, "alias": p.stem, "path": str(p), "metadata": {}} for p in files
                if p.suffix in (".safetensors", ".ckpt", ".pt")]

    def dispatch(self, h: Handler, method: str) -> None:
        self.requests.append((method, h.route))
        routes = {
            ("GET", "/sdapi/v1/options"): lambda: h.send_json(self.options),
            ("POST", "/sdapi/v1/options"): lambda: self._set_options(h),
            ("GET", "/sdapi/v1/sd-models"): lambda: h.send_json(self._models()),
            ("POST", "/sdapi/v1/refresh-checkpoints"): lambda: (h.body(), h.send_json(None)),
            ("POST", "/sdapi/v1/refresh-loras"): lambda: (h.body(), h.send_json(None)),
            ("GET", "/sdapi/v1/loras"): lambda: h.send_json(self._loras()),
            ("POST", "/sdapi/v1/txt2img"): lambda: self._generate(h, "txt2img"),
            ("POST", "/sdapi/v1/img2img"): lambda: self._generate(h, "img2img"),
            ("GET", "/sdapi/v1/progress"): lambda: h.send_json(
                self._progress(with_image=h.query.get("skip_current_image", "false") != "true")),
            ("POST", "/internal/progress"): lambda: h.send_json(self._task_progress(h.json_body())),
            ("POST", "/sdapi/v1/interrupt"): lambda: (h.body(), self._interrupt(), h.send_json({})),
            ("POST", "/sdapi/v1/skip"): lambda: (h.body(), self._skip(), h.send_json({})),
        }
        action = routes.get((method, h.route))
        if action is None:
            h.send(404, json.dumps({"detail": "Not Found"}).encode())
            return
        action()

    def _set_options(self, h: Handler) -> None:
        body = h.json_body()
        title = body.get("sd_model_checkpoint")
        if title is not None:
            if title not in [m["title"] for m in self._models()]:
                return h.send_json({"error": "RuntimeError", "detail": "", "body": "",
                                    "errors": f"model {title!r} not found"}, 500)
            time.sleep(self.switch_delay)
            self.switches.append(title)
        self.options.update(body)
        h.send_json(None)

    def _skip(self) -> None:
        self.skips += 1
        if self.state["job_count"]:  # shared.state.skip(): a flag the sampler polls, as the interrupt's
            self.state["skipped"] = True

    def _interrupt(self) -> None:
        self.interrupts += 1
        if self.state["job_count"]:  # shared.state.interrupt(): only a running generation notices
            self.state["interrupted"] = True

    def _progress(self, with_image: bool = False) -> dict[str, Any]:
        state = dict(self.state)
        steps = state["sampling_steps"] or 1
        progress = 0.0 if not state["job_count"] else min(1.0, 0.01 + state["sampling_step"] / steps)
        # progressapi: current_image is encode_pil_to_base64(shared.state.current_image) (the samples format,
        # PNG by default, plain base64) unless skip_current_image, and only while a generation runs
        image = base64.b64encode(png(f"live-{state['sampling_step']}")).decode() \
            if with_image and state["job_count"] else None
        return {"progress": progress, "eta_relative": 0.0 if not progress else self.delay * (1 - progress),
                "state": state, "current_image": image, "textinfo": None, "current_task": self.current_task}

    def _task_progress(self, body: dict[str, Any]) -> dict[str, Any]:
        task = body.get("id_task")
        active = task is not None and task == self.current_task
        return {"active": active, "queued": task in self.pending_tasks, "completed": task in self.finished_tasks,
                "progress": self._progress()["progress"] if active else None, "eta": None, "live_preview": None,
                "id_live_preview": -1, "textinfo": None if active else "Waiting..."}

    def _generate(self, h: Handler, kind: str) -> None:
        body = h.json_body()
        bad = [f for f in _INT_FIELDS if f in body and not isinstance(body[f], int)]
        if bad:
            return h.send_json({"detail": [{"loc": ["body", f], "msg": "value is not a valid integer",
                                            "type": "type_error.integer"} for f in bad]}, 422)
        if kind == "img2img" and not body.get("init_images"):
            return h.send_json({"detail": "Init image not found"}, 404)
        task_id = body.get("force_task_id") or f"task({uuid.uuid4().hex[:15]})"
        self.pending_tasks[task_id] = time.time()
        with self.queue_lock:
            self.pending_tasks.pop(task_id, None)
            if self.fail_generations > 0:
                self.fail_generations -= 1
                return h.send_json({"error": "OutOfMemoryError", "detail": "", "body": "",
                                    "errors": "CUDA out of memory"}, 500)
            self.generations.append({"kind": kind, **body})
            interrupted = self._sample(task_id, int(body.get("steps") or 20))
            n = int(body.get("batch_size", 1))
            images = [base64.b64encode(png(f"{body.get('prompt')}-{body.get('seed')}-{i}-{interrupted}")).decode()
                      for i in range(n)]
        info = json.dumps({"seed": body.get("seed"), "sd_model_name": self.options.get("sd_model_checkpoint")})
        h.send_json({"images": images, "parameters": body, "info": info})

    def _sample(self, task_id: str, steps: int) -> bool:
        """state.begin(), start_task, the sampling steps (an interrupt ends them), finish_task, state.end()."""
        self.state.update(interrupted=False, skipped=False, job="scripts_txt2img", job_count=1, sampling_step=0,
                          sampling_steps=steps, job_timestamp=time.strftime("%Y%m%d%H%M%S"))
        self.current_task = task_id
        if self.hang_generations > 0:  # a stuck CUDA call: neither interrupt nor skip is looked at meanwhile
            self.hang_generations -= 1
            time.sleep(self.hang_seconds)
        for step in range(steps):
            if self.state["interrupted"] or self.state["skipped"]:
                break
            time.sleep(self.delay / steps)
            self.state["sampling_step"] = step + 1
        interrupted = bool(self.state["interrupted"])
        self.current_task = None
        self.finished_tasks = [*self.finished_tasks, task_id][-16:]
        self.state.update(job="", job_count=0, sampling_step=0, sampling_steps=0)  # interrupted stays as it was
        return interrupted
