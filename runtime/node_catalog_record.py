"""Record the node catalog of an installed ComfyUI (AMI build: packer/scripts/install-comfyui-nodes.sh).

    python -m runtime.node_catalog_record --comfyui-dir /opt/comfyui --packs '<json>' --out FILE

Starts ComfyUI once (its own venv, loopback, a free port) with a throw-away extra-model-paths file whose folders
each hold one probe file (runtime.node_catalog.probe_name), reads ``/object_info``, stops it and writes the catalog.
Exits 1 naming the pack and the error when ComfyUI logged a custom node import failure (nodes.py logs ``Cannot
import <path> module for custom nodes: <error>`` and leaves the pack's nodes out of /object_info), or a declared
pack contributed no node class; exits 1 when ComfyUI does not answer within ``--timeout`` seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from runtime.node_catalog import MODEL_FOLDERS, NodeCatalog, from_object_info, import_failures, probe_name


class RecordError(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def probe_tree(root: Path) -> Path:
    """``root/models/<folder>/<probe>`` for every model folder, and the extra-model-paths file naming them."""
    lines = ["genai_fleet_probe:", f"  base_path: {root / 'models'}"]
    for folder in MODEL_FOLDERS:
        (root / "models" / folder).mkdir(parents=True, exist_ok=True)
        (root / "models" / folder / probe_name(folder)).write_bytes(b"")
        lines.append(f"  {folder}: {folder}")
    config = root / "extra_model_paths.yaml"
    config.write_text("\n".join(lines) + "\n")
    return config


def _get_json(url: str, timeout: float = 10.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 - loopback URL built here
        return json.loads(answer.read())


def record(comfyui_dir: Path, packs: list[dict[str, str]], python: str | None = None, timeout: float = 600.0,
           extra_args: tuple[str, ...] = ()) -> NodeCatalog:
    python = python or str(comfyui_dir / "venv" / "bin" / "python")
    with tempfile.TemporaryDirectory(prefix="genai-node-catalog-") as tmp:
        work = Path(tmp)
        config = probe_tree(work)
        port = _free_port()
        log_path = work / "comfyui.log"
        command = [python, "main.py", "--listen", "127.0.0.1", "--port", str(port), "--disable-auto-launch",
                   "--extra-model-paths-config", str(config), "--output-directory", str(work / "output"),
                   "--temp-directory", str(work / "temp"), "--input-directory", str(work / "input"),
                   "--user-directory", str(work / "user"), *extra_args]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(command, cwd=comfyui_dir, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        try:
            info = _wait_object_info(f"http://127.0.0.1:{port}", proc, timeout, log_path)
            version = ""
            try:
                version = str(_get_json(f"http://127.0.0.1:{port}/system_stats")["system"]["comfyui_version"])
            except (OSError, ValueError, KeyError, TypeError):
                pass
        finally:
            _stop(proc)
        text = log_path.read_text(errors="replace")
    _check_packs(comfyui_dir, packs, import_failures(text), info)
    return from_object_info(info, comfyui_version=version, packs=packs)


def _wait_object_info(url: str, proc: subprocess.Popen[bytes], timeout: float, log_path: Path) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-4000:]
            raise RecordError(f"ComfyUI exited ({proc.returncode}) before answering /object_info:\n{tail}")
        try:
            return dict(_get_json(f"{url}/object_info", timeout=30))
        except (OSError, ValueError):
            time.sleep(0.5)
    raise RecordError(f"ComfyUI did not answer {url}/object_info within {timeout:.0f} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _check_packs(comfyui_dir: Path, packs: list[dict[str, str]], failures: dict[str, str],
                 info: dict[str, Any]) -> None:
    declared = {p["name"]: p for p in packs}
    problems = []
    for path, error in sorted(failures.items()):
        name = Path(path).name.removesuffix(".py")
        where = f"custom node pack {name!r}"
        if name in declared:
            where += f" ({declared[name]['repository']} at {declared[name]['commit']})"
        problems.append(f"{where} failed to import: {error}")
    modules = {str(v.get("python_module", "")) for v in info.values() if isinstance(v, dict)}
    for name in declared:
        if f"custom_nodes.{name}" not in modules and not any(name in Path(p).name for p in failures):
            problems.append(f"custom node pack {name!r} loaded no node class (no NODE_CLASS_MAPPINGS reached "
                            f"/object_info from {comfyui_dir / 'custom_nodes' / name})")
    if problems:
        raise RecordError("; ".join(problems))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Record the node catalog of an installed ComfyUI")
    parser.add_argument("--comfyui-dir", type=Path, required=True)
    parser.add_argument("--python", help="ComfyUI's interpreter [<comfyui-dir>/venv/bin/python]")
    parser.add_argument("--packs", default="[]", help="JSON list of the declared packs {name, repository, commit}")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    try:
        catalog = record(args.comfyui_dir, json.loads(args.packs), args.python, args.timeout)
    except RecordError as exc:
        print(f"node catalog: {exc}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(catalog.to_json())
    print(f"node catalog: {len(catalog.nodes)} node classes, {len(catalog.packs)} custom pack(s) -> {args.out}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
