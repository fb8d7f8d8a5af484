"""The fleet's shared compile cache in the model store (S3Store) and genai-compile-cache, which fills it."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest
from moto import mock_aws

from runtime.backends.diffusers import DiffusersBackend
from runtime.backends.diffusers_compile import DirectoryStore, S3Store
from runtime.backends.diffusers_options import DiffusersOptions

REGION = "us-east-1"


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket="models")
        yield client


def test_round_trip_under_the_prefix_and_a_missing_key_is_a_miss(s3):
    store = S3Store.from_url("s3://models/compile-cache", s3)
    assert store.get("h100-torch2.11.0-abc") is None
    store.put("h100-torch2.11.0-abc", b"tar bytes")
    assert store.get("h100-torch2.11.0-abc") == b"tar bytes"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="models")["Contents"]]
    assert keys == ["compile-cache/h100-torch2.11.0-abc.tar"]


def test_an_unreadable_store_is_a_miss_not_a_failed_boot_and_a_refused_write_is_an_oserror(s3, caplog):
    store = S3Store(s3, "no-such-bucket", "compile-cache")
    with caplog.at_level(logging.WARNING):
        assert store.get("slug") is None
    assert "not read" in caplog.text
    with pytest.raises(OSError, match=r"no-such-bucket/compile-cache/slug\.tar"):
        store.put("slug", b"x")  # CompileCache.save logs it and goes on to the next store


@pytest.mark.parametrize("url", ["models/compile-cache", "s3://", "https://models/x"])
def test_a_store_url_that_is_not_s3_bucket_prefix_is_refused(url, s3):
    with pytest.raises(ValueError, match="expected s3://BUCKET/PREFIX"):
        S3Store.from_url(url, s3)


def test_workers_read_the_model_stores_cache_after_the_configured_stores(s3, tmp_path: Path):
    config = SimpleNamespace(region=REGION, endpoints={}, model_cache=SimpleNamespace(store_bucket="models"))
    options = DiffusersOptions(compile_cache_dir=str(tmp_path / "work"), compile_cache_stores=(str(tmp_path / "ami"),))
    stores = DiffusersBackend(config, device="cpu", options=options)._cache_stores()
    assert [type(s).__name__ for s in stores] == ["DirectoryStore", "S3Store", "DirectoryStore"]
    assert (stores[1].bucket, stores[1].prefix) == ("models", "compile-cache")
    assert isinstance(stores[2], DirectoryStore) and stores[2].root == tmp_path / "work" / "saved"
    no_store = DiffusersBackend(None, device="cpu", options=options)._cache_stores()
    assert [type(s).__name__ for s in no_store] == ["DirectoryStore", "DirectoryStore"]


@pytest.mark.slow
def test_the_tool_fills_the_model_store_and_a_new_worker_compiles_from_it(s3, tmp_path: Path, monkeypatch):
    """genai-compile-cache compiles a tiny SD model on the CPU into s3://models/compile-cache; a worker with the
    default options (cold_compile: skip) and that model store then finds the cache warm and compiles."""
    from bench.diffusers_models import tiny_sd
    from runtime.backends import compile_cache_fill as compile_cache

    for name in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)
    model = tiny_sd(tmp_path / "model")
    assert compile_cache.main(["--model", str(model), "--store", "s3://models/compile-cache", "--buckets", "64x64",
                               "--device", "cpu", "--mode", "default", "--region", REGION]) == 0
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="models")["Contents"]]
    assert len(keys) == 1 and keys[0].startswith("compile-cache/cpu-torch") and keys[0].endswith(".tar")

    config = SimpleNamespace(region=REGION, endpoints={}, model_cache=SimpleNamespace(store_bucket="models"))
    worker = DiffusersBackend(config, device="cpu", options=DiffusersOptions(
        compile="on", compile_mode="default", buckets=((64, 64),), compile_cache_dir=str(tmp_path / "worker"),
        compile_cache_stores=(), host_ram_gib=0))
    report = worker.warm_up("model", model)
    assert report["cache_was_warm"] is True and report["compiled"] and not report["cold_compile_skipped"]


def test_the_tool_refuses_a_folder_that_is_not_a_model(tmp_path: Path, capsys):
    from runtime.backends import compile_cache_fill as compile_cache

    with pytest.raises(SystemExit):
        compile_cache.main(["--model", str(tmp_path), "--store", "s3://models/compile-cache"])
    assert "no model_index.json" in capsys.readouterr().err
