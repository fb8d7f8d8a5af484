"""What the AWS provider computes for the recording mocks: the service of a type token, and the JSON of
``aws.iam.get_policy_document`` (so the mocks' IAM documents are what the real provider would render).
"""

from __future__ import annotations

import json
from typing import Any


def service_of(type_token: str) -> str:
    module = type_token.split(":")[1].split("/")[0]
    return {"cloudwatch": "cloudwatch", "apigatewayv2": "apigateway", "msk": "kafka", "autoscaling": "autoscaling",
            "cloudfront": "cloudfront", "lambda": "lambda", "iam": "iam", "s3": "s3", "sqs": "sqs",
            "dynamodb": "dynamodb", "sns": "sns", "ssm": "ssm", "ec2": "ec2", "kms": "kms"}.get(module, module)


def policy_document(args: dict[str, Any]) -> dict[str, Any]:
    """Render ``aws.iam.get_policy_document`` the way the provider does, for the fields we use."""
    statements = []
    for st in args.get("statements", []):
        out: dict[str, Any] = {"Effect": st.get("effect", "Allow")}
        if st.get("sid"):
            out["Sid"] = st["sid"]
        for src, dst in (("actions", "Action"), ("notActions", "NotAction"), ("resources", "Resource"),
                         ("notResources", "NotResource")):
            if st.get(src):
                vals = st[src]
                out[dst] = vals[0] if len(vals) == 1 else sorted(vals)
        for p_key, dst in (("principals", "Principal"), ("notPrincipals", "NotPrincipal")):
            if st.get(p_key):
                out[dst] = {p["type"]: p["identifiers"][0] if len(p["identifiers"]) == 1 else p["identifiers"]
                            for p in st[p_key]}
        if st.get("conditions"):
            cond: dict[str, dict[str, Any]] = {}
            for c in st["conditions"]:
                vals = c["values"]
                cond.setdefault(c["test"], {})[c["variable"]] = vals[0] if len(vals) == 1 else vals
            out["Condition"] = cond
        statements.append(out)
    doc = {"Version": "2012-10-17", "Statement": statements}
    return {"json": json.dumps(doc), "minifiedJson": json.dumps(doc, separators=(",", ":")), "id": "doc"}
