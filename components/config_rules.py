"""Validation of raw stack settings: type coercion against ``SETTINGS`` and the cross-setting rules.

Each problem is one message naming the key, the value given and what is allowed; ``components.config.load``
reads the values (``read_values``), runs every rule of ``RULES`` and collects all problems before raising
one ``ConfigError``. ``allowed_values`` says what a setting accepts (also in the README's reference).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from components.config_settings import (
    FLAVOR_BACKENDS,
    FLAVOR_FAMILIES,
    INSTANCE_TYPE_PATTERN,
    NAMESPACE,
    REMOVED,
    REPLACED,
    SETTINGS,
    SETTINGS_BY_KEY,
    SIGNING_KEY_NAME,
    Setting,
)
from runtime.jobs.time_limits import parse_task_limits
from runtime.model_ids import MODEL_ID


def allowed_values(setting: Setting) -> str:
    """What a setting accepts, in words (error messages and the README's configuration reference)."""
    if setting.choices is not None:
        return "one of " + ", ".join(str(c) for c in setting.choices)
    if setting.pattern is not None:
        return setting.pattern_help
    if setting.kind in ("int", "float"):
        lo = "" if setting.minimum is None else f"{setting.minimum:g}"
        hi = "" if setting.maximum is None else f"{setting.maximum:g}"
        return f"{'an integer' if setting.kind == 'int' else 'a number'} from {lo} to {hi}"
    if setting.kind == "bool":
        return "true or false"
    if setting.kind == "map":
        return 'an object of group name -> list of model ids, e.g. {"sdxl": ["sdxl-base", "sdxl-turbo"]}'
    if setting.kind == "seconds":
        return 'an object of task -> seconds (10-3600), e.g. {"txt2video": 1800}'
    return "a list"


def _bad(setting: Setting, value: Any, rule: str | None = None) -> str:
    shown = value if isinstance(value, str) and value and value.strip() == value else json.dumps(value)
    return f"{setting.full_key} = {shown}: must be {rule or allowed_values(setting)}"


def _parse_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError
    return value.strip()


def _parse_int(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError
    return int(value.strip()) if isinstance(value, str) else int(value)


def _parse_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError
    return float(value)


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text not in ("true", "false"):
        raise ValueError
    return text == "true"


def _parse_list(value: Any) -> tuple[str, ...]:
    parsed = json.loads(value) if isinstance(value, str) else value
    if not isinstance(parsed, list | tuple) or not all(isinstance(v, str) for v in parsed):
        raise ValueError
    return tuple(v.strip() for v in parsed)


def _parse_map(value: Any) -> dict[str, tuple[str, ...]]:
    parsed = json.loads(value) if isinstance(value, str) else value
    if not isinstance(parsed, Mapping) or not all(isinstance(k, str) for k in parsed):
        raise ValueError
    return {k: _parse_list(v) for k, v in parsed.items()}


def _parse_seconds(value: Any) -> dict[str, Any]:
    """task -> seconds; the names and the numbers are checked by ``_check_task_limits``."""
    parsed = json.loads(value) if isinstance(value, str) else value
    if not isinstance(parsed, Mapping) or not all(isinstance(k, str) for k in parsed):
        raise ValueError
    return dict(parsed)


_PARSERS: dict[str, Callable[[Any], Any]] = {"str": _parse_str, "int": _parse_int, "float": _parse_float,
                                             "bool": _parse_bool, "list": _parse_list, "map": _parse_map,
                                             "seconds": _parse_seconds}


def _coerce(setting: Setting, value: Any, problems: list[str]) -> Any:
    """Turn a raw config value (Pulumi gives strings; structured values as JSON) into its type."""
    try:
        out = _PARSERS[setting.kind](value)
    except (ValueError, TypeError):  # JSONDecodeError is a ValueError
        expected = {"list": "a list of strings, e.g. [\"a\", \"b\"]"}.get(setting.kind, allowed_values(setting))
        problems.append(_bad(setting, value, expected))
        return None
    out_of_range = (setting.minimum is not None and out < setting.minimum) or (
        setting.maximum is not None and out > setting.maximum)
    if ((setting.choices is not None and out not in setting.choices) or out_of_range
            or (setting.pattern is not None and not setting.pattern.match(out))):
        problems.append(_bad(setting, value))
        return None
    return out


def read_values(values: Mapping[str, Any], problems: list[str]) -> dict[str, Any]:
    """Every setting's typed value (its default when unset, None when invalid); problems appended."""
    unknown = sorted(k for k in values if k not in SETTINGS_BY_KEY)
    for key in unknown:
        if key in REPLACED:
            problems.append(f"{NAMESPACE}:{key} is no longer a setting; use {NAMESPACE}:{REPLACED[key]}")
            continue
        if key in REMOVED:
            problems.append(f"{NAMESPACE}:{key} is no longer a setting: {REMOVED[key]}")
            continue
        close = [s.key for s in SETTINGS if s.key.lower() == key.lower()]
        hint = f"did you mean {NAMESPACE}:{close[0]}?" if close else "see the configuration reference in README.md"
        problems.append(f"{NAMESPACE}:{key} is not a known setting; {hint}")
    out: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = values.get(setting.key)
        if raw is None or (isinstance(raw, str) and raw.strip() == "" and setting.kind != "str"):
            out[setting.key] = setting.default if not isinstance(setting.default, list) else tuple(setting.default)
        else:
            out[setting.key] = _coerce(setting, raw, problems)
    return out


Rule = Callable[[dict[str, Any]], list[str]]  # the settings read so far -> one message per problem


def _check_instance_types(v: dict[str, Any]) -> list[str]:
    flavor = v["amiFlavor"]
    if flavor is None or v["instanceTypes"] is None:
        return []
    problems = []
    families = FLAVOR_FAMILIES[flavor]
    if not v["instanceTypes"]:
        problems.append(f"{NAMESPACE}:instanceTypes = []: must list at least one instance type")
    for itype in v["instanceTypes"]:
        m = INSTANCE_TYPE_PATTERN.match(itype)
        if not m or m.group(1) not in families:
            problems.append(f"{NAMESPACE}:instanceTypes contains {itype!r}, which does not fit amiFlavor "
                            f"{flavor!r}: use types of the families {', '.join(families)}")
    if len(set(v["instanceTypes"])) != len(v["instanceTypes"]):
        problems.append(f"{NAMESPACE}:instanceTypes lists a type twice: list each type once")
    return problems


def _check_backends(v: dict[str, Any]) -> list[str]:
    flavor = v["amiFlavor"]
    if flavor is None or v["backend"] is None:
        return []
    allowed = FLAVOR_BACKENDS[flavor]
    if v["backend"] not in allowed:
        return [f"{NAMESPACE}:backend = {v['backend']!r}: amiFlavor {flavor!r} cannot run it; "
                f"use one of {', '.join(allowed)}"]
    return []


def _check_sizes(v: dict[str, Any]) -> list[str]:
    problems = []
    lo, hi, base, warm = v["minSize"], v["maxSize"], v["onDemandBase"], v["warmPoolSize"]
    if lo is not None and hi is not None and hi < lo:
        problems.append(f"{NAMESPACE}:maxSize = {hi} is below {NAMESPACE}:minSize = {lo}: set maxSize >= minSize")
    if base is not None and hi is not None and base > hi:
        problems.append(f"{NAMESPACE}:onDemandBase = {base} is above {NAMESPACE}:maxSize = {hi}: "
                        f"set onDemandBase <= maxSize")
    if warm and base == 0:
        problems.append(f"{NAMESPACE}:warmPoolSize = {warm} needs an on-demand base group: set onDemandBase >= 1 "
                        f"(AWS does not allow warm pools on spot or mixed-instances groups) or warmPoolSize = 0")
    return problems


def _check_job_times(v: dict[str, Any]) -> list[str]:
    avg, longest, wait = v["averageJobSeconds"], v["maxJobSeconds"], v["acceptableWaitSeconds"]
    problems = []
    if avg is not None and longest is not None and avg > longest:
        problems.append(f"{NAMESPACE}:averageJobSeconds = {avg:g} is above {NAMESPACE}:maxJobSeconds = {longest}: "
                        f"set averageJobSeconds <= maxJobSeconds")
    if avg is not None and wait is not None and wait < avg:
        problems.append(f"{NAMESPACE}:acceptableWaitSeconds = {wait:g} is below {NAMESPACE}:averageJobSeconds = "
                        f"{avg:g}: a backlog target below one job per instance never scales in; raise it")
    return problems


def _check_task_limits(v: dict[str, Any]) -> list[str]:
    """taskMaxJobSeconds: known tasks, whole seconds within the agent's bounds (runtime.jobs.time_limits)."""
    try:
        parse_task_limits(v["taskMaxJobSeconds"], f"{NAMESPACE}:taskMaxJobSeconds")
    except ValueError as exc:
        return [str(exc)]
    return []


def _check_egress(v: dict[str, Any]) -> list[str]:
    if v["natGateways"] == "none" and v["queueKind"] == "kafka" and not v["existingVpcId"]:
        return [f"{NAMESPACE}:natGateways = none does not work with {NAMESPACE}:queueKind = kafka: the API "
                f"function runs in the VPC to reach MSK and needs a NAT gateway for SSM; set natGateways: single"]
    return []


_GROUP_NAME = re.compile(r"^[a-z][a-z0-9-]{0,23}$")
MAX_MODEL_GROUPS = 6  # main queue + groups + 2 InService metrics + the expression: a metric-math alarm takes 10


def _check_model_groups(v: dict[str, Any]) -> list[str]:
    """modelGroups: valid queue-name suffixes, valid model ids, each model in one group at most."""
    key, groups, problems, seen = f"{NAMESPACE}:modelGroups", v["modelGroups"] or {}, [], {}
    if len(groups) > MAX_MODEL_GROUPS:
        problems.append(f"{key} has {len(groups)} groups: at most {MAX_MODEL_GROUPS} (each is a queue every worker "
                        f"polls and a metric the scaling policy and alarms sum; metric math takes 10 metrics)")
    for name, models in groups.items():
        if not _GROUP_NAME.match(name) or name == "default":
            problems.append(f"{key} group {name!r}: names are 1-24 lowercase letters, digits and '-', starting "
                            f"with a letter, and not 'default' (the main queue's group)")
        if not models:
            problems.append(f"{key} group {name!r} lists no models: list at least one model id")
        for model in models:
            if not MODEL_ID.match(model):
                problems.append(f"{key} group {name!r} contains {model!r}: model ids are lowercase 'name' or "
                                f"'family/name' of letters, digits, '.', '_' and '-'")
            elif model in seen:
                problems.append(f"{key}: model {model!r} is in groups {seen[model]!r} and {name!r}: put it in one")
            seen.setdefault(model, name)
    if groups and v["queueKind"] == "kafka":
        problems.append(f"{key} is set with {NAMESPACE}:queueKind = kafka: the stack makes a queue per group for "
                        f"sqs only so far (the Kafka design, a topic per group, is in docs/fleet.md); use "
                        f"queueKind sqs or remove modelGroups")
    return problems


def _check_misc(v: dict[str, Any]) -> list[str]:
    problems = []
    for model in v["hotModels"] or ():
        if not MODEL_ID.match(model):
            problems.append(f"{NAMESPACE}:hotModels contains {model!r}: model ids are lowercase 'name' or "
                            f"'family/name' of letters, digits, '.', '_' and '-'")
    if v["apiBurstLimit"] is not None and v["apiRateLimit"] is not None and v["apiBurstLimit"] < v["apiRateLimit"]:
        problems.append(f"{NAMESPACE}:apiBurstLimit = {v['apiBurstLimit']} is below {NAMESPACE}:apiRateLimit = "
                        f"{v['apiRateLimit']}: set apiBurstLimit >= apiRateLimit")
    if v["existingVpcId"] and len(v["existingPrivateSubnetIds"] or ()) < 2:
        problems.append(f"{NAMESPACE}:existingVpcId is set but {NAMESPACE}:existingPrivateSubnetIds lists "
                        f"{len(v['existingPrivateSubnetIds'] or ())} subnets: list at least two, in different AZs")
    if v["existingPrivateSubnetIds"] and not v["existingVpcId"]:
        problems.append(f"{NAMESPACE}:existingPrivateSubnetIds is set without {NAMESPACE}:existingVpcId: "
                        f"set both or neither")
    for subnet in v["existingPrivateSubnetIds"] or ():
        if not re.match(r"^subnet-[0-9a-f]{8,17}$", subnet):
            problems.append(f"{NAMESPACE}:existingPrivateSubnetIds contains {subnet!r}: must be subnet ids "
                            f"like subnet-0123456789abcdef0")
    if v["alarmEmail"] and v["alarmsEnabled"] is False:
        problems.append(f"{NAMESPACE}:alarmEmail is set but {NAMESPACE}:alarmsEnabled is false: "
                        f"set alarmsEnabled: true or remove alarmEmail")
    for key in ("owner", "costCenter"):
        if v[key] is None and key not in v.get("_invalid", ()):
            problems.append(f"{NAMESPACE}:{key} is not set: it is required for the {key[0].upper() + key[1:]} "
                            f"tag; run `pulumi config set {key} <value>`")
    return problems


def _check_output_access(v: dict[str, Any]) -> list[str]:
    """Issue 43: the signing keys of the outputs' key group, and the one signing now."""
    keys = tuple(v.get("outputSigningKeys") or ())
    problems = [f"{NAMESPACE}:outputSigningKeys contains {k!r}: key names are 1-32 lowercase letters, digits "
                f"and '-'" for k in keys if not SIGNING_KEY_NAME.match(k)]
    if not 1 <= len(keys) <= 2 or len(set(keys)) != len(keys):
        problems.append(f"{NAMESPACE}:outputSigningKeys = {list(keys)}: list one key name, or two different ones "
                        f"during a rotation (genai-stack rotate-signing-key)")
    active = v.get("outputSigningKey")
    if active is not None and active not in keys:
        problems.append(f"{NAMESPACE}:outputSigningKey = {active!r} is not in outputSigningKeys {list(keys)}: "
                        f"sign with a key of the key group")
    return problems


# The cross-setting rules, in message order.
RULES: tuple[Rule, ...] = (_check_instance_types, _check_backends, _check_sizes, _check_job_times, _check_misc,
                           _check_egress, _check_model_groups, _check_task_limits,
                           _check_output_access)  # issue 43
