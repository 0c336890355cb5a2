"""The project's SNS topics: encrypted with the project key, published to over TLS only."""

from __future__ import annotations

from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct


def encrypted_topic(
    scope: Construct, construct_id: str, *, key: kms.IKey, display_name: str, topic_name: str | None = None
) -> sns.Topic:
    """A topic encrypted with the project key (its policy lets this account's alarms use it,
    stacks/storage_stack.py) that refuses requests without TLS."""
    return sns.Topic(
        scope,
        construct_id,
        topic_name=topic_name,
        display_name=display_name,
        master_key=key,
        enforce_ssl=True,
    )
