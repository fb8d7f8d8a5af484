"""API errors as RFC 9457 problem details (``application/problem+json``).

```
ApiError(status, title, detail, errors=[...], headers={...})
```
Every error answer has ``type``, ``title``, ``status``, ``detail``; validation answers add ``errors``:
``[{"field": "inputs.width", "rule": "multiple-of-8", "message": "..."}]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

PROBLEM_BASE = "https://genai-fleet.dev/problems/"


class ApiError(Exception):
    def __init__(self, status: int, slug: str, title: str, detail: str = "",
                 errors: Sequence[Mapping[str, Any]] | None = None, headers: Mapping[str, str] | None = None,
                 extra: Mapping[str, Any] | None = None):
        super().__init__(f"{status} {title}: {detail}")
        self.status, self.slug, self.title, self.detail = status, slug, title, detail
        self.errors = list(errors or [])
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": PROBLEM_BASE + self.slug, "title": self.title, "status": self.status,
                               "detail": self.detail or self.title}
        if self.errors:
            out["errors"] = self.errors
        out.update(self.extra)
        return out
