"""Previews of running jobs (issue 38): short-lived low-resolution images, uploaded off the backend's path.

A job with ``"preview": true`` gets a sink (``begin``) that its backend offers frames to (``JobContext.offer_preview``).
The backend first asks ``due()`` (a clock read and a compare), so it makes a frame only when one would be taken:
at most one per attempt every ``interval_s`` (``PREVIEW_INTERVAL_S``, 3 s), and none while the previous one is
still waiting to be uploaded (a preview that would be behind is dropped, never queued). A frame is a callable
that returns ``(bytes, content_type)``: the encoding (JPEG) runs on this part's own thread, not the backend's.

This part's thread encodes the frame, asks the ``PreviewGate`` (``allow_all`` by default; the content-safety
issue 45 will plug its check in here: a gate that answers False drops the preview, so while checking is on,
nothing unchecked is sent), uploads it to ``<prefix>/<job_id>/<lease>/<n>.<ext>`` (``previews/``, not
``outputs/``: no output audit or sweeper covers it, and the bucket's lifecycle rule deletes it after a day,
components/cdn_storage.py), and adds a ``preview`` event with the object's ``key`` to the attempt's events
(runtime/worker/progress_reporter.py). The event stores the key, never a URL: the events feed makes the link
when it hands the event out, through the one output-links function (runtime/jobs/output_links.py, issue 43:
signed where outputs are). Nothing here ever raises into a job: a failed encode, gate or
upload is logged and that preview is lost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

PREVIEW_PREFIX = "previews"
PREVIEW_INTERVAL_S = 3.0  # at most one preview per job attempt this often (docs/api.md "Previews")
PREVIEW_CACHE_CONTROL = "public, max-age=300"  # short-lived: the object expires within a day or two
Frame = Callable[[], tuple[bytes, str]]  # -> (image bytes, content type); called on the uploader's thread
PreviewGate = Callable[[str, bytes, str], bool]  # (job id, image bytes, content type) -> may it be sent?
Note = Callable[[str, int, str, dict], bool]  # the reporter's ``note``: add an event to an open attempt
_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}


def allow_all(_job_id: str, _data: bytes, _content_type: str) -> bool:
    """The default gate: every preview may be sent (issue 45 replaces it where outputs are checked)."""
    return True


@dataclass
class _Slot:
    job_id: str
    lease: int
    interval_s: float
    monotonic: Callable[[], float]
    wake: threading.Event
    taken_at: float = float("-inf")
    frame: Frame | None = None
    count: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def due(self) -> bool:
        """Whether a frame offered now would be taken (cheap: the backend asks before making one)."""
        return self.frame is None and self.monotonic() - self.taken_at >= self.interval_s

    def offer(self, frame: Frame) -> bool:
        """Take ``frame`` when due; False: dropped (too soon, or the last one is not uploaded yet)."""
        with self.lock:
            if not self.due():
                return False
            self.frame, self.taken_at = frame, self.monotonic()
        self.wake.set()
        return True


class PreviewUploader:
    """Per-attempt preview sinks and the thread that encodes, gates and uploads their frames."""

    def __init__(self, store: Any, *, prefix: str = PREVIEW_PREFIX,
                 interval_s: float = PREVIEW_INTERVAL_S, gate: PreviewGate = allow_all,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._store, self._prefix = store, prefix.strip("/")
        self._interval_s, self.gate, self._monotonic = interval_s, gate, monotonic
        self._note: Note | None = None
        self._slots: dict[tuple[str, int], _Slot] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self.uploaded = 0  # previews stored (tests, bench)

    def attach(self, note: Note) -> None:
        """Where preview events go: the progress reporter's ``note`` (it calls this when given the uploader)."""
        self._note = note

    def begin(self, job_id: str, lease: int) -> _Slot:
        slot = _Slot(job_id, lease, self._interval_s, self._monotonic, self._wake)
        with self._lock:
            self._slots[(job_id, lease)] = slot
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="previews", daemon=True)
                self._thread.start()
        return slot

    def end(self, job_id: str, lease: int) -> None:
        """The attempt ended: a frame still waiting is dropped (no preview events after the attempt)."""
        with self._lock:
            self._slots.pop((job_id, lease), None)

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()

    def drain(self) -> None:
        """Upload every waiting frame now, on the caller's thread (tests)."""
        self._upload_waiting()

    def _loop(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            self._upload_waiting()

    def _upload_waiting(self) -> None:
        with self._lock:
            slots = list(self._slots.values())
        for slot in slots:
            with slot.lock:
                frame = slot.frame
            if frame is None:
                continue
            try:
                self._upload(slot, frame)
            except Exception as exc:  # noqa: BLE001 - a preview never fails a job
                log.warning("job %s: preview dropped: %s", slot.job_id, exc)
            finally:
                with slot.lock:
                    slot.frame = None

    def _upload(self, slot: _Slot, frame: Frame) -> None:
        data, content_type = frame()
        if not self.gate(slot.job_id, data, content_type):
            log.info("job %s: preview withheld by the preview gate", slot.job_id)
            return
        slot.count += 1
        key = f"{self._prefix}/{slot.job_id}/{slot.lease}/{slot.count:04d}.{_EXTENSIONS.get(content_type, 'img')}"
        self._store.put(key, data, content_type, metadata={"job-id": slot.job_id, "preview": "true"},
                        cache_control=PREVIEW_CACHE_CONTROL)
        self.uploaded += 1
        if self._note is not None:
            self._note(slot.job_id, slot.lease, "preview", {"key": key, "content_type": content_type})
