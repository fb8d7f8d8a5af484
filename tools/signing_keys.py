"""``genai-stack rotate-signing-key``: the key pairs that sign output URLs (issue 43), created and rotated without
a moment in which a handed-out link stops working early.

Each key pair ``<name>`` lives in SSM: ``/genai-fleet/<env>/output-signing-keys/<name>/public`` (String, PEM:
the stack reads it into a CloudFront public key of the outputs' key group) and ``.../<name>/private``
(SecureString: only the API and the webhook sender may read it). The stack file names the key group's keys
(``outputSigningKeys``) and the one links are signed with (``outputSigningKey``). One command, run once per
step, with ``make up`` after each::

    step     stack file before           what the command does                         then
    init     [k1], no key pair yet       creates k1                                    make up
    add      [k1] signing k1             creates k2; keys [k1, k2], still signing k1   make up (group: both)
    switch   [k1, k2] signing k1         signs with k2; notes when (SSM .../k1/retired-at)   make up
    remove   [k1, k2] signing k2         once every k1 link has expired (retired-at + outputUrlTtlSeconds
                                         + DEPLOY_MARGIN_S): keys [k2], deletes k1     make up

Links signed with the old key keep working until they expire: the key group holds both keys from ``add``
until the ``make up`` after ``remove``, and ``remove`` is refused before the last of them has expired.
The step to run is read from the stack file and SSM, so the command takes no step argument.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from components import config as fleet_config
from components.config_settings import NAMESPACE
from components.naming import output_signing_key_parameter
from runtime.jobs.cdn_signing import new_key_pair

DEPLOY_MARGIN_S = 900  # the `make up` after `switch` may take this long to reach every function instance


class SigningKeyError(RuntimeError):
    """A rotation step cannot run now; the message says why and what to do."""


def _exists(ssm: Any, name: str) -> bool:
    try:
        ssm.get_parameter(Name=name)
        return True
    except ssm.exceptions.ParameterNotFound:
        return False


def _create(ssm: Any, cfg: fleet_config.FleetConfig, key: str) -> None:
    private, public = new_key_pair()
    env = cfg.environment
    ssm.put_parameter(Name=output_signing_key_parameter(cfg.identity, key, "private"), Value=private,
                      Type="SecureString", Description=f"genai-fleet {env}: output URL signing key {key} (private)")
    ssm.put_parameter(Name=output_signing_key_parameter(cfg.identity, key, "public"), Value=public, Type="String",
                      Description=f"genai-fleet {env}: output URL signing key {key} (public, CloudFront key group)")


def _next_name(current: str) -> str:
    """k1 -> k2, k9 -> k10; any other name gets -2 (then -3...)."""
    match = re.match(r"^(.*?)(\d+)$", current)
    if match:
        return f"{match.group(1)}{int(match.group(2)) + 1}"
    return f"{current}-2"


def set_stack_values(path: Path, values: Mapping[str, Any]) -> None:
    """Set ``genai-fleet:<key>`` lines of a stack file in place (one line each, JSON values), comments kept."""
    lines = path.read_text().splitlines()
    for key, value in values.items():
        line = f"  {NAMESPACE}:{key}: {json.dumps(value)}"
        pattern = re.compile(rf"^\s+{re.escape(NAMESPACE)}:{re.escape(key)}:")
        at = next((i for i, existing in enumerate(lines) if pattern.match(existing)), None)
        if at is None:
            lines.append(line)
            continue
        end = at + 1  # a block value (a YAML list below the key) goes with it
        while end < len(lines) and re.match(r"^\s+- ", lines[end]):
            end += 1
        lines[at:end] = [line]
    path.write_text("\n".join(lines) + "\n")


def rotate_signing_key(ssm: Any, cfg: fleet_config.FleetConfig, stack_file: Path,
                       clock: Callable[[], float] = time.time) -> dict[str, Any]:
    """Run the next step of the rotation (module docstring); return what it did and what to run next."""
    access = cfg.outputs
    keys, active = list(access.signing_keys), access.signing_key
    param = lambda key, half: output_signing_key_parameter(cfg.identity, key, half)  # noqa: E731
    missing = [k for k in keys if not _exists(ssm, param(k, "public"))]
    if missing and len(keys) == 1:
        _create(ssm, cfg, keys[0])
        return {"step": "init", "created": keys[0], "signing": keys[0], "next": "make up"}
    if missing:
        raise SigningKeyError(f"outputSigningKeys {keys} lists {missing}, which have no key pair in SSM: set "
                              f"outputSigningKeys back to the keys that exist")
    if len(keys) == 1:
        new = _next_name(keys[0])
        if _exists(ssm, param(new, "public")):
            raise SigningKeyError(f"a key pair {new} is already in SSM ({param(new, 'public')}): delete it first "
                                  f"(a leftover of an earlier rotation), then run this again")
        _create(ssm, cfg, new)
        set_stack_values(stack_file, {"outputSigningKeys": [keys[0], new], "outputSigningKey": keys[0]})
        return {"step": "add", "created": new, "signing": keys[0], "key_group": [keys[0], new],
                "next": "make up (the key group gets both keys), then run rotate-signing-key again to switch"}
    old, new = keys
    if active == old:
        ssm.put_parameter(Name=param(old, "retired-at"), Value=str(int(clock())), Type="String", Overwrite=True,
                          Description=f"genai-fleet {cfg.environment}: when signing moved off key {old}")
        set_stack_values(stack_file, {"outputSigningKey": new})
        wait = access.url_ttl_seconds + DEPLOY_MARGIN_S
        return {"step": "switch", "signing": new, "key_group": keys,
                "next": f"make up now (links are signed with {new} from then on); after {wait} s run "
                        f"rotate-signing-key again to remove {old}"}
    try:
        retired = float(ssm.get_parameter(Name=param(old, "retired-at"))["Parameter"]["Value"])
    except ssm.exceptions.ParameterNotFound as exc:
        raise SigningKeyError(f"no record of when signing moved off {old} ({param(old, 'retired-at')}): set "
                              f"outputSigningKey: {old}, make up, and run rotate-signing-key to switch") from exc
    ready = retired + access.url_ttl_seconds + DEPLOY_MARGIN_S
    if clock() < ready:
        raise SigningKeyError(f"links signed with {old} may be valid until {int(ready)} (the switch at "
                              f"{int(retired)} + outputUrlTtlSeconds {access.url_ttl_seconds} s + {DEPLOY_MARGIN_S} s "
                              f"for the deploy): run this again in {int(ready - clock()) + 1} s")
    set_stack_values(stack_file, {"outputSigningKeys": [new], "outputSigningKey": new})
    for half in ("private", "public", "retired-at"):
        ssm.delete_parameter(Name=param(old, half))
    return {"step": "remove", "removed": old, "signing": new, "key_group": [new],
            "next": f"make up (the key group drops {old})"}
