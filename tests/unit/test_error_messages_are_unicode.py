"""A domain error's message may echo what a caller sent. Whatever it echoes, the message
must stay writable as UTF-8: the AWS JSON answer (orjson), the REST answer (JSONResponse),
the audit record and the log all encode it, and a lone surrogate made each of them fail
(a bare 500 without AWS's shape). Requests refuse lone surrogates as they enter; a
message is the last line, e.g. for a policy stored before they were refused."""

from __future__ import annotations

import orjson

from app.aws.errors import aws_error
from domain.errors import AccessDeniedError, MalformedPolicyDocumentError


def test_a_lone_surrogate_in_an_error_message_is_written_as_its_escape():
    error = MalformedPolicyDocumentError("Statement Action 'kms:\ud800' is not valid.")

    assert error.message == "Statement Action 'kms:\\ud800' is not valid."
    assert str(error) == error.message
    orjson.dumps({"message": aws_error(error)[2]})  # raised TypeError before


def test_an_error_message_keeps_valid_unicode_as_it_is():
    text = "Statement 'caf\u00e9 \U0001f600 \u202e' denies it"

    assert AccessDeniedError(text).message == text
