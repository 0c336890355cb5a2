"""Network: isolated by default, an endpoint for every API called from the VPC and no other, flow logs on."""

from __future__ import annotations

import re
from pathlib import Path

from aws_cdk.assertions import Match

from stacks.private_network import CALLERS, GATEWAY_SERVICES, INTERFACE_ENDPOINTS, INTERFACE_SERVICES

ROOT = Path(__file__).resolve().parents[2]
# Interface endpoint service names (com.amazonaws.<region>.<name>) of the callers' APIs.
EXPECTED_SERVICES = {
    "sagemaker.api",
    "sagemaker.runtime",
    "sns",
    "monitoring",
    "application-autoscaling",
    "ecr.api",
    "ecr.dkr",
}
_CLIENT = re.compile(r"""\b(?:boto3\.client|aws_client)\(\s*["']([a-z0-9-]+)["']""")


def _service_names(template) -> set[str]:
    names = set()
    for endpoint in template.find_resources("AWS::EC2::VPCEndpoint").values():
        service = endpoint["Properties"]["ServiceName"]
        # Interface endpoints render as "com.amazonaws.<region>.<svc>" through Fn::Join.
        text = service if isinstance(service, str) else "".join(p for p in service["Fn::Join"][1] if isinstance(p, str))
        names.add(text.split(".", 1)[1] if text.startswith(".") else text.rsplit("}", 1)[-1].lstrip("."))
    return names


def test_no_nat_and_only_isolated_subnets_when_egress_is_off(dev_app):
    template = dev_app.template(dev_app.stacks.network)
    template.resource_count_is("AWS::EC2::NatGateway", 0)
    template.resource_count_is("AWS::EC2::InternetGateway", 0)
    for subnet in template.find_resources("AWS::EC2::Subnet").values():
        assert subnet["Properties"]["MapPublicIpOnLaunch"] is False
    template.resource_count_is("AWS::EC2::Subnet", dev_app.config.max_azs)


def test_nat_egress_option_adds_one_nat_gateway(nat_app):
    template = nat_app.template(nat_app.stacks.network)
    template.resource_count_is("AWS::EC2::NatGateway", 1)
    template.resource_count_is("AWS::EC2::InternetGateway", 1)


def test_every_aws_client_a_function_creates_has_a_declared_caller_and_a_route():
    found: dict[str, set[str]] = {}
    for source in (ROOT / "lambda").glob("*/*.py"):
        for service in _CLIENT.findall(source.read_text()):
            found.setdefault(source.parent.name, set()).add(service)
    assert found  # the scan sees the functions' clients
    for function, services in found.items():
        declared = set(CALLERS[f"{function} function"])
        assert services <= declared, (function, services - declared)
    for function in (p.name for p in (ROOT / "lambda").iterdir() if (p / "handler.py").is_file()):
        assert f"{function} function" in CALLERS, function


def test_endpoints_derive_from_the_callers_and_none_lacks_a_caller():
    called = {service for services in CALLERS.values() for service in services}
    assert called - GATEWAY_SERVICES == set(INTERFACE_SERVICES)
    assert set(INTERFACE_ENDPOINTS) == {INTERFACE_SERVICES[s][0] for s in called - GATEWAY_SERVICES}


def test_interface_endpoint_for_every_api_used_and_s3_gateway(dev_app):
    template = dev_app.template(dev_app.stacks.network)
    endpoints = template.find_resources("AWS::EC2::VPCEndpoint")
    types = [e["Properties"].get("VpcEndpointType", "Gateway") for e in endpoints.values()]
    assert types.count("Interface") == len(INTERFACE_ENDPOINTS) == len(EXPECTED_SERVICES)
    assert types.count("Gateway") == 1
    rendered = str(endpoints)
    for service in EXPECTED_SERVICES:
        assert f".{service}'" in rendered or f'.{service}"' in rendered, service
    template.has_resource_properties(
        "AWS::EC2::VPCEndpoint", {"VpcEndpointType": "Interface", "PrivateDnsEnabled": True}
    )


def test_flow_logs_go_to_a_kms_encrypted_log_group(dev_app):
    template = dev_app.template(dev_app.stacks.network)
    template.has_resource_properties(
        "AWS::EC2::FlowLog", {"ResourceType": "VPC", "TrafficType": "ALL", "LogDestinationType": "cloud-watch-logs"}
    )
    template.has_resource_properties(
        "AWS::Logs::LogGroup", {"KmsKeyId": Match.any_value(), "RetentionInDays": dev_app.config.log_retention_days}
    )


def test_workload_security_group_admits_only_itself(dev_app):
    network = dev_app.stacks.network
    template = dev_app.template(network)
    group_id = network.get_logical_id(network.security_group.node.default_child)
    group = template.to_json()["Resources"][group_id]["Properties"]
    assert "SecurityGroupIngress" not in group or all("CidrIp" not in rule for rule in group["SecurityGroupIngress"])
    for rule in template.find_resources("AWS::EC2::SecurityGroupIngress").values():
        assert rule["Properties"]["SourceSecurityGroupId"] == {"Fn::GetAtt": [group_id, "GroupId"]}
        assert "CidrIp" not in rule["Properties"]


def test_the_evaluate_job_reaches_the_sagemaker_runtime_through_the_workload_security_group(dev_app):
    """The evaluate job (no network isolation) invokes the endpoint through the runtime interface endpoint."""
    network = dev_app.stacks.network
    template = dev_app.template(network)
    group_id = network.get_logical_id(network.security_group.node.default_child)
    (runtime,) = [
        e["Properties"]
        for e in template.find_resources("AWS::EC2::VPCEndpoint").values()
        if ".sagemaker.runtime" in str(e["Properties"]["ServiceName"])
    ]
    assert runtime["VpcEndpointType"] == "Interface"
    # Private DNS: the SDK's own runtime.sagemaker.<region> name resolves to the endpoint.
    assert runtime["PrivateDnsEnabled"] is True
    assert runtime["SecurityGroupIds"] == [{"Fn::GetAtt": [group_id, "GroupId"]}]
    # The group admits its own members on every port (the job shares it), and they may leave on 443.
    ingress = template.find_resources("AWS::EC2::SecurityGroupIngress")
    assert any(r["Properties"]["IpProtocol"] == "-1" for r in ingress.values())
    resources = dev_app.template_json(network)["Resources"]
    egress = resources[group_id]["Properties"]["SecurityGroupEgress"]
    assert any(rule.get("ToPort") == 443 for rule in egress)
    assert "evaluate processing job (VPC, no network isolation)" in CALLERS
    assert "sagemaker-runtime" in CALLERS["evaluate processing job (VPC, no network isolation)"]
