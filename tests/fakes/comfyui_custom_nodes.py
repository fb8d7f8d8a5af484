"""The fake ComfyUI's ``custom_nodes/`` loader, as ComfyUI 0.3.64's nodes.py ``init_external_custom_nodes`` /
``load_custom_node`` do it (read in Comfy-Org/ComfyUI at a125cd84):

- every entry of the folder is a candidate except ``__pycache__``, files that are not ``.py`` and names ending in
  ``.disabled``; a folder is imported through its ``__init__.py``, a file as itself
  (``importlib.util.spec_from_file_location``);
- a module's ``NODE_CLASS_MAPPINGS`` add its classes, except names the core already has (``base_node_names``: a
  pack cannot replace a core node); ``NODE_DISPLAY_NAME_MAPPINGS`` gives display names;
- an exception while importing is logged (the traceback, then ``Cannot import <path> module for custom nodes:
  <error>``) and the pack's nodes are left out; a module without ``NODE_CLASS_MAPPINGS`` (nor a V3
  ``comfy_entrypoint``) is skipped with a warning; both count as failed in the ``Import times for custom nodes:``
  summary, whose failed lines read ``<seconds> seconds (IMPORT FAILED): <path>``.

Not encoded: V3 packs (``comfy_entrypoint`` returning a ``ComfyExtension``) need ComfyUI's ``comfy_api`` package,
which the fake does not carry: such a pack is reported as failed here (the real server would load it).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("comfyui")


@dataclass
class PackLoad:
    path: str  # the module path as ComfyUI logs it
    ok: bool
    error: str = ""
    nodes: list[str] = field(default_factory=list)


@dataclass
class CustomNodes:
    classes: dict[str, type] = field(default_factory=dict)  # class name -> node class
    display_names: dict[str, str] = field(default_factory=dict)
    modules: dict[str, str] = field(default_factory=dict)  # class name -> RELATIVE_PYTHON_MODULE
    packs: list[PackLoad] = field(default_factory=list)

    @property
    def failed(self) -> list[PackLoad]:
        return [p for p in self.packs if not p.ok]


def load_custom_nodes(folder: Path | None, base_node_names: set[str]) -> CustomNodes:
    """Load every pack in ``folder`` (a missing folder loads nothing) and log as ComfyUI does."""
    loaded = CustomNodes()
    if folder is None or not folder.is_dir():
        return loaded
    times = []
    for entry in sorted(os.listdir(os.path.realpath(folder))):
        if entry == "__pycache__":
            continue
        module_path = os.path.join(folder, entry)
        if os.path.isfile(module_path) and os.path.splitext(module_path)[1] != ".py":
            continue
        if module_path.endswith(".disabled"):
            continue
        started = time.perf_counter()
        pack = _load(module_path, base_node_names, loaded)
        loaded.packs.append(pack)
        times.append((time.perf_counter() - started, module_path, pack.ok))
    if times:
        log.info("\nImport times for custom nodes:")
        for seconds, path, ok in sorted(times):
            log.info("{:6.1f} seconds{}: {}".format(seconds, "" if ok else " (IMPORT FAILED)", path))
        log.info("")
    return loaded


def _load(module_path: str, ignore: set[str], loaded: CustomNodes) -> PackLoad:
    name = os.path.splitext(os.path.basename(module_path))[0] if os.path.isfile(module_path) \
        else os.path.basename(module_path)
    if os.path.isfile(module_path):
        sys_name, init = os.path.splitext(module_path)[0], module_path
    else:
        sys_name, init = module_path.replace(".", "_x_"), os.path.join(module_path, "__init__.py")
    try:
        spec = importlib.util.spec_from_file_location(sys_name, init)
        if spec is None or spec.loader is None:
            raise FileNotFoundError(f"No module named {init!r}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[sys_name] = module
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - ComfyUI logs any import failure and goes on
        log.warning(traceback.format_exc())
        log.warning(f"Cannot import {module_path} module for custom nodes: {exc}")
        return PackLoad(module_path, False, str(exc))
    mappings: dict[str, Any] | None = getattr(module, "NODE_CLASS_MAPPINGS", None)
    if mappings is None:
        if hasattr(module, "comfy_entrypoint"):
            message = "V3 comfy_entrypoint packs are not supported by the fake ComfyUI"
        else:
            message = (f"Skip {module_path} module for custom nodes due to the lack of NODE_CLASS_MAPPINGS or "
                       "NODES_LIST (need one).")
        log.warning(message)
        return PackLoad(module_path, False, message)
    nodes = []
    for class_name, node_cls in mappings.items():
        if class_name in ignore:
            continue
        loaded.classes[class_name] = node_cls
        loaded.modules[class_name] = f"custom_nodes.{name}"
        nodes.append(class_name)
    loaded.display_names.update(getattr(module, "NODE_DISPLAY_NAME_MAPPINGS", None) or {})
    return PackLoad(module_path, True, nodes=nodes)


def node_info(class_name: str, node_cls: type, loaded: CustomNodes) -> dict[str, Any]:
    """server.py ``node_info`` for a V1 node class: what /object_info lists for it."""
    inputs = node_cls.INPUT_TYPES()  # type: ignore[attr-defined]
    returns = tuple(getattr(node_cls, "RETURN_TYPES", ()))
    return {
        "input": inputs,
        "input_order": {key: list(value.keys()) for key, value in inputs.items()},
        "output": returns,
        "output_is_list": getattr(node_cls, "OUTPUT_IS_LIST", [False] * len(returns)),
        "output_name": getattr(node_cls, "RETURN_NAMES", returns),
        "name": class_name,
        "display_name": loaded.display_names.get(class_name, class_name),
        "description": getattr(node_cls, "DESCRIPTION", ""),
        "python_module": loaded.modules.get(class_name, "nodes"),
        "category": getattr(node_cls, "CATEGORY", "sd"),
        "output_node": getattr(node_cls, "OUTPUT_NODE", False) is True,
    }
