"""Fetch the native (compiled) packages the API Lambda needs, built for its platform (arm64, CPython 3.12).

The API validates jobs with pydantic, whose core is a compiled extension: the deploying machine's own build
(x86_64, another Python) cannot be shipped. ``make install`` runs this once; it downloads the manylinux
aarch64 cp312 wheels of ``NATIVE`` (pinned to the versions installed here, so the pure-Python half and the
compiled half match) and unpacks them into ``.build/lambda-native/<hash>/``, which components/api.py adds
to the Lambda code archive. Tests and ``pulumi preview`` then need no network.

    .venv/bin/python tools/lambda_native_deps.py        # prints the folder
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NATIVE = ("pydantic-core",)
PLATFORMS = ("manylinux_2_17_aarch64", "manylinux2014_aarch64", "manylinux_2_28_aarch64")


def requirements() -> list[str]:
    """``name==version`` of each native package, the version installed in this environment."""
    return [f"{name}=={importlib.metadata.version(name)}" for name in NATIVE]


def native_dir() -> Path:
    digest = hashlib.sha256("\n".join(requirements()).encode()).hexdigest()[:12]
    return ROOT / ".build" / "lambda-native" / digest


def fetch() -> Path:
    """The unpacked wheels' folder, downloading them first if this version set is not there yet."""
    target = native_dir()
    if (target / ".complete").exists():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", *platforms,
               "--python-version", "3.12", "--implementation", "cp", "--dest", tmp, *requirements()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"downloading the Lambda's native wheels failed (needs PyPI):\n{proc.stderr[-2000:]}")
        target.mkdir(parents=True, exist_ok=True)
        for wheel in sorted(Path(tmp).glob("*.whl")):
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(target)
    (target / ".complete").write_text("\n".join(requirements()) + "\n")
    return target


if __name__ == "__main__":
    print(fetch())
