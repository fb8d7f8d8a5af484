"""Helpers shared by the rules: config defaults, tags, provider settings, IAM documents.

The Pulumi CLI applies a policy's ``PolicyConfigSchema`` defaults before it calls the policy; the
SDK alone does not (tests and the offline preview call ``validate`` directly). Every rule therefore
reads its settings through ``settings(args, schema)``, which applies the schema defaults in code, so
a rule behaves the same under the CLI, in tests and in ``tools/preview.py``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from typing import Any

from pulumi_policy import PolicyConfigSchema, PolicyProviderResource

PRODUCTION_PREFIX = "prod"


def settings(args: Any, schema: PolicyConfigSchema) -> dict[str, Any]:
    """The policy's config with the schema's defaults filled in (deep copies: rules may not mutate them)."""
    out = {key: copy.deepcopy(spec["default"]) for key, spec in schema.properties.items() if "default" in spec}
    out.update(args.get_config() or {})
    return out


def _json_or_value(value: Any) -> Any:
    """Provider inputs reach the engine JSON-encoded when they are not strings (``defaultTags``)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def provider_default_tags(provider: PolicyProviderResource | None) -> dict[str, str]:
    """``defaultTags.tags`` of an aws provider, whether given as an object or a JSON string."""
    if provider is None:
        return {}
    default_tags = _json_or_value((provider.props or {}).get("defaultTags"))
    if isinstance(default_tags, list):  # the schema allows a one-element list as well
        default_tags = default_tags[0] if default_tags else {}
    if not isinstance(default_tags, Mapping):
        return {}
    tags = _json_or_value(default_tags.get("tags"))
    return {str(k): str(v) for k, v in tags.items()} if isinstance(tags, Mapping) else {}


def provider_region(provider: PolicyProviderResource | None) -> str | None:
    if provider is None:
        return None
    region = (provider.props or {}).get("region")
    return region if isinstance(region, str) and region else None


def own_tags(props: Mapping[str, Any]) -> dict[str, str]:
    """A resource's own tags: a ``tags`` map, or an Auto Scaling group's ``tags`` list of {key, value}."""
    tags = props.get("tags")
    if isinstance(tags, Mapping):
        return {str(k): str(v) for k, v in tags.items() if v is not None}
    if isinstance(tags, list):
        return {str(t["key"]): str(t.get("value", "")) for t in tags if isinstance(t, Mapping) and "key" in t}
    return {}


def effective_tags(props: Mapping[str, Any], provider: PolicyProviderResource | None) -> dict[str, str]:
    """Tags the resource ends up with: provider default tags, overridden by its own tags (AWS semantics)."""
    return {**provider_default_tags(provider), **own_tags(props)}


def environment_of(props: Mapping[str, Any], provider: PolicyProviderResource | None,
                   config: Mapping[str, Any]) -> str:
    """The stack's environment: the Environment tag (own or provider default), else the policy config."""
    env = effective_tags(props, provider).get("Environment") or config.get("environment") or ""
    return str(env)


def is_production(environment: str) -> bool:
    return environment.startswith(PRODUCTION_PREFIX)


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def as_bool(value: Any) -> bool:
    """Booleans may arrive as strings (launch template ``ebs.encrypted`` is a string input)."""
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


def policy_statements(document: Any) -> Iterator[dict[str, Any]]:
    """Statements of an IAM policy given as a JSON string or an object; nothing for anything else."""
    doc = _json_or_value(document)
    if not isinstance(doc, Mapping):
        return
    for statement in as_list(doc.get("Statement")):
        if isinstance(statement, Mapping):
            yield dict(statement)
