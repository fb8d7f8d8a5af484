"""The backend names are written once (runtime/backends/base.py ``CATALOG``); every other list derives from it."""

from __future__ import annotations

import ast
from pathlib import Path

from components import config_settings
from fleetdev.local import platform
from runtime import agent_config, instance_contract
from runtime.backends import base

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIRS = ("runtime", "components", "fleetdev", "tools", "bench", "planner", "policies")
HOME = ROOT / "runtime" / "backends" / "base.py"


def test_the_agent_the_stack_and_local_mode_derive_their_lists():
    assert agent_config.BACKENDS == base.NAMES == tuple(base.REGISTRY)
    assert config_settings.FLAVOR_BACKENDS == {"cuda": ("comfyui", "a1111", "diffusers", "test-pattern"),
                                              "neuron": ("neuron", "test-pattern")}
    assert set(platform.BACKENDS) == {"test-pattern", "diffusers", *instance_contract.HTTP_BACKENDS} <= set(base.NAMES)
    assert platform.IN_PROCESS_BACKENDS == ("diffusers", "test-pattern")  # in process on this machine's CPU
    assert set(config_settings.DEFAULT_BACKEND) == set(config_settings.FLAVOR_FAMILIES)
    for flavor, backend in config_settings.DEFAULT_BACKEND.items():
        assert backend in base.flavor_backends(flavor)


def test_every_backend_runs_on_some_flavour_and_flavours_are_the_amis():
    flavors = set(config_settings.FLAVOR_FAMILIES)
    for name, entry in base.CATALOG.items():
        assert entry.flavors and set(entry.flavors) <= flavors, name
    assert base.flavor_backends("rocm") == ()


def _name_lists(path: Path) -> list[int]:
    """Lines of tuple / list / set literals holding two or more backend names."""
    names = set(base.NAMES)
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            found = {e.value for e in node.elts if isinstance(e, ast.Constant) and e.value in names}
            if len(found) >= 2:
                lines.append(node.lineno)
    return lines


def test_no_other_module_writes_a_list_of_backend_names():
    offenders = {}
    for folder in SOURCE_DIRS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == HOME or "venv" in path.parts:
                continue
            if lines := _name_lists(path):
                offenders[str(path.relative_to(ROOT))] = lines
    assert offenders == {}, "derive backend lists from runtime.backends.base.CATALOG"


def test_the_scan_finds_a_written_list(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('KNOWN = ("comfyui", "a1111")\nONE = ("comfyui",)\n')
    assert _name_lists(sample) == [1]


def test_packer_installs_every_http_backend_of_the_catalog():
    """Packer cannot import the catalog; each HTTP backend's install script is checked against it instead."""
    build = (ROOT / "packer" / "build.pkr.hcl").read_text()
    for name in instance_contract.HTTP_BACKENDS:
        assert name in base.CATALOG and "cuda" in base.CATALOG[name].flavors
        assert (ROOT / "packer" / "scripts" / f"install-{name}.sh").is_file(), name
        assert f"/scripts/install-{name}.sh" in build, name
