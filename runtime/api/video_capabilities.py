"""What the fleet can make a video from and into, checked at submit (issues 36 and 37).

The backend catalog says, for its video tasks, which ``output_format`` values the backend writes and which model
store kinds it makes a video from (``runtime.backends.base.video_capabilities``: ComfyUI writes no GIF, and its
video graph needs a kind ``video`` bundle, not an image checkpoint). The stack passes both to the API
(``GENAI_VIDEO_FORMATS``, ``GENAI_VIDEO_MODEL_KINDS``); here a video job asking for another format, or naming a
model the store's manifest lists under another kind, is refused with 422 before anything is written, naming the
field and what the fleet serves. A model the manifest does not list (or no manifest: ``GET /v1/models`` answers
from the configured hot models) is not judged here: the worker fails such a job with the reason.
"""

from __future__ import annotations

from runtime.api.models import ModelsSource
from runtime.jobs.errors import Problem, ValidationError

VIDEO_TASKS = ("txt2video", "img2video")
_LISTED = 10  # video models named in a refusal


def refuse_unserved_video(spec: dict, formats: tuple[str, ...], model_kinds: tuple[str, ...],
                          models: ModelsSource) -> None:
    """Raise ValidationError (422) when the video job ``spec`` (validated) asks for what the fleet cannot make."""
    if spec.get("task") not in VIDEO_TASKS:
        return
    problems: list[Problem] = []
    fmt = (spec.get("inputs") or {}).get("output_format")
    if formats and fmt is not None and fmt not in formats:
        problems.append(Problem("inputs.output_format", "unserved-format",
                                f"{fmt} is not a video format this fleet's backend writes; it writes: "
                                f"{', '.join(formats)}"))
    if model_kinds:
        problems += _model_problems(spec["task"], spec.get("model"), model_kinds, models)
    if problems:
        raise ValidationError(problems)


def _model_problems(task: str, model: str | None, model_kinds: tuple[str, ...],
                    models: ModelsSource) -> list[Problem]:
    source, listed = models.list_models()
    kinds = {m["id"]: m.get("kind") for m in listed if m.get("kind")}
    if source != "manifest" or model not in kinds or kinds[model] in model_kinds:
        return []
    video = sorted(mid for mid, kind in kinds.items() if kind in model_kinds)
    serves = (f"video models in the store: {', '.join(video[:_LISTED])}{' ...' if len(video) > _LISTED else ''}"
              if video else "the store has none yet (upload one with genai-model-upload --kind video)")
    return [Problem("model", "not-a-video-model",
                    f"{model} is a model of kind {kinds[model]}; {task} on this fleet needs a model of kind "
                    f"{' or '.join(model_kinds)} (docs/model-store.md); {serves}")]
