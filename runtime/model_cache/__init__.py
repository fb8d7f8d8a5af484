"""The worker's model cache (S3 model store -> local LRU folder -> backend); see cache.py."""

from runtime.model_cache.cache import (
    CachedModel,
    CacheFull,
    ModelCache,
    ModelCacheError,
    ModelNotFound,
    ModelUnavailable,
    RemoteFile,
    RemoteModel,
    manifest_resolver,
)

__all__ = ["CacheFull", "CachedModel", "ModelCache", "ModelCacheError", "ModelNotFound", "ModelUnavailable",
           "RemoteFile", "RemoteModel", "manifest_resolver"]
