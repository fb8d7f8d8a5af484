"""Model cache: one download per model, sha256 check, LRU eviction under the cap (injected clock), pins, hot models."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import pytest

from runtime import metric_names as m
from runtime.model_cache import CacheFull, ModelCache, ModelUnavailable, RemoteFile, RemoteModel


class FakeStore:
    """A Downloader over a dict; ``gate`` (an Event) holds every download until set."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects
        self.downloads: list[str] = []
        self.lock = threading.Lock()
        self.gate: threading.Event | None = None
        self.fail: Exception | None = None

    def download_to(self, key: str, dest: Path, size: int) -> None:
        with self.lock:
            self.downloads.append(key)
        if self.gate is not None:
            assert self.gate.wait(30), "test gate never opened"
        if self.fail is not None:
            raise self.fail
        dest.write_bytes(self.objects[key])


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def catalogue(sizes: dict[str, int]) -> tuple[FakeStore, dict[str, RemoteModel]]:
    objects, models = {}, {}
    for model_id, size in sizes.items():
        data = os.urandom(size)
        key = f"models/checkpoint/{model_id}/v1/model.safetensors"
        objects[key] = data
        models[model_id] = RemoteModel(model_id, "v1", "checkpoint", (RemoteFile(
            "model.safetensors", key, size, hashlib.sha256(data).hexdigest()),))
    return FakeStore(objects), models


def resolver(models):
    def resolve(model_id):
        if model_id not in models:
            raise ModelUnavailable(f"unknown model {model_id}")
        return models[model_id]
    return resolve


def test_miss_downloads_once_then_hits(tmp_path: Path):
    store, models = catalogue({"a": 10_000})
    seen = []
    cache = ModelCache(store, resolver(models), tmp_path, 50_000, observe=lambda v, p: seen.append((v, p)))
    first = cache.ensure("a")
    assert not first.hit and first.path.read_bytes() == store.objects[models["a"].files[0].key]
    assert store.downloads == [models["a"].files[0].key]
    second = cache.ensure("a")
    assert second.hit and len(store.downloads) == 1
    assert (cache.hits, cache.misses, cache.downloads) == (1, 1, 1)
    [(values, props)] = seen
    assert values[m.MODEL_DOWNLOAD_BYTES] == 10_000 and values[m.MODEL_DOWNLOAD_TIME] >= 0
    assert props == {"model": "a"}


def test_concurrent_requests_share_one_download(tmp_path: Path):
    store, models = catalogue({"a": 5_000})
    store.gate = threading.Event()
    cache = ModelCache(store, resolver(models), tmp_path, 50_000)
    results, errors = [], []

    def ask():
        try:
            results.append(cache.ensure("a"))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(store.downloads) < 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    store.gate.set()
    for t in threads:
        t.join(30)
    assert not errors and len(results) == 8
    assert store.downloads == [models["a"].files[0].key]
    assert all(r.path.read_bytes() == store.objects[models["a"].files[0].key] for r in results)
    assert cache.used_bytes() == 5_000


def test_a_failed_download_fails_its_waiters_and_the_next_request_retries(tmp_path: Path):
    store, models = catalogue({"a": 500})
    store.gate, store.fail = threading.Event(), OSError("connection reset")
    cache = ModelCache(store, resolver(models), tmp_path, 50_000)
    errors = []

    def ask():
        try:
            cache.ensure("a")
        except ModelUnavailable as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while not cache._inflight and time.monotonic() < deadline:
        time.sleep(0.005)
    store.gate.set()
    for t in threads:
        t.join(30)
    assert len(errors) == 4 and all("connection reset" in str(e) for e in errors)
    assert len(store.downloads) == 1 and cache.entries() == []
    store.fail = None
    assert not cache.ensure("a").hit and len(store.downloads) == 2


def test_lru_eviction_respects_cap_pins_and_hot_models(tmp_path: Path):
    store, models = catalogue({"a": 400, "b": 400, "c": 400, "d": 400})
    clock = Clock()
    cache = ModelCache(store, resolver(models), tmp_path, 1000, hot_models=("a",), clock=clock)
    cache.ensure("a")
    clock.now += 1
    cache.ensure("b")
    with cache.use("b"):
        clock.now += 1
        cache.ensure("c")  # needs room: b is pinned, a is hot -> a goes only because nothing else can
        names = {p.name.split("@")[0] for p, _, _ in cache.entries()}
        assert names == {"b", "c"}
    cache.ensure("d")  # b (least recently used, no longer pinned) goes
    assert {p.name.split("@")[0] for p, _, _ in cache.entries()} == {"c", "d"}
    assert cache.used_bytes() <= 1000


def test_too_big_or_all_pinned_is_cache_full(tmp_path: Path):
    store, models = catalogue({"big": 2000, "a": 600, "b": 600})
    cache = ModelCache(store, resolver(models), tmp_path, 1000)
    with pytest.raises(CacheFull):
        cache.ensure("big")
    with cache.use("a"), pytest.raises(CacheFull):
        cache.ensure("b")


def test_checksum_mismatch_and_torn_entries_are_removed(tmp_path: Path):
    store, models = catalogue({"a": 500})
    key = models["a"].files[0].key
    store.objects[key] = b"x" * 500
    cache = ModelCache(store, resolver(models), tmp_path, 10_000)
    with pytest.raises(ModelUnavailable, match="sha256"):
        cache.ensure("a")
    assert cache.entries() == [] and list(tmp_path.iterdir()) == []
    with pytest.raises(ModelUnavailable):
        cache.ensure("missing")
    (tmp_path / "torn@v1").mkdir()
    cache.close()  # the agent exits
    ModelCache(store, resolver(models), tmp_path, 10_000)
    assert not (tmp_path / "torn@v1").exists()


def test_preload_and_manifest_resolver_on_moto(moto_endpoint, tmp_path: Path):
    import uuid

    from fleetdev.worker_support import Stack
    from runtime.model_cache import manifest_resolver
    from runtime.worker.aws import ObjectStore

    stack = Stack(moto_endpoint)
    stack.put_model("family/hot", b"h" * 3000)
    s3 = stack.s3
    cache = ModelCache(ObjectStore(s3, stack.models_bucket), manifest_resolver(s3, stack.models_bucket),
                       tmp_path / uuid.uuid4().hex, 10_000, part_size=1000)
    [hot] = cache.preload(["family/hot"])
    assert hot.path.read_bytes() == b"h" * 3000 and hot.folder.name == "family--hot@v1"
    with pytest.raises(ModelUnavailable, match="not in the manifest"):
        cache.ensure("nope")


def test_folders_that_are_not_entries_survive_the_torn_and_eviction_walks(tmp_path: Path):
    """Backend model links, lost+found of the NVMe filesystem, an operator's folder: never the cache's."""
    from runtime.backends._http import link_model

    store, models = catalogue({"a": 400, "b": 400, "c": 400})
    links = tmp_path / "checkpoints"  # the old layout put the backend's link folder inside the cache
    (tmp_path / "lost+found").mkdir()
    cache = ModelCache(store, resolver(models), tmp_path, 900)
    name = link_model(cache.ensure("a").path, links)
    cache.close()
    cache = ModelCache(store, resolver(models), tmp_path, 900)  # agent restart: torn walk
    cache.ensure("b")
    cache.ensure("c")  # evicts a
    assert {p.name.split("@")[0] for p, _, _ in cache.entries()} == {"b", "c"}
    assert (links / name).is_symlink() and (tmp_path / "lost+found").is_dir()


def test_an_entry_without_its_marker_is_still_removed(tmp_path: Path):
    torn = tmp_path / "x@v1"
    torn.mkdir()
    (torn / "model.safetensors.part").write_bytes(b"half")
    ModelCache(*catalogue({})[:1], resolver({}), tmp_path, 100)
    assert not torn.exists()
