"""Model cache: ranged parallel downloads, sha256 check, LRU eviction under the cap, pins, hot models."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import pytest

from runtime.model_cache import CacheFull, ModelCache, ModelUnavailable, RemoteFile, RemoteModel


class FakeStore:
    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects
        self.ranges: list[tuple[str, int, int]] = []
        self.lock = threading.Lock()

    def get_range(self, key: str, start: int, end: int) -> bytes:
        with self.lock:
            self.ranges.append((key, start, end))
        return self.objects[key][start:end + 1]


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


def test_miss_downloads_in_ranges_then_hits(tmp_path: Path):
    store, models = catalogue({"a": 10_000})
    cache = ModelCache(store, resolver(models), tmp_path, 50_000, part_size=1024, concurrency=4)
    first = cache.ensure("a")
    assert not first.hit and first.path.read_bytes() == store.objects[models["a"].files[0].key]
    assert len(store.ranges) == 10 and {r[1] for r in store.ranges} == set(range(0, 10_000, 1024))
    second = cache.ensure("a")
    assert second.hit and len(store.ranges) == 10
    assert (cache.hits, cache.misses) == (1, 1)


def test_lru_eviction_respects_cap_pins_and_hot_models(tmp_path: Path):
    store, models = catalogue({"a": 400, "b": 400, "c": 400, "d": 400})
    cache = ModelCache(store, resolver(models), tmp_path, 1000, part_size=128, hot_models=("a",))
    cache.ensure("a")
    time.sleep(0.01)
    cache.ensure("b")
    with cache.use("b"):
        time.sleep(0.01)
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
    (tmp_path / "torn@v1").mkdir()
    ModelCache(store, resolver(models), tmp_path, 10_000)
    assert not (tmp_path / "torn@v1").exists()
    with pytest.raises(ModelUnavailable):
        cache.ensure("missing")


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
    cache = ModelCache(store, resolver(models), tmp_path, 900, part_size=128)
    name = link_model(cache.ensure("a").path, links)
    cache = ModelCache(store, resolver(models), tmp_path, 900, part_size=128)  # agent restart: torn walk
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
