"""The persistent compile cache: archive round trip, and a real Inductor compile that a fresh process (an
instance booting on a new AMI) finds warm after the cache was restored from a store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runtime.backends.diffusers_compile import CompileCache, CompileKey, DirectoryStore

KEY = CompileKey("arch1", "64x64;b1", "NVIDIA H100 80GB HBM3", "max-autotune", "2.13.0+cpu", "0.42.1")


def _isolate(monkeypatch, tmp_path: Path) -> None:
    """activate() points this process's Inductor/Triton at a folder: restore the variables after the test."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "unused"))
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "unused"))


def test_save_and_restore_through_a_store(tmp_path: Path, monkeypatch):
    _isolate(monkeypatch, tmp_path)
    store = DirectoryStore(tmp_path / "ami")
    first = CompileCache(tmp_path / "work1", [store])
    assert first.activate(KEY) is False  # nothing anywhere: a cold compile
    inductor = Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])
    assert inductor == first.folder(KEY) / "inductor"
    assert os.environ["TRITON_CACHE_DIR"] == str(first.folder(KEY) / "triton")
    (inductor / "fxgraph" / "ab").mkdir(parents=True)
    (inductor / "fxgraph" / "ab" / "entry").write_bytes(b"compiled")
    assert first.save() > 0 and (tmp_path / "ami" / f"{KEY.slug}.tar").is_file()

    second = CompileCache(tmp_path / "work2", [store])
    assert second.activate(KEY) is True
    assert (second.folder(KEY) / "inductor" / "fxgraph" / "ab" / "entry").read_bytes() == b"compiled"
    other_gpu = CompileKey(**{**KEY.__dict__, "gpu": "NVIDIA H200"})
    assert other_gpu.slug != KEY.slug and second.activate(other_gpu) is False  # another GPU never reuses kernels
    newer_torch = CompileKey(**{**KEY.__dict__, "torch": "2.14.1"})
    assert newer_torch.slug != KEY.slug


def test_a_store_that_cannot_be_written_does_not_stop_the_others(tmp_path: Path, monkeypatch):
    _isolate(monkeypatch, tmp_path)
    class ReadOnly:
        def get(self, slug):
            return None

        def put(self, slug, archive):
            raise PermissionError("read-only AMI folder")

    local = DirectoryStore(tmp_path / "local")
    cache = CompileCache(tmp_path / "work", [ReadOnly(), local])
    cache.activate(KEY)
    (cache.folder(KEY) / "inductor" / "x").write_bytes(b"1")
    cache.save()
    assert local.get(KEY.slug)


_CHILD = textwrap.dedent("""
    import json, sys
    import torch
    from runtime.backends.diffusers_compile import CompileCache, CompileKey, DirectoryStore
    cache = CompileCache(sys.argv[1], [DirectoryStore(sys.argv[2])])
    warm = cache.activate(CompileKey("arch", "64x64;b1", "cpu", "default", torch.__version__, "test"))
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.GELU(), torch.nn.Linear(16, 4))
    out = torch.compile(model)(torch.ones(2, 16))
    from torch._dynamo.utils import counters
    cache.save()
    print(json.dumps({"warm": warm, "hit": counters["inductor"]["fxgraph_cache_hit"],
                      "miss": counters["inductor"]["fxgraph_cache_miss"], "sum": float(out.sum())}))
""")


def _child(work: Path, store: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TORCHINDUCTOR_", "TRITON_"))}
    done = subprocess.run([sys.executable, "-c", _CHILD, str(work), str(store)], capture_output=True, text=True,
                          timeout=300, env=env, cwd=Path(__file__).resolve().parents[2], check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_fresh_process_restores_the_cache_and_skips_the_compile(tmp_path: Path):
    """Inductor's FX graph cache, saved by one process and restored into an empty folder by another."""
    cold = _child(tmp_path / "instance1", tmp_path / "store")
    warm = _child(tmp_path / "instance2", tmp_path / "store")
    assert cold["warm"] is False and cold["miss"] >= 1 and cold["hit"] == 0
    assert warm["warm"] is True and warm["hit"] >= 1 and warm["miss"] == 0
    assert warm["sum"] == pytest.approx(cold["sum"])


_BACKEND_CHILD = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from runtime.backends.base import JobContext
    from runtime.jobs.schema import JobSpec
    from runtime.backends.diffusers import DiffusersBackend
    from runtime.backends.diffusers_options import DiffusersOptions
    from torch._dynamo.utils import counters
    work, store, model = (Path(a) for a in sys.argv[1:4])
    extra = {"cold_compile": sys.argv[4]} if len(sys.argv) > 4 else {}  # else the default
    options = DiffusersOptions(compile="on", buckets=((64, 64),), compile_cache_dir=str(work),
                               compile_cache_stores=(str(store),), **extra)
    backend = DiffusersBackend(device="cpu", options=options)
    report = backend.warm_up("a", model)
    inputs = {"prompt": "a cat", "steps": 2, "width": 64, "height": 64, "seed": 1}
    bucket = backend.run(JobContext("j1", JobSpec.parse({"model": "a", "inputs": inputs})))
    odd = backend.run(JobContext("j2", JobSpec.parse({"model": "a", "inputs": {**inputs, "width": 72}})))
    inductor = counters["inductor"]
    print(json.dumps({**report, "bucket_compiled": bucket.metadata["compiled"],
                      "odd_compiled": odd.metadata["compiled"],
                      "hit": inductor["fxgraph_cache_hit"], "miss": inductor["fxgraph_cache_miss"],
                      "png": bucket.outputs[0].data.hex()}))
""")


@pytest.mark.slow
def test_backend_warm_up_compiles_once_and_a_new_instance_starts_from_the_saved_cache(tmp_path: Path):
    """The backend's own path: an instance with the default options and nothing cached serves eager (a cold compile
    is never paid at boot); one with cold_compile=compile compiles the bucket and saves to the store; a third
    process with an empty working folder and the default options (a new instance) restores it and compiles from
    the cache. About 100 s on 2 busy cores."""
    from bench.diffusers_models import tiny_sd

    model = tiny_sd(tmp_path / "model")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TORCHINDUCTOR_", "TRITON_"))}
    runs = []
    for instance, mode in (("skipping", []), ("filling", ["compile"]), ("new", [])):
        done = subprocess.run([sys.executable, "-c", _BACKEND_CHILD, str(tmp_path / instance), str(tmp_path / "store"),
                               str(model), *mode], capture_output=True, text=True, timeout=500, env=env, check=False,
                              cwd=Path(__file__).resolve().parents[2])
        assert done.returncode == 0, done.stderr[-3000:]
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    skipped, cold, warm = runs
    assert skipped["cold_compile_skipped"] and not skipped["compiled"] and skipped["cache_bytes"] == 0
    assert not skipped["bucket_compiled"] and skipped["miss"] == 0 and skipped["png"].startswith("89504e47")  # eager
    assert cold["compiled"] and cold["cache_was_warm"] is False and cold["miss"] >= 1 and cold["cache_bytes"] > 0
    assert warm["cache_was_warm"] is True and warm["hit"] >= 1 and warm["miss"] == 0
    assert not cold["cold_compile_skipped"] and not warm["cold_compile_skipped"]
    assert cold["bucket_compiled"] and warm["bucket_compiled"] and not cold["odd_compiled"]  # odd sizes run eager
    assert cold["png"] == warm["png"]
