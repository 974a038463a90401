"""Create/UpdateCustomKeyStore's check of an external key store's proxy.

AWS KMS asks the proxy's GetHealthStatus, signed with the credential the call gives (or
the store's own), before it creates an external key store with PUBLIC_ENDPOINT
connectivity, and before an update changes how a store reaches its proxy; a proxy that
fails it refuses the call with the exception the XKS Proxy API's table names
(``XksProxyUriUnreachableException``, ``XksProxyIncorrectAuthenticationCredentialException``,
...), and nothing is recorded.

The check is an outside call (app.usecases.outside_calls), never made on the writer: the
command checks what it can first (authorization, the store's state, uniqueness, quota)
and asks for the check; run again with the proxy's answer, it checks all of it again
against committed state before it records anything.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.auth.credentials import Caller
from app.ports import Vault, XksProxies, XksProxyAddress
from app.usecases.outside_calls import OutsideCalls
from app.usecases.store_keys import SECRET_LABEL
from domain import xks
from domain.errors import CustomKeyStoreNotFoundError, DomainError, InternalError
from domain.xks import XksHealth, XksProxyError

log = logging.getLogger("keyledger.custom_key_stores")


@dataclass(frozen=True)
class ProxyHealthCheck:
    """GetHealthStatus at the settings a Create or an Update asks for. ``secret`` is the
    credential the call gives; None: the store keeps its own (``proxy.sealed_secret``)."""

    proxy: XksProxyAddress
    kms_operation: str
    kms_request_id: str
    secret: str | None = field(default=None, repr=False)


def health_check(
    *,
    store: uuid.UUID,
    region: str,
    settings: dict[str, str],
    secret: str | None,
    sealed_secret: bytes,
    caller: Caller,
    operation: str,
) -> ProxyHealthCheck:
    """The check of an external key store's proxy at ``settings`` (the store's as they
    would be), for ``caller``'s ``operation``."""
    address = XksProxyAddress(
        store=store,
        region=region,
        endpoint=settings["xks_uri_endpoint"],
        uri_path=settings["xks_uri_path"],
        access_key_id=settings["xks_access_key_id"],
        sealed_secret=b"" if secret is not None else sealed_secret,
    )
    return ProxyHealthCheck(address, operation, caller.request_id, secret)


class ProxyChecks:
    """Makes the checks (off the writer) and reads their answers (on the writer)."""

    def __init__(self, *, vault: Vault, proxies: XksProxies) -> None:
        self.vault = vault
        self.proxies = proxies

    def calls(self, caller: Caller, operation: str) -> OutsideCalls:
        return OutsideCalls(self.perform, caller, operation)

    @staticmethod
    def check(calls: OutsideCalls, call: ProxyHealthCheck) -> None:
        """On the writer: raises NeedsOutsideCall until the proxy has answered, then the
        error AWS answers when it failed the check."""
        xks.check_key_managers(calls.answer(call))

    async def perform(self, call: Any) -> XksHealth:
        if not isinstance(call, ProxyHealthCheck):
            raise TypeError(f"no such outside call: {type(call).__name__}")
        try:
            return await self.proxies.check_health(
                call.proxy, self._secret(call), call.kms_operation, call.kms_request_id
            )
        except XksProxyError as error:
            # The proxy's own words are logged for the operator, never answered (AWS).
            log.warning(
                "XKS proxy %s%s failed %s's GetHealthStatus (%s): %s %s",
                call.proxy.endpoint,
                call.proxy.uri_path,
                call.kms_operation,
                call.kms_request_id,
                error.failure,
                error.detail[:512],
            )
            raise xks.kms_failure(error.failure, call.kms_operation) from None
        except DomainError:
            raise
        except Exception as error:  # never the secret: only the error's type
            log.error("XKS proxy check failed: %s", type(error).__name__)
            raise InternalError("The external key store proxy could not be checked.") from None

    def _secret(self, call: ProxyHealthCheck) -> Callable[[], str]:
        """The credential's secret; the store's own is opened only when a client is made."""
        given, proxy = call.secret, call.proxy
        if given is not None:
            return lambda: given

        def opened() -> str:
            found = self.vault.open_for_key(proxy.store, SECRET_LABEL, proxy.sealed_secret)
            if found is None:  # the store was deleted meanwhile (its wrapping key shredded)
                raise CustomKeyStoreNotFoundError("The custom key store no longer exists.")
            return found.decode()

        return opened
