"""List calls check their marker after their authorizing command: a refused one leaves one
record, its failure, not a success beside it."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.audit.conftest import by_request, records


@pytest.mark.parametrize("operation", ["ListKeys", "ListAliases"])
def test_a_list_call_refused_after_its_authorization_leaves_only_its_failure(
    kms: Any, cloudtrail: Any, operation: str
) -> None:
    method = getattr(kms, "list_" + operation.removeprefix("List").lower())
    bad_marker = base64.b64encode(b"not-a-key-id").decode()
    with pytest.raises(ClientError) as refused:
        method(Marker=bad_marker)
    answer = refused.value.response
    found = by_request(
        records(cloudtrail, "EventName", operation), answer["ResponseMetadata"]["RequestId"]
    )
    assert [record.get("errorCode") for record in found] == [answer["Error"]["Code"]]
