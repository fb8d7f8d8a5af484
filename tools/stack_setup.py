#!/usr/bin/env python3
"""The account-side steps of README "Deploying to AWS" that are not resources of the stack.

    python tools/stack_setup.py webhook-secret --stack dev            (make webhook-secret STACK=dev)
    python tools/stack_setup.py api-key --stack dev --name alice      (make api-key STACK=dev NAME=alice)
    python tools/stack_setup.py promote-ami --flavor cuda --channel prod [--ami ami-... | --rollback]
                                                                       (make promote-ami FLAVOR=cuda)
    python tools/stack_setup.py prune-amis --flavor cuda [--keep 3] [--dry-run]
    python tools/stack_setup.py cost --stack dev [--since 7d] [--json]   (make cost STACK=dev SINCE=7d)
    python tools/stack_setup.py rotate-signing-key --stack dev       (make rotate-signing-key STACK=dev)

Environment and region come from ``Pulumi.<stack>.yaml`` (the ``environment`` setting, else the stack name).

- ``webhook-secret`` creates ``/genai-fleet/<env>/webhook-secret`` (SecureString, 256 random bits) unless it
  exists; ``--rotate`` replaces it.
- ``api-key`` mints a key (``runtime.api.auth.generate_key``), stores only its sha256 under
  ``/genai-fleet/<env>/api-keys/<key id>`` and prints the key once.
- ``promote-ami`` copies a checked image to ``/genai-fleet/ami/<flavour>/<channel>``: the image at ``latest``
  (what ``make ami`` published after its checks) or ``--ami``, after the same checks (tags, encryption,
  IMDSv2). ``--rollback`` sets the channel back to the image it named before its current one (SSM keeps
  every version). The stack picks the change up at its next ``make up`` (instance refresh).
- ``prune-amis`` deregisters the flavour's images that no channel names (now or as its rollback target)
  beyond the ``--keep`` newest, and deletes their snapshots (``tools/ami_prune.py``).

- ``cost`` prints cost per 1,000 images per model and task and the idle and boot share of instance time, from
  the stack's job table and the workers' overhead metrics (``tools/cost_report.py``).

- ``rotate-signing-key`` runs the next step of creating or rotating the key pair that signs output URLs
  (issue 43; ``tools/signing_keys.py`` says the steps): init, add, switch, remove, ``make up`` after each.

``--endpoint-url`` points the AWS clients elsewhere (tests use moto). Errors exit 1 with what to do.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from pathlib import Path
from typing import Any

from components import config as fleet_config
from components.config_settings import NAMESPACE, ami_parameter_name
from components.naming import api_keys_prefix, webhook_secret_parameter
from tools.ami_build import FLAVORS, check_image
from tools.ami_prune import DEFAULT_KEEP, prune_amis
from tools.packer_output import AmiBuildError
from tools.signing_keys import SigningKeyError, rotate_signing_key

ROOT = Path(__file__).resolve().parent.parent

LATEST = "latest"


class SetupError(RuntimeError):
    """A step cannot be done; the message says what to change."""


def stack_settings(stack: str) -> fleet_config.FleetConfig:
    """The stack's validated config, as the program reads it from ``Pulumi.<stack>.yaml``."""
    import yaml

    path = ROOT / f"Pulumi.{stack}.yaml"
    if not path.exists():
        raise SetupError(f"{path.name} does not exist: create the stack first (`pulumi stack init {stack}`)")
    config = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
    prefix = NAMESPACE + ":"
    values = {k[len(prefix):]: v if isinstance(v, str) else json.dumps(v)
              for k, v in config.items() if k.startswith(prefix)}
    return fleet_config.load(values, stack=stack, region=config.get("aws:region"))


def _missing(exc: Exception) -> bool:
    return getattr(exc, "response", {}).get("Error", {}).get("Code") == "ParameterNotFound"


def ensure_webhook_secret(ssm: Any, cfg: fleet_config.FleetConfig, rotate: bool = False) -> dict[str, Any]:
    name = webhook_secret_parameter(cfg.identity)
    try:
        ssm.get_parameter(Name=name, WithDecryption=False)
        exists = True
    except ssm.exceptions.ParameterNotFound:
        exists = False
    if exists and not rotate:
        return {"parameter": name, "created": False, "note": "exists; pass --rotate to replace it"}
    ssm.put_parameter(Name=name, Value=secrets.token_hex(32), Type="SecureString", Overwrite=exists,
                      Description=f"genai-fleet {cfg.environment}: webhook signing secret")
    return {"parameter": name, "created": not exists, "rotated": exists}


def mint_api_key(ssm: Any, cfg: fleet_config.FleetConfig, name: str,
                 quota_per_day: int | None = None) -> dict[str, Any]:
    from runtime.api.auth import SsmKeyStore, generate_key

    if not name.strip():
        raise SetupError("an API key needs a name saying who holds it: pass --name (make api-key NAME=alice)")
    key, record = generate_key(name.strip(), quota_per_day=quota_per_day)
    parameter = SsmKeyStore(ssm, api_keys_prefix(cfg.identity)).put(record)
    return {"parameter": parameter, "key_id": record.key_id, "key": key}


def _channel_parameter(flavor: str, channel: str) -> str:
    return ami_parameter_name(flavor, channel)


def _previous_value(ssm: Any, name: str) -> str:
    history = []
    kwargs: dict[str, Any] = {"Name": name}
    while True:
        page = ssm.get_parameter_history(**kwargs)
        history += page["Parameters"]
        if not page.get("NextToken"):
            break
        kwargs["NextToken"] = page["NextToken"]
    history.sort(key=lambda p: p["Version"])
    current = history[-1]["Value"]
    for version in reversed(history[:-1]):
        if version["Value"] != current:
            return version["Value"]
    raise SetupError(f"{name} has named only {current} so far: there is nothing to roll back to")


def promote_ami(ssm: Any, ec2: Any, flavor: str, channel: str, ami_id: str | None = None,
                rollback: bool = False) -> dict[str, Any]:
    """Point ``/genai-fleet/ami/<flavor>/<channel>`` at a checked image; return what changed."""
    if channel == LATEST:
        raise SetupError("`latest` is written by `make ami` after its checks: promote to another channel")
    target = _channel_parameter(flavor, channel)
    try:
        before = ssm.get_parameter(Name=target)["Parameter"]["Value"]
    except ssm.exceptions.ParameterNotFound:
        before = None
    if rollback:
        if before is None:
            raise SetupError(f"{target} does not exist yet: there is nothing to roll back")
        chosen = _previous_value(ssm, target)
    elif ami_id:
        chosen = ami_id
    else:
        source = _channel_parameter(flavor, LATEST)
        try:
            chosen = ssm.get_parameter(Name=source)["Parameter"]["Value"]
        except ssm.exceptions.ParameterNotFound as exc:
            raise SetupError(f"{source} does not exist: build and check an image first (`make ami "
                             f"FLAVOR={flavor}`) or pass --ami") from exc
    try:
        check_image(ec2, chosen, {"Project": NAMESPACE, "Flavor": flavor})
    except AmiBuildError as exc:
        raise SetupError(f"refusing to promote: {exc}") from exc
    ssm.put_parameter(Name=target, Value=chosen, Type="String", DataType="aws:ec2:image", Overwrite=True,
                      Description=f"genai-fleet {flavor} AMI promoted to {channel}")
    return {"parameter": target, "ami_id": chosen, "previous": before, "rollback": rollback}


def _clients(region: str | None, endpoint_url: str | None) -> tuple[Any, Any]:
    import boto3

    session = boto3.session.Session(region_name=region)
    if session.region_name is None:
        raise SetupError("no AWS region: pass --region or set AWS_REGION")
    return (session.client("ssm", endpoint_url=endpoint_url), session.client("ec2", endpoint_url=endpoint_url))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint-url", help="AWS endpoint (tests: a moto server)")
    sub = parser.add_subparsers(dest="command", required=True)
    secret = sub.add_parser("webhook-secret", help="create the environment's webhook signing secret")
    secret.add_argument("--stack", required=True)
    secret.add_argument("--rotate", action="store_true", help="replace an existing secret")
    key = sub.add_parser("api-key", help="mint an API key (printed once)")
    key.add_argument("--stack", required=True)
    key.add_argument("--name", required=True, help="who holds the key")
    key.add_argument("--quota-per-day", type=int)
    promote = sub.add_parser("promote-ami", help="point an AMI channel at a checked image")
    promote.add_argument("--flavor", required=True, choices=FLAVORS)
    promote.add_argument("--channel", default="prod", help="channel to set (default prod)")
    promote.add_argument("--ami", help="image to promote (default: the one at latest)")
    promote.add_argument("--rollback", action="store_true", help="set the channel back to its previous image")
    promote.add_argument("--region", help="AWS region (default: AWS_REGION)")
    prune = sub.add_parser("prune-amis", help="deregister old AMIs no channel needs, delete their snapshots")
    prune.add_argument("--flavor", required=True, choices=FLAVORS)
    prune.add_argument("--keep", type=int, default=DEFAULT_KEEP, help=f"newest images kept (default {DEFAULT_KEEP})")
    prune.add_argument("--dry-run", action="store_true", help="list what would go, change nothing")
    prune.add_argument("--region", help="AWS region (default: AWS_REGION)")
    cost = sub.add_parser("cost", help="cost per 1,000 images per model and task, idle and boot share")
    cost.add_argument("--stack", required=True)
    cost.add_argument("--since", default="7d", help="jobs created in the last N days or hours: 7d, 12h (default 7d)")
    cost.add_argument("--json", action="store_true", help="print the report as JSON")
    # issue 43: output URL signing keys
    rotate = sub.add_parser("rotate-signing-key", help="next step of creating or rotating the output signing key")
    rotate.add_argument("--stack", required=True)
    return parser.parse_args(argv)


def cost_report(cfg: fleet_config.FleetConfig, since: str, endpoint_url: str | None, as_json: bool) -> str:
    """``genai-stack cost``: the report of tools/cost_report.py for this stack's job table and metrics."""
    import time

    import boto3

    from tools import cost_report as report

    now = time.time()
    start = now - report.parse_since(since)
    session = boto3.session.Session(region_name=cfg.region)
    table = f"{cfg.identity.resource_prefix()}-jobs"
    result = report.aggregate(report.scan_jobs(session.client("dynamodb", endpoint_url=endpoint_url), table, start),
                              start)
    result.overhead_seconds, result.overhead_usd = report.read_overhead(
        session.client("cloudwatch", endpoint_url=endpoint_url), cfg.identity.stack, start, now)
    return json.dumps(result.as_dict(), indent=2, sort_keys=True) if as_json else report.render(result)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "promote-ami":
            ssm, ec2 = _clients(args.region, args.endpoint_url)
            result = promote_ami(ssm, ec2, args.flavor, args.channel, args.ami, args.rollback)
        elif args.command == "prune-amis":
            ssm, ec2 = _clients(args.region, args.endpoint_url)
            result = prune_amis(ssm, ec2, args.flavor, args.keep, args.dry_run)
        elif args.command == "cost":
            print(cost_report(stack_settings(args.stack), args.since, args.endpoint_url, args.json))
            return 0
        elif args.command == "rotate-signing-key":  # issue 43
            cfg = stack_settings(args.stack)
            ssm, _ = _clients(cfg.region, args.endpoint_url)
            result = rotate_signing_key(ssm, cfg, ROOT / f"Pulumi.{args.stack}.yaml")
        else:
            cfg = stack_settings(args.stack)
            ssm, _ = _clients(cfg.region, args.endpoint_url)
            result = (ensure_webhook_secret(ssm, cfg, args.rotate) if args.command == "webhook-secret"
                      else mint_api_key(ssm, cfg, args.name, args.quota_per_day))
    except (SetupError, SigningKeyError, fleet_config.ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
