"""SigV4 signing of a request KeyLedger sends (the XKS client): header auth with
``SignedHeaders=host;x-amz-date`` and the payload's SHA-256, as AWS KMS signs its calls to
an XKS proxy (the spec's Appendix A). Verification is app.auth.sigv4's."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from urllib.parse import quote

ALGORITHM = "AWS4-HMAC-SHA256"


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def sign(
    *,
    method: str,
    host: str,
    path: str,
    body: bytes,
    access_key_id: str,
    secret_access_key: str,
    region: str,
    service: str,
    now: datetime,
) -> dict[str, str]:
    """The headers to send: Host, X-Amz-Date and Authorization. ``host`` as in the URL
    (``name[:port]``), ``path`` percent-encoded as sent, with no query string."""
    amz_date = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    canonical_request = "\n".join(
        (
            method,
            quote(path, safe="/~"),  # non-S3: the path encoded once more
            "",
            f"host:{host}\nx-amz-date:{amz_date}\n",
            "host;x-amz-date",
            hashlib.sha256(body).hexdigest(),
        )
    )
    scope = f"{date}/{region}/{service}/aws4_request"
    string_to_sign = (
        f"{ALGORITHM}\n{amz_date}\n{scope}\n"
        f"{hashlib.sha256(canonical_request.encode('utf-8')).hexdigest()}"
    )
    key = _hmac(f"AWS4{secret_access_key}".encode(), date)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    return {
        "Host": host,
        "X-Amz-Date": amz_date,
        "Authorization": (
            f"{ALGORITHM} Credential={access_key_id}/{scope}, "
            f"SignedHeaders=host;x-amz-date, Signature={signature}"
        ),
    }
