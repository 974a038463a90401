"""The ASGI application: the AWS protocol at ``POST /``, the REST API everywhere else."""

from __future__ import annotations

from typing import Any

from app.aws_json import AwsJsonHandler
from app.rest import create_rest_app
from app.runtime import Runtime
from app.settings import load_settings


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


class WorkerApp:
    """One worker process of ``keyledger run --workers N``: builds its runtime at start-up."""

    def __init__(self) -> None:
        self.app: KeyLedgerApp | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        assert self.app is not None
        await self.app(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                runtime = Runtime.build(load_settings(), run_migrations=False)
                runtime.start()
                self.app = KeyLedgerApp(runtime)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.app is not None:
                    self.app.runtime.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_app() -> WorkerApp:
    return WorkerApp()
