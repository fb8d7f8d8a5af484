"""The node catalog of a ComfyUI image: which node classes it loaded, and which of their inputs name a file in a
model folder. Recorded at AMI build from ComfyUI's ``/object_info`` (packer/scripts/record-node-catalog.sh),
stored beside the AMI id in S3 and published with it (docs/amis.md "Node catalog"); the API checks
``comfyui-workflow`` jobs against it (runtime/api/workflow_check.py) and the worker reads the image's own copy
to fetch the model files a workflow's loader nodes name.

``/object_info`` does not say which folder a file list comes from (CheckpointLoaderSimple's ``ckpt_name`` is just
a list of names). The recorder therefore starts ComfyUI with one *probe* file in every model folder
(``probe_name(folder)``, an extension ComfyUI lists: ``.safetensors``); an input whose options contain a folder's
probe reads that folder. Works for custom packs as for core loaders, without a hand-kept table.

Catalog JSON (schema 1)::

    {"schema": 1, "comfyui_version": "0.3.64", "nodes": {"CheckpointLoaderSimple": {"ckpt_name": "checkpoints"},
     "KSampler": {}, ...}, "packs": [{"name": "genai_fleet_nodes", "repository": "...", "commit": "<40 hex>"}]}
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

SCHEMA = 1

# ComfyUI 0.3.64's model folders (folder_paths.folder_names_and_paths) that list files.
MODEL_FOLDERS = ("checkpoints", "loras", "vae", "text_encoders", "diffusion_models", "clip_vision", "style_models",
                 "embeddings", "vae_approx", "controlnet", "gligen", "upscale_models", "hypernetworks",
                 "photomaker", "model_patches", "audio_encoders")

# Model folder -> the model store kind (runtime/model_store/layout.py KINDS) whose files it holds. A folder not
# listed has no kind in the store: files named there cannot be judged (the check skips them, never guesses).
FOLDER_KINDS: dict[str, str] = {"checkpoints": "checkpoint", "loras": "lora", "vae": "vae", "controlnet": "controlnet",
                                "embeddings": "embedding", "upscale_models": "upscaler", "text_encoders": "clip"}

# Where catalogs live (docs/amis.md "Node catalog"): one bucket per account and region, made by ``make ami`` (which
# runs before any stack exists), one object per image. The stack derives its API's GENAI_NODE_CATALOG from the AMI
# it deploys, so a promoted image's catalog is found by the same key: promotion needs no copy.
CATALOG_BUCKET = "genai-fleet-amis-{account}-{region}"
CATALOG_KEY = "node-catalogs/{flavor}/{ami_id}.json"

_PROBE = "genai-fleet-probe--{}.safetensors"
_PROBE_RE = re.compile(r"^genai-fleet-probe--([a-z0-9_]+)\.safetensors$")


class CatalogError(ValueError):
    """A catalog document that is not schema 1 as written here (names the field)."""


def catalog_location(account: str, region: str, flavor: str, ami_id: str) -> tuple[str, str]:
    """(bucket, key) of the node catalog of image ``ami_id``."""
    return (CATALOG_BUCKET.format(account=account, region=region),
            CATALOG_KEY.format(flavor=flavor, ami_id=ami_id))


def probe_name(folder: str) -> str:
    return _PROBE.format(folder)


@dataclass(frozen=True)
class NodeCatalog:
    nodes: dict[str, dict[str, str]]  # class name -> {input name: model folder}
    comfyui_version: str = ""
    packs: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps({"schema": SCHEMA, "comfyui_version": self.comfyui_version,
                           "nodes": {k: dict(sorted(v.items())) for k, v in sorted(self.nodes.items())},
                           "packs": self.packs}, indent=1, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> NodeCatalog:
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise CatalogError(f"node catalog: not JSON ({exc})") from exc
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            got = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
            raise CatalogError(f"node catalog: 'schema' must be {SCHEMA} (got {got!r})")
        nodes = doc.get("nodes")
        if not isinstance(nodes, dict) or not all(
                isinstance(k, str) and isinstance(v, dict) and all(isinstance(i, str) and isinstance(f, str)
                                                                   for i, f in v.items()) for k, v in nodes.items()):
            raise CatalogError("node catalog: 'nodes' must map class names to {input name: model folder}")
        packs = doc.get("packs", [])
        if not isinstance(packs, list):
            raise CatalogError("node catalog: 'packs' must be a list")
        return cls(nodes, str(doc.get("comfyui_version", "")), packs)


def _options(spec: Any) -> list[Any]:
    """The option list of an input as /object_info writes it: V1 ``[[options...], {...}]`` or V3
    ``["COMBO", {"options": [...]}]``; [] for any other input."""
    if not isinstance(spec, list) or not spec:
        return []
    if isinstance(spec[0], list):
        return spec[0]
    if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
        return list(spec[1].get("options") or [])
    return []


def from_object_info(object_info: Mapping[str, Any], *, comfyui_version: str = "",
                     packs: Iterable[Mapping[str, str]] = ()) -> NodeCatalog:
    """The catalog of a server whose model folders each held their probe file when ``object_info`` was read."""
    nodes: dict[str, dict[str, str]] = {}
    for name, info in object_info.items():
        if not isinstance(info, dict) or "input" not in info:
            continue  # e.g. a recorded fixture's "_provenance"
        inputs: dict[str, str] = {}
        for section in ("required", "optional"):
            for input_name, spec in ((info.get("input") or {}).get(section) or {}).items():
                for option in _options(spec):
                    match = _PROBE_RE.match(option) if isinstance(option, str) else None
                    if match:
                        inputs[input_name] = match.group(1)
                        break
        nodes[name] = inputs
    return NodeCatalog(nodes, comfyui_version, [dict(p) for p in packs])


_CANNOT_IMPORT = re.compile(r"Cannot import (?P<path>.+?) module for custom nodes: (?P<error>.*)$")
_IMPORT_FAILED = re.compile(r"\(IMPORT FAILED\): (?P<path>.+?)\s*$")


def import_failures(log_text: str) -> dict[str, str]:
    """Custom node packs ComfyUI failed to load, from its start-up log: module path -> error (nodes.py logs
    ``Cannot import <path> module for custom nodes: <error>`` and ``... (IMPORT FAILED): <path>``)."""
    failures: dict[str, str] = {}
    for line in log_text.splitlines():
        if m := _CANNOT_IMPORT.search(line):
            failures[m.group("path")] = m.group("error").strip()
        elif m := _IMPORT_FAILED.search(line):
            failures.setdefault(m.group("path"), "import failed (see the log above it)")
    return failures
