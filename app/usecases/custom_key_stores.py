"""Custom key stores: AWS's six operations (Create/Describe/Update/Connect/Disconnect/
DeleteCustomKeyStore), decided here once for every adapter.

They are IAM-authorized actions on resource ``*`` (AWS's service authorization reference
names no resource type for them). Secrets (a CloudHSM store's KeyStorePassword, an external
store's RawSecretAccessKey) are sealed by the vault under a wrapping key of the store's own
(shredded when the store is deleted) before any event holds them; they are never answered
or logged. ConnectCustomKeyStore answers at once with the store CONNECTING; the connection
is attempted off the event loop and recorded as Connected or ConnectionFailed: a login to a
CloudHSM key store's token, or an external key store proxy's GetHealthStatus (signed with
the store's credential), whose failure becomes AWS's ConnectionErrorCode. Creating an
external key store, or changing how one reaches its proxy, asks the proxy's GetHealthStatus
first, off the writer (app.usecases.proxy_checks): a failure refuses the call.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime

import orjson

from app.auth.credentials import SERVICE_ACTOR, Caller
from app.ports import (
    Clock,
    CommandRunner,
    HsmClusters,
    UnitOfWork,
    Vault,
    XksProxies,
    XksProxyAddress,
)
from app.usecases.authorization import AccessControl
from app.usecases.proxy_checks import ProxyChecks, ProxyHealthCheck, health_check
from app.usecases.results import Page
from app.usecases.store_keys import SECRET_LABEL, proxy_address
from domain import xks
from domain.custom_key_stores import (
    AWS_CLOUDHSM,
    CONNECTING,
    EXTERNAL_KEY_STORE,
    FAILED,
    VPC_ENDPOINT_SERVICE,
    CustomKeyStore,
    CustomKeyStoreIndex,
    index_aggregate_id,
    new_store_id,
    proxy_checked_on_creation,
    store_aggregate_id,
    unique_entry,
)
from domain.errors import (
    CloudHsmClusterNotFoundError,
    CloudHsmClusterNotRelatedError,
    CustomKeyStoreNotFoundError,
    IncorrectTrustAnchorError,
    InvalidMarkerError,
    ValidationError,
)

log = logging.getLogger("keyledger.custom_key_stores")
DEFAULT_PAGE = 100  # DescribeCustomKeyStores without Limit (AWS: at most 1000)
CONNECTION_ERROR = "INTERNAL_ERROR"


@dataclass(frozen=True)
class _Attempt:
    """A connection to attempt, off the writer: a CloudHSM key store's login to its
    cluster's token, or an external key store's GetHealthStatus at its proxy."""

    store: uuid.UUID
    secret: str = field(repr=False)  # the KeyStorePassword or the RawSecretAccessKey
    cluster_id: str = ""
    proxy: XksProxyAddress | None = None
    request_id: str = ""


@dataclass(frozen=True)
class XksProxySettings:
    uri_endpoint: str | None = None
    uri_path: str | None = None
    connectivity: str | None = None
    vpc_endpoint_service_name: str | None = None
    vpc_endpoint_service_owner: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class StoreRequest:
    """CreateCustomKeyStore's or UpdateCustomKeyStore's members (None: not given)."""

    name: str | None = None
    store_type: str | None = None
    cluster_id: str | None = None
    trust_anchor: str | None = None
    password: str | None = field(default=None, repr=False)
    xks: XksProxySettings = XksProxySettings()

    @property
    def gives_cloudhsm(self) -> bool:
        return any(v is not None for v in (self.cluster_id, self.trust_anchor, self.password))

    @property
    def gives_xks(self) -> bool:
        x = self.xks
        return any(
            v is not None
            for v in (
                x.uri_endpoint,
                x.uri_path,
                x.connectivity,
                x.vpc_endpoint_service_name,
                x.vpc_endpoint_service_owner,
                x.access_key_id,
            )
        )


@dataclass(frozen=True)
class StoreDescription:
    """One CustomKeyStoresListEntry, without any secret."""

    store_id: str
    name: str
    store_type: str
    connection_state: str
    connection_error_code: str | None
    creation_date: datetime
    settings: dict[str, str]

    @classmethod
    def of(cls, store: CustomKeyStore) -> StoreDescription:
        return cls(
            store.store_id,
            store.name,
            store.store_type,
            store.connection_state,
            store.connection_error_code if store.connection_state == FAILED else None,
            store.creation_date,
            {k: v for k, v in store.settings.items() if v},
        )


class CustomKeyStoreOperations:
    def __init__(
        self,
        *,
        runner: CommandRunner,
        access: AccessControl,
        vault: Vault,
        clock: Clock,
        clusters: HsmClusters,
        proxies: XksProxies,
    ) -> None:
        self.runner = runner
        self.access = access
        self.vault = vault
        self.clock = clock
        self.clusters = clusters
        self.proxies = proxies
        self.checks = ProxyChecks(vault=vault, proxies=proxies)
        self._connecting: set[asyncio.Task[None]] = set()

    # ==== reading stores ===============================================================
    def _index(self, uow: UnitOfWork, caller: Caller) -> CustomKeyStoreIndex | None:
        found = uow.get(index_aggregate_id(caller.account_id, caller.region))
        return found if isinstance(found, CustomKeyStoreIndex) else None

    def _store(self, uow: UnitOfWork, caller: Caller, store_id: str) -> CustomKeyStore:
        found = uow.get(store_aggregate_id(caller.account_id, caller.region, store_id))
        if not isinstance(found, CustomKeyStore) or found.deleted:
            raise CustomKeyStoreNotFoundError(f"Custom key store {store_id} not found.")
        return found

    def _authorize(self, uow: UnitOfWork, caller: Caller, action: str) -> None:
        self.access.authorize(uow, caller, action, None, resource_arn="*")

    # ==== CreateCustomKeyStore =========================================================
    async def create(self, caller: Caller, request: StoreRequest) -> str:
        """The new store's id. An external key store with PUBLIC_ENDPOINT connectivity is
        created only once its proxy answered GetHealthStatus (app.usecases.proxy_checks)."""
        store_type = request.store_type or AWS_CLOUDHSM
        settings = self._settings_for_create(store_type, request)
        secret = request.password if store_type == AWS_CLOUDHSM else request.xks.secret_access_key
        name = request.name
        assert secret is not None and name is not None
        store_id = new_store_id()
        aggregate_id = store_aggregate_id(caller.account_id, caller.region, store_id)
        entry = unique_entry(name, settings)
        calls = self.checks.calls(caller, "CreateCustomKeyStore")
        check = (
            _create_check(aggregate_id, settings, secret, caller)
            if store_type == EXTERNAL_KEY_STORE and proxy_checked_on_creation(settings)
            else None
        )

        def command(uow: UnitOfWork) -> str:
            self._authorize(uow, caller, "CreateCustomKeyStore")
            if store_type == AWS_CLOUDHSM:
                self._check_cluster(settings["cluster_id"], request.trust_anchor)
            index = self._index(uow, caller)
            if index is not None:
                index.check_entry(store_id, entry)
            if check is not None:  # nothing changed yet: the first run stops here
                self.checks.check(calls, check)
            now, actor = self.clock.now(), caller.actor()
            if index is None:
                index = CustomKeyStoreIndex.create(
                    aggregate_id=index_aggregate_id(caller.account_id, caller.region),
                    now=now,
                    actor=actor,
                    account_id=caller.account_id,
                    region=caller.region,
                )
                uow.add(index)
            index.enter(now=now, actor=actor, store_id=store_id, entry=entry)
            sealed = self.vault.seal_for_key(aggregate_id, SECRET_LABEL, secret.encode())
            uow.add(
                CustomKeyStore.create(
                    aggregate_id=aggregate_id,
                    now=now,
                    actor=actor,
                    store_id=store_id,
                    account_id=caller.account_id,
                    region=caller.region,
                    name=name,
                    store_type=store_type,
                    settings=settings,
                    sealed_secret=sealed,
                )
            )
            return store_id

        return await calls.run(self.runner, command)

    def _settings_for_create(self, store_type: str, request: StoreRequest) -> dict[str, str]:
        if store_type == AWS_CLOUDHSM:
            if request.gives_xks:
                raise ValidationError(
                    "XksProxy parameters are not valid for a custom key store of type AWS_CLOUDHSM."
                )
            for member, value in (
                ("CloudHsmClusterId", request.cluster_id),
                ("TrustAnchorCertificate", request.trust_anchor),
                ("KeyStorePassword", request.password),
            ):
                if not value:
                    raise ValidationError(
                        f"{member} is required for a custom key store of type AWS_CLOUDHSM."
                    )
            assert request.cluster_id is not None and request.trust_anchor is not None
            return {"cluster_id": request.cluster_id, "trust_anchor": request.trust_anchor}
        if request.gives_cloudhsm:
            raise ValidationError(
                "CloudHsmClusterId, TrustAnchorCertificate and KeyStorePassword are not valid"
                " for a custom key store of type EXTERNAL_KEY_STORE."
            )
        x = request.xks
        for member, value in (
            ("XksProxyUriEndpoint", x.uri_endpoint),
            ("XksProxyUriPath", x.uri_path),
            ("XksProxyConnectivity", x.connectivity),
            ("XksProxyAuthenticationCredential", x.access_key_id),
        ):
            if not value:
                raise ValidationError(
                    f"{member} is required for a custom key store of type EXTERNAL_KEY_STORE."
                )
        settings = _xks_settings(x)
        _check_xks_connectivity(settings)
        return settings

    def _check_cluster(self, cluster_id: str, trust_anchor: str | None) -> None:
        cluster = self.clusters.cluster(cluster_id)
        if cluster is None:
            raise CloudHsmClusterNotFoundError(f"CloudHSM cluster {cluster_id} not found.")
        expected = cluster.trust_anchor
        if (
            trust_anchor is not None
            and expected is not None
            and (trust_anchor.strip() != expected.strip())
        ):
            raise IncorrectTrustAnchorError(
                f"The trust anchor certificate is not the one of cluster {cluster_id}."
            )

    # ==== DescribeCustomKeyStores ======================================================
    async def describe(
        self,
        caller: Caller,
        store_id: str | None,
        name: str | None,
        limit: int | None,
        marker: str | None,
    ) -> Page[StoreDescription]:
        if store_id is not None and name is not None:
            raise ValidationError(
                "You cannot specify both CustomKeyStoreId and CustomKeyStoreName."
            )
        start = _decode_marker(marker)

        def command(uow: UnitOfWork) -> list[StoreDescription]:
            self._authorize(uow, caller, "DescribeCustomKeyStores")
            if store_id is not None:
                return [StoreDescription.of(self._store(uow, caller, store_id))]
            index = self._index(uow, caller)
            ids = list(index.entries) if index is not None else []
            if name is not None:
                found = index.store_named(name) if index is not None else None
                if found is None:
                    raise CustomKeyStoreNotFoundError(f"Custom key store {name} not found.")
                ids = [found]
            return [StoreDescription.of(self._store(uow, caller, sid)) for sid in ids]

        stores = await self.runner.run(command)
        size = limit or DEFAULT_PAGE
        if start > len(stores):
            raise InvalidMarkerError("Invalid marker")
        end = start + size
        return Page(stores[start:end], _encode_marker(end) if end < len(stores) else None)

    # ==== UpdateCustomKeyStore =========================================================
    async def update(self, caller: Caller, store_id: str, request: StoreRequest) -> None:
        """Applies the changes; one that changes how an external key store reaches its
        proxy is applied only once the proxy answered GetHealthStatus with the new values
        (``CustomKeyStore.proxy_checked_on_update``)."""
        calls = self.checks.calls(caller, "UpdateCustomKeyStore")

        def command(uow: UnitOfWork) -> None:
            self._authorize(uow, caller, "UpdateCustomKeyStore")
            store = self._store(uow, caller, store_id)
            settings, secret = self._changes(store, request)
            now, actor = self.clock.now(), caller.actor()
            name = request.name if request.name is not None else store.name
            index = self._index(uow, caller)
            assert index is not None
            index.check_unique(store.store_id, unique_entry(name, {**store.settings, **settings}))
            changed = store.changes(
                name=request.name, settings=settings, secret_given=secret is not None
            )
            if store.proxy_checked_on_update(changed, settings):
                self.checks.check(calls, _update_check(store, settings, secret, caller))
            sealed = (
                self.vault.seal_for_key(store.id, SECRET_LABEL, secret.encode())
                if secret is not None
                else None
            )
            if store.update(
                now=now, actor=actor, name=request.name, settings=settings, sealed_secret=sealed
            ):
                index.enter(
                    now=now,
                    actor=actor,
                    store_id=store.store_id,
                    entry=unique_entry(store.name, store.settings),
                )

        await calls.run(self.runner, command)

    def _changes(
        self, store: CustomKeyStore, request: StoreRequest
    ) -> tuple[dict[str, str], str | None]:
        """(settings changed, new secret) of an update, checked against the store's type."""
        if store.is_cloudhsm:
            if request.gives_xks:
                raise ValidationError(
                    f"XksProxy parameters are not valid for custom key store {store.store_id}"
                    " of type AWS_CLOUDHSM."
                )
            settings: dict[str, str] = {}
            if request.cluster_id is not None:
                cluster = self.clusters.cluster(request.cluster_id)
                if cluster is None:
                    raise CloudHsmClusterNotFoundError(
                        f"CloudHSM cluster {request.cluster_id} not found."
                    )
                current = self.clusters.cluster(store.settings["cluster_id"])
                if current is not None and current.token != cluster.token:
                    raise CloudHsmClusterNotRelatedError(
                        f"CloudHSM cluster {request.cluster_id} is not related to cluster"
                        f" {store.settings['cluster_id']}."
                    )
                settings["cluster_id"] = request.cluster_id
            return settings, request.password
        if request.gives_cloudhsm:
            raise ValidationError(
                f"CloudHsmClusterId and KeyStorePassword are not valid for custom key store"
                f" {store.store_id} of type EXTERNAL_KEY_STORE."
            )
        settings = _xks_settings(request.xks)
        if settings.get("xks_connectivity") == "PUBLIC_ENDPOINT":
            settings["xks_vpc_endpoint_service_name"] = ""
            settings["xks_vpc_endpoint_service_owner"] = ""
        _check_xks_connectivity({**store.settings, **settings})
        return settings, request.xks.secret_access_key

    # ==== Connect and Disconnect =======================================================
    async def connect(self, caller: Caller, store_id: str) -> None:
        def command(uow: UnitOfWork) -> _Attempt | None:
            self._authorize(uow, caller, "ConnectCustomKeyStore")
            store = self._store(uow, caller, store_id)
            if not store.request_connection(now=self.clock.now(), actor=caller.actor()):
                return None
            opened = self.vault.open_for_key(store.id, SECRET_LABEL, store.sealed_secret)
            secret = opened.decode() if opened is not None else ""
            if store.is_cloudhsm:
                return _Attempt(store.id, secret, cluster_id=store.settings.get("cluster_id", ""))
            return _Attempt(
                store.id, secret, proxy=proxy_address(store), request_id=caller.request_id
            )

        attempt = await self.runner.run(command)
        if attempt is not None:
            # A context of its own: the attempt outlives this call and is no part of it.
            task = asyncio.get_running_loop().create_task(
                self._settle(attempt), context=contextvars.Context()
            )
            self._connecting.add(task)
            task.add_done_callback(self._connecting.discard)

    async def _settle(self, attempt: _Attempt) -> None:
        try:
            code = await self._attempt(attempt)
        except Exception as error:  # never the secret: only the error's type
            log.error("custom key store connection failed: %s", type(error).__name__)
            code = CONNECTION_ERROR

        def command(uow: UnitOfWork) -> bool:
            store = uow.get(attempt.store, fresh=True)
            if not isinstance(store, CustomKeyStore) or store.connection_state != CONNECTING:
                return False
            store.connection_settled(now=self.clock.now(), actor=SERVICE_ACTOR, error_code=code)
            return True

        try:
            settled = await self.runner.run(command)
        except Exception as error:
            log.error("custom key store connection not recorded: %s", type(error).__name__)
            settled = False
        if not settled and code is None:  # disconnected meanwhile: drop the session
            await self._drop_session(attempt.store, attempt.proxy is None)

    async def _attempt(self, attempt: _Attempt) -> str | None:
        """None when connected, else AWS's ConnectionErrorCode."""
        if attempt.proxy is None:
            connect = self.clusters.connect
            return await asyncio.to_thread(
                connect, attempt.store, attempt.cluster_id, attempt.secret
            )
        secret = attempt.secret
        try:
            health = await self.proxies.health(
                attempt.proxy, lambda: secret, "ConnectCustomKeyStore", attempt.request_id
            )
        except xks.XksProxyError as error:  # the proxy's own words: for the operator's log
            log.warning(
                "custom key store %s: its XKS proxy failed GetHealthStatus: %s %s",
                attempt.store,
                error.failure,
                error.detail[:512],
            )
            return xks.connection_error(error.failure)
        return xks.health_connection_error(health)

    async def _drop_session(self, store_uuid: uuid.UUID, cloudhsm: bool) -> None:
        if cloudhsm:
            await asyncio.to_thread(self.clusters.disconnect, store_uuid)
        else:
            await self.proxies.forget(store_uuid)

    async def disconnect(self, caller: Caller, store_id: str) -> None:
        def command(uow: UnitOfWork) -> tuple[uuid.UUID, bool]:
            self._authorize(uow, caller, "DisconnectCustomKeyStore")
            store = self._store(uow, caller, store_id)
            store.disconnect(now=self.clock.now(), actor=caller.actor())
            return store.id, store.is_cloudhsm

        store_uuid, cloudhsm = await self.runner.run(command)
        await self._drop_session(store_uuid, cloudhsm)

    async def wait_for_connections(self) -> None:
        """Until every connection attempt under way has settled (tests, shutdown)."""
        while self._connecting:
            await asyncio.gather(*self._connecting, return_exceptions=True)

    # ==== DeleteCustomKeyStore =========================================================
    async def delete(self, caller: Caller, store_id: str) -> None:
        def command(uow: UnitOfWork) -> uuid.UUID:
            self._authorize(uow, caller, "DeleteCustomKeyStore")
            store = self._store(uow, caller, store_id)
            now, actor = self.clock.now(), caller.actor()
            store.delete(now=now, actor=actor)
            index = self._index(uow, caller)
            if index is not None:
                index.remove(now=now, actor=actor, store_id=store.store_id)
            return store.id

        store_uuid = await self.runner.run(command)
        await asyncio.to_thread(self.vault.shred, store_uuid, self.clock.now())


# ==== the checks of a store's proxy ===============================================
def _create_check(
    store: uuid.UUID, settings: dict[str, str], secret: str, caller: Caller
) -> ProxyHealthCheck:
    """CreateCustomKeyStore's GetHealthStatus, with the credential given."""
    return health_check(
        store=store,
        region=caller.region,
        settings=settings,
        secret=secret,
        sealed_secret=b"",
        caller=caller,
        operation="CreateCustomKeyStore",
    )


def _update_check(
    store: CustomKeyStore, settings: dict[str, str], secret: str | None, caller: Caller
) -> ProxyHealthCheck:
    """UpdateCustomKeyStore's GetHealthStatus at the store's settings as they would be, with
    the credential given, or the store's own."""
    return health_check(
        store=store.id,
        region=store.region,
        settings={**store.settings, **settings},
        secret=secret,
        sealed_secret=store.sealed_secret,
        caller=caller,
        operation="UpdateCustomKeyStore",
    )


# ==== checks that need no store ===================================================
def _xks_settings(x: XksProxySettings) -> dict[str, str]:
    given = {
        "xks_uri_endpoint": x.uri_endpoint,
        "xks_uri_path": x.uri_path,
        "xks_connectivity": x.connectivity,
        "xks_vpc_endpoint_service_name": x.vpc_endpoint_service_name,
        "xks_vpc_endpoint_service_owner": x.vpc_endpoint_service_owner,
        "xks_access_key_id": x.access_key_id,
    }
    return {k: v for k, v in given.items() if v is not None}


def _check_xks_connectivity(settings: dict[str, str]) -> None:
    vpc = settings.get("xks_connectivity") == VPC_ENDPOINT_SERVICE
    service = settings.get("xks_vpc_endpoint_service_name")
    if vpc and not service:
        raise ValidationError(
            "XksProxyVpcEndpointServiceName is required when XksProxyConnectivity is"
            " VPC_ENDPOINT_SERVICE."
        )
    if not vpc and (service or settings.get("xks_vpc_endpoint_service_owner")):
        raise ValidationError(
            "XksProxyVpcEndpointServiceName and XksProxyVpcEndpointServiceOwner are valid only"
            " when XksProxyConnectivity is VPC_ENDPOINT_SERVICE."
        )


def _encode_marker(position: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"stores": position})).decode()


def _decode_marker(marker: str | None) -> int:
    if marker is None:
        return 0
    try:
        value = orjson.loads(base64.urlsafe_b64decode(marker.encode()))
        position = value["stores"]
    except (ValueError, TypeError, KeyError):
        raise InvalidMarkerError("Invalid marker") from None
    if not isinstance(position, int) or isinstance(position, bool) or position < 0:
        raise InvalidMarkerError("Invalid marker")
    return position


__all__ = [
    "EXTERNAL_KEY_STORE",
    "CustomKeyStoreOperations",
    "StoreDescription",
    "StoreRequest",
    "XksProxySettings",
]
