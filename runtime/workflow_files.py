"""Which model store entries a ComfyUI workflow's loader nodes name, and which node classes and files a fleet lacks.

Pure functions, shared by the API's check at submit (runtime/api/workflow_check.py) and the worker, which fetches
the same entries through its model cache before it submits the graph (runtime/jobs/extra_models.py).

A loader input (an input the node catalog maps to a model folder, runtime/node_catalog.py) names a file the way
ComfyUI lists it: its path inside the folder. It matches a manifest entry whose kind is the folder's
(``FOLDER_KINDS``) and which has a file at that path (``ModelFile.path``: the file name of a one-file upload, the
relative path of a folder's). When several entries match, the first model id in sorted order is used (the
worker links exactly that one). A folder without a model store kind cannot be judged: its files are skipped, never
refused by guess. ``CheckpointLoaderSimple``'s ``ckpt_name`` is not a file the graph chooses: the ComfyUI backend
writes the job's own ``model`` there (runtime/backends/comfyui.py), so it is neither checked nor fetched.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from runtime.node_catalog import FOLDER_KINDS, NodeCatalog

# (class, input) the backend overwrites with the job's ``model`` before it submits the graph
BACKEND_SET = frozenset({("CheckpointLoaderSimple", "ckpt_name")})


@dataclass(frozen=True)
class LoaderFile:
    node: str  # node id in the graph
    class_type: str
    input: str
    folder: str  # ComfyUI model folder
    name: str  # the file name the graph gives


@dataclass(frozen=True)
class WorkflowProblem:
    node: str
    class_type: str
    missing: str  # "class" | "file"
    input: str = ""
    file: str = ""
    folder: str = ""

    def message(self) -> str:
        if self.missing == "class":
            return (f"node {self.node}: class {self.class_type!r} is not installed on this fleet's ComfyUI image "
                    "(add its custom node pack to packer's comfyui_custom_nodes, or use a core node)")
        kind = FOLDER_KINDS.get(self.folder, "?")
        return (f"node {self.node} ({self.class_type}): {self.input} {self.file!r} is not in the model store "
                f"(upload it as kind {kind!r} with genai-models upload, or name a file GET /v1/models lists)")

    def error(self) -> dict[str, Any]:
        """One entry of the 422 problem document's ``errors``."""
        field = f"inputs.workflow.{self.node}" + (f".inputs.{self.input}" if self.input else ".class_type")
        return {"field": field, "rule": "unknown-node-class" if self.missing == "class" else "unknown-model-file",
                "message": self.message(), "node": self.node, "class_type": self.class_type,
                **({"file": self.file, "folder": self.folder} if self.missing == "file" else {})}


class ManifestFiles:
    """(kind, file path) -> the model ids that hold such a file, from manifest entries (anything with ``kind`` and
    ``files`` of ``path``, as runtime.model_store.manifest.ModelEntry)."""

    def __init__(self, models: Mapping[str, Any]):
        index: dict[tuple[str, str], list[str]] = {}
        for model_id, entry in models.items():
            for f in entry.files:
                index.setdefault((entry.kind, f.path), []).append(model_id)
        self._index = {key: sorted(ids) for key, ids in index.items()}

    def model_for(self, folder: str, name: str) -> str | None:
        kind = FOLDER_KINDS.get(folder)
        ids = self._index.get((kind, name)) if kind else None
        return ids[0] if ids else None


def loader_files(graph: Mapping[str, Any], catalog: NodeCatalog) -> list[LoaderFile]:
    """Every constant string a loader input of ``graph`` gives (links and other values are not file names), except
    the inputs the backend sets (``BACKEND_SET``)."""
    found = []
    for node_id, node in graph.items():
        class_type = node.get("class_type") if isinstance(node, Mapping) else None
        folders = catalog.nodes.get(class_type) if isinstance(class_type, str) else None
        if not folders:
            continue
        inputs = node.get("inputs") or {}
        for input_name, folder in folders.items():
            if (class_type, input_name) in BACKEND_SET:
                continue
            value = inputs.get(input_name) if isinstance(inputs, Mapping) else None
            if isinstance(value, str) and value:
                found.append(LoaderFile(str(node_id), class_type, input_name, folder, value))
    return found


def check_workflow(graph: Mapping[str, Any], catalog: NodeCatalog,
                   files: ManifestFiles | None) -> list[WorkflowProblem]:
    """Each node whose class the catalog lacks, and each loader file the manifest lacks (``files`` None: files not
    checked). Ordered by node id as the graph gives them."""
    problems = []
    for node_id, node in graph.items():
        class_type = node.get("class_type") if isinstance(node, Mapping) else None
        if isinstance(class_type, str) and class_type not in catalog.nodes:
            problems.append(WorkflowProblem(str(node_id), class_type, "class"))
    if files is not None:
        for f in loader_files(graph, catalog):
            if f.folder in FOLDER_KINDS and files.model_for(f.folder, f.name) is None:
                problems.append(WorkflowProblem(f.node, f.class_type, "file", f.input, f.name, f.folder))
    return problems


def unjudged_folders(found: Iterable[LoaderFile]) -> list[str]:
    """Model folders a graph names files in that have no model store kind (their files were not checked)."""
    return sorted({f.folder for f in found if f.folder not in FOLDER_KINDS})
