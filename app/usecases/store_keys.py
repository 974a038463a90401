"""Keys in custom key stores: where their cryptography happens, and whether they are usable.

A key of a CloudHSM key store (Origin AWS_CLOUDHSM) has its AES-256 material inside the
store's token: generated there, never extractable, used there with AES-GCM. Its ciphertext
blob has the same format as any other key's (domain.ciphertext); only the cipher differs.
Every token call is an outside call (app.usecases.outside_calls): made off the writer, its
answer given to the command when it runs again.

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
from app.ports import HsmClusters, NeedsOutsideCall, UnitOfWork, Vault
from app.usecases.outside_calls import OutsideCalls
from domain import key_states
from domain.custom_key_stores import (
    AWS_CLOUDHSM,
    CONNECTED,
    CustomKeyStore,
    store_aggregate_id,
)
from domain.errors import CustomKeyStoreNotFoundError, InvalidStateError, KeyUnavailableError
from domain.keys import Key

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


# ==== stores of keys ========================================================================
class StoreKeys:
    """What keys in custom key stores need: their store, their cipher, and the calls."""

    def __init__(self, *, vault: Vault, clusters: HsmClusters) -> None:
        self.vault = vault
        self.clusters = clusters

    def store_of(self, uow: UnitOfWork, key: Key) -> CustomKeyStore | None:
        if key.store is None:
            return None
        found = uow.get(
            store_aggregate_id(key.account_id, key.region, key.store["custom_key_store_id"])
        )
        return found if isinstance(found, CustomKeyStore) else None

    def connected_store(
        self, uow: UnitOfWork, caller: Caller, store_id: str, operation: str
    ) -> CustomKeyStore:
        """The caller's store ``store_id``, which must be CONNECTED for ``operation``."""
        found = uow.get(store_aggregate_id(caller.account_id, caller.region, store_id))
        if not isinstance(found, CustomKeyStore) or found.deleted:
            raise CustomKeyStoreNotFoundError(f"Custom key store {store_id} not found.")
        found.check_connected(operation)
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

    # ==== making the calls (off the writer) ==============================================
    async def perform(self, call: Any) -> Any:
        if isinstance(call, TokenEncrypt | TokenDecrypt | TokenGenerateKey | TokenRandom):
            return await asyncio.to_thread(self._in_token, call)
        raise TypeError(f"no such outside call: {type(call).__name__}")

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

    def calls(self) -> OutsideCalls:
        """A new request's outside calls."""
        return OutsideCalls(self.perform)
