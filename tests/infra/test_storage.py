"""Security and storage: the key and the artifact bucket keep their promises."""

from __future__ import annotations

from aws_cdk.assertions import Match

from contracts.artifact_layout import run_key


def _artifact_bucket(dev_app):
    storage = dev_app.stacks.storage
    template = dev_app.template(storage)
    logical_id = storage.get_logical_id(storage.artifact_bucket.node.default_child)
    return template, logical_id, template.to_json()["Resources"][logical_id]


def test_key_rotates_and_is_retained(dev_app):
    template = dev_app.template(dev_app.stacks.storage)
    template.has_resource(
        "AWS::KMS::Key",
        {"Properties": {"EnableKeyRotation": True}, "DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain"},
    )
    template.has_resource_properties("AWS::KMS::Alias", {"AliasName": "alias/llmq-dev"})


def test_key_policy_admits_logs_only_for_this_accounts_log_groups(dev_app):
    template = dev_app.template(dev_app.stacks.storage)
    key = next(iter(template.find_resources("AWS::KMS::Key").values()))
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    logs = [s for s in statements if s.get("Sid") == "AllowCloudWatchLogsOfThisAccount"]
    assert len(logs) == 1
    assert "kms:EncryptionContext:aws:logs:arn" in logs[0]["Condition"]["ArnLike"]
    services = [s["Principal"].get("Service") for s in statements if "Service" in s.get("Principal", {})]
    assert len(services) == 2, "no service but Logs and CloudWatch alarms may use the key through its policy"


def test_key_policy_admits_cloudwatch_alarms_of_this_account_for_encrypted_topics(dev_app):
    # Without it, alarm actions publishing to the KMS-encrypted topics are silently dropped.
    storage = dev_app.stacks.storage
    key = next(iter(dev_app.template(storage).find_resources("AWS::KMS::Key").values()))
    [statement] = [
        s
        for s in key["Properties"]["KeyPolicy"]["Statement"]
        if s.get("Principal", {}).get("Service") == "cloudwatch.amazonaws.com"
    ]
    assert statement["Effect"] == "Allow"
    assert sorted(statement["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]
    conditions = statement["Condition"]
    account = dev_app.config.account or {"Ref": "AWS::AccountId"}
    assert conditions["StringEquals"] == {"aws:SourceAccount": account}
    assert _text(conditions["ArnLike"]["aws:SourceArn"]) == (
        "arn:<AWS::Partition>:cloudwatch:<AWS::Region>:<AWS::AccountId>:alarm:*"
        if dev_app.config.account is None
        else f"arn:aws:cloudwatch:{dev_app.config.region}:{dev_app.config.account}:alarm:*"
    )


def _text(value) -> str:
    """A CloudFormation string (literal, Ref or Fn::Join of both) with pseudo parameters as <...>."""
    if isinstance(value, str):
        return value
    if "Ref" in value:
        return f"<{value['Ref']}>"
    separator, parts = value["Fn::Join"]
    return separator.join(_text(part) for part in parts)


def test_artifact_bucket_is_versioned_kms_encrypted_private_and_retained(dev_app):
    _, _, bucket = _artifact_bucket(dev_app)
    props = bucket["Properties"]
    assert bucket["DeletionPolicy"] == "Retain"
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    rule = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert "KMSMasterKeyID" in rule["ServerSideEncryptionByDefault"]
    assert rule["BucketKeyEnabled"] is True
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["LoggingConfiguration"]["DestinationBucketName"]
    rules = {r["Id"]: r for r in props["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-noncurrent-versions"]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 90
    assert rules["abort-incomplete-uploads"]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 7


def test_every_bucket_denies_plain_http(dev_app):
    template = dev_app.template(dev_app.stacks.storage)
    buckets = template.find_resources("AWS::S3::Bucket")
    policies = template.find_resources("AWS::S3::BucketPolicy")
    assert len(policies) == len(buckets) == 2
    for policy in policies.values():
        template.has_resource_properties(
            "AWS::S3::BucketPolicy",
            {
                "Bucket": policy["Properties"]["Bucket"],
                "PolicyDocument": {
                    "Statement": Match.array_with(
                        [
                            Match.object_like(
                                {
                                    "Effect": "Deny",
                                    "Action": "s3:*",
                                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                                }
                            )
                        ]
                    )
                },
            },
        )


def test_access_log_bucket_is_private_and_expires_logs(dev_app):
    storage = dev_app.stacks.storage
    template = dev_app.template(storage)
    logical_id = storage.get_logical_id(storage.access_log_bucket.node.default_child)
    props = template.to_json()["Resources"][logical_id]["Properties"]
    assert props["PublicAccessBlockConfiguration"]["BlockPublicPolicy"] is True
    assert props["LifecycleConfiguration"]["Rules"][0]["ExpirationInDays"] == dev_app.config.log_retention_days


def test_run_prefix_matches_documented_layout():
    assert run_key("llama-3-8b", "run-42") == "models/llama-3-8b/run-42/"
