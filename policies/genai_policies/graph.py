"""Finding resources that refer to each other in a stack policy's view of the program.

AWS rules that span resources (an event source and its queue, a function and its security groups, a
group and its hooks) need to know which resource an input points at. The engine hands stack policies
each resource's ``property_dependencies`` (present in a real ``pulumi preview`` even while ids are
unknown); where a dependency is missing, an input is compared by value with the other resource's
identities (id, arn, name, url, invoke ARN). Unknown values read as ``None``: a rule skips what it
cannot see rather than guessing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from pulumi_policy import PolicyResource
from pulumi_policy.proxy import UnknownValueError

IDENTITY_KEYS = ("id", "arn", "name", "url", "invokeArn", "bucket")


def get(props: Any, key: str) -> Any:
    """``props[key]``, or None when it is absent or not known yet (a preview's computed value)."""
    try:
        return props.get(key) if isinstance(props, Mapping) or hasattr(props, "get") else None
    except UnknownValueError:
        return None


def of_type(resources: Iterable[PolicyResource], *types: str) -> list[PolicyResource]:
    wanted = set(types)
    return [r for r in resources if r.resource_type in wanted]


def strings(value: Any) -> Iterator[str]:
    """Every string inside a value (nested lists and maps), JSON documents included."""
    if isinstance(value, str):
        yield value
        if value[:1] in "[{":
            try:
                yield from strings(json.loads(value))
            except ValueError:
                return
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from strings(v)


def identities(resource: PolicyResource) -> set[str]:
    out = {get(resource.props, k) for k in IDENTITY_KEYS}
    return {i for i in out if isinstance(i, str) and i}


def refers(resource: PolicyResource, key: str, target: PolicyResource) -> bool:
    """Whether ``resource``'s input ``key`` points at ``target`` (dependency first, then by value)."""
    deps = resource.property_dependencies.get(key) or []
    if any(d.urn == target.urn for d in deps):
        return True
    ids = identities(target)
    return bool(ids) and any(s in ids for s in strings(get(resource.props, key)))


def referenced(resource: PolicyResource, key: str, candidates: Iterable[PolicyResource]) -> list[PolicyResource]:
    return [c for c in candidates if c.urn != resource.urn and refers(resource, key, c)]


def number(value: Any, default: float | None = None) -> float | None:
    """An int/float input (strings of digits as well); ``default`` when unset, None when unknown."""
    if value is None:
        return default
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def seconds(value: float) -> str:
    return f"{value:g} s"
