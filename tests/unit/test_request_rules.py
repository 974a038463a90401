"""The request validator's rules are read from every input shape of the models it serves
(app/entrypoints/aws_json/shapes.py): none fails to build, and a member whose pattern
Python cannot read is left unchecked rather than answered with an internal error."""

from __future__ import annotations

from typing import Any

import pytest

from app.aws.model import operation_model, service_model
from app.entrypoints.aws_json import shapes
from app.entrypoints.aws_json.shapes import RequestParser, _rule
from domain.errors import UnknownOperationError


@pytest.mark.parametrize("model_name", ["kms", "sts", "cloudtrail"])
def test_every_operation_of_the_model_has_its_rules(model_name: str) -> None:
    model = service_model(model_name)
    for name in model.operation_names:
        shape = model.operation_model(name).input_shape
        if shape is not None:
            rule = _rule(model_name, shape)
            assert rule.kind == "structure"
            assert set(rule.members) == set(shape.members)


def test_a_java_pattern_member_is_accepted_unchecked() -> None:
    shape = operation_model("sts", "AssumeRole").input_shape
    parsed = RequestParser("sts").parse(
        shape,
        {
            "RoleArn": "arn:aws:iam::111122223333:role/reader",
            "RoleSessionName": "session",
            "Tags": [{"Key": "team", "Value": "payments"}],  # \p{L} in the model
        },
    )
    assert parsed["Tags"] == [{"Key": "team", "Value": "payments"}]


def test_an_operations_input_rule_is_read_from_the_model_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The handler parses every request against its operation's rule: the model is not
    asked again for an operation it was asked about (issue 17)."""
    asked: list[str] = []

    def counting(service: str, name: str) -> Any:
        asked.append(name)
        return operation_model(service, name)

    monkeypatch.setattr(shapes, "operation_model", counting)
    body = b'{"KeyId": "alias/x", "Plaintext": "eA=="}'
    for _ in range(3):
        assert shapes.parse_request("kms", "Encrypt", body)["Plaintext"] == b"x"
    assert len(asked) <= 1


def test_an_unknown_operation_is_refused_every_time() -> None:
    for _ in range(2):
        with pytest.raises(UnknownOperationError):
            shapes.parse_request("kms", "NoSuchOperation", b"{}")
