"""The local stack reads template.yaml's intrinsics as CloudFormation would."""

from __future__ import annotations

import pytest

from local_stack.intrinsics import Intrinsics
from local_stack.template import Template

pytestmark = pytest.mark.unit


def test_replica_conditions_follow_the_list_of_replica_regions():
    # Given the template with no replica regions, and with two
    default = Template.load()
    two = Template.load(overrides={"ReplicaRegions": "us-west-2,eu-west-1"})
    # When the replica conditions are decided / Then only the listed replicas exist
    assert [default.condition(name) for name in ("HasReplica2", "HasReplica3")] == [False, False]
    assert [two.condition(name) for name in ("HasReplica2", "HasReplica3")] == [True, False]


def test_a_list_item_that_comes_out_as_no_value_is_left_out_and_nested_ifs_are_decided():
    # Given a list with a conditional item and a conditional property
    intrinsics = Intrinsics({"On": {"Fn::Equals": ["a", "a"]}, "Off": {"Fn::Equals": ["a", "b"]}}, ref=str)
    items = [
        {"Fn::If": ["Off", {"Name": "x"}, {"Ref": "AWS::NoValue"}]},
        {"Name": "y", "Value": {"Fn::If": ["On", {"Ref": "P"}, "z"]}},
    ]
    # When it is decided / Then the absent item is gone and the property kept its intrinsic
    assert intrinsics.decide(items) == [{"Name": "y", "Value": {"Ref": "P"}}]


def test_an_intrinsic_the_evaluator_does_not_know_is_an_error_not_data():
    intrinsics = Intrinsics({}, ref=str)
    with pytest.raises(ValueError, match="Fn::GetAZs"):
        intrinsics.evaluate({"Fn::GetAZs": ""})


def test_sub_join_select_and_split_evaluate_on_the_values_given():
    parameters = {"Names": ["a", "b"], "Csv": "x,y", "AWS::Region": "us-east-1"}
    intrinsics = Intrinsics({}, ref=parameters.__getitem__, get_att=lambda name, attr: f"{name}/{attr}")
    assert intrinsics.evaluate({"Fn::Join": ["-", {"Ref": "Names"}]}) == "a-b"
    assert intrinsics.evaluate({"Fn::Select": [1, {"Fn::Split": [",", {"Ref": "Csv"}]}]}) == "y"
    assert intrinsics.evaluate({"Fn::Sub": "${AWS::Region}:${Queue.Arn}"}) == "us-east-1:Queue/Arn"
