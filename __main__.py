"""genai-fleet: read the stack config, build the components, export what users need.

Nothing else lives here: every resource is declared inside a component in ``components/``.
"""

import pulumi
import pulumi_aws as aws

from components import config as fleet_config

# Fails with every bad key listed before any resource is declared.
cfg = fleet_config.from_pulumi()

# One provider carries the required tags to every taggable resource (Project, Environment, Owner,
# CostCenter); components inherit it through their parent chain.
provider = aws.Provider(
    "aws",
    region=cfg.region,
    default_tags=aws.ProviderDefaultTagsArgs(tags=cfg.tags.as_dict()),
)
opts = pulumi.ResourceOptions(providers=[provider])

pulumi.export("environment", cfg.environment)
pulumi.export("region", cfg.region)
