#!/usr/bin/env python3
"""Offline ``pulumi preview --policy-pack policies/``: the program under mocks, every policy, the cost.

    python tools/preview.py --stack dev [--set maxSize=500 ...] [--policy-config FILE]
    python tools/preview.py --stack prod --emit-policy-config policy-config.json

Runs ``__main__.py`` with ``Pulumi.<stack>.yaml`` (plus ``--set`` overrides) under the recording mocks
of ``fleetdev/pulumi_mocks.py``, turns every recorded resource into the arguments the Pulumi engine
would hand the policy pack (``ResourceValidationArgs`` with the resource's inputs and its aws
provider; ``PolicyResource`` for the stack policies, with parents and property dependencies
rebuilt from the recorded values), runs every policy of ``policies/genai_policies`` and prints:

1. the resource tree (component -> children),
2. the policy table (rule, level, resource, message),
3. the monthly cost estimate at minimum and maximum capacity against the budget.

Policy config comes from the stack's own settings (``monthlyBudgetUsd``, ``amiFlavor``, region,
environment, ``maxJobSeconds``; with Kafka, the partitions the topic creator makes) and from what the
runtime enforces (input URL schemes and ports, the job message size), as ``--emit-policy-config`` writes it
for the real CLI, then from ``--policy-config``
(the CLI's format: ``{"policy-name": {"key": value, "enforcementLevel": "advisory"}}``).

Exit status: 0 clean (advisory findings allowed), 1 on any mandatory violation, 2 when the program
or its configuration fails (the program's own message is printed).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from inspect import isawaitable
from pathlib import Path
from typing import Any

import yaml
from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from components import config as fleet_config
from components.config_settings import NAMESPACE
from components.request_queue import kafka_topic_specs
from components.scaling_plan import DRAIN_MARGIN_SECONDS
from fleetdev.pulumi_mocks import (
    MockAccount,
    ProgramError,
    RecordedResource,
    Recording,
    run_stack,
    stack_config,
)
from genai_policies import POLICIES
from genai_policies.cost import BUDGET_SCHEMA
from genai_policies.estimate import Estimate, estimate
from runtime.instance_contract import INPUT_URL_PORTS, INPUT_URL_SCHEMES
from runtime.queues.base import SQS_MAX_MESSAGE_BYTES

ROOT = Path(__file__).resolve().parent.parent

PACK_ENFORCEMENT = EnforcementLevel.MANDATORY  # policies/__main__.py builds the pack with this level
IDENTITY_OUTPUTS = ("id", "arn", "bucket")  # outputs other resources refer to (rebuilds dependencies)


@dataclass(frozen=True)
class Violation:
    policy: str
    level: EnforcementLevel
    resource: str  # "type name", or "(stack)"
    message: str
    urn: str | None = None


@dataclass
class PreviewResult:
    recording: Recording
    violations: list[Violation] = field(default_factory=list)
    estimate: Estimate | None = None
    budget_usd: float | None = None

    @property
    def mandatory(self) -> list[Violation]:
        return [v for v in self.violations if v.level == EnforcementLevel.MANDATORY]

    def by_policy(self, name: str) -> list[Violation]:
        return [v for v in self.violations if v.policy == name]


# --- policy config -------------------------------------------------------------------------------
def stack_policy_config(stack: str, overrides: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Policy config derived from the stack's settings (what ``--emit-policy-config`` writes)."""
    flat, region = stack_config(stack, dict(overrides or {}))
    prefix = f"{NAMESPACE}:"
    values = {k[len(prefix):]: v for k, v in flat.items() if k.startswith(prefix)}
    cfg = fleet_config.load(values, stack, region)
    budget: dict[str, Any] = {"monthlyBudgetUsd": cfg.monthly_budget_usd, "region": cfg.region}
    if cfg.queue.kind == "kafka":  # the partitions the deploy-time topic creator makes (MSK bills each one)
        budget["mskPartitions"] = sum(t["partitions"] for t in kafka_topic_specs(cfg.cluster.max_size))
    return {
        "monthly-cost-budget": budget,
        "allowed-instance-types": {"flavor": cfg.cluster.flavor},
        "max-group-size": {"environment": cfg.environment},
        "spot-share-non-production": {"environment": cfg.environment},
        # What the runtime enforces, for the AWS rules that compare it with the declared resources.
        "lifecycle-hook-timeouts": {"maxJobSeconds": cfg.queue.max_job_seconds,
                                    "longestJobSeconds": cfg.queue.longest_job_seconds,
                                    "drainMarginSeconds": DRAIN_MARGIN_SECONDS},
        "input-urls-within-egress": {"inputUrlSchemes": list(INPUT_URL_SCHEMES),
                                     "inputUrlPorts": list(INPUT_URL_PORTS)},
        "sqs-message-size": {"jobMessageBytes": SQS_MAX_MESSAGE_BYTES},
        "production-data-protected": {"environment": cfg.environment},
        # issue 43: public outputs in production need the stack's reason
        "signed-outputs-in-production": {"environment": cfg.environment,
                                         "outputPublicReason": cfg.outputs.public_reason or ""},
    }


def merge_policy_config(*configs: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for config in configs:
        for name, value in (config or {}).items():
            if isinstance(value, str):  # "advisory" etc., as the CLI accepts
                value = {"enforcementLevel": value}
            out.setdefault(name, {}).update(value)
    return out


def _level(policy: Policy, config: Mapping[str, Any]) -> EnforcementLevel:
    if "enforcementLevel" in config:
        return EnforcementLevel(config["enforcementLevel"])
    return policy.enforcement_level or PACK_ENFORCEMENT


# --- recording -> policy arguments ---------------------------------------------------------------
def _package(type_token: str) -> str:
    return type_token.split(":", 1)[0]


def _providers(recording: Recording) -> dict[str, list[RecordedResource]]:
    out: dict[str, list[RecordedResource]] = {}
    for r in recording.resources:
        if r.type.startswith("pulumi:providers:"):
            out.setdefault(r.type.split(":")[-1], []).append(r)
    return out


def provider_for(resource: RecordedResource, providers: Mapping[str, list[RecordedResource]],
                 by_urn: Mapping[str, RecordedResource]) -> PolicyProviderResource | None:
    """The provider a resource uses: its recorded provider reference, else its package's only explicit provider."""
    if resource.type.startswith("pulumi:") or not resource.custom:
        return None
    ref = getattr(resource, "provider", None)
    chosen = by_urn.get(ref.rsplit("::", 1)[0]) if isinstance(ref, str) and ref else None  # ref = "<urn>::<id>"
    if chosen is None and isinstance(ref, str) and ref:
        # A provider the program did not declare: Pulumi's default provider, which carries no default tags.
        urn = ref.rsplit("::", 1)[0]
        return PolicyProviderResource(urn.split("::")[-2].split("$")[-1], {}, urn, urn.rsplit("::", 1)[-1])
    if chosen is None:
        candidates = providers.get(_package(resource.type), [])
        chosen = candidates[0] if len(candidates) == 1 else None
    if chosen is None:
        return None
    return PolicyProviderResource(chosen.type, dict(chosen.inputs), chosen.urn, chosen.name)


def _options(resource: RecordedResource) -> PolicyResourceOptions:
    """The options the engine would pass: the recorded ``protect`` (CrossGuard has no ``retainOnDelete``)."""
    return PolicyResourceOptions(protect=resource.protect, ignore_changes=[], delete_before_replace=None, aliases=[],
                                 custom_timeouts=PolicyCustomTimeouts(0, 0, 0), additional_secret_outputs=[],
                                 parent=resource.parent)


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def stack_resources(recording: Recording) -> list[PolicyResource]:
    """``PolicyResource`` per recorded resource: outputs as props, parent, rebuilt property dependencies."""
    providers = _providers(recording)
    by_urn = {r.urn: r for r in recording.resources}
    out: dict[str, PolicyResource] = {}
    owners: dict[str, list[str]] = {}
    for r in recording.resources:
        props = {**r.inputs, **r.outputs}
        out[r.urn] = PolicyResource(r.type, props, r.urn, r.name, _options(r), provider_for(r, providers, by_urn),
                                    None, [], {})
        for key in IDENTITY_OUTPUTS:
            value = r.outputs.get(key)
            if isinstance(value, str) and value:
                owners.setdefault(value, []).append(r.urn)
    for r in recording.resources:
        res = out[r.urn]
        if r.parent in out:
            res.parent = out[r.parent]
        for key, value in r.inputs.items():
            deps = [out[u] for s in _strings(value) for u in owners.get(s, []) if u != r.urn]
            if deps:
                res.property_dependencies[key] = list({d.urn: d for d in deps}.values())
                res.dependencies.extend(d for d in deps if d not in res.dependencies)
    return list(out.values())


def _describe(resource: PolicyResource | RecordedResource | None) -> str:
    if resource is None:
        return "(stack)"
    kind = getattr(resource, "resource_type", None) or resource.type
    return f"{kind} {resource.name}"


def evaluate(recording: Recording, policy_config: Mapping[str, Mapping[str, Any]] | None = None,
             policies: Iterable[Policy] = POLICIES) -> PreviewResult:
    """Run every policy over the recording as the engine would; collect violations and the estimate."""
    policy_config = policy_config or {}
    result = PreviewResult(recording=recording)
    resources = stack_resources(recording)
    by_urn = {r.urn: r for r in resources}
    for policy in policies:
        config = dict(policy_config.get(policy.name, {}))
        level = _level(policy, config)
        config.pop("enforcementLevel", None)
        if level == EnforcementLevel.DISABLED:
            continue
        if level == EnforcementLevel.REMEDIATE:
            level = EnforcementLevel.MANDATORY
        if isinstance(policy, ResourceValidationPolicy):
            for r, rec in zip(resources, recording.resources, strict=True):
                args = ResourceValidationArgs(r.resource_type, dict(rec.inputs), r.urn, r.name, r.opts, r.provider,
                                              config)
                _run(policy, args, level, lambda urn, r=r: r, result)
        elif isinstance(policy, StackValidationPolicy):
            _run(policy, StackValidationArgs(resources, config), level, by_urn.get, result)
    budget_cfg = {**{k: v["default"] for k, v in BUDGET_SCHEMA.properties.items() if "default" in v},
                  **policy_config.get("monthly-cost-budget", {})}
    result.estimate = estimate(resources, budget_cfg)
    budget = budget_cfg.get("monthlyBudgetUsd")
    result.budget_usd = float(budget) if budget is not None else None
    return result


def _run(policy: Policy, args: Any, level: EnforcementLevel, locate: Any, result: PreviewResult) -> None:
    def report(message: str, urn: str | None = None) -> None:
        target = locate(urn) if urn or isinstance(args, ResourceValidationArgs) else None
        result.violations.append(Violation(policy.name, level, _describe(target), message,
                                           getattr(target, "urn", None)))

    try:
        outcome = policy.validate(args, report)
        if isawaitable(outcome):
            import asyncio

            asyncio.run(outcome)  # type: ignore[arg-type]
    except Exception as exc:  # noqa: BLE001 - a crashing rule is a finding, never a silent pass
        if type(exc).__name__ == "_NotApplicableError":
            return
        target = args if isinstance(args, ResourceValidationArgs) else None
        result.violations.append(Violation(policy.name, EnforcementLevel.MANDATORY, _describe(target),
                                           f"policy raised {type(exc).__name__}: {exc}"))


# --- output --------------------------------------------------------------------------------------
def render_tree(recording: Recording) -> list[str]:
    children: dict[str | None, list[RecordedResource]] = {}
    for r in recording.resources:
        children.setdefault(r.parent, []).append(r)
    lines: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for r in children.get(parent, []):
            marker = "" if r.custom else " (component)"
            lines.append(f"{'  ' * depth}{r.type} {r.name}{marker}")
            walk(r.urn, depth + 1)

    walk(None, 1)
    return lines


def render_table(rows: list[tuple[str, ...]], header: tuple[str, ...], widths: tuple[int, ...]) -> list[str]:
    def fmt(row: tuple[str, ...]) -> str:
        cells = [c if w == 0 else c.ljust(w)[: max(w, len(c))] for c, w in zip(row, widths, strict=True)]
        return "  ".join(cells).rstrip()

    return [fmt(header), fmt(tuple("-" * max(len(h), w) for h, w in zip(header, widths, strict=True))),
            *(fmt(r) for r in rows)]


def render(stack: str, result: PreviewResult) -> str:
    out = [f"Previewing stack {stack} (offline: program under mocks, policy pack policies/)", "",
           f"Resources ({len(result.recording.resources)}):", "  pulumi:pulumi:Stack genai-fleet-" + stack,
           *render_tree(result.recording), "", "Policies:"]
    if result.violations:
        rows = [(v.policy, v.level.value, v.resource, v.message) for v in result.violations]
        width = max(len(r[2]) for r in rows)
        out += ["  " + line for line in render_table(rows, ("rule", "level", "resource", "message"),
                                                       (26, 9, min(width, 60), 0))]
    else:
        out.append(f"  no violations ({len(POLICIES)} policies)")
    est = result.estimate or Estimate()
    out += ["", "Monthly cost estimate (USD, 730 h; policies/prices.json):"]
    rows = [(i.item, f"{i.min_usd:,.2f}", f"{i.max_usd:,.2f}", i.note) for i in est.items]
    rows.append(("total", f"{est.min_usd:,.2f}", f"{est.max_usd:,.2f}",
                 f"budget {result.budget_usd:,.2f}" if result.budget_usd is not None else ""))
    out += ["  " + line for line in render_table(rows, ("item", "min capacity", "max capacity", "basis"),
                                                   (40, 13, 13, 0))]
    for message, _ in est.unpriced:
        out.append(f"  not priced: {message}")
    mandatory = len(result.mandatory)
    out += ["", f"{mandatory} mandatory, {len(result.violations) - mandatory} advisory violation(s)"]
    return "\n".join(out)


def parse_sets(items: Iterable[str]) -> dict[str, Any]:
    """``key=value`` pairs; values are YAML (numbers, booleans, ``[a, b]`` lists), like the stack file."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"--set expects key=value, got {item!r}")
        out[key.strip()] = yaml.safe_load(value) if value.strip() else None
    return out


def preview(stack: str, overrides: Mapping[str, Any] | None = None,
            policy_config: Mapping[str, Any] | None = None, account: MockAccount | None = None) -> PreviewResult:
    """Run the program for the stack and evaluate the pack. Raises ``ProgramError`` on program/config errors.

    ``account`` is what the mocked AWS account holds (default: prepared, every prerequisite present).
    """
    recording = run_stack(stack, dict(overrides or {}), account)
    config = merge_policy_config(stack_policy_config(stack, overrides), policy_config)
    return evaluate(recording, config)


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True, help="stack name: reads Pulumi.<stack>.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a genai-fleet setting (repeatable), e.g. --set maxSize=10")
    parser.add_argument("--policy-config", type=Path, help="policy config JSON (the CLI's --policy-pack-config)")
    parser.add_argument("--emit-policy-config", type=Path, metavar="FILE",
                        help="write the policy config derived from the stack's settings to FILE and exit")
    args = parser.parse_args(list(argv) if argv is not None else None)
    overrides = parse_sets(args.set)
    try:
        if args.emit_policy_config:
            config = stack_policy_config(args.stack, overrides)
            args.emit_policy_config.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
            print(f"wrote {args.emit_policy_config}")
            return 0
        extra = json.loads(args.policy_config.read_text()) if args.policy_config else None
        result = preview(args.stack, overrides, extra)
    except (ProgramError, fleet_config.ConfigError) as exc:
        print(f"error: the program failed for stack {args.stack}:\n{exc}", file=sys.stderr)
        return 2
    except (OSError, json.JSONDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(render(args.stack, result))
    return 1 if result.mandatory else 0


if __name__ == "__main__":
    sys.exit(main())
