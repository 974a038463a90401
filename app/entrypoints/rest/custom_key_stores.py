"""REST routes (/v1/custom-key-stores) of AWS's six custom key store operations.

Thin, like app/entrypoints/rest/app.py: each route turns its body into plain values, calls
one use case of app/usecases/custom_key_stores.py (the same the AWS protocol calls, with
the same IAM authorization and the same records) and shapes the answer. Members are the
AWS operations' in snake_case, with the limits AWS's own model states (read from it, as
the AWS protocol's validation is), so both protocols accept the same values. Secrets (the
KeyStorePassword, the XKS proxy's secret access key) are accepted, never answered.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr

from app.aws.model import operation_model
from app.entrypoints.rest.deps import (
    ERROR_RESPONSES,
    CallerDep,
    LedgerRoute,
    Marker,
    ServiceDep,
)
from app.entrypoints.rest.schemas import Paged, RequestBody
from app.usecases.custom_key_stores import StoreDescription, StoreRequest, XksProxySettings

router = APIRouter(prefix="/v1", route_class=LedgerRoute, responses=ERROR_RESPONSES)
STORE = "/custom-key-stores/{custom_key_store_id}"
StoreType = Literal["AWS_CLOUDHSM", "EXTERNAL_KEY_STORE"]
Connectivity = Literal["PUBLIC_ENDPOINT", "VPC_ENDPOINT_SERVICE"]


def aws_limits(operation: str, member: str, *path: str) -> dict[str, Any]:
    """The length limits and pattern AWS's model gives ``member`` of ``operation``'s
    request (``path``: members of a structure within it), as pydantic Field arguments.
    Patterns match the whole value, as the AWS protocol's validation applies them."""
    shape: Any = operation_model("kms", operation).input_shape.members[member]
    for name in path:
        shape = shape.members[name]
    metadata = shape.metadata
    limits: dict[str, Any] = {"min_length": metadata.get("min"), "max_length": metadata.get("max")}
    if metadata.get("pattern"):
        limits["pattern"] = rf"\A(?:{metadata['pattern']})\Z"
    return limits


def aws_text(operation: str, member: str, *path: str) -> Any:
    """A text member with AWS's limits (for ``Annotated[str, ...]``)."""
    return Field(**aws_limits(operation, member, *path))


def aws_secret(operation: str, member: str, *path: str) -> list[Any]:
    """A secret member's metadata (for ``Annotated[SecretStr, ...]``): AWS's length limits,
    and its pattern checked by a validator whose error never shows the value (pydantic
    applies no pattern to a SecretStr)."""
    limits = aws_limits(operation, member, *path)
    pattern = re.compile(limits.pop("pattern", r"\A.*\Z"), re.DOTALL)
    name = path[-1] if path else member

    def check(value: SecretStr) -> SecretStr:
        if not pattern.match(value.get_secret_value()):
            raise ValueError(f"{name} does not satisfy its pattern")
        return value

    return [Field(**limits), AfterValidator(check)]


CREATE, DESCRIBE = "CreateCustomKeyStore", "DescribeCustomKeyStores"
StoreName = Annotated[str, aws_text(CREATE, "CustomKeyStoreName")]
ClusterId = Annotated[str, aws_text(CREATE, "CloudHsmClusterId")]
TrustAnchor = Annotated[str, aws_text(CREATE, "TrustAnchorCertificate")]
UriEndpoint = Annotated[str, aws_text(CREATE, "XksProxyUriEndpoint")]
UriPath = Annotated[str, aws_text(CREATE, "XksProxyUriPath")]
EndpointService = Annotated[str, aws_text(CREATE, "XksProxyVpcEndpointServiceName")]
EndpointServiceOwner = Annotated[str, aws_text(CREATE, "XksProxyVpcEndpointServiceOwner")]
Password = Annotated[SecretStr, *aws_secret(CREATE, "KeyStorePassword")]
CREDENTIAL = "XksProxyAuthenticationCredential"
ProxyAccessKeyId = Annotated[SecretStr, *aws_secret(CREATE, CREDENTIAL, "AccessKeyId")]
ProxySecret = Annotated[SecretStr, *aws_secret(CREATE, CREDENTIAL, "RawSecretAccessKey")]


class BodyFromModel(RequestBody):
    # Python's re, as the AWS protocol's validation uses (AWS's patterns are written for it).
    model_config = ConfigDict(strict=True, extra="forbid", regex_engine="python-re")


class XksCredential(BodyFromModel):
    """XksProxyAuthenticationCredential: both members are secret to AWS; the access key id
    is shown by describe, the secret never."""

    access_key_id: ProxyAccessKeyId
    raw_secret_access_key: ProxySecret = Field(description="Never answered, logged or recorded.")


class StoreSettings(BodyFromModel):
    """What CreateCustomKeyStore and UpdateCustomKeyStore share."""

    key_store_password: Password | None = Field(
        None, description="AWS_CLOUDHSM: the token's user PIN. Never answered, logged or recorded."
    )
    xks_proxy_uri_endpoint: UriEndpoint | None = None
    xks_proxy_uri_path: UriPath | None = None
    xks_proxy_connectivity: Connectivity | None = None
    xks_proxy_vpc_endpoint_service_name: EndpointService | None = None
    xks_proxy_vpc_endpoint_service_owner: EndpointServiceOwner | None = None
    xks_proxy_authentication_credential: XksCredential | None = None

    def xks(self) -> XksProxySettings:
        credential = self.xks_proxy_authentication_credential
        return XksProxySettings(
            uri_endpoint=self.xks_proxy_uri_endpoint,
            uri_path=self.xks_proxy_uri_path,
            connectivity=self.xks_proxy_connectivity,
            vpc_endpoint_service_name=self.xks_proxy_vpc_endpoint_service_name,
            vpc_endpoint_service_owner=self.xks_proxy_vpc_endpoint_service_owner,
            access_key_id=credential.access_key_id.get_secret_value() if credential else None,
            secret_access_key=(
                credential.raw_secret_access_key.get_secret_value() if credential else None
            ),
        )

    def password(self) -> str | None:
        return self.key_store_password.get_secret_value() if self.key_store_password else None


class StoreCreate(StoreSettings):
    custom_key_store_name: StoreName
    custom_key_store_type: StoreType = "AWS_CLOUDHSM"
    cloud_hsm_cluster_id: ClusterId | None = None
    trust_anchor_certificate: TrustAnchor | None = None


class StoreUpdate(StoreSettings):
    new_custom_key_store_name: StoreName | None = None
    cloud_hsm_cluster_id: ClusterId | None = None


class StoreCreated(BaseModel):
    custom_key_store_id: str


class XksProxyConfiguration(BaseModel):
    connectivity: str | None = None
    access_key_id: str | None = None
    uri_endpoint: str | None = None
    uri_path: str | None = None
    vpc_endpoint_service_name: str | None = None
    vpc_endpoint_service_owner: str | None = None


class StorePublic(BaseModel):
    """A CustomKeyStoresListEntry: never a secret."""

    custom_key_store_id: str
    custom_key_store_name: str
    custom_key_store_type: str
    connection_state: str = Field(
        description="DISCONNECTED, CONNECTING (an attempt is under way), CONNECTED or FAILED."
    )
    connection_error_code: str | None = Field(None, description="Why, when FAILED.")
    creation_date: datetime
    cloud_hsm_cluster_id: str | None = None
    trust_anchor_certificate: str | None = None
    xks_proxy_configuration: XksProxyConfiguration | None = None

    @classmethod
    def of(cls, store: StoreDescription) -> StorePublic:
        settings = store.settings
        xks = {
            name: settings[f"xks_{name}"]
            for name in XksProxyConfiguration.model_fields
            if settings.get(f"xks_{name}")
        }
        return cls(
            custom_key_store_id=store.store_id,
            custom_key_store_name=store.name,
            custom_key_store_type=store.store_type,
            connection_state=store.connection_state,
            connection_error_code=store.connection_error_code,
            creation_date=store.creation_date,
            cloud_hsm_cluster_id=settings.get("cluster_id"),
            trust_anchor_certificate=settings.get("trust_anchor"),
            xks_proxy_configuration=XksProxyConfiguration(**xks) if xks else None,
        )


class StoreList(Paged):
    custom_key_stores: list[StorePublic]


StoreId = Annotated[
    str,
    Path(
        **aws_limits("DescribeCustomKeyStores", "CustomKeyStoreId"),
        examples=["cks-1234567890abcdef0"],
    ),
]
NO_CONTENT: dict[str, Any] = {"status_code": 204, "response_class": Response}


# ==== routes =================================================================================
@router.get("/custom-key-stores", tags=["custom key stores"])
async def list_custom_key_stores(
    caller: CallerDep,
    service: ServiceDep,
    custom_key_store_name: Annotated[
        str | None, Query(**aws_limits(DESCRIBE, "CustomKeyStoreName"))
    ] = None,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
    marker: Marker = None,
) -> StoreList:
    """The account's stores in this Region, oldest first (DescribeCustomKeyStores); with
    ``custom_key_store_name``, the one store of that name."""
    page = await service.custom_key_stores.describe(
        caller, None, custom_key_store_name, limit, marker
    )
    return StoreList(
        custom_key_stores=[StorePublic.of(store) for store in page.items],
        next_marker=page.next_marker,
        truncated=page.truncated,
    )


@router.post("/custom-key-stores", status_code=201, tags=["custom key stores"])
async def create_custom_key_store(
    body: StoreCreate, caller: CallerDep, service: ServiceDep
) -> StoreCreated:
    """A new store, DISCONNECTED (CreateCustomKeyStore). AWS_CLOUDHSM needs
    ``cloud_hsm_cluster_id``, ``trust_anchor_certificate`` and ``key_store_password``;
    EXTERNAL_KEY_STORE the ``xks_proxy_*`` members and the proxy's credential."""
    request = StoreRequest(
        name=body.custom_key_store_name,
        store_type=body.custom_key_store_type,
        cluster_id=body.cloud_hsm_cluster_id,
        trust_anchor=body.trust_anchor_certificate,
        password=body.password(),
        xks=body.xks(),
    )
    store_id = await service.custom_key_stores.create(caller, request)
    return StoreCreated(custom_key_store_id=store_id)


@router.get(STORE, tags=["custom key stores"])
async def describe_custom_key_store(
    custom_key_store_id: StoreId, caller: CallerDep, service: ServiceDep
) -> StorePublic:
    page = await service.custom_key_stores.describe(caller, custom_key_store_id, None, None, None)
    (store,) = page.items
    return StorePublic.of(store)


@router.patch(STORE, **NO_CONTENT, tags=["custom key stores"])
async def update_custom_key_store(
    custom_key_store_id: StoreId, body: StoreUpdate, caller: CallerDep, service: ServiceDep
) -> None:
    """Change a store's name, cluster, password or proxy settings (UpdateCustomKeyStore):
    a CloudHSM store only while DISCONNECTED; a connected external store only its name
    and credential."""
    request = StoreRequest(
        name=body.new_custom_key_store_name,
        cluster_id=body.cloud_hsm_cluster_id,
        password=body.password(),
        xks=body.xks(),
    )
    await service.custom_key_stores.update(caller, custom_key_store_id, request)


@router.post(
    STORE + "/connect", status_code=202, response_class=Response, tags=["custom key stores"]
)
async def connect_custom_key_store(
    custom_key_store_id: StoreId, caller: CallerDep, service: ServiceDep
) -> None:
    """Start connecting the store (ConnectCustomKeyStore): answered at once, the store
    CONNECTING; read it again for CONNECTED, or FAILED and its connection_error_code."""
    await service.custom_key_stores.connect(caller, custom_key_store_id)


@router.post(STORE + "/disconnect", **NO_CONTENT, tags=["custom key stores"])
async def disconnect_custom_key_store(
    custom_key_store_id: StoreId, caller: CallerDep, service: ServiceDep
) -> None:
    """Disconnect the store (DisconnectCustomKeyStore): its keys are Unavailable until
    it connects again."""
    await service.custom_key_stores.disconnect(caller, custom_key_store_id)


@router.delete(STORE, **NO_CONTENT, tags=["custom key stores"])
async def delete_custom_key_store(
    custom_key_store_id: StoreId, caller: CallerDep, service: ServiceDep
) -> None:
    """Delete a DISCONNECTED store that holds no KMS key (DeleteCustomKeyStore)."""
    await service.custom_key_stores.delete(caller, custom_key_store_id)
