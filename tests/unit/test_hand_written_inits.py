"""The dataclasses built once per request set their fields in an __init__ of their own
(without the generated one's object.__setattr__ per field): each must still take exactly
the declared fields, with the declared defaults, and stay frozen."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest

from app.auth.credentials import Caller
from app.auth.sigv4 import IncomingRequest, VerifiedCaller

CLASSES = [Caller, IncomingRequest, VerifiedCaller]


@pytest.mark.parametrize("cls", CLASSES)
def test_the_init_takes_exactly_the_declared_fields_in_order(cls: type) -> None:
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
    fields = [f for f in dataclasses.fields(cls) if f.init]
    assert [p.name for p in parameters] == [f.name for f in fields]
    for parameter, field in zip(parameters, fields, strict=True):
        if field.default is not dataclasses.MISSING:
            assert parameter.default == field.default
        elif field.default_factory is not dataclasses.MISSING:
            assert parameter.default is None  # stands for "call the factory"
        else:
            assert parameter.default is inspect.Parameter.empty


@pytest.mark.parametrize("cls", CLASSES)
def test_every_field_is_set_and_replace_still_works(cls: type) -> None:
    values: dict[str, Any] = {f.name: object() for f in dataclasses.fields(cls)}
    made = cls(**values)
    assert {name: getattr(made, name) for name in values} == values
    other = object()
    first = dataclasses.fields(cls)[0].name
    assert getattr(dataclasses.replace(made, **{first: other}), first) is other
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(made, first, other)


def test_a_caller_without_a_request_id_gets_a_new_one() -> None:
    made = [
        Caller("111122223333", "arn:aws:iam::111122223333:user/a", "AKID", "us-east-1")
        for _ in range(2)
    ]
    assert made[0].request_id and made[1].request_id
    assert made[0].request_id != made[1].request_id
    assert (made[0].source_ip, made[0].session, made[0].grant_tokens) == ("", None, ())
