"""Alias rules that live in the domain (AWS reference §10): one name per account and
Region (the Alias aggregate), 50 aliases per key, none on a key pending deletion."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain import key_states
from domain.errors import AlreadyExistsError, InvalidStateError, LimitExceededError, NotFoundError
from domain.keys import MAX_ALIASES, Alias
from tests.domain.builders import ACTOR, NOW, key_in, new_key

ALIAS_ARN = "arn:aws:kms:us-east-1:111122223333:alias/orders"


def alias(target: str = "k1") -> Alias:
    return Alias.create(
        alias_id=uuid.uuid4(),
        now=NOW,
        actor=ACTOR,
        alias_name="alias/orders",
        account_id="111122223333",
        region="us-east-1",
        target_key_id=target,
    )


def test_an_existing_alias_cannot_be_created_again() -> None:
    existing = alias()
    with pytest.raises(AlreadyExistsError) as raised:
        existing.assign(now=NOW, actor=ACTOR, target_key_id="k2", alias_arn=ALIAS_ARN)
    assert raised.value.message == f"An alias with the name {ALIAS_ARN} already exists"


def test_a_deleted_alias_is_not_found_until_created_again() -> None:
    gone = alias()
    gone.delete(now=NOW, actor=ACTOR, alias_arn=ALIAS_ARN)
    for command in (
        lambda: gone.retarget(now=NOW, actor=ACTOR, target_key_id="k2", alias_arn=ALIAS_ARN),
        lambda: gone.delete(now=NOW, actor=ACTOR, alias_arn=ALIAS_ARN),
    ):
        with pytest.raises(NotFoundError):
            command()
    gone.assign(now=NOW, actor=ACTOR, target_key_id="k3", alias_arn=ALIAS_ARN)
    assert (gone.exists, gone.target_key_id) == (True, "k3")


@given(st.lists(st.sampled_from(["add", "remove"]), max_size=70))
def test_a_key_holds_at_most_50_aliases(steps: list[str]) -> None:
    key = new_key()
    names: list[str] = []
    for n, step in enumerate(steps):
        if step == "remove" and names:
            key.remove_alias(now=NOW, actor=ACTOR, alias_name=names.pop())
        elif step == "add" and len(names) < MAX_ALIASES:
            names.append(f"alias/a{n}")
            key.add_alias(now=NOW, actor=ACTOR, alias_name=names[-1], operation="CreateAlias")
        elif step == "add":
            with pytest.raises(LimitExceededError):
                key.add_alias(now=NOW, actor=ACTOR, alias_name="alias/x", operation="CreateAlias")
        assert key.aliases == sorted(names)
    assert MAX_ALIASES == 50


def test_an_alias_cannot_point_to_a_key_pending_deletion_but_may_leave_it() -> None:
    key = key_in(key_states.PENDING_DELETION)
    for operation in ("CreateAlias", "UpdateAlias"):
        with pytest.raises(InvalidStateError):
            key.add_alias(now=NOW, actor=ACTOR, alias_name="alias/new", operation=operation)
    key.remove_alias(now=NOW, actor=ACTOR, alias_name="alias/kept")  # AWS §6, footnote 10
    assert key.aliases == []
