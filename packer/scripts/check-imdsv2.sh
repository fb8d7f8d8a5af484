#!/usr/bin/env bash
# First build step: the build instance must answer IMDSv2 (session tokens) only. The source blocks
# set metadata_options { http_tokens = "required" }; this proves it took effect before anything
# is installed, so a builder that silently ignored it cannot produce an AMI.
set -Eeuo pipefail

readonly IMDS="http://169.254.169.254"

# An IMDSv1 request (no token) must be refused with 401.
v1_status="$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "${IMDS}/latest/meta-data/instance-id" || true)"
if [[ "${v1_status}" != "401" ]]; then
  echo "check-imdsv2: IMDSv1 answered HTTP ${v1_status}; the build instance must require IMDSv2 tokens" >&2
  exit 1
fi

# An IMDSv2 request (PUT for a token, then GET with it) must work.
token="$(curl -fsS --max-time 5 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' "${IMDS}/latest/api/token")"
instance_id="$(curl -fsS --max-time 5 -H "X-aws-ec2-metadata-token: ${token}" "${IMDS}/latest/meta-data/instance-id")"
echo "check-imdsv2: ${instance_id} answers IMDSv2 only" >&2
