"""ComfyUI stand-in for the first-boot rehearsal, installed where the AMI puts ComfyUI (install-comfyui.sh
with COMFYUI_SOURCE). It takes ComfyUI's own command line (the AMI's comfyui.service), reads models
only through the extra-model-paths file it is given (``base_path`` + ``checkpoints``, as ComfyUI's
utils/extra_config.py joins them) and serves the documented HTTP API with tests/fakes/fake_comfyui.py,
which the rehearsal copies beside this file: ``python main.py`` puts this folder first on ``sys.path``, the
way ComfyUI's own main.py finds its packages. Custom node packs in ``custom_nodes/`` beside this file are loaded as
ComfyUI loads them (tests/fakes/comfyui_custom_nodes.py) and import failures logged the same way.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from pathlib import Path

from tests.fakes.fake_comfyui import FakeComfyUI


def checkpoints_folder(config: Path) -> Path:
    """``base_path``/``checkpoints`` of the first section of an extra_model_paths YAML file."""
    values: dict[str, str] = {}
    for line in config.read_text().splitlines():
        text = line.split("#", 1)[0].rstrip()
        if text.startswith((" ", "\t")) and ":" in text:
            key, value = text.strip().split(":", 1)
            values.setdefault(key.strip(), value.strip())
    if "base_path" not in values or "checkpoints" not in values:
        raise SystemExit(f"{config}: no base_path / checkpoints entry")
    return Path(values["base_path"]) / values["checkpoints"]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("--extra-model-paths-config", required=True)
    for flag in ("--output-directory", "--temp-directory", "--input-directory", "--user-directory"):
        parser.add_argument(flag)
    parser.add_argument("--disable-auto-launch", action="store_true")
    args = parser.parse_args()
    for folder in (args.output_directory, args.temp_directory, args.input_directory, args.user_directory):
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)  # fails unless the unit's user may write there
            (Path(folder) / ".written-by-comfyui").write_text("ok\n")
    models = checkpoints_folder(Path(args.extra_model_paths_config))
    if not models.is_dir():
        raise SystemExit(f"model folder {models} (from {args.extra_model_paths_config}) does not exist")
    # Files go where the command line says, as ComfyUI's folder_paths.set_output_directory / set_input_directory /
    # set_temp_directory make them: the rehearsal checks that the agent deletes a job's files there.
    # ComfyUI logs to stderr with the bare message (app/logger.py): custom node import failures read as the real ones
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    # custom_nodes/ beside main.py, as folder_paths' base_path: the packs install-comfyui-nodes.sh put there
    fake = FakeComfyUI(models, delay=0.2, output_dir=args.output_directory, input_dir=args.input_directory,
                       temp_dir=args.temp_directory, custom_nodes_dir=Path(__file__).resolve().parent / "custom_nodes")
    fake.port = args.port
    fake.start()
    print(f"ComfyUI stand-in on {args.listen}:{args.port}, checkpoints from {models}", flush=True)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
