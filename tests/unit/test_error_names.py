"""Every domain error class is named ...Error, and renaming a class never changes the
__type the AWS protocol answers with (clients match on those strings)."""

from __future__ import annotations

import inspect

import pytest

from app.aws.errors import aws_error
from domain import audit, errors


def test_every_error_class_ends_in_error() -> None:
    classes = [
        cls
        for module in (errors, audit)
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, Exception) and cls.__module__ == module.__name__
    ]
    assert classes
    assert [cls.__name__ for cls in classes if not cls.__name__.endswith("Error")] == []


@pytest.mark.parametrize(
    ("error", "wire"),
    [
        (errors.KMSInvalidSignatureError(), "KMSInvalidSignatureException"),
        (errors.KMSInvalidMacError(), "KMSInvalidMacException"),
        (errors.ExpiredImportTokenError("x"), "ExpiredImportTokenException"),
        (errors.InvalidImportTokenError("x"), "InvalidImportTokenException"),
        (errors.IncorrectKeyMaterialError("x"), "IncorrectKeyMaterialException"),
        (errors.XksProxyUriUnreachableError("x"), "XksProxyUriUnreachableException"),
        (
            errors.XksProxyIncorrectAuthenticationCredentialError("x"),
            "XksProxyIncorrectAuthenticationCredentialException",
        ),
        (errors.XksProxyInvalidResponseError("x"), "XksProxyInvalidResponseException"),
        (errors.XksProxyInvalidConfigurationError("x"), "XksProxyInvalidConfigurationException"),
    ],
)
def test_the_wire_names_of_renamed_errors_are_unchanged(error: Exception, wire: str) -> None:
    assert aws_error(error)[:2] == (wire, 400)
