"""A fake AUTOMATIC1111 WebUI speaking its documented ``--api`` routes (modules/api/api.py).

Routes: GET/POST /sdapi/v1/options (``sd_model_checkpoint`` must be a listed title), GET
/sdapi/v1/sd-models (files in ``models_dir``), POST /sdapi/v1/refresh-checkpoints, POST
/sdapi/v1/txt2img and /sdapi/v1/img2img (base64 PNGs), GET /sdapi/v1/progress, POST /sdapi/v1/interrupt.
Controls: ``delay`` (seconds per generation), ``fail_generations`` (next N answer 500), ``switch_delay``.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path
from typing import Any

from tests.fakes._server import FakeServer, Handler, png


class FakeA1111(FakeServer):
    def __init__(self, models_dir: str | Path, delay: float = 0.2) -> None:
        super().__init__()
        self.models_dir = Path(models_dir)
        self.models_dir.mkdir(parents=True, exist_ok=True)
        self.delay = delay
        self.switch_delay = 0.0
        self.fail_generations = 0
        self.options: dict[str, Any] = {"sd_model_checkpoint": None}
        self.switches: list[str] = []
        self.generations: list[dict[str, Any]] = []
        self.progress = 0.0
        self._interrupt = threading.Event()

    def _models(self) -> list[dict[str, Any]]:
        return [{"title": f"{p.name} [abc123]", "model_name": p.stem, "hash": "abc123", "filename": str(p)}
                for p in sorted(self.models_dir.iterdir())]

    def dispatch(self, h: Handler, method: str) -> None:
        self.requests.append((method, h.route))
        routes = {
            ("GET", "/sdapi/v1/options"): lambda: h.send_json(self.options),
            ("POST", "/sdapi/v1/options"): lambda: self._set_options(h),
            ("GET", "/sdapi/v1/sd-models"): lambda: h.send_json(self._models()),
            ("POST", "/sdapi/v1/refresh-checkpoints"): lambda: (h.body(), h.send_json(None)),
            ("POST", "/sdapi/v1/txt2img"): lambda: self._generate(h, "txt2img"),
            ("POST", "/sdapi/v1/img2img"): lambda: self._generate(h, "img2img"),
            ("GET", "/sdapi/v1/progress"): lambda: h.send_json({"progress": self.progress, "eta_relative": 1.0,
                                                                "state": {"job_count": 1}, "current_image": None}),
            ("POST", "/sdapi/v1/interrupt"): lambda: (h.body(), self._interrupt.set(), h.send_json(None)),
        }
        action = routes.get((method, h.route))
        if action is None:
            h.send(404)
            return
        action()

    def _set_options(self, h: Handler) -> None:
        body = h.json_body()
        title = body.get("sd_model_checkpoint")
        if title is not None:
            if title not in [m["title"] for m in self._models()]:
                return h.send_json({"detail": f"model {title} not found"}, 400)
            time.sleep(self.switch_delay)
            self.switches.append(title)
        self.options.update(body)
        h.send_json(None)

    def _generate(self, h: Handler, kind: str) -> None:
        body = h.json_body()
        if self.fail_generations > 0:
            self.fail_generations -= 1
            return h.send_json({"error": "RuntimeError", "detail": "CUDA out of memory"}, 500)
        if kind == "img2img" and not body.get("init_images"):
            return h.send_json({"detail": "Init image not found"}, 404)
        self.generations.append({"kind": kind, **body})
        self._interrupt.clear()
        start = time.monotonic()
        while time.monotonic() - start < self.delay and not self._interrupt.is_set():
            self.progress = (time.monotonic() - start) / self.delay
            time.sleep(0.01)
        self.progress = 0.0
        n = int(body.get("batch_size", 1))
        images = [base64.b64encode(png(f"{body.get('prompt')}-{body.get('seed')}-{i}")).decode() for i in range(n)]
        info = json.dumps({"seed": body.get("seed"), "sd_model_name": self.options.get("sd_model_checkpoint")})
        h.send_json({"images": images, "parameters": body, "info": info})
