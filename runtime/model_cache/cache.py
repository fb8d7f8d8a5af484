"""Model cache: S3 model store -> local folder (instance-store NVMe) with LRU eviction under a size cap.

Error hierarchy::

    ModelCacheError        any cache failure
    ├── ModelUnavailable   the manifest could not be read or a download failed (retried)
    │    └── ModelNotFound  the manifest has no such model (the job's input is wrong; not retried)
    ├── CacheFull          the model does not fit even after evicting everything evictable
    └── CacheOwned         another process owns the cache folder (one agent per folder)

One owner per folder: a cache takes an exclusive ``flock`` on the folder itself when it is made and holds
it for its life (the kernel lets go when the process dies, however it dies; no file is added to the
folder), and a second cache on the same folder, in another process or this one, raises ``CacheOwned``.
Downloads, torn-entry clean-up and eviction assume that one owner (pins are in-process): two agents on one
folder used to delete each other's downloads. One agent per GPU gives each agent a folder of its own.

Layout: ``<cache_dir>/<model id with '/' as '--'>@<version>/<file paths from the manifest>`` plus a
``.complete`` marker written last (an entry without it is a torn download and is removed). The
marker's mtime is the entry's last use (LRU clock), so the order survives agent restarts. Entries in
use by a running job are pinned and never evicted; hot models go last. Only folders named like an
entry (``name@version``) are ever removed: anything else under ``cache_dir`` (a lost+found of the
NVMe filesystem, an operator's folder, backend model links) survives the eviction and torn-download walks.

Downloads go through a ``Downloader`` (runtime.model_cache.download: s3transfer), one per model even
when several threads ask for it at once (the others wait for it and share its outcome), each file
checked against the manifest's sha256 before the entry's marker is written. The LRU clock is
injectable (``clock``, wall seconds; it stamps the markers' mtimes), so tests order entries without
sleeping. ``observe(values, properties)`` (the agent's ``Metrics.emit``) gets the download bytes and
seconds. The manifest comes from runtime.model_store (the model-store engineer's reader).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

MiB = 1024 * 1024
_MARKER = ".complete"
_PRIMARY_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")


class ModelCacheError(Exception):
    """A model could not be made available locally."""


class ModelUnavailable(ModelCacheError):  # noqa: N818
    """The model is unknown to the store or could not be downloaded."""


class ModelNotFound(ModelUnavailable):
    """The manifest has no such model: the job asks for something that does not exist (no retry)."""


class CacheFull(ModelCacheError):  # noqa: N818
    """The model does not fit in the cache even after evicting every unpinned entry."""


class CacheOwned(ModelCacheError):  # noqa: N818
    """Another process (or another cache in this one) owns the cache folder."""


class Downloader(Protocol):
    def download_to(self, key: str, dest: Path, size: int) -> None: ...


@dataclass(frozen=True)
class RemoteFile:
    path: str  # relative path inside the model folder
    key: str
    size: int
    sha256: str | None


@dataclass(frozen=True)
class RemoteModel:
    model_id: str
    version: str
    kind: str
    files: tuple[RemoteFile, ...]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True)
class CachedModel:
    model_id: str
    kind: str
    folder: Path  # the entry folder
    path: Path  # what a backend loads: the single weights file, or the folder for multi-file models
    size: int
    hit: bool
    load_ms: float


def manifest_resolver(s3_client: Any, bucket: str, key: str = "manifest.json",
                      ttl_seconds: float = 60.0) -> Callable[[str], RemoteModel]:
    """model id -> RemoteModel through runtime.model_store's manifest (re-read at most every ``ttl``)."""
    from runtime.model_store.errors import ModelNotFoundError, ModelStoreError
    from runtime.model_store.manifest import ManifestStore

    store = ManifestStore(s3_client, bucket, key)
    state: dict[str, Any] = {"manifest": None, "at": 0.0}
    lock = threading.Lock()

    def resolve(model_id: str) -> RemoteModel:
        with lock:
            try:
                fresh = state["manifest"] is not None and time.monotonic() - state["at"] < ttl_seconds
                if not fresh or model_id not in state["manifest"].models:
                    state["manifest"], state["at"] = store.load(), time.monotonic()
                entry = state["manifest"].get(model_id)
            except ModelNotFoundError as exc:
                raise ModelNotFound(f"model {model_id!r}: {exc}") from exc
            except ModelStoreError as exc:
                raise ModelUnavailable(f"model {model_id!r}: {exc}") from exc
        return RemoteModel(model_id, entry.version, entry.kind,
                           tuple(RemoteFile(f.path, f.key, f.size, f.sha256) for f in entry.files))

    return resolve


class ModelCache:
    def __init__(self, source: Any, resolve: Callable[[str], RemoteModel], cache_dir: str | Path,
                 max_bytes: int, *, hot_models: tuple[str, ...] = (), clock: Callable[[], float] = time.time,
                 observe: Callable[[dict[str, float], dict[str, Any]], None] | None = None,
                 part_size: int = 16 * MiB, concurrency: int = 16) -> None:
        """``source``: a ``Downloader``, or an S3 store with ``client`` and ``bucket``
        (``runtime.worker.aws.ObjectStore``): then s3transfer downloads in ``part_size`` parts on
        ``concurrency`` threads (runtime.model_cache.download.S3Downloader)."""
        if not hasattr(source, "download_to"):
            from runtime.model_cache.download import S3Downloader

            source = S3Downloader(source.client, source.bucket, part_size=part_size, concurrency=concurrency)
        self.source: Downloader = source
        self.resolve = resolve
        self.cache_dir = Path(cache_dir)
        self.max_bytes = max_bytes
        self.hot_models = set(hot_models)
        self.clock = clock
        self.observe = observe
        self._pins: dict[Path, int] = {}
        self._inflight: dict[Path, _Inflight] = {}
        self.downloads = 0
        self._lock = threading.RLock()
        self.hits = 0
        self.misses = 0
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._owner: _Owner | None = _Owner(self.cache_dir)
        self._remove_torn()

    def close(self) -> None:
        """Give up the folder (a process that exits gives it up anyway)."""
        if self._owner is not None:
            self._owner.close()
            self._owner = None

    # -- public --------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def use(self, model_id: str) -> Iterator[CachedModel]:
        """Make the model local and keep it pinned (not evictable) for the ``with`` block."""
        cached = self.ensure(model_id)
        with self._lock:
            self._pins[cached.folder] = self._pins.get(cached.folder, 0) + 1
        try:
            yield cached
        finally:
            with self._lock:
                self._pins[cached.folder] -= 1
                if not self._pins[cached.folder]:
                    del self._pins[cached.folder]

    def ensure(self, model_id: str) -> CachedModel:
        started = time.monotonic()
        remote = self.resolve(model_id)
        folder = self.cache_dir / f"{remote.model_id.replace('/', '--')}@{remote.version}"
        with self._lock:
            marker = folder / _MARKER
            hit = marker.exists()
            flight = self._inflight.get(folder)
            if hit:
                self._touch(marker)
                self.hits += 1
            elif flight is None:
                self.misses += 1
                self._make_room(remote.size, keep=folder)
                self._pins[folder] = self._pins.get(folder, 0) + 1  # not evictable while downloading
                flight = self._inflight[folder] = _Inflight()
                leader = True
            else:
                leader = False  # another thread downloads it: wait for that one
        if not hit:
            if leader:
                self._lead(remote, folder, flight)
            else:
                flight.done.wait()
                if flight.error is not None:
                    raise ModelUnavailable(f"model {model_id!r}: {flight.error}") from flight.error
        return CachedModel(remote.model_id, remote.kind, folder, _primary(folder, remote), remote.size, hit,
                           round((time.monotonic() - started) * 1000, 1))

    def _lead(self, remote: RemoteModel, folder: Path, flight: _Inflight) -> None:
        try:
            self._download(remote, folder)
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                self._inflight.pop(folder, None)
                self._pins[folder] -= 1
                if not self._pins[folder]:
                    del self._pins[folder]
            flight.done.set()

    def _touch(self, marker: Path) -> None:
        now = self.clock()
        os.utime(marker, (now, now))

    def preload(self, model_ids: tuple[str, ...] | list[str]) -> list[CachedModel]:
        """Fetch the hot models (at boot, before the launching lifecycle action completes)."""
        self.hot_models.update(model_ids)
        return [self.ensure(m) for m in model_ids]

    def _entry_folders(self) -> list[Path]:
        """Folders named like cache entries (``<id>@<version>``); nothing else is the cache's to remove."""
        return [f for f in self.cache_dir.iterdir() if "@" in f.name and f.is_dir() and not f.is_symlink()]

    def entries(self) -> list[tuple[Path, int, float]]:
        """(folder, bytes, last use) of every complete entry."""
        out = []
        for folder in self._entry_folders():
            marker = folder / _MARKER
            if folder.is_dir() and marker.exists():
                size = int(json.loads(marker.read_text() or "{}").get("size", 0))
                out.append((folder, size, marker.stat().st_mtime))
        return out

    def models_on_disk(self) -> list[str]:
        """Model ids with a complete entry (the affinity consumer's disk tier)."""
        return [folder.name.rsplit("@", 1)[0].replace("--", "/") for folder, _, _ in self.entries()]

    def used_bytes(self) -> int:
        return sum(size for _, size, _ in self.entries())

    # -- internals -----------------------------------------------------------------------------------
    def _remove_torn(self) -> None:
        for folder in self._entry_folders():
            if not (folder / _MARKER).exists():
                log.info("removing incomplete cache entry %s", folder.name)
                shutil.rmtree(folder, ignore_errors=True)

    def _make_room(self, needed: int, keep: Path) -> None:
        if needed > self.max_bytes:
            raise CacheFull(f"model needs {needed} bytes, the cache holds at most {self.max_bytes}")
        entries = [e for e in self.entries() if e[0] != keep]
        used = sum(size for _, size, _ in entries)

        def order(entry: tuple[Path, int, float]) -> tuple[bool, float]:
            model_id = entry[0].name.rsplit("@", 1)[0].replace("--", "/")
            return (model_id in self.hot_models, entry[2])

        for folder, size, _ in sorted(entries, key=order):
            if used + needed <= self.max_bytes:
                return
            if folder in self._pins:
                continue
            log.info("evicting %s (%d bytes) from the model cache", folder.name, size)
            (folder / _MARKER).unlink(missing_ok=True)
            shutil.rmtree(folder, ignore_errors=True)
            used -= size
        if used + needed > self.max_bytes:
            raise CacheFull(f"model needs {needed} bytes; {used} of {self.max_bytes} are pinned by running jobs")

    def _download(self, remote: RemoteModel, folder: Path) -> None:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        started = time.monotonic()
        try:
            for f in remote.files:
                self._download_file(f, folder)
        except Exception:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        seconds = time.monotonic() - started
        marker = folder / _MARKER
        marker.write_text(json.dumps({"model_id": remote.model_id, "version": remote.version,
                                      "size": remote.size, "at": self.clock()}))
        self._touch(marker)
        self.downloads += 1
        log.info("model %s@%s downloaded (%d bytes in %.1f s)", remote.model_id, remote.version, remote.size, seconds)
        if self.observe is not None:
            from runtime import metric_names as m

            self.observe({m.MODEL_DOWNLOAD_BYTES: remote.size, m.MODEL_DOWNLOAD_TIME: round(seconds * 1000, 1)},
                         {"model": remote.model_id})

    def _download_file(self, f: RemoteFile, folder: Path) -> None:
        target = folder / f.path
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".part")
        try:
            self.source.download_to(f.key, tmp, f.size)
        except ModelCacheError:
            raise
        except Exception as exc:  # DownloadError, AWS or OS errors: the model is unavailable now
            raise ModelUnavailable(f"downloading {f.key} failed: {exc}") from exc
        if f.sha256 and _sha256(tmp) != f.sha256:
            tmp.unlink(missing_ok=True)
            raise ModelUnavailable(f"{f.key}: sha256 does not match the manifest")
        tmp.rename(target)


class _Owner:
    """An exclusive ``flock`` on the cache folder, held through an open descriptor of it."""

    def __init__(self, cache_dir: Path) -> None:
        self.fd: int | None = os.open(cache_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.close()
            raise CacheOwned(f"model cache folder {cache_dir} is in use by another agent (it holds the folder's "
                             "lock); give each agent its own model_cache.cache_dir (one agent per GPU: one folder "
                             f"per GPU, e.g. {cache_dir}/gpu0 and {cache_dir}/gpu1)") from None
        except OSError:
            self.close()
            raise

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the lock
            self.fd = None


@dataclass
class _Inflight:
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(4 * MiB):
            digest.update(chunk)
    return digest.hexdigest()


def _primary(folder: Path, remote: RemoteModel) -> Path:
    """The single weights file of a one-checkpoint model; otherwise the folder (diffusers, neuron)."""
    weights = [f for f in remote.files if f.path.endswith(_PRIMARY_SUFFIXES)]
    if len(remote.files) == 1 or (len(weights) == 1 and remote.kind in ("checkpoint", "lora", "vae")):
        return folder / (weights[0].path if weights else remote.files[0].path)
    return folder
