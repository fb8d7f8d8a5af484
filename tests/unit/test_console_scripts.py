"""Console scripts: every tool's entry point resolves; the AMI's runtime wheel carries only the worker's."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tools.runtime_wheel import RUNTIME_DIST, RuntimeMetadataError, runtime_pyproject, runtime_scripts

ROOT = Path(__file__).resolve().parents[2]
PROJECT_TEXT = (ROOT / "pyproject.toml").read_text()
PROJECT = tomllib.loads(PROJECT_TEXT)
SCRIPTS = PROJECT["project"]["scripts"]
BIN = Path(sys.executable).parent


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_every_entry_point_names_a_main_callable_without_arguments(name):
    module_name, _, attr = SCRIPTS[name].partition(":")
    func = getattr(importlib.import_module(module_name), attr)
    params = inspect.signature(func).parameters.values()
    assert all(p.default is not inspect.Parameter.empty for p in params), f"{name}: main() must run with no args"


def test_the_tools_have_scripts_and_make_install_puts_them_in_the_venv():
    expected = {"genai-worker", "genai-preview", "genai-demo", "genai-local", "genai-bench", "genai-chaos",
                "genai-ami", "genai-stack", "genai-plan", "genai-model-upload"}
    assert expected <= set(SCRIPTS)
    missing = [name for name in SCRIPTS if not (BIN / name).exists()]
    assert not missing, f"not installed in {BIN}: {missing}; run `make install`"


@pytest.mark.parametrize(("name", "shows"), [("genai-preview", "--stack"), ("genai-plan", "{run,sweep,size,classes}")])
def test_an_installed_script_runs(name, shows):
    proc = subprocess.run([str(BIN / name), "--help"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert shows in proc.stdout


def test_the_runtime_wheel_metadata_comes_from_the_project():
    runtime = tomllib.loads(runtime_pyproject(PROJECT_TEXT))
    meta = runtime["project"]
    assert meta["name"] == RUNTIME_DIST != PROJECT["project"]["name"]
    assert meta["version"] == PROJECT["project"]["version"]
    assert meta["dependencies"] == PROJECT["project"]["dependencies"]
    assert meta["requires-python"] == PROJECT["project"]["requires-python"]
    assert "optional-dependencies" not in meta
    assert meta["scripts"] == {"genai-worker": "runtime.worker.__main__:main",
                               "genai-compile-cache": "runtime.backends.compile_cache_fill:main"}
    assert runtime["tool"]["setuptools"]["packages"]["find"]["include"] == ["runtime", "runtime.*"]
    assert runtime["build-system"] == PROJECT["build-system"]


def test_only_scripts_into_the_runtime_package_are_kept():
    project = {"project": {"scripts": {"a": "runtime.x:main", "b": "runtimes.y:main", "c": "tools.z:main",
                                       "d": "runtime:main"}}}
    assert runtime_scripts(project) == {"a": "runtime.x:main", "d": "runtime:main"}


def test_metadata_without_a_runtime_script_or_version_is_refused():
    text = '[project]\nname = "x"\ndependencies = []\n[project.scripts]\nt = "tools.a:main"\n'
    with pytest.raises(RuntimeMetadataError, match=r"project\.version.*build-system\.build-backend.*genai-worker"):
        runtime_pyproject(text)
