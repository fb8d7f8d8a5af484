"""Import layering, read from the source: the runtime stands alone, tooling stays out of it.

The import graph of ``runtime/``, ``components/`` and ``policies/`` is built with ``ast`` from every
import statement, wherever it stands: module level, inside functions (a "lazy" import is still a
dependency) and under ``if TYPE_CHECKING:`` (a type that needs the other module is a dependency too).
It must have no cycle, and no module may use another module's private name:

- ``from x import _name`` and ``x._name`` (``x`` an imported first-party module) are refused: a name
  with a leading underscore is its module's own business. Make it public in the module whose concern
  it is, or move it there.
- A private *module* (``runtime/backends/_http.py``) is private to its package: its siblings and the
  package's subpackages may import it (``comfyui.py`` and ``a1111.py`` share the HTTP transport, as
  httpx's ``_client.py`` uses ``_transports``); a module outside that package may not.
- A package ``__init__`` is not an implicit dependency of its submodules here: an edge is drawn only
  for what a file imports itself.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SKIP = {".venv", ".build", ".git", "node_modules", "venv"}


def _python_files(top: str, root: Path = ROOT) -> list[Path]:
    return [p for p in (root / top).rglob("*.py") if not SKIP & set(p.relative_to(root).parts)]


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    roots |= {n.module.split(".")[0] for n in ast.walk(tree)
              if isinstance(n, ast.ImportFrom) and n.module and n.level == 0}
    return roots


@pytest.mark.parametrize(("top", "forbidden"), [
    ("runtime", {"fleetdev", "tests", "components", "tools", "bench", "planner", "pulumi", "pulumi_aws"}),
    ("components", {"fleetdev", "tests", "tools", "bench"}),
    ("fleetdev", {"tests"}),
    ("tools", {"tests"}),
    ("bench", {"tests"}),
    ("planner", {"tests", "fleetdev"}),
    # The client could be published on its own (issue 39): nothing of the server, no AWS SDK.
    ("genai_fleet_client", {"runtime", "components", "fleetdev", "tests", "tools", "bench", "planner",
                            "genai_policies", "boto3", "botocore", "pulumi", "pulumi_aws"}),
])
def test_layers_import_only_downwards(top, forbidden):
    wrong = {str(p.relative_to(ROOT)): sorted(_imported_roots(p) & forbidden) for p in _python_files(top)}
    assert {k: v for k, v in wrong.items() if v} == {}


def test_no_sys_path_edits_anywhere():
    """Imports resolve through the editable install (or, in subprocesses, PYTHONPATH), never a path edit."""
    offenders = []
    for top in ("runtime", "components", "fleetdev", "tools", "bench", "planner", "policies", "tests"):
        for path in _python_files(top):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Attribute) and node.attr == "path" and getattr(node.value, "id", "") == "sys":
                    offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_the_policy_package_has_one_import_root():
    users = [p for top in ("tools", "planner", "tests", "policies") for p in _python_files(top)]
    assert not [str(p.relative_to(ROOT)) for p in users if "policies.genai_policies" in p.read_text()
                and p.name != "test_layering.py"]


# ---- The import graph of runtime/, components/ and policies/ ------------------------------------------------------
GRAPH_TOPS = {"runtime": ".", "components": ".", "policies": "policies"}  # folder -> its sys.path entry


@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    line: int


@dataclass
class ModuleImports:
    name: str
    path: Path
    edges: list[Edge] = field(default_factory=list)
    private: list[str] = field(default_factory=list)  # "file:line: what" for each private-name use


def _module_name(path: Path, base: Path) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph_modules(root: Path) -> dict[str, Path]:
    return {_module_name(p, root / base): p for top, base in GRAPH_TOPS.items() for p in _python_files(top, root)
            if p.relative_to(root).parts != ("policies", "__main__.py")}  # the pack's entry, imported by none


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _private_part_outside(target: str, importer_pkg: str) -> str | None:
    """The first private component of ``target`` whose package does not hold the importer, if any."""
    parts = target.split(".")
    for i, part in enumerate(parts):
        if _is_private(part):
            owner = ".".join(parts[:i])
            if not (importer_pkg == owner or importer_pkg.startswith(owner + ".")):
                return ".".join(parts[: i + 1])
    return None


def _scan(name: str, path: Path, known: Mapping[str, Path], root: Path) -> ModuleImports:
    """Every import in one file (module level, in functions, under ``TYPE_CHECKING``) and its private-name uses."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    rel = path.relative_to(root)
    out, bound = ModuleImports(name, path), {}  # local name -> first-party module it is bound to

    def first_party(dotted: str) -> str | None:
        while dotted and dotted not in known:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    def use(target: str, line: int, local: str | None) -> None:
        out.edges.append(Edge(name, target, line))
        outside = _private_part_outside(target, package)
        if outside:
            out.private.append(f"{rel}:{line}: imports the private module {outside}")
        if local:
            bound[local] = target

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = first_party(alias.name)
                if target:
                    use(target, node.lineno, alias.asname or (target if "." not in alias.name else None))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if submodule in known:
                    use(submodule, node.lineno, alias.asname or alias.name)
                    continue
                target = first_party(base)
                if target:
                    use(target, node.lineno, None)
                if _is_private(alias.name):
                    out.private.append(f"{rel}:{node.lineno}: imports the private name {base}.{alias.name}")
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound
                and _is_private(node.attr) and f"{bound[node.value.id]}.{node.attr}" not in known):
            out.private.append(f"{rel}:{node.lineno}: uses the private name {bound[node.value.id]}.{node.attr}")
    return out


def _import_graph(root: Path = ROOT) -> dict[str, ModuleImports]:
    known = _graph_modules(root)
    return {name: _scan(name, path, known, root) for name, path in known.items()}


def _cycles(graph: Mapping[str, ModuleImports]) -> list[list[str]]:
    """Strongly connected components with more than one module (or a module importing itself), Tarjan's way."""
    succ = {m: sorted({e.imported for e in imp.edges if e.imported in graph}) for m, imp in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:  # the graph is a few hundred modules deep at most
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in succ[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in succ[v]:
                found.append(sorted(component))

    for v in sorted(succ):
        if v not in index:
            visit(v)
    return found


def _describe(component: list[str], graph: Mapping[str, ModuleImports], root: Path = ROOT) -> str:
    inside = set(component)
    edges = [f"{graph[e.importer].path.relative_to(root)}:{e.line} -> {e.imported}"
             for m in component for e in graph[m].edges if e.imported in inside]
    return "import cycle " + " / ".join(component) + ":\n    " + "\n    ".join(sorted(set(edges)))


WORKER = "runtime.worker"  # the agent: the stack's functions never reach it


def _in_worker(module: str) -> bool:
    return module == WORKER or module.startswith(WORKER + ".")


def _violations(graph: Mapping[str, ModuleImports]) -> list[str]:
    """Every cycle and every use of another module's private name."""
    found = [_describe(c, graph) for c in _cycles(graph)]
    found += [use for _, imp in sorted(graph.items()) for use in imp.private]
    return found


def test_no_import_cycle_and_no_private_name():
    found = _violations(_import_graph())
    assert not found, "\n".join(found)


def _tree(tmp_path: Path, files: Mapping[str, str]) -> Path:
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    for top in ("runtime", "components", "policies/genai_policies"):
        (tmp_path / top).mkdir(parents=True, exist_ok=True)
    return tmp_path


def test_the_graph_sees_cycles_through_lazy_and_type_checking_imports(tmp_path):
    root = _tree(tmp_path, {
        "runtime/__init__.py": "",
        "runtime/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from runtime.b import B\n",
        "runtime/b.py": "def f():\n    from runtime import c\n",
        "runtime/c.py": "import runtime.a\n",
        "runtime/d.py": "import runtime.a\n",
        "policies/genai_policies/x.py": "from . import y\n",
        "policies/genai_policies/y.py": "from .x import X\n",
    })
    graph = _import_graph(root)
    assert _cycles(graph) == [["genai_policies.x", "genai_policies.y"], ["runtime.a", "runtime.b", "runtime.c"]]
    assert "runtime/b.py:2 -> runtime.c" in _describe(_cycles(graph)[1], graph, root)


def test_the_graph_sees_private_names_and_private_modules(tmp_path):
    root = _tree(tmp_path, {
        "runtime/__init__.py": "",
        "runtime/rules.py": "_LIMIT = 1\ndef _check(): ...\n",
        "runtime/config.py": "def load():\n    from runtime.rules import _check, __doc__\n",
        "runtime/uses.py": "from runtime import rules\nimport runtime.rules as r\nx = rules._LIMIT + r._LIMIT\n",
        "runtime/backends/__init__.py": "",
        "runtime/backends/_http.py": "class Client: ...\n",
        "runtime/backends/comfyui.py": "from runtime.backends import _http\nfrom ._http import Client\n",
        "runtime/backends/sub/deep.py": "from runtime.backends._http import Client\n",
        "runtime/api.py": "from runtime.backends._http import Client\nimport runtime.backends._http\n",
    })
    uses = sorted(use for imp in _import_graph(root).values() for use in imp.private)
    assert uses == ["runtime/api.py:1: imports the private module runtime.backends._http",
                    "runtime/api.py:2: imports the private module runtime.backends._http",
                    "runtime/config.py:2: imports the private name runtime.rules._check",
                    "runtime/uses.py:3: uses the private name runtime.rules._LIMIT",
                    "runtime/uses.py:3: uses the private name runtime.rules._LIMIT"]


def test_the_stack_functions_live_in_one_package_that_never_reaches_the_worker():
    """Dead letters, sweeper, webhook stream and sender, Kafka topics and lag: runtime/functions, whose boto3
    clients come from runtime/aws_clients.py; nothing it imports, directly or not, is the worker agent's."""
    graph = _import_graph()
    functions = {m for m in graph if m.startswith("runtime.functions.")}
    assert {m.rpartition(".")[2] for m in functions} >= {
        "reconciler", "webhook_dispatch", "webhook_events", "webhooks", "kafka_topics", "kafka_lag"}
    seen, todo = set(), sorted(functions)
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(e.imported for e in graph[module].edges if e.imported in graph)
    assert sorted(filter(_in_worker, seen)) == []
    assert "runtime.aws_clients" in seen
    loose = {"runtime.reconciler", "runtime.webhooks", "runtime.webhook_dispatch", "runtime.webhook_events",
             "runtime.queues.kafka_topics"}
    assert loose & set(graph) == set()


def test_no_module_re_exports_another_modules_names():
    """A name is imported from the module that defines it: no ``noqa: F401`` re-export shims (a package's
    ``__init__`` may still name its public interface in ``__all__``)."""
    tops = ("runtime", "components", "policies", "tools", "planner", "fleetdev")
    shims = [f"{p.relative_to(ROOT)}:{i}" for top in tops for p in _python_files(top)
             for i, line in enumerate(p.read_text().splitlines(), 1) if "noqa: F401" in line]
    assert shims == []
