"""Local mode with the diffusers backend and a LoRA (issue 40): client -> API (LoRA checked against the model
store's manifest) -> SQS -> agent (LoRA fetched through the model cache, pinned for the run) -> diffusers backend
(adapter on the resident base) -> S3 -> CDN stand-in. The image matches diffusers' own ``load_lora_weights`` on the
same tiny pipeline and tiny LoRA (built here from the same seeds) within the stated tolerance and differs from the
job without the LoRA; an unknown LoRA is a 422 naming the field (the base loaded once and unloading restoring
its weights are shown in tests/unit/test_diffusers_loras.py)."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from bench.diffusers_loras import tiny_lora
from bench.diffusers_models import tiny

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SIZE, STEPS, GUIDANCE, WEIGHT = 64, 4, 7.0, 0.8
TOLERANCE = 3  # of 255, as tests/e2e/test_local_diffusers.py: SDPA and channels_last against diffusers' defaults


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def _direct(base: Path, lora: Path | None, seed: int) -> np.ndarray:
    import diffusers
    import torch

    pipe = diffusers.StableDiffusionPipeline.from_pretrained(str(base), local_files_only=True)
    if lora is not None:
        pipe.load_lora_weights(str(lora), adapter_name="lora")
        pipe.set_adapters(["lora"], adapter_weights=[WEIGHT])
    image = pipe(prompt="a cat", negative_prompt="", num_inference_steps=STEPS, guidance_scale=GUIDANCE,
                 width=SIZE, height=SIZE, generator=torch.Generator("cpu").manual_seed(seed)).images[0]
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return _pixels(buf.getvalue())


def _run(ledger, seed: int, **inputs):
    view = ledger.submit(prompt="a cat", width=SIZE, height=SIZE, seed=seed, wait=25, model="tiny-sd",
                         inputs={"steps": STEPS, "guidance": GUIDANCE, **inputs})
    if view["status"] not in ("succeeded", "failed", "canceled"):
        view = ledger.wait_final([view["id"]], timeout=120)[view["id"]]
    assert view["status"] == "succeeded", view
    return _pixels(httpx.get(view["outputs"][0]["url"], timeout=10).content)


def test_a_lora_job_in_local_mode_matches_diffusers_own_load_lora_weights(start_platform, tmp_path: Path) -> None:
    platform = start_platform(backend="diffusers", workers=1, tiny_models={"tiny-sd": ("sd15", 0)},
                              tiny_loras={"tiny-sd-pix": ("tiny-sd", 1)}, metrics_sink="stdout")
    assert (platform.models["tiny-sd-pix"].kind, platform.models["tiny-sd-pix"].family) == ("lora", "tiny-sd")
    base = tiny("sd15", tmp_path / "own" / "tiny-sd", seed=0)  # the test's own copies, from the same seeds
    lora = tiny_lora(base, tmp_path / "own" / "pix", seed=1)
    ledger = platform.ledger
    with_lora = _run(ledger, 5, loras=[{"model": "tiny-sd-pix", "weight": WEIGHT}])
    assert int(np.abs(with_lora - _direct(base, lora, 5)).max()) <= TOLERANCE
    plain = _run(ledger, 5)
    assert int(np.abs(plain - _direct(base, None, 5)).max()) <= TOLERANCE
    assert np.abs(with_lora - plain).max() > 10 * TOLERANCE  # the LoRA changed the image
    refused = httpx.post(f"{platform.api_url}/v1/jobs", headers={"authorization": f"Bearer {platform.api_key}"},
                         json={"model": "tiny-sd", "inputs": {"prompt": "a cat", "loras": [{"model": "nope"}]}})
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "inputs.loras.0.model"
