"""One agent per model cache folder (issue 28, finding 4): two agents on one folder used to delete each
other's downloads (each download starts by removing the entry's folder; the torn-entry walk removes any
folder without its marker). A second owner, in another process or this one, is refused with an error
that names the folder and what to change; the lock goes with its process, however that process ends."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runtime.model_cache import CacheOwned, ModelCache
from tests.unit.test_model_cache import catalogue, resolver

HOLDER = textwrap.dedent("""
    import sys, time
    from runtime.model_cache import ModelCache
    from tests.unit.test_model_cache import catalogue, resolver
    store, models = catalogue({})
    cache = ModelCache(store, resolver(models), sys.argv[1], 1000)
    print("owned", flush=True)
    time.sleep(60)
""")


def test_a_second_agent_on_the_folder_is_refused_until_the_first_is_gone(tmp_path: Path):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[2])
    try:
        assert holder.stdout.readline().strip() == "owned"
        (tmp_path / "a@v1").mkdir()  # the first agent's download in progress (no marker yet)
        store, models = catalogue({})
        with pytest.raises(CacheOwned, match=rf"{tmp_path} is in use by another agent.*model_cache.cache_dir"):
            ModelCache(store, resolver(models), tmp_path, 1000)
        assert (tmp_path / "a@v1").is_dir()  # the refused cache's torn-entry walk did not run
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    ModelCache(store, resolver(models), tmp_path, 1000)  # the kernel let go with the killed process
    assert not (tmp_path / "a@v1").exists()


def test_a_second_cache_in_one_process_is_refused_and_close_gives_the_folder_up(tmp_path: Path):
    store, models = catalogue({})
    first = ModelCache(store, resolver(models), tmp_path, 1000)
    with pytest.raises(CacheOwned):
        ModelCache(store, resolver(models), tmp_path, 1000)
    first.close()
    ModelCache(store, resolver(models), tmp_path, 1000)
    assert list(tmp_path.iterdir()) == []  # the lock adds no file to the folder
