"""Custom key stores for the audit, report and REST tests: a service whose one CloudHSM
"cluster" is the session's SoftHSM2 token and which is its own external key stores' XKS
proxy, stores made through boto3, and keys that live in a store.

A key is put in a store by appending its ``Key.Created`` event (with ``store``, the
contract of domain/keys.py) through the service's own writer: the trail, the views and
the reports read that event whichever use case appended it.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from app.ports import UnitOfWork
from domain.actors import Actor
from domain.keys import Key, KeyMaterial, KeyStoreLocation
from domain.policy import default_key_policy
from tests.conftest import ACCOUNT_ID, REGION, Service, free_port, running_service
from tests.support.softhsm import SoftHsm

CLUSTER = "cluster-abcdefghijk"
# The same token under a second id: for a store that keeps its keys (and so its cluster)
# after its test, since they wait 7 days before deletion.
KEYS_CLUSTER = "cluster-keysinstorexy"
ANCHOR = "-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----"
XKS_ACCESS_KEY = "ABCDEFGHIJKLMNOPQRST2345"
XKS_SECRET = "Zm9vYmFyYmF6" + "q" * 31  # 43 characters of AWS's RawSecretAccessKey alphabet


# Where a store service's external key stores find their proxy (itself), and where nothing
# answers. CreateCustomKeyStore asks the proxy of a store with PUBLIC_ENDPOINT connectivity.
XKS_ENDPOINT = "https://xks.example.com"
XKS_VPC_ENDPOINT = "https://xks-vpc.example.com"
XKS_DOWN_ENDPOINT = "https://xks-down.example.com"
# The path of each store's proxy: the unprefixed one, or any one prefix of its own.
SERVED_XKS_PATHS = "/kms/xks/v1,/*/kms/xks/v1"


def own_proxy_settings(access_key_id: str, secret: str) -> dict[str, object]:
    """Settings of a service that is its own external key stores' XKS proxy: it serves the
    XKS Proxy API with the stores' credential (as its administrator) at every path a
    store may name, and reaches ``XKS_ENDPOINT`` and ``XKS_VPC_ENDPOINT`` at itself over
    loopback HTTP; the port is chosen before it starts."""
    port = free_port()
    itself = f"http://127.0.0.1:{port}"
    return {
        "port": port,
        "xks_credentials": f"{access_key_id}:{secret}",
        "xks_principal_arn": f"arn:aws:iam::{ACCOUNT_ID}:user/admin",
        "xks_uri_path": SERVED_XKS_PATHS,
        "xks_proxy_endpoints": {
            XKS_ENDPOINT: itself,
            XKS_VPC_ENDPOINT: itself,
            XKS_DOWN_ENDPOINT: f"http://127.0.0.1:{free_port()}",
        },
        "xks_proxy_timeout_seconds": 5.0,  # AWS's 250 ms is too tight for a busy 2-core box
    }


@contextmanager
def store_service(tmp: Path, token: SoftHsm) -> Iterator[Service]:
    """A service of its own (stores are limited to 10 per Region) with ``CLUSTER``, the
    XKS proxy of its own external key stores."""
    clusters = {
        name: {"token_label": token.token_label, "trust_anchor": ANCHOR}
        for name in (CLUSTER, KEYS_CLUSTER)
    }
    settings = own_proxy_settings(XKS_ACCESS_KEY, XKS_SECRET)
    with running_service(tmp, cloudhsm_clusters=clusters, **settings) as service:
        yield service


def store_name() -> str:
    return f"store-{secrets.token_hex(4)}"


def cloudhsm_store(kms: Any, token: SoftHsm, **overrides: Any) -> str:
    params = {
        "CustomKeyStoreName": store_name(),
        "CloudHsmClusterId": CLUSTER,
        "TrustAnchorCertificate": ANCHOR,
        "KeyStorePassword": token.pin,
        **overrides,
    }
    return str(kms.create_custom_key_store(**params)["CustomKeyStoreId"])


def xks_store(kms: Any, **overrides: Any) -> str:
    params = {
        "CustomKeyStoreName": store_name(),
        "CustomKeyStoreType": "EXTERNAL_KEY_STORE",
        "XksProxyUriEndpoint": XKS_ENDPOINT,
        "XksProxyUriPath": f"/{secrets.token_hex(4)}/kms/xks/v1",
        "XksProxyConnectivity": "PUBLIC_ENDPOINT",
        "XksProxyAuthenticationCredential": {
            "AccessKeyId": XKS_ACCESS_KEY,
            "RawSecretAccessKey": XKS_SECRET,
        },
        **overrides,
    }
    return str(kms.create_custom_key_store(**params)["CustomKeyStoreId"])


def connection_settled(kms: Any, store_id: str) -> dict[str, Any]:
    """The store once its connection attempt has ended (or after 10 s)."""
    deadline = time.monotonic() + 10
    while True:
        (store,) = kms.describe_custom_key_stores(CustomKeyStoreId=store_id)["CustomKeyStores"]
        if store["ConnectionState"] != "CONNECTING" or time.monotonic() > deadline:
            return dict(store)
        time.sleep(0.05)


def clear_stores(kms: Any) -> None:
    """Disconnect and delete every store, but those still holding keys (their keys wait
    7 days before deletion): those are left disconnected."""
    for store in kms.describe_custom_key_stores()["CustomKeyStores"]:
        if store["ConnectionState"] != "DISCONNECTED":
            kms.disconnect_custom_key_store(CustomKeyStoreId=store["CustomKeyStoreId"])
        try:
            kms.delete_custom_key_store(CustomKeyStoreId=store["CustomKeyStoreId"])
        except ClientError as error:
            if error.response["Error"]["Code"] != "CustomKeyStoreHasCMKsException":
                raise


def key_in_store(
    service: Service,
    store_id: str,
    *,
    cluster_id: str | None = None,
    xks_key_id: str | None = None,
    account_id: str = ACCOUNT_ID,
) -> str:
    """A new key of ``store_id`` (the cluster's, or the external key's), by its Created
    event; its ARN. The administrator's account unless told."""
    key_id = uuid.uuid4()
    now = service.runtime.clock.now()
    arn = f"arn:aws:kms:{REGION}:{account_id}:key/{key_id}"
    store: KeyStoreLocation = {
        "custom_key_store_id": store_id,
        "cloud_hsm_cluster_id": cluster_id,
        "xks_key_id": xks_key_id,
    }
    material = KeyMaterial(
        version=1,
        material_id=secrets.token_hex(32),
        wrapped=b"",
        created=now,
        rotation_type=None,
        in_store=True,
    )
    actor = Actor(
        principal_arn=f"arn:aws:iam::{account_id}:user/admin",
        account_id=account_id,
        region=REGION,
        request_id=str(uuid.uuid4()),
    )

    def command(uow: UnitOfWork) -> None:
        uow.add(
            Key.create(
                key_id=key_id,
                now=now,
                actor=actor,
                arn=arn,
                account_id=account_id,
                region=REGION,
                description="in a custom key store",
                key_spec="SYMMETRIC_DEFAULT",
                key_usage="ENCRYPT_DECRYPT",
                origin="AWS_CLOUDHSM" if cluster_id else "EXTERNAL_KEY_STORE",
                key_manager="CUSTOMER",
                policy=default_key_policy("aws", account_id),
                tags={},
                material=material,
                store=store,
            )
        )

    service.runtime.writer.run_sync(command)
    return arn


def use_key(service: Service, key_arn: str, operation: str = "Encrypt") -> str:
    """One cryptographic use of the key (its Used event, as the crypto use case records
    it); the request id."""
    key_id = uuid.UUID(key_arn.rsplit("/", 1)[1])
    request_id = str(uuid.uuid4())
    actor = Actor(
        principal_arn=f"arn:aws:iam::{key_arn.split(':')[4]}:user/admin",
        account_id=key_arn.split(":")[4],
        region=REGION,
        request_id=request_id,
    )

    def command(uow: UnitOfWork) -> None:
        key = uow.get(key_id)
        assert isinstance(key, Key)
        key.record_use(
            operation=operation,
            now=service.runtime.clock.now(),
            actor=actor,
            material_version=1,
            encryption_context={"purpose": "test"},
            request_parameters={"keyId": key_arn},
        )

    service.runtime.writer.run_sync(command)
    return request_id
