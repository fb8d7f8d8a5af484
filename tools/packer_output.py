"""Packer's ``-machine-readable`` output: parse lines, collect artifacts (AMI ids per region) and errors."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


class AmiBuildError(RuntimeError):
    """A step of the AMI build failed; the message says which and what to do."""


@dataclass(frozen=True)
class MachineLine:
    """One line of ``packer -machine-readable`` output: ``timestamp,target,type,data...``."""

    timestamp: int
    target: str
    type: str
    data: tuple[str, ...]


def _unescape(field_value: str) -> str:
    return field_value.replace("%!(PACKER_COMMA)", ",").replace("\\n", "\n").replace("\\r", "\r")


def parse_machine_line(line: str) -> MachineLine | None:
    """Parse one machine-readable line; ``None`` for anything else (plain text, blank lines)."""
    parts = line.rstrip("\r\n").split(",")
    if len(parts) < 3 or not parts[0].isdigit():
        return None
    return MachineLine(int(parts[0]), parts[1], parts[2], tuple(_unescape(p) for p in parts[3:]))


@dataclass
class BuildResult:
    """What a ``packer build -machine-readable`` run reported."""

    # target -> artifact index -> {"builder-id": ..., "id": ..., "string": ...}
    artifacts: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def ami_ids(self, target: str) -> dict[str, str]:
        """``{region: ami_id}`` from the artifacts of ``target`` whose id is ``region:ami-...[,...]``."""
        amis: dict[str, str] = {}
        for artifact in self.artifacts.get(target, {}).values():
            artifact_id = artifact.get("id", "")
            if ":ami-" in artifact_id:
                amis.update(split_artifact_id(artifact_id))
        return amis


def split_artifact_id(artifact_id: str) -> dict[str, str]:
    amis: dict[str, str] = {}
    for item in filter(None, artifact_id.split(",")):
        region, _, ami = item.partition(":")
        if not ami.startswith("ami-"):
            raise AmiBuildError(f"unexpected Packer artifact id {artifact_id!r}: expected region:ami-...")
        amis[region] = ami
    return amis


def parse_build_output(lines: Iterable[str], echo: Callable[[str], None] | None = None) -> BuildResult:
    """Collect artifacts and errors from machine-readable lines; ``echo`` gets the human messages."""
    result = BuildResult()
    for raw in lines:
        line = parse_machine_line(raw)
        if line is None:
            continue
        if line.type == "artifact" and len(line.data) >= 3:
            # <ts>,<target>,artifact,<index>,<key>,<value>
            index, key, value = line.data[0], line.data[1], line.data[2]
            result.artifacts.setdefault(line.target, {}).setdefault(index, {})[key] = value
        elif line.type == "ui" and len(line.data) >= 2:
            if line.data[0] == "error":
                result.errors.append(line.data[1])
            if echo is not None:
                echo(line.data[1])
        elif line.type == "error" and line.data:
            result.errors.append(line.data[0])
    return result
