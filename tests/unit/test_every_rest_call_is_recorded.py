"""Every /v1 route leaves an audit record (app/entrypoints/rest/call_records.py): a route
added without saying how its record reads would be an unaudited door."""

from __future__ import annotations

from fastapi.routing import APIRoute

from app.entrypoints.rest import call_records
from app.entrypoints.rest.app import create_rest_app


def test_every_v1_route_says_how_its_call_is_recorded() -> None:
    app = create_rest_app(None)  # type: ignore[arg-type]  # routes only: nothing is served
    known = (
        set(call_records.OPERATIONS)
        | set(call_records.CLOUDTRAIL_OPERATIONS)
        | set(call_records.ADMIN_CALLS)
        | call_records.UNATTRIBUTED_CALLS
    )
    every = [
        route
        for entry in app.routes
        for route in getattr(getattr(entry, "original_router", None), "routes", [entry])
    ]
    routes = [r for r in every if isinstance(r, APIRoute) and r.path.startswith("/v1")]
    assert len(routes) > 40
    unrecorded = sorted(f"{r.path} ({r.name})" for r in routes if r.name not in known)
    assert unrecorded == []


def test_the_ledger_evidence_reads_are_recorded_as_keyledger_reads() -> None:
    describe = call_records.ADMIN_CALLS["prove_inclusion"]
    call = describe({"position": "7", "size": "9"}, "aws", lambda _: "")
    assert (call.event_source, call.event_name) == (
        "keyledger.amazonaws.com",
        "GetLedgerInclusionProof",
    )
    assert call.parameters == {"position": "7", "eventId": None, "size": "9"}
