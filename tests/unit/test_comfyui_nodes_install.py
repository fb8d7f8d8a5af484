"""The custom node build step, run here (issue 41): ``install-comfyui-nodes.sh`` installs each declared pack from
its git repository at its pinned commit into a ComfyUI tree (the first-boot rehearsal's stand-in, which loads
``custom_nodes/*`` as ComfyUI does, in a staging root ``DESTDIR``), then records the node catalog from
/object_info. A pack that fails to import, a commit the repository lacks, requirements that cannot be met with
ComfyUI's pins: the build stops naming the pack. The packer variable that declares the packs is validated.
Packs come from local fixture repositories (builds here cannot reach GitHub)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import hcl2
import pytest

from runtime import instance_contract as ic
from runtime.node_catalog import NodeCatalog

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "packer" / "scripts" / "install-comfyui-nodes.sh"
PACK = REPO / "tests" / "fixtures" / "comfyui" / "node_packs" / "genai_fleet_nodes"


def git_repo(path: Path, files: dict[str, str] | Path) -> str:
    """A local git repository holding ``files`` (or a copy of a folder); returns its commit."""
    if isinstance(files, Path):
        shutil.copytree(files, path)
    else:
        path.mkdir(parents=True)
        for name, text in files.items():
            (path / name).write_text(text)
    git = ["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "pack"], check=True)
    return subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()


def standin(dest: Path) -> Path:
    """The rehearsal's ComfyUI stand-in where the AMI puts ComfyUI (``DESTDIR`` + COMFYUI_DIR)."""
    tree = dest / ic.COMFYUI.install_dir.lstrip("/")
    shutil.copytree(REPO / "tests" / "rehearsal" / "comfyui_standin", tree)
    (tree / "tests" / "fakes").mkdir(parents=True)
    (tree / "tests" / "__init__.py").write_text("")
    for module in (REPO / "tests" / "fakes").glob("*.py"):
        shutil.copy(module, tree / "tests" / "fakes" / module.name)
    return tree


def run(dest: Path, packs: list[dict[str, str]]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DESTDIR": str(dest), "FILES_DIR": str(REPO / "packer" / "files"),
           "COMFYUI_CUSTOM_NODES": json.dumps(packs), "COMFYUI_PYTHON": sys.executable,
           "CATALOG_PYTHON": sys.executable, "PIP_NO_INDEX": "1"}
    return subprocess.run(["bash", str(SCRIPT)], env=env, cwd=REPO, capture_output=True, text=True, timeout=300)


def catalog(dest: Path) -> NodeCatalog:
    return NodeCatalog.from_json((dest / ic.COMFYUI_NODE_CATALOG.lstrip("/")).read_text())


def test_a_pinned_pack_is_installed_and_its_nodes_are_in_the_catalog(tmp_path: Path):
    commit = git_repo(tmp_path / "pack-repo", PACK)
    dest = tmp_path / "root"
    tree = standin(dest)
    packs = [{"name": "genai_fleet_nodes", "repository": str(tmp_path / "pack-repo"), "commit": commit}]
    done = run(dest, packs)
    assert done.returncode == 0, done.stderr
    assert (tree / "custom_nodes" / "genai_fleet_nodes" / "nodes.py").is_file()
    assert not (tree / "custom_nodes" / "genai_fleet_nodes" / ".git").exists()
    found = catalog(dest)
    assert {"GenaiFleetSolarize", "GenaiFleetStamp"} <= set(found.nodes)
    assert found.nodes["CheckpointLoaderSimple"] == {"ckpt_name": "checkpoints"}  # the probe files worked
    assert found.packs == packs


def test_no_packs_still_records_the_core_catalog(tmp_path: Path):
    dest = tmp_path / "root"
    standin(dest)
    done = run(dest, [])
    assert done.returncode == 0, done.stderr
    assert "KSampler" in catalog(dest).nodes and "GenaiFleetSolarize" not in catalog(dest).nodes


def test_a_pack_that_fails_to_import_stops_the_build_naming_it(tmp_path: Path):
    commit = git_repo(tmp_path / "broken-repo", {"__init__.py": "import no_such_module_41\n"})
    dest = tmp_path / "root"
    standin(dest)
    done = run(dest, [{"name": "broken_pack", "repository": str(tmp_path / "broken-repo"), "commit": commit}])
    assert done.returncode != 0
    assert "custom node pack 'broken_pack'" in done.stderr and "No module named 'no_such_module_41'" in done.stderr
    assert not (dest / ic.COMFYUI_NODE_CATALOG.lstrip("/")).exists()


def test_a_commit_the_repository_lacks_stops_the_build(tmp_path: Path):
    git_repo(tmp_path / "pack-repo", PACK)
    dest = tmp_path / "root"
    standin(dest)
    done = run(dest, [{"name": "genai_fleet_nodes", "repository": str(tmp_path / "pack-repo"), "commit": "a" * 40}])
    assert done.returncode != 0 and f"pack genai_fleet_nodes: commit {'a' * 40} is not in" in done.stderr


def test_requirements_that_cannot_be_met_stop_the_build_naming_the_pack(tmp_path: Path):
    commit = git_repo(tmp_path / "req-repo", {"__init__.py": "NODE_CLASS_MAPPINGS = {}\n",
                                              "requirements.txt": "numpy==0.0.1\n"})
    dest = tmp_path / "root"
    standin(dest)
    done = run(dest, [{"name": "needs_old_numpy", "repository": str(tmp_path / "req-repo"), "commit": commit}])
    assert done.returncode != 0
    assert "pack needs_old_numpy: its requirements.txt cannot be installed with ComfyUI's pins" in done.stderr


def test_the_packer_variable_declares_and_validates_the_packs():
    variables = hcl2.loads((REPO / "packer" / "variables.pkr.hcl").read_text())["variable"]
    (decl,) = [body for v in variables for name, body in v.items() if name.strip('"') == "comfyui_custom_nodes"]
    assert decl["default"] == [] and "commit" in decl["description"]
    rules = " ".join(v["condition"] for v in decl["validation"])
    for needed in ("[0-9a-f]{40}", "p.name", "https://", "distinct"):  # commit, name, repository, unique names
        assert needed in rules, needed
    build = (REPO / "packer" / "build.pkr.hcl").read_text()
    assert "install-comfyui-nodes.sh" in build and "jsonencode(var.comfyui_custom_nodes)" in build
    assert build.index("install-agent.sh") < build.index("install-comfyui-nodes.sh")  # records with the agent's venv
    assert build.index("install-comfyui.sh") < build.index("install-comfyui-nodes.sh")


@pytest.mark.parametrize("name,commit", [("../escape", "a" * 40), ("ok", "v1.0")])
def test_the_script_refuses_undeclarable_packs_on_its_own(tmp_path: Path, name: str, commit: str):
    dest = tmp_path / "root"
    standin(dest)
    done = run(dest, [{"name": name, "repository": "https://example.com/x.git", "commit": commit}])
    assert done.returncode != 0 and "name must be a folder name, commit 40 hex digits" in done.stderr
