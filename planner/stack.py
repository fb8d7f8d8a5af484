"""Read a stack's settings the way the program does: ``Pulumi.<stack>.yaml`` through ``components.config``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from components import config as fleet_config
from components.config_settings import NAMESPACE

ROOT = Path(__file__).resolve().parent.parent


class StackError(ValueError):
    """The stack file is missing or an override is malformed."""


def parse_overrides(items: list[str] | None) -> dict[str, str]:
    """``["maxSize=500", "spotShare=0.9"]`` -> ``{"maxSize": "500", ...}`` (strings, as Pulumi passes them)."""
    out: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise StackError(f"--set {item!r}: write KEY=VALUE, e.g. --set maxSize=500")
        out[key.strip().removeprefix(NAMESPACE + ":")] = value.strip()
    return out


def load_stack(stack: str, overrides: Mapping[str, Any] | None = None, root: Path = ROOT) -> fleet_config.FleetConfig:
    """The validated ``FleetConfig`` of ``Pulumi.<stack>.yaml`` plus overrides (raises ``ConfigError``)."""
    path = root / f"Pulumi.{stack}.yaml"
    if not path.exists():
        stacks = sorted(p.name.split(".")[1] for p in root.glob("Pulumi.*.yaml"))
        raise StackError(f"no stack file {path.name}: use one of {', '.join(stacks)}")
    config = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
    prefix = NAMESPACE + ":"
    values = {k[len(prefix):]: v for k, v in config.items() if k.startswith(prefix)}
    values.update(overrides or {})
    return fleet_config.load(values, stack=stack, region=config.get("aws:region"))
