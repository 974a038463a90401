"""The canonical leaf of a stored event (domain/ledger_leaves.py): byte-exact layout, and
any change to a field changes the leaf."""

from __future__ import annotations

import hashlib
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.ledger_errors import LeafEncodingError
from domain.ledger_leaves import LeafFields, decode_leaf, encode_leaf, leaf_hash_of, leaf_of

OID = uuid.UUID("00112233-4455-6677-8899-aabbccddeeff")
TOPIC = "domain.keys:Key.Used"


def test_the_layout_is_byte_exact() -> None:
    state = b'{"a":1}'
    leaf = leaf_of(258, OID, 3, TOPIC, state)
    expected = (
        bytes.fromhex("0000000000000102")
        + bytes.fromhex("00112233445566778899aabbccddeeff")
        + bytes.fromhex("0000000000000003")
        + len(TOPIC).to_bytes(4, "big")
        + TOPIC.encode()
        + hashlib.sha256(state).digest()
    )
    assert leaf == expected
    assert len(leaf) == 68 + len(TOPIC)
    assert leaf_hash_of(258, OID, 3, TOPIC, state) == hashlib.sha256(b"\x00" + leaf).digest()


def test_a_non_ascii_topic_is_prefixed_by_its_utf8_length() -> None:
    leaf = leaf_of(1, OID, 1, "é", b"")
    assert leaf[32:36] == (2).to_bytes(4, "big")
    assert leaf[36:38] == "é".encode()


def test_a_leaf_decodes_to_its_fields() -> None:
    leaf = leaf_of(7, OID, 2, TOPIC, b"state")
    assert decode_leaf(leaf) == LeafFields(7, OID, 2, TOPIC, hashlib.sha256(b"state").digest())


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        leaf_of(1, OID, 1, TOPIC, b"")[:-1],
        leaf_of(1, OID, 1, TOPIC, b"") + b"\x00",
        bytes(32) + (1).to_bytes(4, "big") + b"\xff" + bytes(32),
    ],
)
def test_bytes_that_are_not_one_leaf_do_not_decode(bad: bytes) -> None:
    with pytest.raises(LeafEncodingError):
        decode_leaf(bad)


@pytest.mark.parametrize(
    ("position", "version", "topic", "state_hash"),
    [
        (-1, 1, TOPIC, bytes(32)),
        (2**64, 1, TOPIC, bytes(32)),
        (1, -1, TOPIC, bytes(32)),
        (1, 2**64, TOPIC, bytes(32)),
        (1, 1, "\udc80", bytes(32)),
        (1, 1, TOPIC, bytes(31)),
    ],
)
def test_fields_out_of_range_are_refused(
    position: int, version: int, topic: str, state_hash: bytes
) -> None:
    with pytest.raises(LeafEncodingError):
        encode_leaf(position, OID, version, topic, state_hash)


EVENTS = st.tuples(
    st.integers(0, 2**64 - 1),
    st.uuids(),
    st.integers(0, 2**64 - 1),
    st.text(max_size=40).filter(lambda t: not any(0xD800 <= ord(c) <= 0xDFFF for c in t)),
    st.binary(max_size=64),
)


@given(EVENTS, EVENTS)
def test_different_events_have_different_leaves(a: tuple, b: tuple) -> None:
    pos_a, oid_a, ver_a, topic_a, state_a = a
    leaf_a = leaf_of(*a)
    assert decode_leaf(leaf_a) == LeafFields(
        pos_a, oid_a, ver_a, topic_a, hashlib.sha256(state_a).digest()
    )
    if a != b:
        assert leaf_of(*b) != leaf_a


@given(EVENTS, st.integers(0, 4), st.data())
def test_changing_any_one_field_changes_the_leaf(
    event: tuple,
    field: int,
    data: st.DataObject,
) -> None:
    changed = list(event)
    if field in (0, 2):
        changed[field] = (event[field] + data.draw(st.integers(1, 2**64 - 1))) % 2**64
    elif field == 1:
        changed[1] = uuid.UUID(int=event[1].int ^ (1 << data.draw(st.integers(0, 127))))
    elif field == 3:
        changed[3] = event[3] + data.draw(st.sampled_from(["x", "é", "\x00"]))
    else:
        changed[4] = event[4] + data.draw(st.binary(min_size=1, max_size=4))
    assert leaf_of(*changed) != leaf_of(*event)
