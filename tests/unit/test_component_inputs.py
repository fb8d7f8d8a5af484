"""Components take the slices of the stack config they read, never the whole ``FleetConfig``.

A setting can then be followed from the stack file to the resources: ``__main__.py`` names the slice each
component gets, and each args field says which ``FleetConfig`` field it is.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil

import pulumi
import pytest

import components
from components import config as fleet_config

MODULES = sorted(m.name for m in pkgutil.iter_modules(components.__path__))
# A pre-flight check over the whole account and config, not a component (it declares no resource).
WHOLE_CONFIG_ALLOWED = {"config", "config_rules", "config_settings", "prerequisites"}


def _args_classes():
    for name in MODULES:
        module = importlib.import_module(f"components.{name}")
        for obj in vars(module).values():
            if (isinstance(obj, type) and obj.__module__ == module.__name__ and obj.__name__.endswith("Args")
                    and dataclasses.is_dataclass(obj)):
                yield obj


def _component_classes():
    for name in MODULES:
        module = importlib.import_module(f"components.{name}")
        for obj in vars(module).values():
            if (isinstance(obj, type) and issubclass(obj, pulumi.ComponentResource)
                    and obj.__module__ == module.__name__):
                yield obj


def test_every_component_has_an_args_class():
    args = {cls.__name__ for cls in _args_classes()}
    comps = {cls.__name__ for cls in _component_classes()}
    assert len(comps) >= 9
    assert {f"{c}Args" for c in comps} <= args


@pytest.mark.parametrize("cls", list(_args_classes()), ids=lambda c: c.__name__)
def test_no_args_field_holds_the_whole_config(cls):
    for field in dataclasses.fields(cls):
        annotation = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", repr(field.type))
        assert "FleetConfig" not in annotation, f"{cls.__name__}.{field.name}: take a slice, not FleetConfig"
        assert field.name != "config", f"{cls.__name__}.{field.name}: name the slice (stack, cluster, api, ...)"


@pytest.mark.parametrize("name", [m for m in MODULES if m not in WHOLE_CONFIG_ALLOWED])
def test_components_do_not_import_the_whole_config_type(name):
    module = importlib.import_module(f"components.{name}")
    assert getattr(module, "FleetConfig", None) is not fleet_config.FleetConfig, (
        f"components/{name}.py imports FleetConfig: take the slices it needs (StackIdentity, ClusterSettings, ...)")


def test_the_identity_slice_carries_names_and_production_safety():
    dev = fleet_config.load({"owner": "o", "costCenter": "c"}, stack="dev")
    prod = fleet_config.load({"owner": "o", "costCenter": "c", "environment": "prod"}, stack="prod")
    assert dev.identity == fleet_config.StackIdentity(stack="dev", region="us-east-1", environment="dev")
    assert (dev.identity.resource_prefix(), dev.identity.is_production) == ("genai-dev", False)
    assert (prod.identity.resource_prefix(), prod.identity.is_production) == ("genai-prod", True)
    assert dev.resource_prefix() == dev.identity.resource_prefix()
