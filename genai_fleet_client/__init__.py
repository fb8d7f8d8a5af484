"""genai-fleet's Python client: ``Client`` (sync) and ``AsyncClient`` (asyncio), both on httpx.

```python
from genai_fleet_client import Client
job = Client().run("sdxl-base-1.0", {"prompt": "a lighthouse at dawn", "steps": 30})
Client().download(job, "out/")
```
It imports nothing of the server (runtime/, components/, fleetdev/): it needs httpx, and tqdm for the
``genai-fleet`` command's progress bar. See README "First steps" and docs/client.md.
"""

from genai_fleet_client.async_client import AsyncClient
from genai_fleet_client.client import Client
from genai_fleet_client.errors import (
    ApiError,
    AuthenticationError,
    DownloadError,
    GenaiFleetError,
    JobCanceledError,
    JobFailedError,
    NetworkError,
    NotFoundError,
    QuotaExceededError,
    RateLimitedError,
    RequestRejectedError,
    UnavailableError,
    WaitTimeoutError,
)
from genai_fleet_client.types import Job, JobPage, Output
from genai_fleet_client.webhooks import verify_webhook

__all__ = ["ApiError", "AsyncClient", "AuthenticationError", "Client", "DownloadError", "GenaiFleetError", "Job",
           "JobCanceledError", "JobFailedError", "JobPage", "NetworkError", "NotFoundError", "Output",
           "QuotaExceededError", "RateLimitedError", "RequestRejectedError", "UnavailableError",
           "WaitTimeoutError", "verify_webhook"]
