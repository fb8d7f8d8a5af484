"""The API's checks of a job's LoRAs against the fleet's model catalog (issue 40), before anything is queued.

The catalog is ``GET /v1/models``'s list as id -> entry (``kind``; ``family`` where the model store recorded
one). A model's *family* is its recorded ``family``, else the part of its id before ``/`` (``sdxl/pixel-art``
-> ``sdxl``); a LoRA applies to models of its family only. The shape rules (at most ``MAX_LORAS``, weights
in range, each once) are the typed spec's (runtime.jobs.models.LoraRef); these are the catalog's:

- ``inputs.loras.<i>.model`` must be in the catalog (``unknown-model``), be a LoRA (``not-a-lora``), have a
  family (``lora-family``) and share the job's model's (``family-mismatch``);
- ``model`` must be a base model, not a LoRA (``not-a-base-model``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from runtime.jobs.errors import Problem

LORA_KIND = "lora"


def model_family(model_id: str, entry: Mapping[str, Any] | None = None) -> str | None:
    """The family a model (or LoRA) belongs to: recorded in the catalog, else its id's ``family/`` prefix."""
    recorded = (entry or {}).get("family")
    if isinstance(recorded, str) and recorded:
        return recorded
    family, slash, _ = model_id.partition("/")
    return family if slash else None


def lora_problems(model: str | None, loras: Sequence[Mapping[str, Any]],
                  catalog: Mapping[str, Mapping[str, Any]] | None) -> list[Problem]:
    """What is wrong with ``model`` and its ``loras`` (normalized: ``[{model, weight}]``) for ``catalog``;
    nothing is checked without a catalog (the worker's read of a queued job)."""
    if catalog is None or model is None:
        return []
    problems = []
    base = catalog.get(model)
    if base is not None and base.get("kind") == LORA_KIND:
        problems.append(Problem("model", "not-a-base-model", (
            f"{model} is a LoRA; name its base model in model and the LoRA in inputs.loras "
            f"([{{\"model\": \"{model}\", \"weight\": 1.0}}])")))
        return problems
    base_family = model_family(model, base)
    for i, lora in enumerate(loras):
        lora_id, field = str(lora.get("model")), f"inputs.loras.{i}.model"
        entry = catalog.get(lora_id)
        if entry is None:
            problems.append(Problem(field, "unknown-model", f"{lora_id} is not a LoRA in this fleet's model store "
                                                            "(see GET /v1/models; upload it with genai-model-upload "
                                                            "--kind lora)"))
        elif entry.get("kind", LORA_KIND) != LORA_KIND:
            problems.append(Problem(field, "not-a-lora", f"{lora_id} is a {entry.get('kind')}, not a LoRA "
                                                         "(kind lora in GET /v1/models)"))
        elif (family := model_family(lora_id, entry)) is None:
            problems.append(Problem(field, "lora-family", (
                f"{lora_id} has no base family: name LoRAs '<family>/<name>' (the family of the models they "
                "apply to, e.g. sdxl/pixel-art) or record it at upload (genai-model-upload --family)")))
        elif family != base_family:
            problems.append(Problem(field, "family-mismatch", (
                f"{lora_id} is a LoRA for {family} models; the job's model {model} is "
                + (f"a {base_family} model" if base_family else "of no family (name it '<family>/<name>')")
                + f": use a {family} model or a LoRA made for {base_family or 'it'}")))
    return problems
