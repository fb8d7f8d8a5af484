"""Local mode with the diffusers backend: the real inference path end to end on the CPU.

Client -> API -> SQS -> agent -> model store -> model cache -> diffusers backend (tiny random-weight
pipelines built from configs, bench/diffusers_models.py) -> S3 -> CDN stand-in. The images are compared
with the same tiny pipeline called directly here (diffusers' own pipeline class, same seed, size, steps and
guidance); two models alternated show a model switch and a host-RAM tier hit in the agent's own metrics
(EMF lines on its stdout); a worker SIGKILLed mid-job leaves nothing lost or duplicated. Tiny sizes and
few steps keep each job well under a second of CPU.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from bench.diffusers_models import tiny
from runtime import metric_names as m
from tests.e2e._helpers import assert_clean, record, run_began_on, store, wait_until
from tools.chaos import Burners

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SIZE, STEPS, GUIDANCE = 64, 4, 7.0
# Largest per-channel difference (of 255) allowed between the platform's image and the direct call. The agent
# runs the pipeline as the fleet does (SDPA attention processors, channels_last memory format, a fresh
# scheduler per call); the direct call uses diffusers' defaults, so the float results may differ in the last
# bits, which a PNG's 8 bits round to at most a step or two. A wrong seed, model or input moves them by tens.
TOLERANCE = 3
TINY = {"tiny-sd": ("sd15", 0), "tiny-sd-b": ("sd15", 1)}  # one architecture, two sets of weights


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _input_image() -> bytes:
    """A 64x64 gradient with a square: structure the img2img result must keep something of."""
    x = np.linspace(0, 255, SIZE, dtype=np.uint8)
    rgb = np.stack([np.tile(x, (SIZE, 1)), np.tile(x[:, None], (1, SIZE)), np.full((SIZE, SIZE), 90, np.uint8)], -1)
    rgb[20:44, 20:44] = (250, 40, 40)
    return _png(Image.fromarray(rgb))


def _direct(folder: Path, seed: int, prompt: str, image: bytes | None = None, strength: float = 0.0) -> np.ndarray:
    """The tiny pipeline called directly: diffusers' own classes, the job's seed, size, steps and guidance."""
    import diffusers
    import torch

    generator = torch.Generator("cpu").manual_seed(seed)
    common = {"prompt": prompt, "negative_prompt": "", "num_inference_steps": STEPS, "guidance_scale": GUIDANCE,
              "generator": generator}
    if image is None:
        pipe = diffusers.StableDiffusionPipeline.from_pretrained(str(folder), local_files_only=True)
        out = pipe(**common, width=SIZE, height=SIZE).images[0]
    else:
        pipe = diffusers.StableDiffusionImg2ImgPipeline.from_pretrained(str(folder), local_files_only=True)
        out = pipe(**common, image=Image.open(io.BytesIO(image)).convert("RGB"), strength=strength).images[0]
    return _pixels(_png(out))


def _output(view: dict[str, Any]) -> np.ndarray:
    assert view["status"] == "succeeded", view
    response = httpx.get(view["outputs"][0]["url"], timeout=10)  # from the CDN stand-in
    assert response.status_code == 200 and response.headers["content-type"] == "image/png", view
    return _pixels(response.content)


def _metric(records: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [r for r in records if any(name == d["Name"] for d in r["_aws"]["CloudWatchMetrics"][0]["Metrics"])]


def test_txt2img_and_img2img_equal_the_pipeline_called_directly_and_a_switch_back_hits_the_ram_tier(
        start_platform, tmp_path: Path) -> None:
    platform = start_platform(backend="diffusers", workers=1, tiny_models=TINY, metrics_sink="stdout",
                              diffusers={"host_ram_gib": 1})
    assert {k: (v.kind, v.tiny) for k, v in platform.models.items()} == {
        "tiny-sd": ("diffusers", True), "tiny-sd-b": ("diffusers", True)}
    ledger = platform.ledger
    params = {"steps": STEPS, "guidance": GUIDANCE}
    # The test's own copies of the two pipelines: same family and seed, built from the same configs.
    own = {model_id: tiny(family, tmp_path / "own" / model_id, seed=seed) for model_id, (family, seed) in TINY.items()}

    first = ledger.submit(prompt="a cat", width=SIZE, height=SIZE, seed=5, wait=60, model="tiny-sd", inputs=params)
    got = _output(first)
    want = _direct(own["tiny-sd"], 5, "a cat")
    diffs = {"txt2img": int(np.abs(got - want).max())}
    assert got.shape == (SIZE, SIZE, 3) and diffs["txt2img"] <= TOLERANCE
    assert np.abs(got - _direct(own["tiny-sd"], 6, "a cat")).max() > 10 * TOLERANCE  # another seed: far off

    source = _input_image()
    data_uri = "data:image/png;base64," + base64.b64encode(source).decode()
    edit = ledger.submit(prompt="a cat", width=SIZE, height=SIZE, seed=6, wait=60, model="tiny-sd", task="img2img",
                         inputs={**params, "image": data_uri, "strength": 0.5})
    got_edit = _output(edit)
    diffs["img2img"] = int(np.abs(got_edit - _direct(own["tiny-sd"], 6, "a cat", source, 0.5)).max())
    assert diffs["img2img"] <= TOLERANCE
    assert np.abs(got_edit - _direct(own["tiny-sd"], 6, "a cat")).max() > 10 * TOLERANCE  # the input image counted

    other = ledger.submit(prompt="a cat", width=SIZE, height=SIZE, seed=5, wait=60, model="tiny-sd-b", inputs=params)
    got_other = _output(other)
    diffs["other model"] = int(np.abs(got_other - _direct(own["tiny-sd-b"], 5, "a cat")).max())
    assert diffs["other model"] <= TOLERANCE
    assert np.abs(got_other - got).max() > 10 * TOLERANCE  # other weights, other picture
    back = ledger.submit(prompt="a cat", width=SIZE, height=SIZE, seed=5, wait=60, model="tiny-sd", inputs=params)
    diffs["back from the RAM tier"] = int(np.abs(_output(back) - want).max())
    assert diffs["back from the RAM tier"] <= TOLERANCE  # tiny-sd's weights, restored from the RAM tier
    print(f"largest pixel difference from the direct call (tolerance {TOLERANCE}): {diffs}")

    metrics = wait_until(lambda: (r := platform.agent_metrics(0)) and _metric(r, m.MODEL_RAM_HITS) and r, 20,
                         "a ModelRamHits record in worker-0's metrics")
    switches = _metric(metrics, m.MODEL_SWITCHES)
    assert [(r["previous"], r["model"]) for r in switches] == [("tiny-sd", "tiny-sd-b"), ("tiny-sd-b", "tiny-sd")]
    hits = _metric(metrics, m.MODEL_RAM_HITS)
    assert len(hits) == 1 and hits[0]["model"].startswith("tiny-sd@"), hits  # the switch back, not the first switch
    assert len(_metric(metrics, m.MODEL_RAM_MISSES)) == 1  # tiny-sd-b's first load came from disk
    assert len(_metric(metrics, m.MODEL_SWITCH_TIME)) == 2
    report = ledger.report([first["id"], edit["id"], other["id"], back["id"]])
    record("diffusers backend: txt2img, img2img, switch and back", report)
    assert_clean(report, submitted=4)


def test_sigkill_of_a_worker_mid_job_with_the_diffusers_backend_loses_nothing_beside_a_cpu_burner(
        start_platform, tmp_path: Path) -> None:
    # Folders the user names (the --model path), not the built-in tiny models: checked, uploaded as kind diffusers.
    folder = tiny("sd15", tmp_path / "mine", seed=3)
    with Burners(1):
        platform = start_platform(backend="diffusers", models={"mine": str(folder)}, visibility_timeout_seconds=4)
        w0, w1 = platform.workers
        ids = [platform.ledger.submit(prompt=f"job {i}", width=SIZE, height=SIZE, seed=i, model="mine",
                                      inputs={"steps": 24})["id"] for i in range(6)]
        victim_job = wait_until(run_began_on(platform, ids, w0.instance_id, within=0.5), 90,
                                "a job whose diffusers run just began on worker-0")

        w0.process.kill()  # SIGKILL mid-inference: no hand-back; the message's lease has to run out

        views = platform.ledger.wait_final(ids, timeout=120)
        report = platform.ledger.report(ids)
    record("drill SIGKILL worker (diffusers backend)", report)
    assert_clean(report, submitted=6)
    assert all(v["status"] == "succeeded" for v in views.values())
    victim = store(platform).get(victim_job)
    assert victim["worker_id"] == w1.instance_id and victim["attempts"] >= 2, victim
