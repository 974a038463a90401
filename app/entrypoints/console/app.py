"""The auditor's console at /console: server-rendered HTML over the same use cases as the
REST API (docs/console.md).

An adapter, like app/entrypoints/rest: each page turns its query into plain values, calls
the use cases (which authorize the signed-in principal exactly as they authorize its API
calls) and renders what they answered. Each use-case call is one audited call, recorded as
its REST or AWS twin is (DescribeKey, ListKeys, LookupEvents, GetComplianceReport, ...);
sign-in and sign-out are recorded by app.usecases.console.

Security: Jinja2 with autoescape on (every tag, description and policy is hostile), a
strict Content-Security-Policy (``default-src 'self'``, no inline script or style),
``X-Frame-Options: DENY``, no caching. The session cookie is HttpOnly, SameSite=Strict,
Secure when the request came over TLS, and ends on its idle and lifetime bounds (settings
``console_idle_seconds``, ``console_session_seconds``). Both POST forms (sign-in, sign-out)
carry a CSRF token: the sign-in's a double-submit cookie, the sign-out's bound to the
session by a MAC.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import logging
import os
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from app.auth.credentials import Caller
from app.bootstrap import Runtime
from app.entrypoints.console.rendering import (
    bar_chart,
    pretty_policy,
    report_chart,
    side_by_side,
)
from app.usecases.console import ConsoleSession, ConsoleSessions
from domain.audit import CLOUDTRAIL_SOURCE, KEYLEDGER_SOURCE, KMS_SOURCE
from domain.errors import AuthenticationError, DomainError, ThrottlingError
from projections.audit_queries import AuditFilter
from projections.reports import REPORTS

log = logging.getLogger("keyledger.console")
T = TypeVar("T")

PREFIX = "/console"
SESSION_COOKIE = "keyledger_console"
PROCESS_HEADER = "x-keyledger-process-id"  # as the REST API's operator routes say it
SIGN_IN_CSRF_COOKIE = "keyledger_console_csrf"
MAX_FORM_BYTES = 8192
MAX_FIELD = 2048  # longest filter or form value taken (longer: cut)
KEYS_PAGE = 100
TRAIL_PAGE = 50
DESCRIBE_CONCURRENCY = 8
HERE = Path(__file__).parent
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}
REPORT_TITLES = {
    "security-hub": "Security Hub KMS.1-KMS.5",
    "cis-rotation": "CIS 3.6 key rotation",
    "pending-deletion": "Keys pending deletion",
    "unused-keys": "Unused keys",
    "cryptoperiod": "Cryptoperiods (NIST SP 800-57)",
    "who-can-decrypt": "Who can decrypt",
    "inventory": "Inventory",
    "cost": "Cost estimate",
    "custom-key-stores": "Custom key stores",
    "unavailable-keys": "Unavailable keys",
}
TRAIL_FILTERS = (
    ("event_name", "Event name"),
    ("username", "User name"),
    ("resource", "Resource (key id or ARN)"),
    ("event_source", "Event source"),
    ("event_id", "Event id"),
    ("access_key_id", "Access key id"),
    ("principal_arn", "Principal ARN"),
    ("error_code", "Error code"),
    ("source_ip", "Source IP"),
)
# The filters as CloudTrail's LookupAttributes name them (for the page view's record).
LOOKUP_ATTRIBUTES = {
    "event_name": "EventName",
    "username": "Username",
    "resource": "ResourceName",
    "event_source": "EventSource",
    "event_id": "EventId",
    "access_key_id": "AccessKeyId",
}


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every template, whatever its name
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["when"] = _when
    environment.filters["pretty_json"] = _pretty_json
    return environment


def _when(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return "" if value is None else str(value)


def _pretty_json(value: Any) -> str:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


@dataclass
class View:
    """One page view by a signed-in principal."""

    request: Request
    session: ConsoleSession
    csrf: str
    cookies: list[tuple[str, str]] = field(default_factory=list)


class Console:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        settings = runtime.settings
        self.sessions = ConsoleSessions(
            identity=runtime.identity,
            auditor=runtime.auditor,
            mac=runtime.vault.session_token_mac,
            clock=runtime.clock,
            region=settings.default_region,
            idle=timedelta(seconds=settings.console_idle_seconds),
            lifetime=timedelta(seconds=settings.console_session_seconds),
        )
        self.templates = _environment()

    # ==== plumbing ========================================================================
    def render(self, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        body = self.templates.get_template(template).render(prefix=PREFIX, **context)
        return HTMLResponse(body, status_code=status_code, headers=SECURITY_HEADERS)

    def page(
        self, view: View, template: str, status_code: int = 200, **context: Any
    ) -> HTMLResponse:
        response = self.render(
            template,
            status_code=status_code,
            caller=view.session.caller,
            csrf=view.csrf,
            active=template,
            **context,
        )
        self._set_session_cookie(view.request, response, view.session.token)
        response.headers[PROCESS_HEADER] = str(os.getpid())  # which worker answered
        return response

    def _set_session_cookie(self, request: Request, response: Response, token: str) -> None:
        set_cookie(
            response, request, SESSION_COOKIE, token, int(self.sessions.idle.total_seconds())
        )

    async def view(self, request: Request) -> View | None:
        """The signed-in session of this request, re-issued; None: sign in first."""
        token = request.cookies.get(SESSION_COOKIE, "")
        if not token:
            return None
        try:
            session = await self.sessions.resume(
                token, source_ip=_source_ip(request), user_agent=_user_agent(request)
            )
        except AuthenticationError:
            return None
        return View(request, session, self.sessions.csrf_token(session))

    async def call(
        self,
        view: View,
        operation: str,
        use_case: Callable[[Caller], Awaitable[T]],
        *,
        source: str = KMS_SOURCE,
        parameters: dict[str, Any] | None = None,
    ) -> T:
        """Run one use case as one audited call of the signed-in principal."""
        caller = replace(view.session.caller, request_id=str(uuid.uuid4()))
        auditor = self.runtime.auditor
        if auditor is None:
            return await use_case(caller)
        request = view.request
        audited = auditor.call(
            operation,
            event_source=source,
            request_id=caller.request_id,
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw],
            source_ip=caller.source_ip,
            user_agent=caller.user_agent,
            caller=caller,
        )
        audited.parameters = parameters or {}
        async with audited:
            return await use_case(caller)

    async def attempt(
        self,
        view: View,
        operation: str,
        use_case: Callable[[Caller], Awaitable[T]],
        **kwargs: Any,
    ) -> tuple[T | None, str | None]:
        """``call``, answering (result, None) or (None, why not) for a page section."""
        try:
            return await self.call(view, operation, use_case, **kwargs), None
        except DomainError as error:
            return None, _message(error)

    # ==== sign-in and sign-out ============================================================
    async def sign_in_form(self, request: Request) -> Response:
        if await self.view(request) is not None:
            return _redirect(f"{PREFIX}/keys")
        return self._sign_in_page(request, None, 200)

    def _sign_in_page(
        self, request: Request, error: str | None, status: int, access_key_id: str = ""
    ) -> Response:
        csrf = secrets.token_urlsafe(32)
        response = self.render(
            "sign_in.html",
            status_code=status,
            error=error,
            csrf=csrf,
            access_key_id=access_key_id,
            caller=None,
            active="sign_in.html",
        )
        set_cookie(response, request, SIGN_IN_CSRF_COOKIE, csrf, 3600)
        return response

    async def sign_in(self, request: Request) -> Response:
        form = await _form(request)
        cookie = request.cookies.get(SIGN_IN_CSRF_COOKIE, "")
        given = form.get("csrf", "")
        if not cookie or not hmac.compare_digest(cookie.encode(), given.encode()):
            return self._sign_in_page(
                request, "The form expired or did not come from this page; try again.", 403
            )
        access_key_id = form.get("access_key_id", "").strip()
        try:
            session = await self.sessions.sign_in(
                access_key_id,
                form.get("secret_access_key", ""),
                source_ip=_source_ip(request),
                user_agent=_user_agent(request),
            )
        except ThrottlingError:
            return self._sign_in_page(
                request, "Too many failed sign-ins from this address; wait and retry.", 429
            )
        except AuthenticationError:
            return self._sign_in_page(
                request,
                "Sign-in failed: the access key id or secret access key is not valid.",
                401,
                access_key_id[:128],
            )
        response = _redirect(f"{PREFIX}/keys")
        self._set_session_cookie(request, response, session.token)
        response.delete_cookie(SIGN_IN_CSRF_COOKIE, path=PREFIX)
        return response

    async def sign_out(self, request: Request) -> Response:
        view = await self.view(request)
        if view is None:
            return _redirect(f"{PREFIX}/sign-in")
        form = await _form(request)
        if not self.sessions.check_csrf(view.session, form.get("csrf", "")):
            return HTMLResponse(
                "The sign-out form did not come from this session.",
                status_code=403,
                headers=SECURITY_HEADERS,
            )
        await self.sessions.sign_out(view.session)
        response = _redirect(f"{PREFIX}/sign-in")
        response.delete_cookie(SESSION_COOKIE, path=PREFIX)
        return response

    # ==== keys =============================================================================
    async def keys(self, request: Request) -> Response:
        view = await self.view(request)
        if view is None:
            return _sign_in_first()
        query = request.query_params
        filters = {
            name: _field(query.get(name)) for name in ("q", "state", "spec", "usage", "marker")
        }
        service = self.runtime.service
        marker = filters["marker"] or None
        listed, error = await self.attempt(
            view,
            "ListKeys",
            lambda caller: service.keys.list_keys(caller, KEYS_PAGE, marker),
            parameters={"Limit": KEYS_PAGE, **({"Marker": marker} if marker else {})},
        )
        rows: list[dict[str, Any]] = []
        next_marker = None
        if listed is not None:
            next_marker = listed.next_marker
            aliases = await self._aliases(view)
            limit = asyncio.Semaphore(DESCRIBE_CONCURRENCY)

            async def describe(key_id: str) -> tuple[Any, str | None]:
                async with limit:
                    return await self.attempt(
                        view,
                        "DescribeKey",
                        lambda caller: service.keys.describe_key(caller, key_id),
                        parameters={"KeyId": key_id},
                    )

            described = await asyncio.gather(*(describe(k.key_id) for k in listed.items))
            for entry, (key, why) in zip(listed.items, described, strict=True):
                rows.append(
                    {
                        "key_id": entry.key_id,
                        "arn": entry.key_arn,
                        "key": key,
                        "denied": why,
                        "aliases": aliases.get(entry.key_id, []),
                    }
                )
        rows = [row for row in rows if _matches(row, filters)]
        states = sorted({r["key"].key_state for r in rows if r["key"] is not None})
        specs = sorted({r["key"].key_spec for r in rows if r["key"] is not None})
        return self.page(
            view,
            "keys.html",
            rows=rows,
            error=error,
            filters=filters,
            states=sorted({*states, *KEY_STATES}),
            specs=specs,
            next_marker=next_marker,
            next_query=urlencode({**filters, "marker": next_marker or ""}),
        )

    async def _aliases(self, view: View) -> dict[str, list[str]]:
        """Alias names by target key id (the first pages of ListAliases)."""
        service = self.runtime.service
        found: dict[str, list[str]] = {}
        marker = None
        for _ in range(10):
            page, _error = await self.attempt(
                view,
                "ListAliases",
                lambda caller, m=marker: service.keys.list_aliases(caller, None, 100, m),  # type: ignore[misc]
                parameters={"Limit": 100},
            )
            if page is None:
                break
            for alias in page.items:
                if alias.target_key_id:
                    found.setdefault(alias.target_key_id, []).append(alias.alias_name)
            marker = page.next_marker
            if marker is None:
                break
        return found

    async def key(self, request: Request) -> Response:
        view = await self.view(request)
        if view is None:
            return _sign_in_first()
        key_id = _field(request.path_params["key_id"])
        service = self.runtime.service
        ref = {"KeyId": key_id}
        key, error = await self.attempt(
            view, "DescribeKey", lambda c: service.keys.describe_key(c, key_id), parameters=ref
        )
        if key is None:
            return self.page(
                view, "key.html", key=None, key_id=key_id, error=error, status_code=404
            )
        key_id = key.key_id
        ref = {"KeyId": key_id}
        (
            (timeline, timeline_error),
            (aliases, aliases_error),
            (tags, tags_error),
            (rotations, rotations_error),
            (rotation, rotation_error),
            (grants, grants_error),
        ) = await asyncio.gather(
            self.attempt(
                view, "DescribeKey", lambda c: service.keys.key_timeline(c, key_id), parameters=ref
            ),
            self.attempt(
                view,
                "ListAliases",
                lambda c: service.keys.list_aliases(c, key_id, 100, None),
                parameters=ref,
            ),
            self.attempt(
                view,
                "ListResourceTags",
                lambda c: service.keys.list_resource_tags(c, key_id, 50, None),
                parameters=ref,
            ),
            self.attempt(
                view,
                "ListKeyRotations",
                lambda c: service.keys.list_key_rotations(c, key_id, None, 1000, None),
                parameters=ref,
            ),
            self.attempt(
                view,
                "GetKeyRotationStatus",
                lambda c: service.keys.get_key_rotation_status(c, key_id),
                parameters=ref,
            ),
            self.attempt(
                view,
                "ListGrants",
                lambda c: service.grants.list_grants(c, key_id, limit=100),
                parameters=ref,
            ),
        )
        diffs = []
        if timeline is not None:
            versions = timeline.policies
            for before, after in itertools.pairwise(versions):
                diffs.append(
                    {
                        "before": before,
                        "after": after,
                        "rows": side_by_side(
                            pretty_policy(before.policy), pretty_policy(after.policy)
                        ),
                    }
                )
            diffs.reverse()  # newest change first
        audit = self.runtime.audit_service
        usage, usage_error = await self.attempt(
            view,
            "GetKeyUsage",
            lambda c: audit.key_usage_by_hour(c, key.arn),
            source=KEYLEDGER_SOURCE,
            parameters={"keyId": key.arn},
        )
        chart = None
        if usage is not None:
            chart = bar_chart(
                [(hour.hour.strftime("%d %H:00"), hour.requests) for hour in usage],
                title="Requests per hour, last 48 hours (UTC)",
            )
        who, who_error = await self.attempt(
            view,
            "GetComplianceReport",
            lambda c: audit.report(c, "who-can-decrypt", key=key.arn),
            source=KEYLEDGER_SOURCE,
            parameters={"reportName": "who-can-decrypt", "key": key.arn},
        )
        as_of_text = _field(request.query_params.get("as_of"))
        as_of = as_of_error = who_then = who_then_error = None
        if as_of_text:
            moment = _parse_time(as_of_text)
            if moment is None:
                as_of_error = "Give the date as YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC)."
            else:
                as_of, as_of_error = await self.attempt(
                    view,
                    "GetKeyAsOf",
                    lambda c: audit.key_as_of(c, key.arn, moment),
                    source=KEYLEDGER_SOURCE,
                    parameters={"keyId": key.arn, "at": moment.isoformat()},
                )
                if as_of is not None:
                    who_then, who_then_error = await self.attempt(
                        view,
                        "GetComplianceReport",
                        lambda c: audit.who_can_decrypt_as_of(c, key.arn, moment),
                        source=KEYLEDGER_SOURCE,
                        parameters={
                            "reportName": "who-can-decrypt",
                            "key": key.arn,
                            "at": moment.isoformat(),
                        },
                    )
        return self.page(
            view,
            "key.html",
            key=key,
            key_id=key_id,
            error=None,
            timeline=timeline,
            timeline_error=timeline_error,
            diffs=diffs,
            aliases=aliases.items if aliases is not None else None,
            aliases_error=aliases_error,
            tags=tags.items if tags is not None else None,
            tags_error=tags_error,
            rotations=rotations.items if rotations is not None else None,
            rotations_error=rotations_error,
            rotation=rotation,
            rotation_error=rotation_error,
            grants=grants.items if grants is not None else None,
            grants_error=grants_error,
            usage=usage,
            usage_error=usage_error,
            chart=chart,
            who=who,
            who_error=who_error,
            as_of_text=as_of_text,
            as_of=as_of,
            as_of_policy=pretty_policy(as_of.policy) if as_of is not None else "",
            as_of_error=as_of_error,
            who_then=who_then,
            who_then_error=who_then_error,
        )

    # ==== the trail ==========================================================================
    async def trail(self, request: Request) -> Response:
        view = await self.view(request)
        if view is None:
            return _sign_in_first()
        query = request.query_params
        values = {name: _field(query.get(name)) for name, _ in TRAIL_FILTERS}
        start_text, end_text = _field(query.get("start")), _field(query.get("end"))
        read_only = _field(query.get("read_only"))
        token = _field(query.get("next_token")) or None
        start, end = _parse_time(start_text), _parse_time(end_text)
        problems = [
            f"'{text}' is not a date (YYYY-MM-DD or YYYY-MM-DDTHH:MM, UTC)."
            for text, moment in ((start_text, start), (end_text, end))
            if text and moment is None
        ]
        audit_filter = AuditFilter(
            principal_arn=values["principal_arn"] or None,
            resource=values["resource"] or None,
            event_name=values["event_name"] or None,
            error_code=values["error_code"] or None,
            start=start,
            end=end,
            source_ip=values["source_ip"] or None,
            read_only={"true": True, "false": False}.get(read_only),
            event_source=values["event_source"] or None,
            username=values["username"] or None,
            access_key_id=values["access_key_id"] or None,
            event_id=values["event_id"] or None,
        )
        parameters: dict[str, Any] = {
            "LookupAttributes": [
                {"AttributeKey": LOOKUP_ATTRIBUTES[name], "AttributeValue": value}
                for name, value in values.items()
                if value and name in LOOKUP_ATTRIBUTES
            ],
            "MaxResults": TRAIL_PAGE,
        }
        page = error = None
        if not problems:
            audit = self.runtime.audit_service
            page, error = await self.attempt(
                view,
                "LookupEvents",
                lambda c: audit.lookup(c, audit_filter, TRAIL_PAGE, token),
                source=CLOUDTRAIL_SOURCE,
                parameters=parameters,
            )
        kept = {**values, "start": start_text, "end": end_text, "read_only": read_only}
        rows = []
        for row in page.rows if page is not None else []:
            rows.append({"row": row, "json": _pretty_json(row.record)})
        return self.page(
            view,
            "trail.html",
            filters=TRAIL_FILTERS,
            values=kept,
            rows=rows,
            error=error or (" ".join(problems) if problems else None),
            next_query=(
                urlencode({**kept, "next_token": page.next_token})
                if page is not None and page.next_token
                else None
            ),
        )

    # ==== reports ==========================================================================
    async def reports(self, request: Request) -> Response:
        view = await self.view(request)
        if view is None:
            return _sign_in_first()
        return self.page(view, "reports.html", reports=[(n, REPORT_TITLES[n]) for n in REPORTS])

    async def report(self, request: Request) -> Response:
        view = await self.view(request)
        if view is None:
            return _sign_in_first()
        name = _field(request.path_params["name"])
        if name not in REPORTS:
            return self.page(
                view,
                "report.html",
                name=name,
                report=None,
                chart=None,
                error=f"There is no report called '{name}'.",
                options={},
                csv_query="",
                title=name,
                status_code=404,
            )
        query = request.query_params
        options = {
            "days": _field(query.get("days")) or "90",
            "key": _field(query.get("key")),
            "month": _field(query.get("month")),
        }
        days = int(options["days"]) if options["days"].isdigit() else 90
        days = min(days, 36500)
        as_csv = query.get("format") == "csv"
        audit = self.runtime.audit_service
        found, error = await self.attempt(
            view,
            "GetComplianceReport",
            lambda c: audit.report(
                c, name, days=days, key=options["key"] or None, month=options["month"] or None
            ),
            source=KEYLEDGER_SOURCE,
            parameters={
                "reportName": name,
                "format": "csv" if as_csv else "html",
                **{k: v for k, v in options.items() if v},
            },
        )
        if as_csv and found is not None:
            response = Response(
                found.as_csv(),
                media_type="text/csv",
                headers={
                    **SECURITY_HEADERS,
                    "content-disposition": f'attachment; filename="{name}.csv"',
                },
            )
            self._set_session_cookie(request, response, view.session.token)
            return response
        return self.page(
            view,
            "report.html",
            name=name,
            title=REPORT_TITLES[name],
            report=found,
            chart=report_chart(found.columns, found.rows) if found is not None else None,
            error=error,
            options=options,
            csv_query=urlencode({**{k: v for k, v in options.items() if v}, "format": "csv"}),
        )

    # ==== the ledger's integrity =============================================================
    async def ledger(self, request: Request) -> Response:
        view = await self.view(request)
        if view is None:
            return _sign_in_first()
        status = self.runtime.ledger_status()
        evidence = self.runtime.ledger_evidence
        checkpoint = signers = None
        error = None
        if evidence is not None:
            checkpoint, error = await self.attempt(
                view,
                "GetLedgerCheckpoint",
                lambda c: evidence.checkpoint(c),
                source=KEYLEDGER_SOURCE,
            )
            if error is None:
                signers, error = await self.attempt(
                    view,
                    "GetLedgerPublicKey",
                    lambda c: evidence.signers(c),
                    source=KEYLEDGER_SOURCE,
                )
        return self.page(
            view,
            "ledger.html",
            status=status,
            enabled=evidence is not None,
            checkpoint=checkpoint,
            root=checkpoint.root.hex() if checkpoint is not None else "",
            signers=signers or [],
            error=error,
        )

    async def home(self, request: Request) -> Response:
        return _redirect(f"{PREFIX}/keys")


KEY_STATES = ("Enabled", "Disabled", "PendingDeletion", "PendingImport", "Unavailable")


def set_cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    """The console's cookies: HttpOnly, SameSite=Strict, only under /console, and Secure
    when the request came over TLS (behind a proxy: as the server was told it did)."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=PREFIX,
        httponly=True,
        secure=request.url.scheme == "https",
        samesite="strict",
    )


def _matches(row: dict[str, Any], filters: dict[str, str]) -> bool:
    """Whether a key row passes the inventory's filters (text, state, spec, usage)."""
    key = row["key"]
    text = filters["q"].lower()
    if text:
        haystack = [row["key_id"], row["arn"], *row["aliases"]]
        if key is not None:
            haystack.append(key.description)
        if not any(text in value.lower() for value in haystack):
            return False
    for name, attribute in (("state", "key_state"), ("spec", "key_spec"), ("usage", "key_usage")):
        wanted = filters[name]
        if wanted and (key is None or getattr(key, attribute) != wanted):
            return False
    return True


def _field(value: str | None) -> str:
    """A query or form value as the console takes it: bounded, without NULs."""
    return (value or "")[:MAX_FIELD].replace("\x00", "").strip()


def _parse_time(text: str) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _message(error: DomainError) -> str:
    message = str(getattr(error, "message", "") or error) or type(error).__name__
    return message[:1000]


def _source_ip(request: Request) -> str:
    return request.client.host if request.client else ""


def _user_agent(request: Request) -> str:
    return request.headers.get("user-agent", "")[:1024]


def _redirect(location: str) -> Response:
    return RedirectResponse(location, status_code=303, headers=SECURITY_HEADERS)


def _sign_in_first() -> Response:
    return _redirect(f"{PREFIX}/sign-in")


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form's first value of each field (bounded; no multipart)."""
    body = (await request.body())[:MAX_FORM_BYTES]
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {name: values[0][:MAX_FIELD] for name, values in parsed.items() if values}


class _StaticFiles(StaticFiles):
    """The console's CSS and script, with the console's security headers."""

    async def get_response(self, path: str, scope: Any) -> Response:
        response = await super().get_response(path, scope)
        for name, value in SECURITY_HEADERS.items():
            if name != "cache-control":
                response.headers[name] = value
        return response


def create_console_app(runtime: Runtime) -> Starlette:
    console = Console(runtime)
    routes = [
        Route(PREFIX, console.home),
        Route(PREFIX + "/", console.home),
        Route(PREFIX + "/sign-in", console.sign_in_form, methods=["GET"]),
        Route(PREFIX + "/sign-in", console.sign_in, methods=["POST"]),
        Route(PREFIX + "/sign-out", console.sign_out, methods=["POST"]),
        Route(PREFIX + "/keys", console.keys),
        Route(PREFIX + "/keys/{key_id:path}", console.key),
        Route(PREFIX + "/trail", console.trail),
        Route(PREFIX + "/reports", console.reports),
        Route(PREFIX + "/reports/{name}", console.report),
        Route(PREFIX + "/ledger", console.ledger),
        Mount(PREFIX + "/static", app=_StaticFiles(directory=HERE / "static"), name="static"),
    ]

    async def not_found(request: Request, _error: Exception) -> Response:
        return HTMLResponse("Not found.", status_code=404, headers=SECURITY_HEADERS)

    async def failed(request: Request, error: Exception) -> Response:
        log.error("console page %s failed: %s", request.url.path, type(error).__name__)
        log.debug("console page failure", exc_info=error)
        return HTMLResponse(
            "The console could not answer; try again.", status_code=500, headers=SECURITY_HEADERS
        )

    return Starlette(
        routes=routes,
        exception_handlers={404: not_found, 405: not_found, Exception: failed},
    )


def serves(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")
