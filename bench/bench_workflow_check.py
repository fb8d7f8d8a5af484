"""The submit-time check of a comfyui-workflow graph (issue 41): node classes against a node catalog and loader
files against the model store manifest (runtime.workflow_files.check_workflow), on a graph of about 200 KB of
JSON (the API's limit, runtime.jobs.models.MAX_WORKFLOW_BYTES), with the catalog recorded from a real ComfyUI
0.3.64 (tests/fixtures/comfyui/node_catalog_0.3.64.json) and a manifest of 500 models.

Baseline, same run: the API's own validation of the same job body (runtime.jobs.schema.validate_job), which every
request already pays. Prints and writes (``--out``) the median of ``--repeat`` runs of each, in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from runtime.jobs.models import MAX_WORKFLOW_BYTES
from runtime.jobs.schema import validate_job
from runtime.model_store.layout import artifact_key
from runtime.model_store.manifest import ModelEntry, ModelFile
from runtime.node_catalog import NodeCatalog
from runtime.workflow_files import ManifestFiles, check_workflow

ROOT = Path(__file__).resolve().parent.parent
CATALOG = ROOT / "tests" / "fixtures" / "comfyui" / "node_catalog_0.3.64.json"


def big_graph(limit: int) -> dict:
    """Copies of a 5-node chunk (an image op of the fixture pack, a UNET and a LoRA loader, a writer) until the JSON
    is just under ``limit`` bytes."""
    graph: dict = {}
    i = 0
    while True:
        chunk = {
            f"{i}": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": i}},
            f"{i + 1}": {"class_type": "GenaiFleetSolarize", "inputs": {"image": [f"{i}", 0], "threshold": 0.5}},
            f"{i + 2}": {"class_type": "LoraLoaderModelOnly", "inputs": {"model": [f"{i + 3}", 0],
                                                                        "lora_name": f"lora-{i % 500}.safetensors",
                                                                        "strength_model": 1.0}},
            f"{i + 3}": {"class_type": "UNETLoader", "inputs": {"unet_name": "wan.safetensors",
                                                               "weight_dtype": "default"}},
            f"{i + 4}": {"class_type": "SaveImage", "inputs": {"images": [f"{i + 1}", 0], "filename_prefix": "b"}},
        }
        trial = {**graph, **chunk}
        if len(json.dumps(trial, separators=(",", ":"))) > limit:
            return graph
        graph, i = trial, i + 5


def manifest(n: int) -> dict[str, ModelEntry]:
    out = {}
    for k in range(n):
        mid, path = f"lora-{k}", f"lora-{k}.safetensors"
        out[mid] = ModelEntry(model_id=mid, kind="lora", version="v1", uploaded_at="2026-12-07T00:00:00Z",
                              files=(ModelFile(path, artifact_key("lora", mid, "v1", path), 1, "0" * 64),))
    return out


def median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    catalog = NodeCatalog.from_json(CATALOG.read_text())
    files = ManifestFiles(manifest(500))
    graph = big_graph(MAX_WORKFLOW_BYTES - 200)
    body = {"model": "sdxl-base-1.0", "task": "comfyui-workflow", "inputs": {"workflow": graph}}
    size = len(json.dumps(graph, separators=(",", ":")))
    problems = check_workflow(graph, catalog, files)
    assert not problems, problems[:3]  # every class and file is known: the full check runs over every node
    check = median_ms(lambda: check_workflow(graph, catalog, files), args.repeat)
    validate = median_ms(lambda: validate_job(body), args.repeat)
    result = {"graph_bytes": size, "nodes": len(graph), "figures": [
        {"metric": f"workflow check, {size // 1000} KB graph ({len(graph)} nodes), median", "value": check,
         "unit": "ms", "baseline_metric": "validate_job of the same body (every request pays it)",
         "baseline_value": validate}]}
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
