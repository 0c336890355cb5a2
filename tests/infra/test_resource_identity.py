"""The logical ids and physical names of the resources a refactor must not replace or orphan.

CloudFormation replaces a resource whose logical id changes (a moved construct gets a new
path, hence a new id): a retained bucket, key or log group is then orphaned and a new one
created, a named function or alarm is deleted and re-created. This test pins, per stack,
the logical id and physical name of every such resource. A change here is a deployment
change: regenerate the snapshot only on purpose (``UPDATE_RESOURCE_SNAPSHOT=1``) and say
why in the commit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

SNAPSHOT = Path(__file__).parent / "snapshots" / "resource_identity.json"
# Resource type -> the property that holds its physical name (None: no name property; the
# logical id alone decides replacement, e.g. a retained key or a bucket policy).
PINNED: dict[str, str | None] = {
    "AWS::KMS::Key": None,
    "AWS::KMS::Alias": "AliasName",
    "AWS::S3::Bucket": "BucketName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::Lambda::LayerVersion": None,
    "AWS::CloudWatch::Alarm": "AlarmName",
    "AWS::CloudWatch::CompositeAlarm": "AlarmName",
    "AWS::StepFunctions::StateMachine": "StateMachineName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::Events::Rule": "Name",
    "AWS::IAM::Role": "RoleName",
    "AWS::EC2::VPC": None,
}


def _identity(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    pinned = {}
    for logical_id, resource in sorted(template["Resources"].items()):
        kind = resource["Type"]
        if kind not in PINNED:
            continue
        name_key = PINNED[kind]
        entry: dict[str, Any] = {"type": kind}
        if name_key:
            entry["name"] = resource.get("Properties", {}).get(name_key)
        if "DeletionPolicy" in resource:
            entry["deletion_policy"] = resource["DeletionPolicy"]
        pinned[logical_id] = entry
    return pinned


def test_retained_and_named_resources_keep_their_logical_ids_and_names(dev_app):
    current = {stack.stack_name: _identity(dev_app.template_json(stack)) for stack in dev_app.all_stacks()}
    if os.environ.get("UPDATE_RESOURCE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
    expected = json.loads(SNAPSHOT.read_text())
    assert current == expected, (
        "a retained or named resource changed its logical id or name: CloudFormation would replace it "
        "(regenerate tests/infra/snapshots/resource_identity.json only for an intended change)"
    )
