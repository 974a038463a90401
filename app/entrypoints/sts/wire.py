"""AWS's query protocol on the wire (STS, and IAM's refusals): XML answers and errors.

One error table for this protocol: a domain error becomes the ErrorResponse STS sends
(Type Sender/Receiver, Code, Message, RequestId), never a JSON body.
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape

from app.aws.errors import aws_error
from domain import errors

STS_NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"
IAM_NAMESPACE = "https://iam.amazonaws.com/doc/2010-05-08/"
STS_VERSION, IAM_VERSION = "2011-06-15", "2010-05-08"
CONTENT_TYPE = b"text/xml"

# (Code, HTTP status): STS's own names (botocore sts model) and AWS's common errors of the
# query protocol (InvalidClientTokenId, SignatureDoesNotMatch, ...).
QUERY_ERRORS: dict[type[Exception], tuple[str, int]] = {
    errors.UnknownOperationError: ("InvalidAction", 400),
    errors.SerializationError: ("ValidationError", 400),
    errors.ValidationError: ("ValidationError", 400),
    errors.MalformedPolicyDocumentError: ("MalformedPolicyDocument", 400),
    errors.AccessDeniedError: ("AccessDenied", 403),
    errors.MissingAuthenticationTokenError: ("MissingAuthenticationToken", 403),
    errors.IncompleteSignatureError: ("IncompleteSignature", 400),
    errors.UnrecognizedClientError: ("InvalidClientTokenId", 403),
    errors.InvalidSignatureError: ("SignatureDoesNotMatch", 403),
    errors.ExpiredTokenError: ("ExpiredToken", 403),
    errors.ThrottlingError: ("Throttling", 400),
    errors.RequestTooLargeError: ("RequestEntityTooLarge", 413),
    errors.DependencyTimeoutError: ("ServiceUnavailable", 503),
    errors.SealedError: ("ServiceUnavailable", 503),
}


def query_error(error: Exception) -> tuple[str, int, str]:
    """(Code, HTTP status, Message) of ``error`` in the query protocol."""
    for cls in type(error).__mro__:
        if cls in QUERY_ERRORS:
            code, status = QUERY_ERRORS[cls]
            return code, status, getattr(error, "message", "") or ""
    code, status, message = aws_error(error)  # (a database that did not answer: 503)
    if status >= 500:
        return ("ServiceUnavailable" if status == 503 else "InternalFailure"), status, message
    return code.removesuffix("Exception"), status, message


def error_xml(code: str, status: int, message: str, request_id: str, namespace: str) -> bytes:
    kind = "Receiver" if status >= 500 else "Sender"
    text = f"<Message>{escape(message)}</Message>" if message else ""
    return (
        f'<ErrorResponse xmlns="{namespace}"><Error><Type>{kind}</Type>'
        f"<Code>{escape(code)}</Code>{text}</Error>"
        f"<RequestId>{request_id}</RequestId></ErrorResponse>"
    ).encode()


def result_xml(operation: str, members: str, request_id: str) -> bytes:
    return (
        f'<{operation}Response xmlns="{STS_NAMESPACE}"><{operation}Result>{members}'
        f"</{operation}Result><ResponseMetadata><RequestId>{request_id}</RequestId>"
        f"</ResponseMetadata></{operation}Response>"
    ).encode()


def element(name: str, value: Any) -> str:
    return f"<{name}>{escape(str(value))}</{name}>"


async def respond(
    send: Any, status: int, body: bytes, request_id: str, *, close: bool = False
) -> None:
    headers = [
        (b"content-type", CONTENT_TYPE),
        (b"content-length", str(len(body)).encode()),
        (b"x-amzn-requestid", request_id.encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def answer_error(
    send: Any, error: Exception, request_id: str, *, close: bool = False, namespace: str = ""
) -> None:
    code, status, message = query_error(error)
    body = error_xml(code, status, message, request_id, namespace or STS_NAMESPACE)
    await respond(send, status, body, request_id, close=close)
