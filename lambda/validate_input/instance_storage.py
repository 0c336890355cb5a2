"""Which SageMaker instance types carry local NVMe instance storage, and what that rules out.

SageMaker refuses a volume KMS key for such instances: their local volumes are
encrypted by a hardware module on the instance, and CreateTrainingJob
(ResourceConfig.VolumeKmsKeyId), CreateProcessingJob
(ProcessingClusterConfig.VolumeKmsKeyId) and CreateEndpointConfig (KmsKeyId,
when any variant runs on such an instance) fail when one is given. Sources:
https://docs.aws.amazon.com/sagemaker/latest/dg/host-instance-storage.html and
the three API references (docs/aws-behaviour.md). The output keys on S3
(OutputDataConfig.KmsKeyId, ProcessingOutputConfig.KmsKeyId) are valid everywhere.

The run plan carries the families so that the state machine can decide at run
time for the baseline variant, whose instance type only the endpoint knows.
"""

from __future__ import annotations

import re

# Instance families (the part between "ml." and the size) with NVMe instance store,
# per the SageMaker instance storage page. EBS-only families (c5, m5, r5, p3, inf2, ...)
# take a volume key.
LOCAL_STORAGE_FAMILIES = frozenset(
    {
        "c5d", "c6id", "m5d", "m6id", "r5d", "r6id",
        "g4dn", "g5", "g6", "g6e", "gr6",
        "p3dn", "p4d", "p4de", "p5", "p5e", "p5en",
        "trn1", "trn1n",
    }
)  # fmt: skip
_FAMILY = re.compile(r"^ml\.(?P<family>[a-z0-9-]+)\.[a-z0-9]+$")


def instance_family(instance_type: str) -> str:
    match = _FAMILY.match(instance_type)
    if not match:
        raise ValueError(f"{instance_type!r} is not a SageMaker instance type (ml.<family>.<size>)")
    return match["family"]


def has_local_storage(instance_type: str) -> bool:
    """True where SageMaker refuses a volume KMS key for ``instance_type``."""
    return instance_family(instance_type) in LOCAL_STORAGE_FAMILIES


def volume_key(instance_type: str, key_arn: str) -> dict[str, str]:
    """``{"VolumeKmsKeyId": key}`` for EBS-only instances, ``{}`` where local storage refuses it."""
    return {} if has_local_storage(instance_type) else {"VolumeKmsKeyId": key_arn}
