"""The store ids of the model files a comfyui-workflow graph's loader nodes name (issue 41), for the worker's
extra-model-files step (runtime/jobs/extra_models.py, runtime/worker/extra_models.py).

The API checked the graph at submit with the same mapping (runtime/workflow_files.py): loader inputs from the node
catalog of this image (``instance_contract.COMFYUI_NODE_CATALOG``, written at AMI build), file names against the
model store manifest (re-read at most every ``ttl_seconds``). A name the manifest lacks is left to ComfyUI, which
refuses the graph with its own error naming the node (the job fails as invalid input, it is not retried); a
worker without a catalog (an image built before issue 41, or not ComfyUI) maps nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runtime.jobs.extra_models import WorkflowModels
from runtime.node_catalog import CatalogError, NodeCatalog
from runtime.workflow_files import ManifestFiles, loader_files

log = logging.getLogger(__name__)


class WorkflowModelMap:
    """graph -> store ids, in the graph's order, each once."""

    def __init__(self, catalog: NodeCatalog, manifest: Callable[[], ManifestFiles], ttl_seconds: float = 60.0):
        self.catalog, self._load, self.ttl = catalog, manifest, ttl_seconds
        self._files: ManifestFiles | None = None
        self._at = 0.0
        self._lock = threading.Lock()

    def _manifest(self) -> ManifestFiles:
        with self._lock:
            if self._files is None or time.monotonic() - self._at >= self.ttl:
                self._files, self._at = self._load(), time.monotonic()
            return self._files

    def __call__(self, graph: dict[str, Any]) -> list[str]:
        found = loader_files(graph, self.catalog)
        if not found:
            return []
        files = self._manifest()
        ids: list[str] = []
        for f in found:
            model_id = files.model_for(f.folder, f.name)
            if model_id is not None and model_id not in ids:
                ids.append(model_id)
        return ids


def load_workflow_models(catalog_path: Path, s3: Any, bucket: str,
                         manifest_key: str = "manifest.json") -> WorkflowModels | None:
    """The map for this image, or None when it has no (readable) node catalog."""
    try:
        catalog = NodeCatalog.from_json(catalog_path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, CatalogError) as exc:
        log.warning("node catalog %s unreadable, workflow loader files are not fetched: %s", catalog_path, exc)
        return None

    def manifest() -> ManifestFiles:
        from runtime.model_store.manifest import ManifestStore

        return ManifestFiles(ManifestStore(s3, bucket, manifest_key).load().models)

    return WorkflowModelMap(catalog, manifest)
