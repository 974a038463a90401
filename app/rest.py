"""The REST API under /v1 (FastAPI), over the same KeyService as the AWS protocol."""

from __future__ import annotations

from fastapi import FastAPI

from app.runtime import Runtime


def create_rest_app(runtime: Runtime) -> FastAPI:
    app = FastAPI(title="KeyLedger", version="0.1.0")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        runtime.ledger.recorder.max_notification_id()
        return {"status": "ready"}

    return app
