"""Host-RAM tier: bounded LRU on an injected clock, one load per key, sizes of arrays / bytes / state dicts."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from runtime import metric_names as m
from runtime.model_cache import HostRamTier, pin_host_memory, size_of
from runtime.queues.affinity import DISK, RAM, tier_map


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def weights(n_floats: int) -> dict[str, np.ndarray]:
    return {"unet.w": np.ones(n_floats // 2, dtype=np.float32), "vae.w": np.zeros(n_floats // 2, dtype=np.float32)}


def test_size_of_state_dicts_arrays_and_bytes():
    assert size_of(weights(100)) == 400
    assert size_of([b"abc", bytearray(5), (np.zeros(3, dtype=np.float16),)]) == 3 + 5 + 6
    with pytest.raises(TypeError, match="nbytes="):
        size_of(object())


def test_miss_loads_once_then_hits_and_reports_both():
    seen = []
    tier = HostRamTier(10_000, observe=lambda v, p: seen.append((v, p)))
    calls = []
    value, hit = tier.get_or_load("sdxl", lambda: calls.append(1) or weights(100))
    again, hit2 = tier.get_or_load("sdxl", lambda: calls.append(1) or weights(100))
    assert (hit, hit2, len(calls)) == (False, True, 1) and again is value
    assert tier.used_bytes() == 400 and (tier.hits, tier.misses) == (1, 1)
    assert seen == [({m.MODEL_RAM_MISSES: 1}, {"model": "sdxl"}), ({m.MODEL_RAM_HITS: 1}, {"model": "sdxl"})]


def test_lru_eviction_under_the_cap_follows_the_clock():
    clock = Clock()
    tier = HostRamTier(1000, clock=clock)
    tier.put("a", b"a" * 400)
    clock.now = 1
    tier.put("b", b"b" * 400)
    clock.now = 2
    assert tier.get("a") is not None  # a is now the most recent
    clock.now = 3
    tier.put("c", b"c" * 400)  # b goes
    assert tier.keys() == ["c", "a"] and tier.used_bytes() == 800


def test_a_value_bigger_than_the_tier_is_returned_but_not_kept():
    tier = HostRamTier(100)
    value, hit = tier.get_or_load("huge", lambda: b"x" * 1000)
    assert len(value) == 1000 and not hit and tier.keys() == []
    assert HostRamTier(0).put("a", b"a") is False  # 0 turns the tier off


def test_concurrent_callers_share_one_load_and_one_failure():
    tier = HostRamTier(10_000)
    gate, calls, results = threading.Event(), [], []

    def load():
        calls.append(1)
        assert gate.wait(30)
        return weights(10)

    threads = [threading.Thread(target=lambda: results.append(tier.get_or_load("m", load))) for _ in range(6)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while not calls and time.monotonic() < deadline:
        time.sleep(0.005)
    gate.set()
    for t in threads:
        t.join(30)
    assert len(calls) == 1 and len(results) == 6
    assert len({id(v) for v, _ in results}) == 1 and sum(not hit for _, hit in results) >= 1

    def broken():
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        tier.get_or_load("bad", broken)
    assert tier.keys() == ["m"]


def test_pin_leaves_non_torch_values_alone_and_bad_size_is_named():
    value = weights(4)
    assert pin_host_memory(value)["unet.w"] is value["unet.w"]
    with pytest.raises(ValueError, match="max_bytes"):
        HostRamTier(-1)


def test_pinned_torch_tensors_when_cuda_is_present():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA: page-locked memory is a CUDA allocation")
    tier = HostRamTier(1 << 20)
    value, _ = tier.get_or_load("t", lambda: {"w": torch.ones(1024)})
    assert value["w"].is_pinned() and size_of(value) == 4096


def test_tier_map_ram_wins_over_disk():
    assert tier_map(["a", "b"], ["b", "c"]) == {"a": DISK, "b": RAM, "c": RAM}
