"""The stack tells its API where the node catalog of the fleet's image is (issue 41, point 2): GENAI_NODE_CATALOG is
the object make ami stored for the AMI the cluster resolved (runtime.node_catalog.catalog_location), and the handler
may read that one object and nothing else in the catalog bucket. Fleets without ComfyUI get neither."""

from __future__ import annotations

import json

from components.api import Api, ApiArgs
from fleetdev.pulumi_mocks import ACCOUNT_ID, run_stack
from tests.unit.component_harness import build, fleet, sqs_endpoint

AMI = "ami-0123456789abcdef0"


def api(cfg, **kwargs):
    args = ApiArgs(job_table_name="genai-dev-jobs", job_table_arn="arn:aws:dynamodb:us-east-1:1:table/t",
                   queue=sqs_endpoint(), stack=cfg.identity, api=cfg.api, storage=cfg.storage,
                   average_job_seconds=cfg.cluster.average_job_seconds, **kwargs)
    return build(lambda: Api("api", args), "api_url")


def _handler(built):
    env = built.one("aws:lambda/function:Function", "api-handler-fn").inputs["environment"]["variables"]
    policy = json.loads(built.one("aws:iam/rolePolicy:RolePolicy", "api-handler-policy").inputs["policy"])
    return env, {s["Sid"]: s for s in policy["Statement"]}


def test_a_comfyui_fleets_api_reads_its_images_catalog_only():
    cfg = fleet(amiId=AMI, backend="comfyui")
    env, statements = _handler(api(cfg, comfyui_image=("cuda", AMI)))
    key = f"genai-fleet-amis-{ACCOUNT_ID}-{cfg.identity.region}/node-catalogs/cuda/{AMI}.json"
    assert env["GENAI_NODE_CATALOG"] == f"s3://{key}"
    assert statements["NodeCatalog"]["Action"] in ("s3:GetObject", ["s3:GetObject"])
    assert statements["NodeCatalog"]["Resource"] == f"arn:aws:s3:::{key}"


def test_other_fleets_get_no_catalog():
    env, statements = _handler(api(fleet(amiId=AMI, backend="comfyui")))
    assert "GENAI_NODE_CATALOG" not in env and "NodeCatalog" not in statements


def test_the_dev_stack_names_the_catalog_of_the_image_its_launch_templates_use():
    rec = run_stack("dev")
    env = rec.one("aws:lambda/function:Function", "api-handler-fn").inputs["environment"]["variables"]
    image = rec.exports["amiId"]
    assert env["GENAI_NODE_CATALOG"].endswith(f"/node-catalogs/cuda/{image}.json")
    assert {t.inputs["imageId"] for t in rec.of_type("aws:ec2/launchTemplate:LaunchTemplate")} == {image}
    lookups = [c for c in rec.calls if c["token"] == "aws:ec2/getAmi:getAmi"]
    assert len(lookups) == 1  # the API reuses the cluster's lookup: both name the same image
