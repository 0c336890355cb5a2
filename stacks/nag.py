"""cdk-nag acknowledgments: one rule, one specific reason, on the narrowest construct."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct


def acknowledge(construct: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge one cdk-nag finding on ``construct``.

    ``rule`` is the full finding id, e.g. ``AwsSolutions-IAM5[Resource::*]``:
    cdk-nag v3 matches findings exactly, so a bare rule id does not silence
    the wildcard findings of another statement by accident.
    """
    if len(reason) < 20:
        raise ValueError(f"acknowledgment of {rule} needs a specific reason, got {reason!r}")
    Validations.of(construct).acknowledge(Acknowledgment(id=rule, reason=reason))
