"""What a stack function reads from its Lambda environment to reach AWS: the region and its clients.

Lambda sets ``AWS_REGION`` in every function; ``GENAI_AWS_ENDPOINT_URL`` points every client at one
endpoint instead of the regional AWS ones (moto in tests and local mode). Clients come from
``runtime.aws_clients`` with the ``function`` profile (timeouts and retries that fit a 30-120 s function).
"""

from __future__ import annotations

import os
from typing import Any

from runtime import aws_clients

ENDPOINT_VARIABLE = "GENAI_AWS_ENDPOINT_URL"


def region() -> str | None:
    """The function's region (``AWS_REGION``, else ``AWS_DEFAULT_REGION``); None lets boto3 decide."""
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None


def client(service: str) -> Any:
    """A boto3 client for ``service`` in the function's region, at ``GENAI_AWS_ENDPOINT_URL`` when set."""
    return aws_clients.client(service, profile="function", region=region(),
                              endpoint_url=os.environ.get(ENDPOINT_VARIABLE) or None)
