"""Keys in custom key stores: where their cryptography happens, and whether they are usable.

A key of a CloudHSM key store (Origin AWS_CLOUDHSM) has its AES-256 material inside the
store's token: generated there, never extractable, used there with AES-GCM. Its ciphertext
blob has the same format as any other key's (domain.ciphertext); only the cipher differs.
Every token call is an outside call (app.usecases.outside_calls): made off the writer, its
answer given to the command when it runs again.

A key of an external key store (Origin EXTERNAL_KEY_STORE) has two backing keys, as AWS
KMS's do: KMS material of its own (wrapped by the vault like any key's) and an external
key behind the store's XKS proxy (its XksKeyId). Encrypting seals with the KMS material
first (the usual blob), then has the proxy encrypt that blob (an outside call), and keeps
the proxy's answer whole in a format 2 blob (domain.ciphertext); decrypting asks the proxy
first. A proxy failure answers as AWS KMS answers it (domain.xks.kms_failure).

A key is usable only while its store is CONNECTED: otherwise AWS reports it Unavailable
and refuses its cryptographic operations (KMSInvalidStateException ``<arn> is
unavailable.``), while it stays in whatever state it was for everything else.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag

from app.auth.credentials import Caller
from app.ports import (
    HsmClusters,
    NeedsOutsideCall,
    UnitOfWork,
    Vault,
    XksProxies,
    XksProxyAddress,
)
from app.usecases.outside_calls import OutsideCalls
from domain import key_states, xks
from domain.ciphertext import check_inner, external_header, unwrap_external, wrap_external
from domain.custom_key_stores import (
    AWS_CLOUDHSM,
    CONNECTED,
    EXTERNAL_KEY_STORE,
    CustomKeyStore,
    store_aggregate_id,
)
from domain.errors import (
    CustomKeyStoreNotFoundError,
    DomainError,
    InvalidStateError,
    KeyUnavailableError,
    UnsupportedOperationError,
)
from domain.keys import Key
from domain.xks import RequestMetadata, XksCiphertext, XksKeyMetadata, XksProxyError

log = logging.getLogger("keyledger.store_keys")
SECRET_LABEL = b"custom-key-store-secret:"  # the store's sealed password (custom_key_stores)
UNAVAILABLE = "Unavailable"


# ==== the outside calls of CloudHSM keys ===================================================
@dataclass(frozen=True)
class TokenStore:
    """A CloudHSM key store's token, as a call needs it: the store's sealed password is
    opened only by a process that must log in first."""

    store: uuid.UUID
    cluster_id: str
    sealed_password: bytes = field(repr=False)


@dataclass(frozen=True)
class TokenEncrypt:
    token: TokenStore
    label: str
    nonce: bytes
    plaintext: bytes = field(repr=False)
    aad: bytes


@dataclass(frozen=True)
class TokenDecrypt:
    token: TokenStore
    label: str
    nonce: bytes
    ciphertext: bytes
    aad: bytes


@dataclass(frozen=True)
class TokenGenerateKey:
    token: TokenStore
    label: str


@dataclass(frozen=True)
class TokenRandom:
    token: TokenStore
    size: int


class TokenCipher:
    """AES-GCM in a token, shaped like cryptography's AESGCM for domain.ciphertext: each
    call is answered by the request's OutsideCalls."""

    __slots__ = ("_calls", "_label", "_token")

    def __init__(self, calls: OutsideCalls, token: TokenStore, label: str) -> None:
        self._calls, self._token, self._label = calls, token, label

    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes:
        call = TokenEncrypt(self._token, self._label, nonce, data, associated_data or b"")
        return bytes(self._calls.answer(call))

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes:
        call = TokenDecrypt(self._token, self._label, nonce, data, associated_data or b"")
        found = self._calls.answer(call)
        if found is None:
            raise InvalidTag()
        return bytes(found)


# ==== the outside calls of external keys ===================================================
@dataclass(frozen=True)
class XksGetKeyMetadata:
    proxy: XksProxyAddress
    external_key_id: str
    metadata: RequestMetadata


@dataclass(frozen=True)
class XksEncrypt:
    proxy: XksProxyAddress
    external_key_id: str
    metadata: RequestMetadata
    plaintext: bytes = field(repr=False)  # the inner blob: ciphertext already, kept out anyway
    aad: bytes


@dataclass(frozen=True)
class XksDecrypt:
    proxy: XksProxyAddress
    external_key_id: str
    metadata: RequestMetadata
    ciphertext: XksCiphertext
    aad: bytes


XKS_CALLS = (XksGetKeyMetadata, XksEncrypt, XksDecrypt)


def proxy_address(store: CustomKeyStore) -> XksProxyAddress:
    """An external key store's proxy, as its calls name it."""
    settings = store.settings
    return XksProxyAddress(
        store=store.id,
        region=store.region,
        endpoint=settings["xks_uri_endpoint"],
        uri_path=settings["xks_uri_path"],
        access_key_id=settings["xks_access_key_id"],
        sealed_secret=store.sealed_secret,
    )


def external_key_id(key: Key) -> str | None:
    """The XksKeyId of a key in an external key store; None for every other key."""
    return None if key.store is None else key.store["xks_key_id"]


# ==== stores of keys ========================================================================
class StoreKeys:
    """What keys in custom key stores need: their store, their cipher, and the calls."""

    def __init__(self, *, vault: Vault, clusters: HsmClusters, proxies: XksProxies) -> None:
        self.vault = vault
        self.clusters = clusters
        self.proxies = proxies

    def store_of(self, uow: UnitOfWork, key: Key) -> CustomKeyStore | None:
        if key.store is None:
            return None
        found = uow.get(
            store_aggregate_id(key.account_id, key.region, key.store["custom_key_store_id"])
        )
        return found if isinstance(found, CustomKeyStore) else None

    def store_for_random(self, uow: UnitOfWork, caller: Caller, store_id: str) -> CustomKeyStore:
        """GenerateRandom's store: a connected CloudHSM key store (AWS: an external key
        store has no random number generator to offer, whatever its state)."""
        found = uow.get(store_aggregate_id(caller.account_id, caller.region, store_id))
        if not isinstance(found, CustomKeyStore) or found.deleted:
            raise CustomKeyStoreNotFoundError(f"Custom key store {store_id} not found.")
        if not found.is_cloudhsm:
            raise UnsupportedOperationError(
                f"GenerateRandom is not valid for custom key store {store_id} of type"
                f" {found.store_type}."
            )
        found.check_connected("GenerateRandom")
        return found

    def is_available(self, uow: UnitOfWork, key: Key) -> bool:
        store = self.store_of(uow, key)
        return (
            store is None
            if key.store is None
            else (store is not None and not store.deleted and store.connection_state == CONNECTED)
        )

    def key_state(self, uow: UnitOfWork, key: Key) -> str:
        """The state AWS reports: Unavailable while an Enabled or Disabled key's store is
        not connected (a key pending deletion stays PendingDeletion)."""
        if key.store is None or key.state not in (key_states.ENABLED, key_states.DISABLED):
            return str(key.state)
        return str(key.state) if self.is_available(uow, key) else UNAVAILABLE

    def check_available(self, uow: UnitOfWork, key: Key) -> None:
        if key.store is not None and self.key_state(uow, key) == UNAVAILABLE:
            raise InvalidStateError(f"{key.arn} is unavailable.")

    def token_of(self, store: CustomKeyStore) -> TokenStore:
        return TokenStore(store.id, store.settings["cluster_id"], store.sealed_secret)

    def cipher(self, uow: UnitOfWork, key: Key, label: str, calls: OutsideCalls | None) -> Any:
        """The cipher of a key's material in its store (a CloudHSM key)."""
        if calls is None:  # run again with the request's outside calls
            raise NeedsOutsideCall(None)
        store = self.store_of(uow, key)
        if store is None or store.store_type != AWS_CLOUDHSM:
            raise KeyUnavailableError(f"{key.arn} is unavailable.")
        return TokenCipher(calls, self.token_of(store), label)

    # ==== external keys: double encryption ===============================================
    def external_store(self, uow: UnitOfWork, key: Key) -> CustomKeyStore:
        store = self.store_of(uow, key)
        if store is None or store.store_type != EXTERNAL_KEY_STORE:
            raise KeyUnavailableError(f"{key.arn} is unavailable.")
        return store

    def seal_external(
        self,
        uow: UnitOfWork,
        key: Key,
        material_version: int,
        inner: bytes,
        calls: OutsideCalls,
    ) -> bytes:
        """The format 2 blob of ``inner`` (the blob of the key's own material): the proxy
        encrypts it under the external key, the format 2 header as its AAD."""
        xks_key_id = external_key_id(key)
        assert xks_key_id is not None
        header = external_header(key.id, material_version)
        call = XksEncrypt(
            proxy_address(self.external_store(uow, key)),
            xks_key_id,
            request_metadata(calls, key.arn),
            inner,
            header,
        )
        return wrap_external(header, calls.answer(call))

    def open_external(
        self, uow: UnitOfWork, key: Key, blob: bytes, calls: OutsideCalls | None
    ) -> bytes:
        """The inner blob of a format 2 blob (the proxy decrypts it): a key in an external
        key store opens nothing else."""
        header, outer = unwrap_external(blob)
        if calls is None:  # run again with the request's outside calls
            raise NeedsOutsideCall(None)
        xks_key_id = external_key_id(key)
        assert xks_key_id is not None
        call = XksDecrypt(
            proxy_address(self.external_store(uow, key)),
            xks_key_id,
            request_metadata(calls, key.arn),
            outer,
            header,
        )
        inner = bytes(calls.answer(call))
        check_inner(inner, header)
        return inner

    def external_key_metadata(
        self, store: CustomKeyStore, xks_key_id: str, calls: OutsideCalls
    ) -> XksKeyMetadata:
        """CreateKey: what the proxy says of the external key (no KMS key ARN yet)."""
        call = XksGetKeyMetadata(proxy_address(store), xks_key_id, request_metadata(calls, None))
        found: XksKeyMetadata = calls.answer(call)
        return found

    # ==== making the calls (off the writer) ==============================================
    async def perform(self, call: Any) -> Any:
        if isinstance(call, XKS_CALLS):
            return await self._at_proxy(call)
        if isinstance(call, TokenEncrypt | TokenDecrypt | TokenGenerateKey | TokenRandom):
            return await asyncio.to_thread(self._in_token, call)
        raise TypeError(f"no such outside call: {type(call).__name__}")

    async def _at_proxy(self, call: XksGetKeyMetadata | XksEncrypt | XksDecrypt) -> Any:
        """One proxy call; its failure becomes the error AWS KMS answers with."""
        proxies, secret = self.proxies, self.proxy_secret(call.proxy)
        operation = call.metadata.kms_operation
        try:
            if isinstance(call, XksEncrypt):
                return await proxies.encrypt(
                    call.proxy,
                    secret,
                    call.external_key_id,
                    call.metadata,
                    call.plaintext,
                    call.aad,
                )
            if isinstance(call, XksDecrypt):
                return await proxies.decrypt(
                    call.proxy,
                    secret,
                    call.external_key_id,
                    call.metadata,
                    call.ciphertext,
                    call.aad,
                )
            return await proxies.get_key_metadata(
                call.proxy, secret, call.external_key_id, call.metadata
            )
        except XksProxyError as error:
            # The proxy's own words are logged for the operator, never answered (AWS).
            log.warning(
                "XKS proxy of custom key store %s refused %s (%s): %s %s",
                call.proxy.store,
                operation,
                call.metadata.kms_request_id,
                error.failure,
                error.detail[:512],
            )
            raise xks.kms_failure(error.failure, operation) from None
        except DomainError:
            raise
        except Exception as error:  # never the secret: only the error's type
            log.error("XKS proxy call failed: %s", type(error).__name__)
            what = call.metadata.kms_key_arn or "The external key store"
            raise KeyUnavailableError(f"{what} is unavailable.") from None

    def proxy_secret(self, proxy: XksProxyAddress) -> Callable[[], str]:
        """Opens the store's RawSecretAccessKey (blocks), when a client must be made."""

        def secret() -> str:
            opened = self.vault.open_for_key(proxy.store, SECRET_LABEL, proxy.sealed_secret)
            if opened is None:  # the store was deleted (its wrapping key shredded)
                raise KeyUnavailableError("The custom key store no longer exists.")
            return opened.decode()

        return secret

    def _in_token(self, call: Any) -> Any:
        token: TokenStore = call.token
        pin = self._pin(token)
        clusters = self.clusters
        if isinstance(call, TokenEncrypt):
            return clusters.encrypt(
                token.store, token.cluster_id, pin, call.label, call.nonce, call.plaintext, call.aad
            )
        if isinstance(call, TokenDecrypt):
            return clusters.decrypt(
                token.store,
                token.cluster_id,
                pin,
                call.label,
                call.nonce,
                call.ciphertext,
                call.aad,
            )
        if isinstance(call, TokenGenerateKey):
            clusters.generate_key(token.store, token.cluster_id, pin, call.label)
            return True
        return clusters.random(token.store, token.cluster_id, pin, call.size)

    def _pin(self, token: TokenStore) -> Callable[[], str]:
        def pin() -> str:
            opened = self.vault.open_for_key(token.store, SECRET_LABEL, token.sealed_password)
            if opened is None:  # the store was deleted (its wrapping key shredded)
                raise KeyUnavailableError("The custom key store no longer exists.")
            return opened.decode()

        return pin

    async def forget_token_key(self, calls: OutsideCalls, label: str) -> None:
        """Destroy a key a failed CreateKey generated in a token (best effort: a key left
        behind is never used, since no KMS key names it)."""
        generated = calls.answered(TokenGenerateKey, label)
        if generated is None:
            return
        token = generated.token
        try:
            await asyncio.to_thread(
                self.clusters.destroy_key, token.store, token.cluster_id, self._pin(token), label
            )
        except Exception as error:
            log.warning("a token key of a failed CreateKey was left: %s", type(error).__name__)

    def destroy_token_key(self, token: TokenStore, label: str) -> None:
        """Destroy a deleted key's material in its token (blocks). When the token cannot
        be reached the material stays there, unused: AWS leaves it to the cluster's
        owner too; the warning names its label."""
        try:
            self.clusters.destroy_key(token.store, token.cluster_id, self._pin(token), label)
        except Exception as error:
            log.warning(
                "token key %s of a deleted KMS key is left in cluster %s: %s",
                label,
                token.cluster_id,
                type(error).__name__,
            )

    def calls(self, caller: Caller | None = None, operation: str = "") -> OutsideCalls:
        """A new request's outside calls (``caller``'s KMS ``operation``)."""
        return OutsideCalls(self.perform, caller, operation)


def request_metadata(calls: OutsideCalls, key_arn: str | None) -> RequestMetadata:
    """What the proxy is told of the KMS request behind a call (AWS's requestMetadata)."""
    caller = calls.caller
    if caller is None:
        return RequestMetadata("kms.amazonaws.com", calls.operation, "", key_arn)
    return RequestMetadata(
        aws_principal_arn=caller.principal_arn,
        kms_operation=calls.operation,
        kms_request_id=caller.request_id,
        kms_key_arn=key_arn,
        kms_via_service=caller.via_service or None,
    )
