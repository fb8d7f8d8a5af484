"""What ``pulumi destroy`` keeps: production's data is protected and retained, development deletes cleanly.

One stack transformation, registered by ``__main__.py`` before any resource, sets the options on every
resource the program declares, so the decision lives here and nowhere else:

- **Production** (environment starting with ``prod``): each resource of ``KEPT_TYPES`` gets
  ``protect=True`` and ``retain_on_delete=True``. ``protect`` makes a plain ``pulumi destroy`` (or an
  update that would delete or replace one) fail before it deletes anything; ``pulumi destroy
  --exclude-protected`` removes everything else (the engine also keeps what a protected resource
  depends on: the provider). ``retain_on_delete`` keeps the cloud resource when the stack lets go of it
  after ``pulumi state unprotect``: the data stays in the account and is removed by hand (README,
  "Tearing a stack down").
- **Everything else** (dev): no resource is protected or retained; buckets are ``force_destroy`` and the
  table has no deletion protection (their components read ``StackIdentity.is_production``), the groups
  ``force_delete``, so ``pulumi destroy`` deletes the whole stack.

``KEPT_TYPES``: the data (both buckets, the job table), what keeps a kept bucket private, encrypted and
expiring (public access block, ownership controls, default encryption, versioning, lifecycle), and every
log group (a kept log group keeps its retention, so kept logs still expire). Bucket policies are not
kept: the outputs bucket's names the CloudFront distribution, and keeping it would keep the distribution
(a dependency of a protected resource); a bucket without a policy stays private (public access block,
no grants).

An SDK-side ``register_stack_transformation`` rather than the engine-side ``register_resource_transform``:
the options it sets reach the engine in each resource's registration, so the offline preview's mocks see
them exactly as ``pulumi up`` sends them (Pulumi's mock monitor does not run engine-side transforms).
"""

from __future__ import annotations

from collections.abc import Callable

import pulumi

KEPT_TYPES = frozenset({
    "aws:s3/bucket:Bucket",
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketVersioning:BucketVersioning",
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
    "aws:dynamodb/table:Table",
    "aws:cloudwatch/logGroup:LogGroup",
})


def keep_on_destroy(is_production: bool) -> Callable[[pulumi.ResourceTransformationArgs],
                                                       pulumi.ResourceTransformationResult | None]:
    """The stack transformation: protect and retain ``KEPT_TYPES`` in production, nothing elsewhere."""

    def transform(args: pulumi.ResourceTransformationArgs) -> pulumi.ResourceTransformationResult | None:
        if not is_production or args.type_ not in KEPT_TYPES:
            return None
        opts = pulumi.ResourceOptions.merge(args.opts, pulumi.ResourceOptions(protect=True, retain_on_delete=True))
        return pulumi.ResourceTransformationResult(props=args.props, opts=opts)

    return transform


def register(is_production: bool) -> None:
    """Apply ``keep_on_destroy`` to every resource declared after this call (call it first in the program)."""
    pulumi.runtime.register_stack_transformation(keep_on_destroy(is_production))
