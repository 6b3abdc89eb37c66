"""Network and service discovery: the VPC, the rules on its parameters, the
security groups and the Cloud Map registration of the workers."""

from __future__ import annotations

import ipaddress

import pytest

from tests.infrastructure.conftest import parameter_values, rules_pass

pytestmark = pytest.mark.infrastructure

EXISTING_VPC = {
    "VpcId": "vpc-0123456789abcdef0",
    "SubnetIds": "subnet-0123456789abcdef0,subnet-0fedcba9876543210",
}
OPEN_CIDRS = {"0.0.0.0/0", "::/0"}


# What make deploy passes: the WorkerImageIsBuilt rule refuses the stock default.
BUILT_IMAGE = {"WorkerImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/mistersmith-worker:0123abcd"}


def _rules(cfn_template, **overrides) -> dict[str, bool]:
    return rules_pass(cfn_template, parameter_values(cfn_template, BUILT_IMAGE | overrides))


def _worker_network(stack) -> dict:
    return stack.resources["WorkerService"]["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]


def test_network_rules_defaults_accepted(cfn_template):
    # Given no network parameters / When CloudFormation checks the rules / Then the deploy goes ahead (VPC created)
    assert all(_rules(cfn_template).values())


def test_network_rules_existing_vpc_with_subnets_accepted(cfn_template):
    # Given a VPC and its subnets / When the rules are checked / Then the deploy goes ahead
    assert all(_rules(cfn_template, **EXISTING_VPC).values())


def test_network_rules_existing_vpc_without_subnets_rejected(cfn_template):
    # Given a VPC but no subnets
    results = _rules(cfn_template, VpcId=EXISTING_VPC["VpcId"])
    # When the rules are checked
    # Then CloudFormation refuses before creating anything, naming what is missing
    assert results["ExistingVpcNamesSubnets"] is False


def test_network_rules_subnets_without_vpc_rejected(cfn_template):
    # Given subnets but no VPC / When the rules are checked / Then the deploy is refused (they would be ignored)
    assert _rules(cfn_template, SubnetIds=EXISTING_VPC["SubnetIds"])["CreatedVpcTakesNoSubnets"] is False


def test_failover_rule_hosted_zone_without_domain_rejected(cfn_template):
    # Given a hosted zone without the record name and certificate / When checked / Then the deploy is refused
    assert (
        _rules(cfn_template, HostedZoneId="Z0123456789ABCDEFGHIJ")["FailoverNamesDomainAndCertificate"]
        is False
    )


def test_table_rule_external_table_with_replicas_rejected(cfn_template):
    # Given a secondary region that also lists replicas
    results = _rules(cfn_template, ExternalTaskTableName="mistersmith-tasks-prod", ReplicaRegions="us-west-2")
    # When checked / Then the deploy is refused: only the primary stack owns the global table
    assert results["OneTableSource"] is False


def test_created_vpc_subnets_private_in_two_zones(default_deployment):
    # Given the default (no VpcId) / When the VPC is created
    resources = default_deployment.resources
    subnets = [resources[name]["Properties"] for name in ("PrivateSubnetA", "PrivateSubnetB")]
    # Then the workers get two private subnets in two availability zones
    assert [s["AvailabilityZone"]["Fn::Select"][0] for s in subnets] == [0, 1]
    assert all(s["MapPublicIpOnLaunch"] is False for s in subnets)
    assert _worker_network(default_deployment)["Subnets"] == [
        {"Ref": "PrivateSubnetA"},
        {"Ref": "PrivateSubnetB"},
    ]
    assert resources["Vpc"]["Properties"]["EnableDnsHostnames"] is True


def test_created_vpc_subnet_ranges_fit_max_tasks(sam_template, parameter_defaults):
    # Given the default VPC range and the subnets carved from it (/22 each)
    vpc = ipaddress.ip_network(parameter_defaults["VpcCidr"])
    cidr = sam_template["Resources"]["PrivateSubnetA"]["Properties"]["CidrBlock"]["Fn::Select"][1]["Fn::Cidr"]
    count, bits = cidr[1], cidr[2]
    subnets = list(vpc.subnets(new_prefix=32 - bits))[:count]
    # When MaxTasks workers start (one address each)
    # Then the two private subnets hold them, minus the 5 addresses AWS keeps per subnet
    assert 2 * (subnets[0].num_addresses - 5) >= int(parameter_defaults["MaxTasks"])


def test_created_vpc_private_route_only_through_nat(default_deployment):
    # Given the created VPC with NAT egress / When a task connects out / Then it leaves through the NAT gateway
    route = default_deployment.resources["PrivateDefaultRoute"]["Properties"]
    assert route == {
        "RouteTableId": {"Ref": "PrivateRouteTable"},
        "DestinationCidrBlock": "0.0.0.0/0",
        "NatGatewayId": {"Ref": "NatGateway"},
    }


def test_existing_vpc_used_as_given(deployment):
    # Given an existing VPC and subnets
    stack = deployment(**EXISTING_VPC)
    # When the workers start / Then they use those subnets and the security group lives in that VPC
    assert _worker_network(stack)["Subnets"] == {"Ref": "SubnetIds"}
    assert stack.resources["WorkerSecurityGroup"]["Properties"]["VpcId"] == {"Ref": "VpcId"}
    assert "Vpc" not in stack.resources


@pytest.mark.parametrize("service", ["sqs", "events", "logs", "ecr.api", "ecr.dkr"])
def test_interface_endpoints_cover_worker_apis(deployment, service):
    # Given endpoints instead of NAT
    resources = deployment(UseVpcEndpoints="true").resources
    # When a worker calls an AWS API it needs
    endpoints = {
        r["Properties"]["ServiceName"]["Fn::Sub"]: r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::EC2::VPCEndpoint"
    }
    # Then a private-DNS interface endpoint answers, reachable from the worker group only
    endpoint = endpoints[f"com.amazonaws.${{AWS::Region}}.{service}"]
    assert endpoint["VpcEndpointType"] == "Interface"
    assert endpoint["PrivateDnsEnabled"] is True
    assert endpoint["SecurityGroupIds"] == [{"Ref": "EndpointSecurityGroup"}]
    (ingress,) = resources["EndpointSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert ingress["SourceSecurityGroupId"] == {"Ref": "WorkerSecurityGroup"}
    assert (ingress["FromPort"], ingress["ToPort"]) == (443, 443)


def test_security_groups_no_ingress_from_anywhere(all_on_deployment, default_deployment):
    # Given every security group and ingress rule, with every option on and with the defaults
    for stack in (all_on_deployment, default_deployment):
        rules = []
        for resource in stack.resources.values():
            if resource["Type"] == "AWS::EC2::SecurityGroup":
                rules += resource["Properties"].get("SecurityGroupIngress", [])
            elif resource["Type"] == "AWS::EC2::SecurityGroupIngress":
                rules.append(resource["Properties"])
        # When anything on the internet tries to connect / Then no rule lets it in
        assert not [r for r in rules if {r.get("CidrIp"), r.get("CidrIpv6")} & OPEN_CIDRS]


def test_worker_ingress_only_from_load_balancer_on_8080(deployment):
    # Given a load balancer security group
    resources = deployment(LoadBalancerSecurityGroupId="sg-0123456789abcdef0").resources
    # When it health-checks the workers
    ingress = resources["WorkerIngressFromLoadBalancer"]["Properties"]
    # Then it alone reaches port 8080
    assert ingress["GroupId"] == {"Ref": "WorkerSecurityGroup"}
    assert ingress["SourceSecurityGroupId"] == {"Ref": "LoadBalancerSecurityGroupId"}
    assert (ingress["IpProtocol"], ingress["FromPort"], ingress["ToPort"]) == ("tcp", 8080, 8080)


def test_discovery_namespace_private_in_worker_vpc(resources):
    # Given the Cloud Map namespace / When the workers register / Then their names resolve only inside the VPC
    namespace = resources["DiscoveryNamespace"]
    assert namespace["Type"] == "AWS::ServiceDiscovery::PrivateDnsNamespace"
    assert namespace["Properties"]["Vpc"] == {"Fn::If": ["CreateVpc", {"Ref": "Vpc"}, {"Ref": "VpcId"}]}


def test_discovery_service_records_address_and_port(resources):
    # Given the workers' Cloud Map service
    service = resources["WorkerDiscoveryService"]["Properties"]
    # When ECS registers a task
    # Then it gets an A record (address) and an SRV record (port), short-lived, health-checked by ECS
    records = service["DnsConfig"]["DnsRecords"]
    assert {r["Type"] for r in records} == {"A", "SRV"}
    assert all(r["TTL"] <= 60 for r in records)
    assert service["NamespaceId"] == {"Ref": "DiscoveryNamespace"}
    assert "HealthCheckCustomConfig" in service


def test_worker_service_registers_container_port_in_cloud_map(resources, worker_container):
    # Given the worker service / When a task starts / Then ECS registers its worker container on 8080
    (registry,) = resources["WorkerService"]["Properties"]["ServiceRegistries"]
    assert registry == {
        "RegistryArn": {"Fn::GetAtt": ["WorkerDiscoveryService", "Arn"]},
        "ContainerName": worker_container["Name"],
        "ContainerPort": 8080,
    }


def test_outputs_name_discovery_namespace_and_service(cfn_template):
    # Given the outputs / When a client builds a resolver / Then it finds the namespace and service names
    outputs = cfn_template["Outputs"]
    assert outputs["DiscoveryNamespaceName"]["Value"] == {"Fn::Sub": "${Environment}.mistersmith.internal"}
    assert outputs["DiscoveryServiceName"]["Value"] == {"Fn::GetAtt": ["WorkerDiscoveryService", "Name"]}
