#!/usr/bin/env python3
"""Build the job API's Lambda dependencies for arm64 / python3.12 from pinned requirements (``make lambda-deps``).

    python tools/build_lambda.py [--only api|kafka-layer] [--force]

Runs once per requirements change (a folder whose ``.complete`` matches its requirements is kept), needs
PyPI (or a mirror pip is configured for) and nothing else; ``pulumi preview`` then reads the folders
offline. Paths and the digest check live in ``components/lambda_package.py``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from components.lambda_package import (
    LAMBDA_PYTHON,
    PIP_PLATFORMS,
    STAMP,
    TARGETS,
    DepsTarget,
)

ROOT = Path(__file__).resolve().parent.parent


def pip_command(target: DepsTarget, python: str = sys.executable) -> list[str]:
    """pip installs wheels for Lambda's platform and Python, never sdists, never the host's resolver picks."""
    platforms = [arg for p in PIP_PLATFORMS for arg in ("--platform", p)]
    return [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
            "--target", str(target.install_dir), "--no-deps", "--only-binary=:all:", *platforms,
            "--python-version", LAMBDA_PYTHON, "--implementation", "cp", "-r", str(target.requirements)]


def build(target: DepsTarget, force: bool = False) -> bool:
    """Build one folder; False when it was already current."""
    if target.is_current() and not force:
        return False
    shutil.rmtree(target.directory, ignore_errors=True)
    target.install_dir.mkdir(parents=True)
    proc = subprocess.run(pip_command(target), capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"pip could not build {target.directory} from {target.requirements}:\n{proc.stderr[-3000:]}")
    (target.directory / STAMP).write_text(target.digest() + "\n")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=[t.name for t in TARGETS], help="build one folder")
    parser.add_argument("--force", action="store_true", help="rebuild even when current")
    args = parser.parse_args(argv)
    for target in TARGETS:
        if args.only and target.name != args.only:
            continue
        state = "built" if build(target, args.force) else "up to date"
        print(f"{target.directory.relative_to(ROOT)}: {state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
