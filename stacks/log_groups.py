"""KMS-encrypted CloudWatch log groups with a retention from the stage config."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

# CloudWatch accepts only these retention periods (days).
RETENTION_BY_DAYS: dict[int, logs.RetentionDays] = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}


def encrypted_log_group(
    scope: Construct, construct_id: str, *, key: kms.IKey, retention_days: int, removal_policy: RemovalPolicy
) -> logs.LogGroup:
    """A log group encrypted with the project key (the key policy admits CloudWatch Logs)."""
    return logs.LogGroup(
        scope,
        construct_id,
        encryption_key=key,
        retention=RETENTION_BY_DAYS[retention_days],
        removal_policy=removal_policy,
    )
