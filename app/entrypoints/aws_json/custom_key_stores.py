"""AWS KMS custom key store operations: translate the members, nothing more."""

from __future__ import annotations

from typing import Any

from app.auth.credentials import Caller
from app.entrypoints.aws_json.common import Operation, epoch, paged
from app.usecases.custom_key_stores import StoreDescription, StoreRequest, XksProxySettings
from app.usecases.keys import KeyService

# CustomKeyStoresListEntry's XksProxyConfiguration members, from the store's settings.
_XKS_MEMBERS = {
    "Connectivity": "xks_connectivity",
    "AccessKeyId": "xks_access_key_id",
    "UriEndpoint": "xks_uri_endpoint",
    "UriPath": "xks_uri_path",
    "VpcEndpointServiceName": "xks_vpc_endpoint_service_name",
    "VpcEndpointServiceOwner": "xks_vpc_endpoint_service_owner",
}


def _store_request(params: dict[str, Any], name_member: str) -> StoreRequest:
    credential = params.get("XksProxyAuthenticationCredential") or {}
    return StoreRequest(
        name=params.get(name_member),
        store_type=params.get("CustomKeyStoreType"),
        cluster_id=params.get("CloudHsmClusterId"),
        trust_anchor=params.get("TrustAnchorCertificate"),
        password=params.get("KeyStorePassword"),
        xks=XksProxySettings(
            uri_endpoint=params.get("XksProxyUriEndpoint"),
            uri_path=params.get("XksProxyUriPath"),
            connectivity=params.get("XksProxyConnectivity"),
            vpc_endpoint_service_name=params.get("XksProxyVpcEndpointServiceName"),
            vpc_endpoint_service_owner=params.get("XksProxyVpcEndpointServiceOwner"),
            access_key_id=credential.get("AccessKeyId"),
            secret_access_key=credential.get("RawSecretAccessKey"),
        ),
    )


def _entry(store: StoreDescription) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "CustomKeyStoreId": store.store_id,
        "CustomKeyStoreName": store.name,
        "CustomKeyStoreType": store.store_type,
        "ConnectionState": store.connection_state,
        "CreationDate": epoch(store.creation_date),
    }
    if store.connection_error_code is not None:
        entry["ConnectionErrorCode"] = store.connection_error_code
    if "cluster_id" in store.settings:
        entry["CloudHsmClusterId"] = store.settings["cluster_id"]
        entry["TrustAnchorCertificate"] = store.settings.get("trust_anchor")
    xks = {k: store.settings[v] for k, v in _XKS_MEMBERS.items() if v in store.settings}
    if xks:
        entry["XksProxyConfiguration"] = xks
    return entry


async def create_custom_key_store(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    request = _store_request(params, "CustomKeyStoreName")
    return {"CustomKeyStoreId": await service.custom_key_stores.create(caller, request)}


async def describe_custom_key_stores(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    page = await service.custom_key_stores.describe(
        caller,
        params.get("CustomKeyStoreId"),
        params.get("CustomKeyStoreName"),
        params.get("Limit"),
        params.get("Marker"),
    )
    return paged(page, "CustomKeyStores", [_entry(store) for store in page.items])


async def update_custom_key_store(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    request = _store_request(params, "NewCustomKeyStoreName")
    await service.custom_key_stores.update(caller, params["CustomKeyStoreId"], request)
    return {}


async def connect_custom_key_store(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    await service.custom_key_stores.connect(caller, params["CustomKeyStoreId"])
    return {}


async def disconnect_custom_key_store(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    await service.custom_key_stores.disconnect(caller, params["CustomKeyStoreId"])
    return {}


async def delete_custom_key_store(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    await service.custom_key_stores.delete(caller, params["CustomKeyStoreId"])
    return {}


OPERATIONS: dict[str, Operation] = {
    "CreateCustomKeyStore": create_custom_key_store,
    "DescribeCustomKeyStores": describe_custom_key_stores,
    "UpdateCustomKeyStore": update_custom_key_store,
    "ConnectCustomKeyStore": connect_custom_key_store,
    "DisconnectCustomKeyStore": disconnect_custom_key_store,
    "DeleteCustomKeyStore": delete_custom_key_store,
}
