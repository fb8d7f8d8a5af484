"""The model store: S3 key layout and manifest, shared by the upload CLI and the worker's model cache.

Format and layout are documented in docs/model-store.md. Errors::

    ModelStoreError
    ├── LayoutError            a model id, kind, version or file path breaks the key layout rules
    ├── ManifestError          the manifest document is malformed (names the field)
    ├── ManifestConflictError  concurrent writers kept changing the manifest; retries ran out
    ├── ModelNotFoundError     the manifest has no entry for a model id
    └── StorageError           S3 refused or failed a request (wraps the botocore error)
"""

from runtime.model_store.errors import (
    LayoutError,
    ManifestConflictError,
    ManifestError,
    ModelNotFoundError,
    ModelStoreError,
    StorageError,
)
from runtime.model_store.layout import KINDS, MANIFEST_KEY, MODELS_PREFIX, artifact_key, validate_model_id
from runtime.model_store.manifest import Manifest, ManifestStore, ModelEntry, ModelFile

__all__ = [
    "KINDS",
    "MANIFEST_KEY",
    "MODELS_PREFIX",
    "LayoutError",
    "Manifest",
    "ManifestConflictError",
    "ManifestError",
    "ManifestStore",
    "ModelEntry",
    "ModelFile",
    "ModelNotFoundError",
    "ModelStoreError",
    "StorageError",
    "artifact_key",
    "validate_model_id",
]
