"""The worker's model cache (S3 model store -> local LRU folder -> host RAM -> backend); see cache.py,
download.py (s3transfer) and ram_tier.py."""

from runtime.model_cache.cache import (
    CachedModel,
    CacheFull,
    CacheOwned,
    ModelCache,
    ModelCacheError,
    ModelNotFound,
    ModelUnavailable,
    RemoteFile,
    RemoteModel,
    manifest_resolver,
)
from runtime.model_cache.ram_tier import HostRamTier, pin_host_memory, size_of

__all__ = ["CacheFull", "CacheOwned", "CachedModel", "HostRamTier", "ModelCache", "ModelCacheError", "ModelNotFound",
           "ModelUnavailable", "RemoteFile", "RemoteModel", "manifest_resolver", "pin_host_memory", "size_of"]
