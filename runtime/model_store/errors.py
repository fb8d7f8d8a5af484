"""Error hierarchy of the model store package (drawn in the package docstring)."""


class ModelStoreError(Exception):
    """Base of every model store error."""


class LayoutError(ModelStoreError, ValueError):
    """A model id, kind, version or file path does not fit the key layout."""


class ManifestError(ModelStoreError, ValueError):
    """The manifest document is malformed."""


class ManifestConflictError(ModelStoreError):
    """The manifest kept changing under a conditional write; the update was not applied."""


class ModelNotFoundError(ModelStoreError, KeyError):
    """The manifest has no entry for the requested model id."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "model not found"


class StorageError(ModelStoreError):
    """S3 refused or failed a request."""
