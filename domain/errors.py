"""Domain errors: one class per AWS KMS error, named for what went wrong.

Adapters map each class to its wire shape in one table per protocol
(`app/entrypoints/wire_errors.py`). Messages never contain key material or plaintext.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error the service answers to a caller (a client fault)."""

    def __init__(self, message: str = "") -> None:
        if not message.isascii():
            # A message may echo what a caller sent; a lone surrogate in it (which no
            # adapter's encoder can write) is spelled as its escape: the answer, the audit
            # record and the log line stay writable.
            message = message.encode("utf-8", "backslashreplace").decode("utf-8")
        super().__init__(message)
        self.message = message


# --- input -----------------------------------------------------------------
class ValidationError(DomainError):
    """A request member breaks a model constraint or a semantic rule."""


class SerializationError(DomainError):
    """The body is not JSON, or a member has the wrong JSON type."""


class UnknownOperationError(DomainError):
    """The request names no operation of the service (X-Amz-Target)."""


class InvalidArnError(DomainError):
    """An ARN is malformed."""


class InvalidMarkerError(DomainError):
    """A pagination marker was not issued by this service."""


class InvalidAliasNameError(DomainError):
    """An alias name is malformed or reserved."""


class TagError(DomainError):
    """A tag key or value is not acceptable."""


class MalformedPolicyDocumentError(DomainError):
    """A key policy document is not valid."""


class LimitExceededError(DomainError):
    """A quota or size limit would be exceeded."""


class InvalidGrantTokenError(DomainError):
    """A grant token is not valid."""


class InvalidGrantIdError(DomainError):
    """A grant id is not valid."""


class RequestTooLargeError(DomainError):
    """The request body is over its protocol's size limit
    (app/entrypoints/server/request_limits.py)."""


# --- keys and their state ----------------------------------------------------
class NotFoundError(DomainError):
    """The named key, alias or other entity does not exist."""


class AlreadyExistsError(DomainError):
    """The entity to be created exists already."""


class DisabledError(DomainError):
    """The key is disabled."""


class InvalidStateError(DomainError):
    """The key's state does not allow the operation."""


class InvalidKeyUsageError(DomainError):
    """The key's usage or spec does not allow the operation or algorithm."""


class UnsupportedOperationError(DomainError):
    """The operation is not supported for this key."""


class ConflictError(DomainError):
    """The operation conflicts with one in progress."""


class DryRunSucceededError(DomainError):
    """DryRun was set and the request would have succeeded."""


# --- cryptography ------------------------------------------------------------
class InvalidCiphertextError(DomainError):
    """The ciphertext, or its encryption context, is not valid (no detail is given)."""


class IncorrectKeyError(DomainError):
    """The key in the request is not the key that produced the ciphertext."""


class KMSInvalidSignatureError(DomainError):
    """A signature does not verify (no detail is given)."""


class KMSInvalidMacError(DomainError):
    """A MAC does not verify (no detail is given)."""


# --- imported key material ----------------------------------------------------
class ExpiredImportTokenError(DomainError):
    """The import token (and its wrapping key) is past its 24 hours."""


class InvalidImportTokenError(DomainError):
    """The import token is malformed, already used, or was issued for another key."""


class IncorrectKeyMaterialError(DomainError):
    """The imported material is not the key's material, or not valid for its key spec."""


# --- custom key stores (AWS's exceptions, one class each) -------------------
class CustomKeyStoreNotFoundError(NotFoundError):
    """No custom key store with that id or name in the account and Region."""


class CustomKeyStoreNameInUseError(AlreadyExistsError):
    """Another custom key store of the account and Region has that name."""


class CustomKeyStoreInvalidStateError(InvalidStateError):
    """The store's connection state does not allow the operation."""


class IncorrectOriginError(UnsupportedOperationError):
    """CreateKey's Origin does not match the custom key store's type."""


class CustomKeyStoreHasCMKsError(DomainError):
    """The store still holds KMS keys (DeleteCustomKeyStore)."""


class CloudHsmClusterNotFoundError(DomainError):
    """No cluster with that id (here: none configured in KEYLEDGER_CLOUDHSM_CLUSTERS)."""


class CloudHsmClusterInvalidConfigurationError(DomainError):
    """The cluster cannot hold the key (here: its token refused to create it)."""


class CloudHsmClusterInUseError(DomainError):
    """The cluster already backs another custom key store of the account."""


class CloudHsmClusterNotRelatedError(DomainError):
    """UpdateCustomKeyStore named a cluster that does not hold the store's keys."""


class IncorrectTrustAnchorError(DomainError):
    """The trust anchor certificate is not the cluster's."""


class XksProxyUriInUseError(DomainError):
    """Another external key store uses that proxy endpoint and path."""


class XksProxyUriEndpointInUseError(DomainError):
    """Another external key store (VPC connectivity) uses that proxy endpoint."""


class XksProxyVpcEndpointServiceInUseError(DomainError):
    """Another external key store uses that VPC endpoint service."""


class XksProxyUriUnreachableError(DomainError):
    """Create/UpdateCustomKeyStore: the external key store proxy could not be reached at the
    settings given (or did not answer in time, or over TLS), or reports every external key
    manager unavailable."""


class XksProxyIncorrectAuthenticationCredentialError(DomainError):
    """Create/UpdateCustomKeyStore: the proxy refused the credential given."""


class XksProxyInvalidResponseError(DomainError):
    """Create/UpdateCustomKeyStore: the proxy's answer could not be interpreted."""


class XksProxyInvalidConfigurationError(DomainError):
    """Create/UpdateCustomKeyStore: the proxy refused the URI path given."""


class XksKeyNotFoundError(DomainError):
    """CreateKey: the external key store proxy does not know the XksKeyId."""


class XksKeyInvalidConfigurationError(DomainError):
    """CreateKey: the external key is not an enabled AES-256 key that encrypts and decrypts."""


class XksKeyAlreadyInUseError(DomainError):
    """CreateKey: another KMS key of the external key store uses that external key."""


# --- identity ----------------------------------------------------------------
class AccessDeniedError(DomainError):
    """The caller is authenticated but not allowed to perform the action."""


class AuthenticationError(DomainError):
    """Base of the errors raised before a caller is known."""


class MissingAuthenticationTokenError(AuthenticationError):
    """The request carries no credentials."""


class IncompleteSignatureError(AuthenticationError):
    """The Authorization header is malformed."""


class UnrecognizedClientError(AuthenticationError):
    """The access key id is unknown or inactive."""


class InvalidSignatureError(AuthenticationError):
    """The signature does not match, or the request time is out of range."""


class ExpiredTokenError(AuthenticationError):
    """The temporary credentials' session token has expired (ExpiredTokenException)."""


# --- the service itself ------------------------------------------------------
class InternalError(Exception):
    """A server fault: the caller may retry; the ledger is unchanged."""


class DependencyTimeoutError(InternalError):
    """The event store did not answer in time."""


class KeyUnavailableError(InternalError):
    """The key's custom key store could not complete the request (its HSM or its
    external key store proxy failed); retryable."""


SEALED_MESSAGE = (
    "KeyLedger is sealed: its root key is not in memory until enough unseal key shares are"
    " given (keyledger operator unseal, POST /v1/sys/unseal). Retry once it is unsealed."
)


class SealedError(InternalError):
    """The root key is sealed (the Shamir provider before its unseal, or after a seal):
    nothing that needs it can be answered; 503, retryable (docs/key-custody.md)."""

    def __init__(self, message: str = SEALED_MESSAGE) -> None:
        super().__init__(message)


# AWS's text for KMS's ThrottlingException (reference: sts-quotas-multiregion-emulators §2).
THROTTLING_MESSAGE = (
    "You have exceeded the rate at which you may call KMS. Reduce the frequency of your calls."
)


class ThrottlingError(DomainError):
    """Refused for its rate (AWS's ThrottlingException, HTTP 400; 429 over REST)."""

    def __init__(self, message: str = THROTTLING_MESSAGE) -> None:
        super().__init__(message)


class QuotaExceededError(ThrottlingError):
    """A call over its account's request quota in its Region (domain.quotas): AWS's
    ThrottlingException. ``recorded`` says whether the audit trail keeps this refusal: one
    a minute per account, Region and quota is kept, the others only counted
    (docs/operations.md, "Request quotas")."""

    def __init__(self, quota: str, *, recorded: bool = False) -> None:
        super().__init__()
        self.quota = quota
        self.recorded = recorded
