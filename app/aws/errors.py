"""Domain errors to wire errors: the one table every protocol adapter uses."""

from __future__ import annotations

from app.infrastructure.postgres.database import is_unavailable
from domain import audit, errors

# (AWS __type, HTTP status). Real AWS answers 400 for every client error; server
# faults are 500 (retryable) and 503 for dependency time-outs. An oversized body is the
# exception: it is refused by the HTTP front end, before any service reads it, as 413 with
# the __type AWS's JSON services give it (Lambda's RequestEntityTooLargeException; the KMS
# reference records no answer of its own).
AWS_ERRORS: dict[type[Exception], tuple[str, int]] = {
    # CloudTrail's names for the audit queries' errors (LookupEvents, and the REST trail).
    audit.InvalidTimeRangeError: ("InvalidTimeRangeException", 400),
    audit.InvalidLookupAttributesError: ("InvalidLookupAttributesException", 400),
    audit.InvalidMaxResultsError: ("InvalidMaxResultsException", 400),
    audit.InvalidEventCategoryError: ("InvalidEventCategoryException", 400),
    audit.InvalidNextTokenError: ("InvalidNextTokenException", 400),
    errors.CustomKeyStoreNotFoundError: ("CustomKeyStoreNotFoundException", 400),
    errors.CustomKeyStoreNameInUseError: ("CustomKeyStoreNameInUseException", 400),
    errors.CustomKeyStoreInvalidStateError: ("CustomKeyStoreInvalidStateException", 400),
    errors.CustomKeyStoreHasCMKsError: ("CustomKeyStoreHasCMKsException", 400),
    errors.CloudHsmClusterNotFoundError: ("CloudHsmClusterNotFoundException", 400),
    errors.CloudHsmClusterInUseError: ("CloudHsmClusterInUseException", 400),
    errors.CloudHsmClusterInvalidConfigurationError: (
        "CloudHsmClusterInvalidConfigurationException",
        400,
    ),
    errors.CloudHsmClusterNotRelatedError: ("CloudHsmClusterNotRelatedException", 400),
    errors.IncorrectTrustAnchorError: ("IncorrectTrustAnchorException", 400),
    errors.XksProxyUriInUseError: ("XksProxyUriInUseException", 400),
    errors.XksProxyUriEndpointInUseError: ("XksProxyUriEndpointInUseException", 400),
    errors.XksProxyVpcEndpointServiceInUseError: (
        "XksProxyVpcEndpointServiceInUseException",
        400,
    ),
    errors.XksProxyUriUnreachableError: ("XksProxyUriUnreachableException", 400),
    errors.XksProxyIncorrectAuthenticationCredentialError: (
        "XksProxyIncorrectAuthenticationCredentialException",
        400,
    ),
    errors.XksProxyInvalidResponseError: ("XksProxyInvalidResponseException", 400),
    errors.XksProxyInvalidConfigurationError: ("XksProxyInvalidConfigurationException", 400),
    errors.XksKeyNotFoundError: ("XksKeyNotFoundException", 400),
    errors.XksKeyInvalidConfigurationError: ("XksKeyInvalidConfigurationException", 400),
    errors.XksKeyAlreadyInUseError: ("XksKeyAlreadyInUseException", 400),
    errors.ValidationError: ("ValidationException", 400),
    errors.InvalidArnError: ("InvalidArnException", 400),
    errors.InvalidMarkerError: ("InvalidMarkerException", 400),
    errors.InvalidAliasNameError: ("InvalidAliasNameException", 400),
    errors.TagError: ("TagException", 400),
    errors.MalformedPolicyDocumentError: ("MalformedPolicyDocumentException", 400),
    errors.LimitExceededError: ("LimitExceededException", 400),
    errors.InvalidGrantTokenError: ("InvalidGrantTokenException", 400),
    errors.InvalidGrantIdError: ("InvalidGrantIdException", 400),
    errors.RequestTooLargeError: ("RequestEntityTooLargeException", 413),
    errors.ThrottlingError: ("ThrottlingException", 400),
    errors.NotFoundError: ("NotFoundException", 400),
    errors.AlreadyExistsError: ("AlreadyExistsException", 400),
    errors.DisabledError: ("DisabledException", 400),
    errors.InvalidStateError: ("KMSInvalidStateException", 400),
    errors.InvalidKeyUsageError: ("InvalidKeyUsageException", 400),
    errors.UnsupportedOperationError: ("UnsupportedOperationException", 400),
    errors.ConflictError: ("ConflictException", 400),
    errors.DryRunSucceededError: ("DryRunOperationException", 400),
    errors.InvalidCiphertextError: ("InvalidCiphertextException", 400),
    errors.IncorrectKeyError: ("IncorrectKeyException", 400),
    errors.KMSInvalidSignatureError: ("KMSInvalidSignatureException", 400),
    errors.KMSInvalidMacError: ("KMSInvalidMacException", 400),
    errors.ExpiredImportTokenError: ("ExpiredImportTokenException", 400),
    errors.InvalidImportTokenError: ("InvalidImportTokenException", 400),
    errors.IncorrectKeyMaterialError: ("IncorrectKeyMaterialException", 400),
    errors.AccessDeniedError: ("AccessDeniedException", 400),
    errors.MissingAuthenticationTokenError: ("MissingAuthenticationTokenException", 400),
    errors.IncompleteSignatureError: ("IncompleteSignatureException", 400),
    errors.UnrecognizedClientError: ("UnrecognizedClientException", 400),
    errors.InvalidSignatureError: ("InvalidSignatureException", 400),
    errors.ExpiredTokenError: ("ExpiredTokenException", 400),
    errors.DependencyTimeoutError: ("DependencyTimeoutException", 503),
    errors.SealedError: ("KMSInternalException", 503),
    errors.KeyUnavailableError: ("KeyUnavailableException", 500),
    errors.InternalError: ("KMSInternalException", 500),
}

# REST answers with the HTTP status that fits each error's meaning.
REST_STATUS: dict[type[Exception], int] = {
    errors.NotFoundError: 404,
    errors.AlreadyExistsError: 409,
    errors.DisabledError: 409,
    errors.InvalidStateError: 409,
    errors.ConflictError: 409,
    errors.CustomKeyStoreHasCMKsError: 409,
    errors.CloudHsmClusterInUseError: 409,
    errors.XksProxyUriInUseError: 409,
    errors.XksProxyUriEndpointInUseError: 409,
    errors.XksProxyVpcEndpointServiceInUseError: 409,
    errors.XksKeyAlreadyInUseError: 409,
    errors.AccessDeniedError: 403,
    errors.AuthenticationError: 401,
    errors.DryRunSucceededError: 412,
    errors.RequestTooLargeError: 413,
    errors.ThrottlingError: 429,
    errors.DependencyTimeoutError: 503,
    errors.SealedError: 503,
    errors.InternalError: 500,
}


def aws_error(error: Exception) -> tuple[str, int, str]:
    """(__type, HTTP status, message) for any exception; unknown ones are internal, but
    a database that could not be reached is a retryable 503, wherever it surfaced."""
    if is_unavailable(error) and not isinstance(error, errors.DomainError):
        error = errors.DependencyTimeoutError("the event store did not answer")
    for cls in type(error).__mro__:
        if cls in AWS_ERRORS:
            code, status = AWS_ERRORS[cls]
            message = getattr(error, "message", None)
            if isinstance(error, errors.InternalError):
                message = str(error) or "internal error"
            return code, status, message or ""
    return "KMSInternalException", 500, "internal error"


def error_document(code: str, message: str) -> dict[str, str]:
    """An AWS JSON 1.1 error body. An error AWS sends without a text (InvalidCiphertext,
    KMSInvalidSignature, KMSInvalidMac, ...) has no ``message`` member at all: an empty
    string is not the same answer."""
    if not message:
        return {"__type": code}
    return {"__type": code, "message": message}


def rest_status(error: Exception) -> int:
    if is_unavailable(error) and not isinstance(error, errors.DomainError):
        return 503
    for cls in type(error).__mro__:
        if cls in REST_STATUS:
            return REST_STATUS[cls]
    return 400 if isinstance(error, errors.DomainError) else 500
