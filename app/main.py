"""The ASGI application: the AWS protocol at ``POST /``, the REST API everywhere else."""

from __future__ import annotations

from typing import Any

from app.aws_json import AwsJsonHandler
from app.rest import create_rest_app
from app.runtime import Runtime


class KeyLedgerApp:
    """Routes AWS protocol calls to the lean handler before FastAPI sees them."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.aws = AwsJsonHandler(runtime.service, runtime.identity)
        self.rest = create_rest_app(runtime)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/":
            await self.aws(scope, receive, send)
        else:
            await self.rest(scope, receive, send)
