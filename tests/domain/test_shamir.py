"""domain/shamir.py: Vault-compatible Shamir secret sharing (its tests' vectors, plus
properties over any secret, any T of N)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain import shamir
from domain.errors import ValidationError

# Vault's shamir/tables.go: the first entries of its log and exp tables (generator 0xe5).
VAULT_LOG_HEAD = [0x00, 0xFF, 0xC8, 0x08, 0x91, 0x10, 0xD0, 0x36]
VAULT_EXP_HEAD = [0x01, 0xE5, 0x4C, 0xB5, 0xFB, 0x9F, 0xFC, 0x12]
VAULT_EXP_TAIL = [0xAA, 0xCD, 0x9A, 0xA0, 0x75, 0x54, 0x0E, 0x01]
VAULT_LOG_TAIL = [0x68, 0x1B, 0x64, 0x04, 0x06, 0xBF, 0x83, 0x38]


def test_the_tables_are_vaults() -> None:
    assert shamir.LOG_TABLE[:8] == VAULT_LOG_HEAD
    assert shamir.LOG_TABLE[-8:] == VAULT_LOG_TAIL
    assert shamir.EXP_TABLE[:8] == VAULT_EXP_HEAD
    assert shamir.EXP_TABLE[-8:] == VAULT_EXP_TAIL


def test_field_vectors_of_vaults_tests() -> None:  # TestField_Add/Mult/Divide
    assert shamir.add(16, 16) == 0
    assert shamir.add(3, 4) == 7
    assert shamir.mult(3, 7) == 9
    assert shamir.mult(3, 0) == 0
    assert shamir.mult(0, 3) == 0
    assert shamir.div(0, 7) == 0
    assert shamir.div(3, 3) == 1
    assert shamir.div(6, 3) == 2
    with pytest.raises(ZeroDivisionError):
        shamir.div(1, 0)


def test_interpolate_any_intercept() -> None:  # TestInterpolate_Rand
    for intercept in range(256):
        polynomial = shamir._random_polynomial(intercept, 2)
        assert polynomial[0] == intercept and polynomial[2] != 0
        ys = [shamir.evaluate(polynomial, x) for x in (1, 2, 3)]
        assert shamir.interpolate([1, 2, 3], ys, 0) == intercept


def test_combines_shares_made_by_vault_with_x_equal_to_index_plus_one() -> None:
    """Vault's older Split gives shares x = 1..N: a share set built that way by hand from
    a known polynomial per byte combines to the secret."""
    secret = b"test"
    polynomials = [[byte, 0x2A, 0x11] for byte in secret]
    shares = [bytes([*(shamir.evaluate(p, x) for p in polynomials), x]) for x in (1, 2, 3, 4, 5)]
    for chosen in itertools.permutations(shares, 3):  # TestCombine: every 3 of 5, any order
        assert shamir.combine(list(chosen)) == secret


def test_split_shapes() -> None:  # TestSplit
    shares = shamir.split(b"test", 5, 3)
    assert len(shares) == 5
    assert all(len(share) == 5 for share in shares)
    xs = [share[-1] for share in shares]
    assert len(set(xs)) == 5 and 0 not in xs


@pytest.mark.parametrize(
    ("secret", "parts", "threshold"),
    [(b"test", 0, 0), (b"test", 2, 3), (b"test", 1000, 3), (b"test", 10, 1), (b"", 3, 2)],
)
def test_split_refuses(secret: bytes, parts: int, threshold: int) -> None:  # TestSplit_invalid
    with pytest.raises(shamir.InvalidSplitError):
        shamir.split(secret, parts, threshold)


@pytest.mark.parametrize(
    ("shares", "error"),
    [
        ([], shamir.InvalidShareError),
        ([b"foo"], shamir.InvalidShareError),
        ([b"foo", b"ba"], shamir.InvalidShareError),
        ([b"f", b"b"], shamir.InvalidShareError),
        ([b"foo", b"foo"], shamir.DuplicateShareError),
        ([b"fo\x00", b"ba\x01"], shamir.InvalidShareError),
    ],
)
def test_combine_refuses(
    shares: list[bytes], error: type[Exception]
) -> None:  # TestCombine_invalid
    with pytest.raises(error):
        shamir.combine(shares)
    assert issubclass(error, ValidationError)  # answered 400, never 500


@settings(max_examples=60, deadline=None)
@given(
    secret=st.binary(min_size=1, max_size=40),
    parts=st.integers(min_value=2, max_value=12),
    data=st.data(),
)
def test_any_threshold_of_the_shares_recombine(
    secret: bytes, parts: int, data: st.DataObject
) -> None:
    threshold = data.draw(st.integers(min_value=2, max_value=parts))
    shares = shamir.split(secret, parts, threshold)
    chosen = data.draw(st.permutations(shares))[: data.draw(st.integers(threshold, parts))]
    assert shamir.combine(chosen) == secret


@settings(max_examples=60, deadline=None)
@given(
    secret=st.binary(min_size=16, max_size=40),
    parts=st.integers(min_value=3, max_value=12),
    data=st.data(),
)
def test_fewer_than_the_threshold_give_something_else(
    secret: bytes, parts: int, data: st.DataObject
) -> None:
    threshold = data.draw(st.integers(min_value=3, max_value=parts))
    shares = shamir.split(secret, parts, threshold)
    fewer = data.draw(st.integers(min_value=2, max_value=threshold - 1))
    chosen = data.draw(st.permutations(shares))[:fewer]
    # At least 16 random bytes: equal by chance with probability 2^-128.
    assert shamir.combine(chosen) != secret


@settings(max_examples=60, deadline=None)
@given(shares=st.lists(st.binary(max_size=6), min_size=2, max_size=5))
def test_malformed_shares_are_refused_with_typed_errors(shares: list[bytes]) -> None:
    try:
        shamir.combine(shares)
    except shamir.ShamirError:
        return
    assert len({len(s) for s in shares}) == 1 and len({s[-1] for s in shares}) == len(shares)
