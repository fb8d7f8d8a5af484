"""The job API's Lambda package: its code archive, where its dependencies are built, and the check that
they match their requirements.

``api_code_archive()`` is the runtime code of ``RUNTIME_FILES`` / ``RUNTIME_PACKAGES`` plus the built
dependencies, file by file; the job API (components/api.py) and the job-events functions
(components/job_events.py, handlers in ``runtime/functions``) run from it.

``make lambda-deps`` (part of ``make install``; ``tools/build_lambda.py``) installs each pinned requirements
file with ``pip install --target <dir> --platform manylinux2014_aarch64 --only-binary=:all:
--python-version 3.12 --implementation cp --no-deps``, i.e. wheels for the function's architecture and
Python whatever machine builds them, then writes ``.complete`` holding the requirements' digest. The Pulumi
program only reads those folders: ``pulumi preview`` and ``pulumi up`` need no network and no pip, and a
folder built from other requirements is refused with the command that rebuilds it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pulumi

ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = ROOT / ".build" / "lambda"
LAMBDA_PYTHON = "3.12"
LAMBDA_ARCHITECTURE = "arm64"
PIP_PLATFORMS = ("manylinux_2_28_aarch64", "manylinux2014_aarch64")  # what Lambda's arm64 python3.12 runs
STAMP = ".complete"
# The runtime code of the job API's archive, which the job-events functions (components/job_events.py) share.
RUNTIME_PACKAGES = ("runtime/api", "runtime/jobs", "runtime/queues", "runtime/model_store")
RUNTIME_FILES = ("runtime/__init__.py", "runtime/queue_names.py", "runtime/model_ids.py", "runtime/aws_clients.py",
                 "runtime/net_safety.py", "runtime/instance_contract.py", "runtime/node_catalog.py",
                 "runtime/queueing.py",
                 "runtime/workflow_files.py",
                 "runtime/functions/__init__.py", "runtime/functions/environment.py",
                 "runtime/functions/webhooks.py", "runtime/functions/webhook_events.py",
                 "runtime/functions/webhook_dispatch.py", "runtime/functions/reconciler.py",
                 "runtime/functions/output_orphans.py")


class LambdaDepsMissingError(RuntimeError):
    """The dependency folder is missing or was built from other requirements."""


@dataclass(frozen=True)
class DepsTarget:
    """One dependency folder: its pinned requirements file and where pip installs them."""

    name: str
    requirements: Path
    directory: Path  # what the archive or layer is made of
    install_dir: Path  # where pip --target writes (the layer's python/ folder)

    def digest(self) -> str:
        lines = [ln.strip() for ln in self.requirements.read_text().splitlines()]
        pinned = sorted(ln for ln in lines if ln and not ln.startswith("#"))
        return hashlib.sha256(("\n".join(pinned) + f"\n{LAMBDA_PYTHON} {' '.join(PIP_PLATFORMS)}").encode()).hexdigest()

    def is_current(self) -> bool:
        stamp = self.directory / STAMP
        return stamp.is_file() and stamp.read_text().strip() == self.digest()

    def require(self) -> Path:
        """The built folder, or ``LambdaDepsMissingError`` naming the command that builds it."""
        if not self.is_current():
            state = "was built from other requirements" if (self.directory / STAMP).exists() else "is missing"
            raise LambdaDepsMissingError(
                f"{self.directory.relative_to(ROOT)} {state} (the job API's Lambda {self.name} dependencies, "
                f"{self.requirements.relative_to(ROOT)}): run `make lambda-deps` (part of `make install`); "
                f"the deploy itself needs no network")
        return self.directory


API_DEPS = DepsTarget("api", ROOT / "runtime" / "api" / "lambda-requirements.txt", BUILD_DIR / "api",
                      BUILD_DIR / "api")
KAFKA_LAYER = DepsTarget("kafka-layer", ROOT / "runtime" / "api" / "kafka-layer-requirements.txt",
                         BUILD_DIR / "kafka-layer", BUILD_DIR / "kafka-layer" / "python")
TARGETS = (API_DEPS, KAFKA_LAYER)


def archive_files(directory: Path) -> list[tuple[str, Path]]:
    """(path in the archive, file) for a built folder: packages only, no scripts, caches or the stamp."""
    out = []
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory)
        if not path.is_file() or rel.parts[0] == "bin" or "__pycache__" in rel.parts or path.suffix == ".pyc":
            continue
        if rel.as_posix() == STAMP:
            continue
        out.append((rel.as_posix(), path))
    return out


def api_code_archive() -> pulumi.AssetArchive:
    """The API's runtime modules plus the built dependencies, file by file (no caches, deterministic)."""
    assets: dict[str, pulumi.Asset | pulumi.Archive] = {}
    for rel in RUNTIME_FILES:
        assets[rel] = pulumi.FileAsset(str(ROOT / rel))
    for package in RUNTIME_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            assets[str(path.relative_to(ROOT))] = pulumi.FileAsset(str(path))
    for rel, path in archive_files(API_DEPS.require()):
        assets.setdefault(rel, pulumi.FileAsset(str(path)))
    return pulumi.AssetArchive(assets)


def files_archive(directory: Path) -> pulumi.AssetArchive:
    """A built folder as an archive (a layer's contents)."""
    return pulumi.AssetArchive({rel: pulumi.FileAsset(str(path)) for rel, path in archive_files(directory)})
