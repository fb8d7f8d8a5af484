"""Lambda packaging: dependencies built for arm64 / python3.12 at `make lambda-deps`, read offline by the program.

The folders under .build/lambda are what `make install` builds (CI runs it before `make test`); the
archive tests read them, and the digest tests work on temporary copies.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

from components import api as api_component
from components import lambda_package
from components.lambda_package import API_DEPS, KAFKA_LAYER, ROOT, DepsTarget, LambdaDepsMissingError
from tools import build_lambda


def test_pip_builds_wheels_for_the_lambda_platform_only():
    cmd = build_lambda.pip_command(API_DEPS, python="python")
    assert cmd[:4] == ["python", "-m", "pip", "install"]
    assert "--only-binary=:all:" in cmd and "--no-deps" in cmd  # no sdist built on the host, no resolver surprises
    assert cmd[cmd.index("--python-version") + 1] == "3.12" and cmd[cmd.index("--implementation") + 1] == "cp"
    platforms = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--platform"]
    assert platforms and all(p.endswith("_aarch64") for p in platforms)
    assert cmd[cmd.index("--target") + 1] == str(API_DEPS.install_dir)
    assert cmd[-2:] == ["-r", str(API_DEPS.requirements)]
    assert KAFKA_LAYER.install_dir == KAFKA_LAYER.directory / "python"  # the layer's import path


def test_requirements_are_pinned_and_the_program_needs_only_requirements_txt():
    for target in lambda_package.TARGETS:
        lines = [ln for ln in target.requirements.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        assert lines and all("==" in ln for ln in lines), target.requirements
    program = [ln.split("==")[0] for ln in (ROOT / "requirements.txt").read_text().splitlines()
               if ln.strip() and not ln.startswith("#")]
    assert program == ["pulumi", "pulumi-aws"]


def test_the_component_never_runs_pip_or_imports_from_the_deploying_environment():
    tree = ast.parse(Path(api_component.__file__).read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not imported & {"subprocess", "importlib", "pip", "httpx"}


def test_the_code_archive_is_runtime_files_plus_the_built_folder():
    assert API_DEPS.is_current(), "run `make lambda-deps` (part of `make install`)"
    assets = lambda_package.api_code_archive().assets
    sources = {key: Path(asset.path) for key, asset in assets.items()}
    assert "runtime/api/handler.py" in sources and "httpx/__init__.py" in sources
    assert sources["httpx/__init__.py"].is_relative_to(API_DEPS.directory)
    for key, path in sources.items():
        assert path.is_relative_to(ROOT / "runtime") or path.is_relative_to(API_DEPS.directory), key
        assert "__pycache__" not in key and not key.endswith(".pyc") and not key.startswith("bin/")
        if key.endswith(".so"):  # compiled halves: pydantic-core's, and (issue 43) cryptography's and cffi's
            assert key.split("/")[0] in COMPILED, key
            assert _elf_machine(path) == AARCH64, f"{key} is not the Lambda's (arm64) build"
    assert lambda_package.STAMP not in sources


COMPILED = ("pydantic_core", "cryptography", "_cffi_backend.cpython-312-aarch64-linux-gnu.so")
AARCH64 = 0xB7  # ELF e_machine of arm64


def _elf_machine(path: Path) -> int:
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF", path
    return int.from_bytes(header[18:20], "little")


def _copy(tmp_path: Path, target: DepsTarget) -> DepsTarget:
    requirements = tmp_path / "requirements.txt"
    shutil.copy(target.requirements, requirements)
    directory = tmp_path / "deps"
    shutil.copytree(target.directory, directory)
    return DepsTarget("api", requirements, directory, directory)


def test_a_folder_built_from_other_requirements_is_refused_with_the_command(tmp_path, monkeypatch):
    assert API_DEPS.is_current(), "run `make lambda-deps` (part of `make install`)"
    monkeypatch.setattr(lambda_package, "ROOT", tmp_path)
    copy = _copy(tmp_path, API_DEPS)
    assert copy.require() == copy.directory
    copy.requirements.write_text(copy.requirements.read_text().replace("httpx==0.28.1", "httpx==0.27.2"))
    with pytest.raises(LambdaDepsMissingError, match=r"deps was built from other requirements .* run `make "
                                                     r"lambda-deps` \(part of `make install`\)"):
        copy.require()
    (copy.directory / lambda_package.STAMP).unlink()
    with pytest.raises(LambdaDepsMissingError, match="deps is missing"):
        copy.require()


def test_comment_and_order_changes_do_not_force_a_rebuild(tmp_path):
    requirements = tmp_path / "r.txt"
    requirements.write_text("# pinned\nb==2\na==1\n")
    first = DepsTarget("x", requirements, tmp_path, tmp_path).digest()
    requirements.write_text("a==1\n\nb==2  \n")
    assert DepsTarget("x", requirements, tmp_path, tmp_path).digest() == first


def test_the_unpacked_archive_imports_the_handler_with_only_what_lambda_provides(tmp_path):
    """Unpack the archive, then import the entry points in a Python that sees only it, the standard library
    and boto3 with its dependencies (what the Lambda runtime provides): nothing leaks from the venv."""
    import importlib.util
    import os
    import subprocess
    import sys

    assert API_DEPS.is_current(), "run `make lambda-deps` (part of `make install`)"
    code = tmp_path / "code"
    for key, asset in lambda_package.api_code_archive().assets.items():
        (code / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(asset.path, code / key)
    # pydantic-core's compiled half is the Lambda's aarch64 build (test_api_component checks it), which this
    # machine cannot load: swap in this machine's build of the very same version, and only that file.
    import pydantic_core

    shipped = list((code / "pydantic_core").glob("_pydantic_core.*.so"))
    assert len(shipped) == 1 and (code / f"pydantic_core-{pydantic_core.__version__}.dist-info").is_dir()
    shipped[0].unlink()
    host_core = next(Path(pydantic_core.__file__).parent.glob("_pydantic_core.*.so"))
    shutil.copy(host_core, code / "pydantic_core" / host_core.name)
    # issue 43: the same swap for the signing key's RSA (cryptography's Rust half) and cffi's backend
    import _cffi_backend
    import cryptography.hazmat.bindings._rust as rust

    shutil.copy(rust.__file__, code / "cryptography" / "hazmat" / "bindings" / Path(rust.__file__).name)
    (code / "_cffi_backend.cpython-312-aarch64-linux-gnu.so").unlink()
    shutil.copy(_cffi_backend.__file__, code / Path(_cffi_backend.__file__).name)
    provided = tmp_path / "provided"
    provided.mkdir()
    for name in ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six"):
        spec = importlib.util.find_spec(name)
        origin = Path(next(iter(spec.submodule_search_locations))) if spec.submodule_search_locations else Path(
            spec.origin)
        (provided / origin.name).symlink_to(origin)
    # Lambda puts the function's code and then the runtime's boto3 on PYTHONPATH; -S: no site-packages of
    # this machine; cwd: an empty folder, so the checkout's runtime/ cannot stand in for the archive's.
    script = ("import sys, runtime.api.handler, runtime.api.authorizer, httpx; "
              "import runtime.functions.reconciler, runtime.functions.webhook_dispatch; "  # the job-events fns
              "assert httpx.__file__.startswith(sys.argv[1]), httpx.__file__; "
              "assert runtime.api.handler.__file__.startswith(sys.argv[1]), runtime.api.handler.__file__; "
              "print('ok')")
    empty = tmp_path / "cwd"
    empty.mkdir()
    proc = subprocess.run([sys.executable, "-S", "-c", script, str(code)], capture_output=True, text=True,
                          timeout=120, cwd=empty, env={"AWS_DEFAULT_REGION": "us-east-1", "PATH": "/usr/bin:/bin",
                                                       "PYTHONPATH": f"{code}{os.pathsep}{provided}"})
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


def _runtime_imports(path: Path) -> set[str]:
    """``runtime.*`` modules a file imports (absolute imports only; the runtime uses no relative ones)."""
    tree = ast.parse(path.read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return {n for n in names if n.split(".")[0] == "runtime"}


def _module_file(module: str) -> str | None:
    rel = module.replace(".", "/")
    if (ROOT / f"{rel}.py").exists():
        return f"{rel}.py"
    return f"{rel}/__init__.py" if (ROOT / rel / "__init__.py").exists() else None


def _missing_runtime_modules(keys: set[str], handlers: tuple[str, ...]) -> set[str]:
    """Runtime files the handlers import, directly or not (package ``__init__`` files too), absent from ``keys``."""
    seen: set[str] = set()
    todo = list(handlers)
    while todo:
        module = todo.pop()
        parts = module.split(".")
        for i in range(1, len(parts) + 1):
            rel = _module_file(".".join(parts[:i]))
            if rel and rel not in seen:
                seen.add(rel)
                todo.extend(_runtime_imports(ROOT / rel))
    return seen - keys


def test_every_runtime_module_the_lambda_handlers_import_is_in_the_api_archive():
    handlers = ("runtime.api.handler", "runtime.api.authorizer", "runtime.functions.reconciler",
                "runtime.functions.webhook_dispatch")
    assert _missing_runtime_modules(set(lambda_package.api_code_archive().assets), handlers) == set()


def test_every_runtime_module_the_kafka_functions_import_is_in_their_archive():
    from components import kafka_functions

    handlers = ("runtime.functions.kafka_lag", "runtime.functions.kafka_topics")
    assert _missing_runtime_modules(set(kafka_functions.CODE_FILES), handlers) == set()
