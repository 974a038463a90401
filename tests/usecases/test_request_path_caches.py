"""What the symmetric request path works out once instead of on every call (issue 17):
a KeyId member's parse, and an allow decision's policies. Each is worked out again for an
input it has not seen, and never stands in for a failure."""

from __future__ import annotations

from typing import Any

import pytest

from app.auth.credentials import Caller
from app.bootstrap import InMemoryRuntime
from app.usecases import resolution
from domain.errors import NotFoundError
from tests.usecases.conftest import call


def _counting_parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    parsed: list[str] = []
    real = resolution.parse_key_reference

    def counting(value: str, **kwargs: Any) -> Any:
        parsed.append(value)
        return real(value, **kwargs)

    monkeypatch.setattr(resolution, "parse_key_reference", counting)
    return parsed


def test_a_key_id_is_parsed_once_for_the_calls_that_name_it(
    runtime: InMemoryRuntime, admin: Caller, symmetric_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed = _counting_parses(monkeypatch)
    crypto = runtime.service.crypto
    for _ in range(3):
        sealed = call(crypto.encrypt(admin, symmetric_key, b"x", None))
        assert call(crypto.decrypt(admin, sealed.ciphertext, symmetric_key, None)).plaintext == b"x"
    assert parsed == [symmetric_key]


def test_a_key_id_that_names_no_key_is_refused_every_time(
    runtime: InMemoryRuntime, admin: Caller
) -> None:
    for _ in range(2):
        with pytest.raises(NotFoundError):
            call(runtime.service.crypto.encrypt(admin, "not-a-key-id", b"x", None))


def test_a_remembered_allow_reads_no_policy_again(
    runtime: InMemoryRuntime, admin: Caller, symmetric_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    crypto = runtime.service.crypto
    call(crypto.encrypt(admin, symmetric_key, b"x", None))  # decided, and remembered
    access = crypto.resolver.access

    def unread(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("a policy was read for a remembered allow")

    monkeypatch.setattr(access, "identity_policies", unread)
    monkeypatch.setattr(access, "_key_policy", unread)
    assert call(crypto.encrypt(admin, symmetric_key, b"x", None)).key_arn.endswith(symmetric_key)


def test_a_key_id_longer_than_any_real_one_is_parsed_but_not_kept(
    runtime: InMemoryRuntime, admin: Caller
) -> None:
    kept = resolution._kept_reference.cache_info().currsize
    long_alias = "alias/" + "a" * resolution.LONGEST_KEPT_REFERENCE
    for _ in range(2):
        with pytest.raises(NotFoundError):
            call(runtime.service.crypto.encrypt(admin, long_alias, b"x", None))
    assert resolution._kept_reference.cache_info().currsize == kept
