"""LoRAs on the A1111 WebUI (issue 40): its prompt syntax, and users kept from naming files by prompt.

A1111 reads *extra networks* out of the prompt text: every ``<type:args>`` matching ``<(\\w+):([^>]+)>``
(modules/extra_networks.py ``re_extra_net``) is taken out of the prompt and activates that network
(``<lora:name:weight>``, ``<lyco:...>``, ``<hypernet:...>``). So a user's prompt could load any file in the
WebUI's folders: ``strip_extra_networks`` removes every such tag from the prompt and the negative prompt
before the adapter adds the job's own LoRAs as ``<lora:NAME:WEIGHT>`` tags. The LoRA files are the ones the
agent fetched (``JobContext.extra_models``), linked into the folder A1111's ``--lora-dir`` names
(``<backend models>/loras``, as ComfyUI's), named after the store id (``sd15/pix`` -> ``sd15--pix``); after
``POST /sdapi/v1/refresh-loras`` the adapter checks ``GET /sdapi/v1/loras`` lists each one, because A1111
skips a LoRA it cannot find with only a log line (the images would come out without it).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

EXTRA_NETWORK = re.compile(r"<(\w+):([^>]+)>")  # A1111 modules/extra_networks.py re_extra_net


def strip_extra_networks(text: str) -> str:
    """``text`` without A1111 extra-network tags (a user cannot name a file by prompt)."""
    return EXTRA_NETWORK.sub("", text)


def with_lora_tags(prompt: str, loras: Sequence[tuple[str, float]]) -> str:
    """The user's prompt (tags stripped) followed by one ``<lora:NAME:WEIGHT>`` per LoRA."""
    tags = " ".join(f"<lora:{name}:{weight:g}>" for name, weight in loras)
    text = strip_extra_networks(prompt)
    return f"{text} {tags}" if tags else text


def lora_name(path: Path) -> str:
    """A1111's name of a LoRA file (its stem: what ``<lora:NAME:...>`` and ``GET /sdapi/v1/loras`` use)."""
    return path.stem
