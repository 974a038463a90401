"""Shamir's secret sharing over GF(2^8), compatible with HashiCorp Vault's and OpenBao's
``shamir`` package (the unseal key shares of docs/key-custody.md).

Each byte of the secret is the constant term of its own random polynomial of degree
``threshold - 1`` (top coefficient non-zero); a share is that polynomial's values at one x,
one byte per secret byte, followed by x itself: ``y_1 .. y_n || x``, one byte longer than
the secret. Any ``threshold`` shares give the secret back by Lagrange interpolation at 0;
fewer give a value that says nothing about it (and no error: a wrong set of shares is only
noticed by what the result fails to open). The field is AES's (x^8 + x^4 + x^3 + x + 1)
with 0xe5 as the generator of its log tables, as Vault's tables.go has it.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from domain.errors import ValidationError

MAX_PARTS = 255  # x is one non-zero byte
DUPLICATE_SHARE = "the same share was given twice"
_POLYNOMIAL = 0x11B
_GENERATOR = 0xE5


class ShamirError(ValidationError):
    """Shares, or split parameters, that Shamir's scheme cannot use."""


class InvalidSplitError(ShamirError):
    """split was asked for impossible parts, threshold or secret."""


class InvalidShareError(ShamirError):
    """A share is too short, of another length than the others, or has x = 0."""


class DuplicateShareError(ShamirError):
    """Two shares have the same x: the same share given twice."""


def _multiply_slow(a: int, b: int) -> int:
    product = 0
    while b:
        if b & 1:
            product ^= a
        a <<= 1
        if a & 0x100:
            a ^= _POLYNOMIAL
        b >>= 1
    return product


def _tables() -> tuple[list[int], list[int]]:
    exp = [0] * 256
    log = [0] * 256
    value = 1
    for power in range(255):
        exp[power] = value
        log[value] = power
        value = _multiply_slow(value, _GENERATOR)
    exp[255] = exp[0]  # as Vault's tables: g^255 = 1, and log(1) spelled 255
    log[1] = 255
    return exp, log


EXP_TABLE, LOG_TABLE = _tables()


def add(a: int, b: int) -> int:
    """Addition (and subtraction) in GF(2^8)."""
    return a ^ b


def mult(a: int, b: int) -> int:
    if a == 0 or b == 0:
        return 0
    return EXP_TABLE[(LOG_TABLE[a] + LOG_TABLE[b]) % 255]


def div(a: int, b: int) -> int:
    if b == 0:
        raise ZeroDivisionError("division by zero in GF(2^8)")
    if a == 0:
        return 0
    return EXP_TABLE[(LOG_TABLE[a] - LOG_TABLE[b]) % 255]


def _random_polynomial(intercept: int, degree: int) -> list[int]:
    """Coefficients, constant term first; the top one non-zero so the degree is exact."""
    coefficients = [intercept, *secrets.token_bytes(degree)]
    while coefficients[degree] == 0:
        coefficients[degree] = secrets.randbelow(256)
    return coefficients


def evaluate(coefficients: Sequence[int], x: int) -> int:
    """The polynomial at x (Horner's method)."""
    if x == 0:
        return coefficients[0]
    out = coefficients[-1]
    for coefficient in reversed(coefficients[:-1]):
        out = add(mult(out, x), coefficient)
    return out


def interpolate(x_samples: Sequence[int], y_samples: Sequence[int], x: int) -> int:
    """The value at x of the polynomial through the samples (Lagrange)."""
    result = 0
    for i, (x_i, y_i) in enumerate(zip(x_samples, y_samples, strict=True)):
        basis = 1
        for j, x_j in enumerate(x_samples):
            if i != j:
                basis = mult(basis, div(add(x, x_j), add(x_i, x_j)))
        result = add(result, mult(y_i, basis))
    return result


def split(secret: bytes, parts: int, threshold: int) -> list[bytes]:
    """``parts`` shares of ``secret``, any ``threshold`` of which give it back. The x values
    are a random arrangement of distinct non-zero bytes (as newer Vault and OpenBao do), so
    a share's x says nothing about how many shares were made."""
    if not 2 <= threshold <= parts <= MAX_PARTS:
        raise InvalidSplitError(
            f"need 2 <= threshold <= parts <= {MAX_PARTS} (got threshold {threshold},"
            f" parts {parts})"
        )
    if not secret:
        raise InvalidSplitError("cannot split an empty secret")
    xs = list(range(1, MAX_PARTS + 1))
    for i in range(len(xs) - 1, 0, -1):  # Fisher-Yates with the system's randomness
        j = secrets.randbelow(i + 1)
        xs[i], xs[j] = xs[j], xs[i]
    xs = xs[:parts]
    shares = [bytearray(len(secret) + 1) for _ in range(parts)]
    for share, x in zip(shares, xs, strict=True):
        share[-1] = x
    for index, byte in enumerate(secret):
        polynomial = _random_polynomial(byte, threshold - 1)
        for share, x in zip(shares, xs, strict=True):
            share[index] = evaluate(polynomial, x)
    return [bytes(share) for share in shares]


def check_shares(shares: Sequence[bytes]) -> None:
    """Refuse shares that cannot be combined with each other (whatever their number)."""
    if not shares:
        return
    length = len(shares[0])
    seen: set[int] = set()
    for share in shares:
        if len(share) < 2:
            raise InvalidShareError("a share is at least two bytes")
        if len(share) != length:
            raise InvalidShareError("all shares must be the same length")
        x = share[-1]
        if x == 0:
            raise InvalidShareError("a share's x coordinate is never 0")
        if x in seen:
            raise DuplicateShareError(DUPLICATE_SHARE)
        seen.add(x)


def combine(shares: Sequence[bytes]) -> bytes:
    """The secret the shares were split from, if there are at least ``threshold`` of them
    (with fewer, some other bytes: nothing here can tell)."""
    if len(shares) < 2:
        raise InvalidShareError("at least two shares are needed to combine")
    check_shares(shares)
    xs = [share[-1] for share in shares]
    return bytes(
        interpolate(xs, [share[index] for share in shares], 0)
        for index in range(len(shares[0]) - 1)
    )
