"""Deregister the fleet's old AMIs and delete their snapshots (``genai-stack prune-amis``).

``make ami`` registers a new image on every build and nothing else ever removes one: each keeps paying
for its EBS snapshot. ``prune_amis`` lists this account's images of one flavour (tags ``Project=genai-fleet``,
``Flavor=<flavour>``, as ``make ami`` tags them) and keeps:

- every image a channel names now (``/genai-fleet/ami/<flavour>/<channel>``: ``latest``, ``prod``, ...),
- the image each channel named before its current one (what ``make promote-ami ... ROLLBACK=1`` goes back to),
- the ``keep`` newest images (default 3).

Every other image is deregistered, then its EBS snapshots are deleted. ``dry_run`` lists them and changes
nothing. An instance that still runs a pruned image keeps running; a group's next launch needs the image
its launch template names, so prune only after every stack ran ``make up`` with a kept image.
"""

from __future__ import annotations

from typing import Any

from components.config_settings import NAMESPACE, ami_parameter_name

DEFAULT_KEEP = 3


def _channel_images(ssm: Any, flavor: str) -> dict[str, list[str]]:
    """Channel parameter -> the images it names now and named before (newest first, distinct)."""
    path = ami_parameter_name(flavor, "x").rsplit("/", 1)[0]
    names: list[str] = []
    for page in ssm.get_paginator("get_parameters_by_path").paginate(Path=path):
        names += [p["Name"] for p in page["Parameters"]]
    out: dict[str, list[str]] = {}
    for name in names:
        history: list[dict[str, Any]] = []
        for page in ssm.get_paginator("get_parameter_history").paginate(Name=name):
            history += page["Parameters"]
        values = [p["Value"] for p in sorted(history, key=lambda p: p["Version"], reverse=True)]
        out[name] = list(dict.fromkeys(values))[:2]  # current, and the rollback target
    return out


def _images(ec2: Any, flavor: str) -> list[dict[str, Any]]:
    filters = [{"Name": "tag:Project", "Values": [NAMESPACE]}, {"Name": "tag:Flavor", "Values": [flavor]}]
    images = ec2.describe_images(Owners=["self"], Filters=filters)["Images"]
    return sorted(images, key=lambda i: (i.get("CreationDate", ""), i["ImageId"]), reverse=True)


def prune_amis(ssm: Any, ec2: Any, flavor: str, keep: int = DEFAULT_KEEP, dry_run: bool = False) -> dict[str, Any]:
    """Deregister the flavour's images no channel needs beyond the ``keep`` newest; delete their snapshots."""
    if keep < 1:
        raise ValueError(f"keep = {keep}: keep at least the newest image (keep >= 1)")
    channels = _channel_images(ssm, flavor)
    needed = {image for values in channels.values() for image in values}
    images = _images(ec2, flavor)
    kept = [i["ImageId"] for n, i in enumerate(images) if n < keep or i["ImageId"] in needed]
    pruned = [i for i in images if i["ImageId"] not in kept]
    snapshots: list[str] = []
    for image in pruned:
        ids = [m["Ebs"]["SnapshotId"] for m in image.get("BlockDeviceMappings", [])
               if (m.get("Ebs") or {}).get("SnapshotId")]
        snapshots += ids
        if dry_run:
            continue
        ec2.deregister_image(ImageId=image["ImageId"])
        for snapshot in ids:  # a snapshot of a registered image cannot be deleted: deregister first
            ec2.delete_snapshot(SnapshotId=snapshot)
    return {"flavor": flavor, "kept": kept, "deregistered": [i["ImageId"] for i in pruned],
            "snapshots_deleted": snapshots, "channels": channels, "dry_run": dry_run}
