"""The least-privilege inline policy of a stack function (the job API's and the job-events functions).

Each statement is ``{"sid", "actions", "resources"}`` with optional plain ``conditions``; resources may be
Pulumi outputs (table, queue and parameter ARNs), so the document is an ``Output[str]`` rendered once all of
them are known. Actions are sorted and a single resource is written as a string, so the document is stable
from run to run.
"""

from __future__ import annotations

import json

import pulumi


def policy_json(statements: list[dict[str, pulumi.Input]]) -> pulumi.Output[str]:
    """The IAM policy document (JSON) that allows exactly ``statements``."""
    def render(resolved: list[list[str]]) -> str:
        out = []
        for st, resources in zip(statements, resolved, strict=True):
            statement = {"Sid": st["sid"], "Effect": "Allow", "Action": sorted(st["actions"]),
                         "Resource": resources[0] if len(resources) == 1 else resources}
            if st.get("conditions"):  # plain values only (e.g. an s3:prefix a listing is limited to)
                statement["Condition"] = st["conditions"]
            out.append(statement)
        return json.dumps({"Version": "2012-10-17", "Statement": out})

    return pulumi.Output.all(*[pulumi.Output.all(*st["resources"]) for st in statements]).apply(render)
