"""The worker agent: turns queued jobs into CDN links on each instance (see docs/worker.md)."""
