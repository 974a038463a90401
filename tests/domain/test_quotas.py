"""AWS KMS's request quotas as data (domain/quotas.py): which quota each call counts
against, AWS's default rates, and the token bucket (reference
sts-quotas-multiregion-emulators.md section 2; AWS KMS Developer Guide, "Request quotas")."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.quotas import (
    DEFAULT_RATES,
    ECC,
    RSA,
    SM2,
    SYMMETRIC,
    TokenBucket,
    bucket_capacity,
    other_region_charges,
    quota_of,
)


@pytest.mark.parametrize(
    "operation",
    [
        "Encrypt",
        "Decrypt",
        "ReEncrypt",
        "GenerateDataKey",
        "GenerateDataKeyWithoutPlaintext",
        "GenerateMac",
        "VerifyMac",
        "GenerateRandom",
    ],
)
def test_symmetric_cryptographic_operations_share_one_quota(operation):
    assert quota_of(operation, {}) == SYMMETRIC


def test_the_symmetric_quota_defaults_to_10000_requests_a_second():
    assert DEFAULT_RATES[SYMMETRIC] == 10_000


@pytest.mark.parametrize(
    ("operation", "parameters", "quota"),
    [
        ("Encrypt", {"EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}, SYMMETRIC),
        ("Encrypt", {"EncryptionAlgorithm": "RSAES_OAEP_SHA_256"}, RSA),
        ("Decrypt", {"EncryptionAlgorithm": "RSAES_OAEP_SHA_1"}, RSA),
        ("Decrypt", {"EncryptionAlgorithm": "SM2PKE"}, SM2),
        ("ReEncrypt", {"SourceEncryptionAlgorithm": "RSAES_OAEP_SHA_256"}, RSA),
        ("Sign", {"SigningAlgorithm": "RSASSA_PSS_SHA_256"}, RSA),
        ("Verify", {"SigningAlgorithm": "RSASSA_PKCS1_V1_5_SHA_512"}, RSA),
        ("Sign", {"SigningAlgorithm": "ECDSA_SHA_384"}, ECC),
        ("Verify", {"SigningAlgorithm": "SM2DSA"}, SM2),
        ("DeriveSharedSecret", {"KeyAgreementAlgorithm": "ECDH"}, ECC),
    ],
)
def test_asymmetric_cryptographic_operations_count_against_their_key_types_quota(
    operation, parameters, quota
):
    assert quota_of(operation, parameters) == quota


def test_rsa_and_ecc_quotas_are_awss_defaults():
    assert (DEFAULT_RATES[RSA], DEFAULT_RATES[ECC]) == (500, 300)


@pytest.mark.parametrize(
    ("spec", "rate"),
    [("ECC_NIST_P256", 25), ("ECC_NIST_P384", 10), ("RSA_2048", 1), ("RSA_4096", 0.1)],
)
def test_data_key_pairs_have_a_quota_per_key_pair_spec_shared_by_both_operations(spec, rate):
    with_plaintext = quota_of("GenerateDataKeyPair", {"KeyPairSpec": spec})
    without = quota_of("GenerateDataKeyPairWithoutPlaintext", {"KeyPairSpec": spec})

    assert with_plaintext == without == f"GenerateDataKeyPair/{spec}"
    assert DEFAULT_RATES[with_plaintext] == rate


@pytest.mark.parametrize(
    ("operation", "rate"),
    [
        ("CreateKey", 5),
        ("ListKeys", 500),
        ("DescribeKey", 2000),
        ("GetParametersForImport", 0.25),
        ("CreateGrant", 50),
        ("ScheduleKeyDeletion", 15),
    ],
)
def test_management_operations_each_have_a_quota_of_their_own(operation, rate):
    assert quota_of(operation, {}) == operation
    assert DEFAULT_RATES[operation] == rate


@pytest.mark.parametrize(
    ("operation", "parameters"),
    [
        ("RotateKeyOnDemand", {}),
        ("Sign", {"SigningAlgorithm": "ML_DSA_SHAKE_256"}),
        ("GenerateDataKeyPair", {"KeyPairSpec": "ML_DSA_44"}),
        ("Encrypt", {"EncryptionAlgorithm": ["not", "a", "name"]}),
        ("NoSuchOperation", {}),
    ],
)
def test_a_call_aws_documents_no_quota_for_is_not_limited(operation, parameters):
    assert quota_of(operation, parameters) is None


def test_replicate_key_also_counts_two_create_key_requests_in_the_replica_region():
    assert other_region_charges("ReplicateKey", {"ReplicaRegion": "eu-west-1"}) == (
        "eu-west-1",
        "CreateKey",
        2,
    )


def test_update_primary_region_also_counts_in_the_new_primary_region():
    assert other_region_charges("UpdatePrimaryRegion", {"PrimaryRegion": "eu-west-1"}) == (
        "eu-west-1",
        "UpdatePrimaryRegion",
        1,
    )


def test_a_bucket_holds_a_seconds_worth_and_at_least_one_token():
    assert (bucket_capacity(5), bucket_capacity(0.25)) == (5, 1)


def test_a_full_bucket_admits_its_capacity_then_refuses():
    bucket = TokenBucket(rate=5, capacity=5, now=0.0)

    assert [bucket.take(0.0) for _ in range(6)] == [True] * 5 + [False]


def test_a_bucket_refills_at_its_rate():
    bucket = TokenBucket(rate=0.25, capacity=1, now=0.0)
    assert bucket.take(0.0)

    assert not bucket.take(3.9)
    assert bucket.take(4.0)


def test_a_refusal_takes_nothing():
    bucket = TokenBucket(rate=1, capacity=3, now=0.0)
    assert bucket.take(0.0, 2)

    assert not bucket.take(0.0, 2)
    assert bucket.take(0.0, 1)


@given(
    rate=st.floats(min_value=0.1, max_value=10_000),
    steps=st.lists(st.floats(min_value=0, max_value=5), max_size=200),
)
def test_a_bucket_never_admits_more_than_its_capacity_plus_its_rate_over_time(rate, steps):
    capacity = bucket_capacity(rate)
    bucket = TokenBucket(rate, capacity, now=0.0)
    now, admitted = 0.0, 0
    for step in steps:
        now += step
        admitted += bucket.take(now)
        assert 0 <= bucket.tokens <= capacity

    assert admitted <= capacity + rate * now + 1e-6 * max(1.0, rate * now)


@given(
    rate=st.floats(min_value=0.1, max_value=100),
    gaps=st.lists(st.floats(min_value=0, max_value=5), min_size=1, max_size=50),
)
def test_a_caller_who_waits_for_a_token_is_always_admitted(rate, gaps):
    bucket = TokenBucket(rate, bucket_capacity(rate), now=0.0)
    now = 0.0
    for gap in gaps:
        now += gap
        bucket.take(now)
    # From empty, one token takes 1/rate seconds to come back.
    assert bucket.take(now + 1 / rate + 1e-9)


def test_time_running_back_refills_nothing():
    bucket = TokenBucket(rate=1, capacity=1, now=10.0)
    assert bucket.take(10.0)

    assert not bucket.take(5.0)
    assert not bucket.take(10.5)
