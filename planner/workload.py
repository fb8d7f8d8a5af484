"""What the simulated fleet serves and how long things take: service times, switch costs, launch delays.

Every default below is either a published or measured figure (cited) or an assumption (said so);
docs/planner.md lists them. Replace assumptions with your own measurements: ``--workload FILE`` for
service times, ``make measure-scaleout`` for launch-to-ready phases.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml


class WorkloadError(ValueError):
    """A workload or scale-out file that cannot be used; the message names the field to change."""


@dataclass(frozen=True)
class Dist:
    """A positive duration: ``constant``, ``exponential`` (mean) or ``lognormal`` (mean and coefficient of
    variation), or ``empirical`` (resampled from measured ``samples``)."""

    mean: float
    cv: float = 0.0
    kind: str = "lognormal"
    samples: tuple[float, ...] = ()

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.kind == "empirical":
            return rng.choice(np.asarray(self.samples, dtype=float), size=n)
        if self.kind == "exponential":
            return rng.exponential(self.mean, size=n)
        if self.kind == "constant" or self.cv == 0:
            return np.full(n, float(self.mean))
        sigma2 = math.log1p(self.cv**2)
        return rng.lognormal(math.log(self.mean) - sigma2 / 2, math.sqrt(sigma2), size=n)


def sampler(dist: Dist, rng: np.random.Generator, block: int = 65536) -> Callable[[], float]:
    """A fast scalar sampler: draws in numpy blocks, hands out Python floats."""
    buf: list[float] = []

    def draw() -> float:
        if not buf:
            buf.extend(dist.draw(rng, block).tolist())
        return buf.pop()

    return draw


@dataclass(frozen=True)
class ModelLoad:
    name: str
    share: float
    service: Dist
    switch_seconds: float = 0.0  # to make this the GPU's model when another one is loaded


# Launch-to-ready phases of a new instance (seconds). ec2_launch: the original write-up's benchmark,
# 17-18 s from RunInstances to "running" (docs/seed). The rest are assumptions until measured with
# `make measure-scaleout`: boot of the GPU AMI to the agent (OS, NVIDIA driver, cloud-init), backend start,
# one hot model from S3 to NVMe and onto the GPU (SDXL fp16 is ~6.9 GB), and the lifecycle action.
COLD_PHASES: dict[str, Dist] = {
    "ec2_launch": Dist(18.0, 0.1), "boot": Dist(40.0, 0.25), "backend": Dist(20.0, 0.25),
    "preload_per_model": Dist(30.0, 0.3), "lifecycle": Dist(5.0, 0.2)}
# A warm-pool (stopped) instance: EC2 start instead of launch, models already on its EBS cache.
WARM_PHASES: dict[str, Dist] = {
    "ec2_launch": Dist(20.0, 0.2), "boot": Dist(40.0, 0.25), "backend": Dist(20.0, 0.25),
    "preload_per_model": Dist(10.0, 0.3), "lifecycle": Dist(5.0, 0.2)}
# Spot Instance Advisor's lowest interruption band is "<5 %" a month; assume 5 % of instances a month.
SPOT_INTERRUPTIONS_PER_HOUR = 0.05 / 730


@dataclass(frozen=True)
class Workload:
    name: str
    models: tuple[ModelLoad, ...]
    basis: str
    cold_phases: Mapping[str, Dist] = field(default_factory=lambda: dict(COLD_PHASES))
    warm_phases: Mapping[str, Dist] = field(default_factory=lambda: dict(WARM_PHASES))
    spot_interruptions_per_hour: float = SPOT_INTERRUPTIONS_PER_HOUR

    @property
    def mean_service(self) -> float:
        total = sum(m.share for m in self.models)
        return sum(m.share * m.service.mean for m in self.models) / total


SDXL_BASIS = ("SDXL 1024x1024, 30 steps, one image per job. Measured on an NVIDIA H200 (issue #19): fp16 eager "
              "3.9 s, torch.compile 1.34 s. ASSUMED for g6.xlarge (L4) / g5.xlarge (A10G): 8 s, about twice the "
              "H200 eager figure; not measured.")
SD15_BASIS = ("SD1.5 512x512, 25 steps, one image per job. ASSUMED 1.5 s on g6.xlarge / g5.xlarge (about a fifth "
              "of the SDXL 1024x1024 assumption: a quarter of the pixels, fewer steps, a smaller UNet); not measured.")
VIDEO_BASIS = ("txt2video, AnimateDiff (a motion adapter on an SD1.5 base, the diffusers backend's video family), "
               "16 frames of 512x512, 25 steps, encoded to MP4. ASSUMED 40 s on g6.xlarge / g5.xlarge: the UNet runs "
               "on all 16 frames at once, about 16 SD1.5 images (24 s at the sd15 assumption) plus the motion "
               "modules, the chunked VAE decode and the encode (bench/bench_video.py: 512x512 encodes at 150-270 "
               "frames/s on 2 CPU cores, so the encode is under a tenth of a second); not measured on a GPU.")
BUILTIN: dict[str, Workload] = {
    "sdxl": Workload("sdxl", (ModelLoad("sdxl", 1.0, Dist(8.0, 0.05)),), SDXL_BASIS),
    "sd15": Workload("sd15", (ModelLoad("sd15", 1.0, Dist(1.5, 0.1)),), SD15_BASIS),
    "mix": Workload("mix", (ModelLoad("sdxl", 0.5, Dist(8.0, 0.05), switch_seconds=2.0),
                            ModelLoad("sd15", 0.5, Dist(1.5, 0.1), switch_seconds=1.0)),
                    SDXL_BASIS + " " + SD15_BASIS + " Switch from host RAM ASSUMED 2 s (SDXL) / 1 s (SD1.5) over "
                    "PCIe Gen4; issue #19 measured 0.11 s pinned / 0.94 s pageable for 5.3 GB on an H200."),
    "video": Workload("video", (ModelLoad("animatediff-sd15", 1.0, Dist(40.0, 0.15)),), VIDEO_BASIS),
}


def _dist(raw: Any, where: str) -> Dist:
    if isinstance(raw, int | float):
        return Dist(float(raw), 0.0, "constant")
    if not isinstance(raw, Mapping) or ("mean" not in raw and "samples" not in raw):
        raise WorkloadError(f"{where}: give a number of seconds or {{mean: S, cv: X, kind: lognormal|exponential}}")
    if "samples" in raw:
        samples = tuple(float(s) for s in raw["samples"])
        if not samples or min(samples) < 0:
            raise WorkloadError(f"{where}.samples: list at least one non-negative duration")
        return Dist(sum(samples) / len(samples), 0.0, "empirical", samples)
    kind = raw.get("kind", "lognormal")
    if kind not in ("lognormal", "exponential", "constant"):
        raise WorkloadError(f"{where}.kind = {kind!r}: use lognormal, exponential or constant")
    mean, cv = float(raw["mean"]), float(raw.get("cv", 0.0))
    if mean <= 0 or cv < 0:
        raise WorkloadError(f"{where}: mean must be above 0 and cv at least 0")
    return Dist(mean, cv, kind)


def _phases(raw: Mapping[str, Any] | None, defaults: Mapping[str, Dist], where: str) -> dict[str, Dist]:
    out = dict(defaults)
    for key, value in (raw or {}).items():
        if key not in defaults:
            raise WorkloadError(f"{where}.{key}: unknown phase; allowed: {', '.join(defaults)}")
        out[key] = _dist(value, f"{where}.{key}")
    return out


def from_mapping(data: Mapping[str, Any], name: str) -> Workload:
    models = data.get("models")
    if not isinstance(models, list) or not models:
        raise WorkloadError(f"{name}: 'models' must list at least one {{name, share, service}}")
    loads = []
    for i, m in enumerate(models):
        if not isinstance(m, Mapping) or "name" not in m or "service" not in m:
            raise WorkloadError(f"{name}: models[{i}] needs 'name' and 'service'")
        loads.append(ModelLoad(str(m["name"]), float(m.get("share", 1.0)), _dist(m["service"], f"models[{i}].service"),
                               float(m.get("switch_seconds", 0.0))))
    return Workload(name, tuple(loads), str(data.get("basis", "given in " + name)),
                    _phases(data.get("cold_phases"), COLD_PHASES, "cold_phases"),
                    _phases(data.get("warm_phases"), WARM_PHASES, "warm_phases"),
                    float(data.get("spot_interruptions_per_hour", SPOT_INTERRUPTIONS_PER_HOUR)))


def load(spec: str, scaleout_file: str | None = None) -> Workload:
    """A built-in workload (sdxl, sd15, mix) or a YAML/JSON file; launch phases from a measured file, if given."""
    if spec in BUILTIN:
        work = BUILTIN[spec]
    else:
        path = Path(spec)
        if not path.exists():
            raise WorkloadError(f"workload {spec!r}: use one of {', '.join(BUILTIN)} or a YAML/JSON file path")
        work = from_mapping(yaml.safe_load(path.read_text()) or {}, path.name)
    if scaleout_file:
        work = with_measured_phases(work, Path(scaleout_file))
    return work


def with_measured_phases(work: Workload, path: Path) -> Workload:
    """Use the phase samples ``make measure-scaleout`` wrote (``{"cold_phases": {phase: {"samples": [...]}}}``)."""
    if not path.exists():
        raise WorkloadError(f"scale-out file {path} does not exist; run `make measure-scaleout` or leave it out")
    data = json.loads(path.read_text())
    return Workload(work.name, work.models, work.basis,
                    _phases(data.get("cold_phases"), work.cold_phases, "cold_phases"),
                    _phases(data.get("warm_phases"), work.warm_phases, "warm_phases"),
                    work.spot_interruptions_per_hour)


def job_models(trace: Any, workload: Workload, seed: int) -> np.ndarray:
    """Model index per job: the trace's own (matched by name) or drawn from the workload's mix."""
    names = [m.name for m in workload.models]
    if trace.models is not None:
        missing = [m for m in trace.model_names if m not in names]
        if missing:
            raise ValueError(f"trace names models the workload does not describe: {', '.join(missing)}; "
                             f"the workload has {', '.join(names)}")
        remap = np.asarray([names.index(m) for m in trace.model_names], dtype=np.int64)
        return remap[trace.models]
    shares = np.asarray([m.share for m in workload.models], dtype=float)
    rng = np.random.default_rng(seed + 7919)
    return rng.choice(len(shares), size=len(trace.times), p=shares / shares.sum())
