"""The manifest: one JSON document listing every model the workers may load.

Readers (the worker's model cache) call ``ManifestStore.load``; writers (the upload CLI) call
``ManifestStore.register``, which applies the change with an S3 conditional write (``If-Match`` on the
ETag it read, ``If-None-Match: *`` when there is no manifest yet) and retries on a lost race, so two
uploads at once never drop each other's entry. Format: docs/model-store.md.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from runtime.model_store.errors import (
    ManifestConflictError,
    ManifestError,
    ModelNotFoundError,
    StorageError,
)
from runtime.model_store.layout import (
    MANIFEST_KEY,
    SCHEMA_VERSION,
    artifact_key,
    validate_kind,
    validate_model_id,
    validate_path,
    validate_version,
)

log = logging.getLogger(__name__)
FAMILY = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")  # a model id's first part (runtime.model_ids)
_SHA256_HEX = frozenset("0123456789abcdef")
_RACE_ERRORS = ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ModelFile:
    """One object of a model: its path inside the model, S3 key, size in bytes and sha256 (hex)."""

    path: str
    key: str
    size: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "key": self.key, "size": self.size, "sha256": self.sha256}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> ModelFile:
        if not isinstance(data, dict):
            raise ManifestError(f"{where}: must be an object")
        size, sha = data.get("size"), data.get("sha256")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ManifestError(f"{where}.size = {size!r}: must be a non-negative integer")
        if not isinstance(sha, str) or len(sha) != 64 or not set(sha) <= _SHA256_HEX:
            raise ManifestError(f"{where}.sha256 = {sha!r}: must be 64 lowercase hex digits")
        for name in ("path", "key"):
            if not isinstance(data.get(name), str) or not data[name]:
                raise ManifestError(f"{where}.{name} is required")
        return cls(path=data["path"], key=data["key"], size=size, sha256=sha)


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: the current version and its files."""

    model_id: str
    kind: str
    version: str
    files: tuple[ModelFile, ...]
    uploaded_at: str
    source: str | None = None
    family: str | None = None  # the base family a LoRA applies to (or a model belongs to); None: its id's prefix

    def __post_init__(self) -> None:
        validate_model_id(self.model_id)
        if self.family is not None and not FAMILY.match(self.family):
            raise ManifestError(f"model {self.model_id}: family {self.family!r} must be like a model id's first "
                                "part (lowercase letters, digits, '.', '_', '-'; e.g. sdxl)")
        validate_kind(self.kind)
        validate_version(self.version)
        if not self.files:
            raise ManifestError(f"model {self.model_id}: has no files")
        for f in self.files:
            validate_path(f.path)
            expected = artifact_key(self.kind, self.model_id, self.version, f.path)
            if f.key != expected:
                raise ManifestError(f"model {self.model_id}: file {f.path} has key {f.key!r}, layout says {expected!r}")

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "version": self.version,
                               "files": [f.to_dict() for f in self.files], "total_size": self.total_size,
                               "uploaded_at": self.uploaded_at}
        if self.source:
            out["source"] = self.source
        if self.family:
            out["family"] = self.family
        return out

    @classmethod
    def from_dict(cls, model_id: str, data: Any) -> ModelEntry:
        where = f"models[{model_id!r}]"
        if not isinstance(data, dict):
            raise ManifestError(f"{where}: must be an object")
        files = data.get("files")
        if not isinstance(files, list):
            raise ManifestError(f"{where}.files: must be a list")
        try:
            return cls(model_id=model_id, kind=data.get("kind"), version=data.get("version"),
                       files=tuple(ModelFile.from_dict(f, f"{where}.files[{i}]") for i, f in enumerate(files)),
                       uploaded_at=str(data.get("uploaded_at", "")), source=data.get("source"),
                       family=data.get("family"))
        except ValueError as exc:
            if isinstance(exc, ManifestError):
                raise
            raise ManifestError(f"{where}: {exc}") from exc


@dataclass(frozen=True)
class Manifest:
    models: dict[str, ModelEntry] = field(default_factory=dict)
    updated_at: str | None = None

    def get(self, model_id: str) -> ModelEntry:
        try:
            return self.models[model_id]
        except KeyError:
            raise ModelNotFoundError(f"model {model_id!r} is not in the manifest; upload it with "
                                     f"tools/model_upload.py") from None

    def with_entry(self, entry: ModelEntry) -> Manifest:
        return Manifest(models={**self.models, entry.model_id: entry}, updated_at=utc_now())

    def to_json(self) -> str:
        doc = {"schema": SCHEMA_VERSION, "updated_at": self.updated_at or utc_now(),
               "models": {mid: self.models[mid].to_dict() for mid in sorted(self.models)}}
        return json.dumps(doc, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        try:
            doc = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ManifestError(f"manifest is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA_VERSION:
            raise ManifestError(f"manifest schema = {doc.get('schema') if isinstance(doc, dict) else None!r}: "
                                f"this reader understands schema {SCHEMA_VERSION}")
        models = doc.get("models")
        if not isinstance(models, dict):
            raise ManifestError("manifest.models: must be an object keyed by model id")
        return cls(models={mid: ModelEntry.from_dict(mid, data) for mid, data in models.items()},
                   updated_at=doc.get("updated_at"))


class ManifestStore:
    """Reads and updates the manifest object of one bucket through a boto3 S3 client."""

    def __init__(self, s3_client: Any, bucket: str, key: str = MANIFEST_KEY, max_attempts: int = 8):
        self._s3 = s3_client
        self.bucket = bucket
        self.key = key
        self.max_attempts = max_attempts

    def load(self) -> Manifest:
        return self._read()[0]

    def register(self, entry: ModelEntry) -> Manifest:
        """Add or replace ``entry`` with a conditional write; retry when another writer got there first."""
        for attempt in range(1, self.max_attempts + 1):
            manifest, etag = self._read()
            updated = manifest.with_entry(entry)
            cond = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
            try:
                self._s3.put_object(Bucket=self.bucket, Key=self.key, Body=updated.to_json().encode(),
                                    ContentType="application/json", CacheControl="no-cache", **cond)
            except ClientError as exc:
                if _error_code(exc) in _RACE_ERRORS:
                    log.info("manifest changed while registering %s (attempt %d); retrying", entry.model_id, attempt)
                    time.sleep(min(0.05 * 2**attempt, 2.0))
                    continue
                raise StorageError(f"writing s3://{self.bucket}/{self.key} failed: {exc}") from exc
            except BotoCoreError as exc:
                raise StorageError(f"writing s3://{self.bucket}/{self.key} failed: {exc}") from exc
            return updated
        raise ManifestConflictError(f"s3://{self.bucket}/{self.key} kept changing; {entry.model_id} was not "
                                    f"registered after {self.max_attempts} attempts")

    def _read(self) -> tuple[Manifest, str | None]:
        try:
            obj = self._s3.get_object(Bucket=self.bucket, Key=self.key)
            body = obj["Body"].read()
        except ClientError as exc:
            if _error_code(exc) in ("NoSuchKey", "404"):
                return Manifest(), None
            raise StorageError(f"reading s3://{self.bucket}/{self.key} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"reading s3://{self.bucket}/{self.key} failed: {exc}") from exc
        return Manifest.from_json(body), obj.get("ETag")


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
