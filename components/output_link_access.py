"""What the API and the webhook sender need to hand out output links (issue 43), and the one permission it takes.

Both make each output's URL when they hand it out (runtime/jobs/output_links.py): on the CDN's domain, signed
with the key pair the stack signs with (runtime/jobs/cdn_signing.py) unless outputs are public. The private
half is a SecureString only these two functions may read: ``ssm:GetParameter`` on that one parameter.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from runtime.jobs.cdn_signing import KEY_ID_VARIABLE, KEY_PARAMETER_VARIABLE
from runtime.jobs.output_links import DEFAULT_TTL_SECONDS


@dataclass(frozen=True)
class OutputLinkAccess:
    base_url: pulumi.Input[str]
    """``https://<cdn_domain>`` (components/cdn_storage.py)."""

    ttl_seconds: int = DEFAULT_TTL_SECONDS
    """``outputUrlTtlSeconds``: a signed link's lifetime from when it is handed out."""

    key_id: pulumi.Input[str] | None = None
    """The CloudFront public key id links are signed with; None: public links (``outputAccess: public``)."""

    key_parameter: str | None = None
    """The SecureString holding that key pair's private half."""

    def environment(self) -> dict[str, pulumi.Input[str]]:
        """The variables runtime/functions/webhook_dispatch.py reads (the API writes the same through ApiConfig)."""
        env: dict[str, pulumi.Input[str]] = {"GENAI_OUTPUTS_BASE_URL": self.base_url,
                                             "GENAI_OUTPUT_URL_TTL_SECONDS": str(self.ttl_seconds)}
        if self.key_id is not None and self.key_parameter is not None:
            env[KEY_ID_VARIABLE] = self.key_id
            env[KEY_PARAMETER_VARIABLE] = self.key_parameter
        return env

    def statements(self, region: str, account: pulumi.Input[str]) -> list[dict[str, pulumi.Input]]:
        """Read the signing key's private half, and nothing else (none for public links)."""
        if self.key_parameter is None:
            return []
        arn = pulumi.Output.concat("arn:aws:ssm:", region, ":", account, ":parameter/",
                                   self.key_parameter.lstrip("/"))
        return [{"sid": "OutputSigningKey", "actions": ["ssm:GetParameter"], "resources": [arn]}]
