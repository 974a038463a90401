"""Errors of the XKS Proxy API: every failure as the spec's ``{"errorName", "errorMessage"}``
with its status code, mapped here once."""

from __future__ import annotations

import re

from app.infrastructure.postgres.database import is_unavailable
from domain.errors import (
    AccessDeniedError,
    AuthenticationError,
    DisabledError,
    DomainError,
    InternalError,
    InvalidCiphertextError,
    InvalidKeyUsageError,
    InvalidStateError,
    NotFoundError,
    SerializationError,
    ThrottlingError,
    UnsupportedOperationError,
    ValidationError,
)

MAX_MESSAGE = 511  # "less than 512 characters", printable ASCII only
_NOT_PRINTABLE = re.compile(r"[^\x20-\x7e]")

# (domain error, status, errorName), first match wins.
_TABLE: tuple[tuple[type[BaseException], int, str], ...] = (
    (AuthenticationError, 401, "AuthenticationFailedException"),
    (AccessDeniedError, 403, "AccessDeniedException"),
    (NotFoundError, 404, "KeyNotFoundException"),
    (InvalidCiphertextError, 400, "InvalidCiphertextException"),
    (InvalidKeyUsageError, 400, "InvalidKeyUsageException"),
    (DisabledError, 400, "InvalidStateException"),
    (InvalidStateError, 400, "InvalidStateException"),
    (ValidationError, 400, "ValidationException"),
    (SerializationError, 400, "ValidationException"),
    (ThrottlingError, 429, "ThrottlingException"),
    (UnsupportedOperationError, 501, "UnsupportedOperationException"),
)


class XksRouteError(DomainError):
    """A path that names no XKS operation (404 InvalidUriPathException)."""


class XksMethodError(DomainError):
    """A method other than POST at an XKS route (405)."""


def xks_error(error: BaseException) -> tuple[int, str, str]:
    """(status, errorName, errorMessage) of ``error``."""
    if isinstance(error, XksRouteError):
        return 404, "InvalidUriPathException", _message(error)
    if isinstance(error, XksMethodError):
        return 405, "ValidationException", "The XKS Proxy API takes POST only."
    for kind, status, name in _TABLE:
        if isinstance(error, kind):
            return status, name, _message(error)
    if isinstance(error, InternalError) or is_unavailable(error):  # sealed, database away
        return 503, "DependencyTimeoutException", "KeyLedger cannot answer now; retry."
    return 500, "InternalException", "Internal error."


def _message(error: BaseException) -> str:
    text = str(error.args[0]) if error.args else ""
    return _NOT_PRINTABLE.sub("?", text)[:MAX_MESSAGE]
