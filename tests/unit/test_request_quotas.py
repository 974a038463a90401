"""Request quotas per account and Region (app/usecases/quotas.py), on a clock the test
moves: what is counted together, what separately, and what a refusal leaves behind."""

from __future__ import annotations

import logging

import pytest
from pydantic import ValidationError

from app.auth.credentials import Caller
from app.settings import load_settings
from app.usecases.quotas import RequestQuotas
from domain.errors import THROTTLING_MESSAGE, QuotaExceededError, ThrottlingError


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def caller(account_id: str = "111122223333", region: str = "us-east-1") -> Caller:
    return Caller(
        account_id=account_id,
        principal_arn=f"arn:aws:iam::{account_id}:root",
        access_key_id="AKLGEXAMPLE00000001",
        region=region,
    )


def quotas(clock: FakeClock, **options: object) -> RequestQuotas:
    return RequestQuotas(clock=clock, **options)  # type: ignore[arg-type]


def admitted(quota: RequestQuotas, who: Caller, operation: str, parameters=None) -> bool:  # type: ignore[no-untyped-def]
    try:
        quota.admit(who, operation, parameters or {})
    except QuotaExceededError:
        return False
    return True


def test_a_call_over_its_quota_is_refused_with_awss_throttling_exception(clock):
    limits = quotas(clock)
    assert all(admitted(limits, caller(), "CreateKey") for _ in range(5))

    with pytest.raises(ThrottlingError) as refused:
        limits.admit(caller(), "CreateKey", {})

    assert refused.value.message == THROTTLING_MESSAGE


def test_the_bucket_refills_at_the_quotas_rate(clock):
    limits = quotas(clock)
    for _ in range(5):
        limits.admit(caller(), "CreateKey", {})
    assert not admitted(limits, caller(), "CreateKey")

    clock.now += 0.2  # CreateKey: 5 a second

    assert admitted(limits, caller(), "CreateKey")
    assert not admitted(limits, caller(), "CreateKey")


def test_encrypt_and_decrypt_share_the_symmetric_quota(clock):
    limits = quotas(clock, rates={"symmetric": 2})
    assert admitted(limits, caller(), "Encrypt")
    assert admitted(limits, caller(), "GenerateDataKey")

    assert not admitted(limits, caller(), "Decrypt")


def test_management_quotas_are_counted_apart_from_each_other_and_from_cryptography(clock):
    limits = quotas(clock, rates={"symmetric": 1, "CreateKey": 1})
    assert admitted(limits, caller(), "Encrypt")
    assert admitted(limits, caller(), "CreateKey")

    assert not admitted(limits, caller(), "Encrypt")
    assert not admitted(limits, caller(), "CreateKey")
    assert admitted(limits, caller(), "CreateAlias")
    assert admitted(limits, caller(), "DescribeKey")


def test_rsa_keys_have_a_quota_apart_from_symmetric_keys(clock):
    limits = quotas(clock, rates={"symmetric": 1, "rsa": 1})
    assert admitted(limits, caller(), "Encrypt")

    assert admitted(limits, caller(), "Sign", {"SigningAlgorithm": "RSASSA_PSS_SHA_256"})
    assert not admitted(limits, caller(), "Decrypt", {"EncryptionAlgorithm": "RSAES_OAEP_SHA_1"})


def test_each_account_has_its_own_quota(clock):
    limits = quotas(clock, rates={"CreateKey": 1})
    assert admitted(limits, caller("111122223333"), "CreateKey")
    assert not admitted(limits, caller("111122223333"), "CreateKey")

    assert admitted(limits, caller("444455556666"), "CreateKey")


def test_each_region_has_its_own_quota(clock):
    limits = quotas(clock, rates={"CreateKey": 1})
    assert admitted(limits, caller(region="us-east-1"), "CreateKey")

    assert admitted(limits, caller(region="eu-west-1"), "CreateKey")


def test_replicate_key_needs_two_create_key_tokens_in_the_replica_region(clock):
    limits = quotas(clock, rates={"CreateKey": 2})
    assert admitted(limits, caller(region="eu-west-1"), "CreateKey")  # one of two left

    assert not admitted(limits, caller(), "ReplicateKey", {"ReplicaRegion": "eu-west-1"})
    assert admitted(limits, caller(), "ReplicateKey", {"ReplicaRegion": "eu-west-2"})
    assert not admitted(limits, caller(region="eu-west-2"), "CreateKey")  # both taken


def test_a_replicate_key_refused_in_its_own_region_takes_nothing_in_the_replicas(clock):
    limits = quotas(clock, rates={"ReplicateKey": 1, "CreateKey": 2})
    assert admitted(limits, caller(), "ReplicateKey", {"ReplicaRegion": "eu-west-1"})
    assert not admitted(limits, caller(), "ReplicateKey", {"ReplicaRegion": "eu-west-2"})

    assert admitted(limits, caller(region="eu-west-2"), "CreateKey")
    assert admitted(limits, caller(region="eu-west-2"), "CreateKey")


def test_quotas_turned_off_admit_everything(clock):
    limits = quotas(clock, enabled=False, rates={"CreateKey": 1})

    assert all(admitted(limits, caller(), "CreateKey") for _ in range(100))


def test_calls_with_no_documented_quota_are_not_limited(clock):
    limits = quotas(clock)

    assert all(admitted(limits, caller(), "RotateKeyOnDemand") for _ in range(1000))


def test_each_process_enforces_its_share_of_the_quota(clock):
    limits = quotas(clock, share=5)  # CreateKey: 5 a second over 5 processes

    assert [admitted(limits, caller(), "CreateKey") for _ in range(2)] == [True, False]
    clock.now += 1.0
    assert admitted(limits, caller(), "CreateKey")


def test_only_the_first_refusal_a_minute_of_a_quota_is_marked_to_be_recorded(clock):
    limits = quotas(clock, rates={"CreateKey": 0.001, "CreateAlias": 0.001})
    limits.admit(caller(), "CreateKey", {})
    limits.admit(caller(), "CreateAlias", {})

    def recorded(operation: str, who: Caller | None = None) -> bool:
        with pytest.raises(QuotaExceededError) as refused:
            limits.admit(who or caller(), operation, {})
        return refused.value.recorded

    assert [recorded("CreateKey") for _ in range(3)] == [True, False, False]
    assert recorded("CreateAlias")  # another quota: its own sample
    clock.now += 59.0
    assert not recorded("CreateKey")
    clock.now += 1.0
    assert recorded("CreateKey")


def test_refusals_are_counted_and_summarised_in_the_log_at_most_once_a_minute(clock, caplog):
    limits = quotas(clock, rates={"CreateKey": 0.001})
    limits.admit(caller(), "CreateKey", {})
    with caplog.at_level(logging.WARNING, logger="keyledger.quotas"):
        for _ in range(10):
            admitted(limits, caller(), "CreateKey")
        clock.now += 30
        admitted(limits, caller(), "CreateKey")

    assert limits.throttled_total == 11
    (line,) = [r.getMessage() for r in caplog.records]
    assert "throttled 1 call(s)" in line and "111122223333" in line and "CreateKey" in line

    clock.now += 31
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="keyledger.quotas"):
        admitted(limits, caller(), "CreateKey")
    (line,) = [r.getMessage() for r in caplog.records]
    assert "throttled 11 call(s) over 1 request quota(s)" in line


def test_the_buckets_tracked_are_bounded_least_recently_used_first_out(clock):
    limits = quotas(clock, rates={"CreateKey": 1}, max_buckets=3)
    for account in ("000000000001", "000000000002", "000000000003"):
        limits.admit(caller(account), "CreateKey", {})
    assert not admitted(limits, caller("000000000001"), "CreateKey")  # now most recent

    limits.admit(caller("000000000004"), "CreateKey", {})  # forgets 000000000002

    assert len(limits._buckets) == 3
    assert admitted(limits, caller("000000000002"), "CreateKey")  # a full bucket again
    assert not admitted(limits, caller("000000000001"), "CreateKey")


# --- settings ------------------------------------------------------------------------------
@pytest.fixture
def no_quota_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KEYLEDGER_QUOTAS", raising=False)  # the suite's services turn them off


@pytest.mark.usefixtures("no_quota_setting")
def test_quotas_are_on_by_default_and_off_in_emulator_mode():
    assert load_settings().quotas_enabled
    assert not load_settings(emulator=True).quotas_enabled


@pytest.mark.usefixtures("no_quota_setting")
def test_quotas_may_be_turned_on_in_emulator_mode_and_off_elsewhere():
    assert load_settings(emulator=True, quotas="aws").quotas_enabled
    assert not load_settings(quotas="off").quotas_enabled


def test_an_unknown_quota_name_stops_the_start_and_lists_the_names():
    with pytest.raises(ValidationError) as raised:
        load_settings(quota_rates={"CreateKeys": 10})

    message = raised.value.errors()[0]["msg"]
    assert "'CreateKeys' is not a quota" in message and "CreateKey, " in message


@pytest.mark.parametrize("rate", [0, -1, float("inf")])
def test_a_quota_rate_must_be_above_zero_and_finite(rate):
    with pytest.raises(ValidationError):
        load_settings(quota_rates={"CreateKey": rate})


@pytest.mark.usefixtures("no_quota_setting")
def test_the_quotas_are_shared_by_the_workers_named_and_the_nodes(monkeypatch):
    monkeypatch.delenv("KEYLEDGER_WORKERS", raising=False)
    assert load_settings(workers=4, quota_nodes=3).quota_share == 12
    # A process whose workers were never named serves alone (tests, an embedded runtime).
    assert load_settings(quota_nodes=3).quota_share == 3
