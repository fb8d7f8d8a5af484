"""LRU recency (issue 33, finding 6): a hit refreshes the entry's clock, so an older entry used again outlives a
newer one that was not, in the disk cache (ensure) and in the host-RAM tier (get and get_or_load)."""

from __future__ import annotations

from pathlib import Path

from runtime.model_cache import HostRamTier, ModelCache
from tests.unit.test_model_cache import Clock, catalogue, resolver


def _names(cache: ModelCache) -> set[str]:
    return {folder.name.split("@")[0] for folder, _, _ in cache.entries()}


def test_a_disk_cache_hit_makes_the_older_entry_the_most_recent(tmp_path: Path):
    store, models = catalogue({"old": 400, "new": 400, "third": 400})
    clock = Clock()
    cache = ModelCache(store, resolver(models), tmp_path, 1000, clock=clock)
    cache.ensure("old")
    clock.now += 10
    cache.ensure("new")
    clock.now += 10
    assert cache.ensure("old").hit  # the older entry is used again...
    clock.now += 10
    cache.ensure("third")  # ...so the one not used since goes
    assert _names(cache) == {"old", "third"}
    assert len(store.downloads) == 3


def test_a_disk_cache_hit_survives_an_agent_restart_in_order(tmp_path: Path):
    """The clock is the marker's mtime: a new ModelCache over the same folder sees the refreshed order."""
    store, models = catalogue({"old": 400, "new": 400, "third": 400})
    clock = Clock()
    first = ModelCache(store, resolver(models), tmp_path, 1000, clock=clock)
    first.ensure("old")
    clock.now += 10
    first.ensure("new")
    clock.now += 10
    first.ensure("old")
    first.close()  # the agent stops: the folder has one owner at a time (runtime.model_cache.cache)
    clock.now += 10
    restarted = ModelCache(store, resolver(models), tmp_path, 1000, clock=clock)
    restarted.ensure("third")
    assert _names(restarted) == {"old", "third"}


def test_a_ram_tier_get_or_load_hit_refreshes_the_entry():
    clock = Clock()
    tier = HostRamTier(1000, clock=clock)
    tier.get_or_load("old", lambda: b"o" * 400)
    clock.now += 1
    tier.get_or_load("new", lambda: b"n" * 400)
    clock.now += 1
    _, hit = tier.get_or_load("old", lambda: b"o" * 400)
    assert hit
    clock.now += 1
    tier.put("third", b"t" * 400)
    assert sorted(tier.keys()) == ["old", "third"]
