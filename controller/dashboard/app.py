"""The dashboard's web application: pages, JSON, the live feed, exports and operator actions.

FastAPI routes over three sources: the live FleetState (controller/dashboard/feed.py), the run
files in `--runs DIR` (history, audit, export, report) and the auth core (gate.py). Every page
is rendered server-side with its values, so a page is readable before (and without) its
script; static/app.js then keeps it live from `/events`.
"""
from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import aiomqtt
from fastapi import FastAPI, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException

from controller.dashboard.acting import ActionRefused, act
from controller.dashboard.export import TABLES as EXPORT_TABLES
from controller.dashboard.export import csv_chunks, parquet_chunks
from controller.dashboard.feed import Feed, TooManyListeners
from controller.dashboard.formatting import FILTERS
from controller.dashboard.gate import LOGIN_CSRF_COOKIE, SESSION_COOKIE, Gate, LoginRequired
from controller.dashboard.history import (
    reactor_history,
    recent_audit,
    recent_events,
    recent_phases,
)
from controller.dashboard.reactor_json import (
    TREND_LIMIT,
    fleet_json,
    reactor_json,
)
from controller.dashboard.reports import ReportCache
from controller.dashboard.run_files import RunFiles, valid_run_id
from controller.dashboard.sessions import Session, tokens_match

PACKAGE = files("controller.dashboard")
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; "
       "object-src 'none'")
REPORT_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
              "frame-ancestors 'none'; base-uri 'none'")
"""The report is a static page with its CSS inline and no script at all."""
KEEPALIVE_S = 15.0
WINDOWS_S = {"1h": 3600.0, "6h": 6 * 3600.0, "24h": 24 * 3600.0, "all": None}
MAX_WINDOW_S = 400 * 24 * 3600.0
REPLIES_KEPT = 1024
RESERVED_FIELDS = ("action", "reason", "csrf_token")


@dataclass
class DashboardOptions:
    """What `bioreactor dashboard` was started with, as the app needs it."""

    runs: RunFiles
    sse_min_interval_s: float = 0.5
    """A client is sent a reactor at most once per this (coalesced): 2 updates per second."""
    action_timeout_s: float = 10.0
    wall_clock: Callable[[], float] = time.time
    new_nonce: Callable[[], str] = field(default=lambda: secrets.token_hex(16))


def create_app(feed: Feed, gate: Gate, options: DashboardOptions) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    templates = Jinja2Templates(directory=str(PACKAGE / "templates"))
    templates.env.filters.update(FILTERS)
    app.mount("/static", StaticFiles(directory=str(PACKAGE / "static")), name="static")
    reports = ReportCache(options.runs)
    app.state.reports = reports
    replies: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()

    def now_s() -> float:
        return asyncio.get_running_loop().time()

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        report = request.url.path.startswith("/runs/") and "/report/" in request.url.path
        response.headers.setdefault("Content-Security-Policy", REPORT_CSP if report else CSP)
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        if gate.tls:
            response.headers["Strict-Transport-Security"] = "max-age=31536000"
        return response

    def wants_json(request: Request) -> bool:
        path = request.url.path
        return (path.startswith("/api/") or path == "/events"
                or "application/json" in request.headers.get("accept", ""))

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, _: LoginRequired) -> Response:
        if wants_json(request) or request.method != "GET":
            return JSONResponse({"error": "login required"}, status_code=401)
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if wants_json(request):
            return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
        return templates.TemplateResponse(
            request, "error.html", {"status": exc.status_code, "detail": exc.detail,
                                    **base_context(request, None)},
            status_code=exc.status_code)

    def base_context(request: Request, session: Session | None) -> dict[str, Any]:
        return {"session": session, "read_only": gate.read_only,
                "banner": gate.why_no_actions(session),
                "link": feed.state.link}

    def known_reactor(reactor_id: str) -> str:
        if reactor_id not in feed.state.reactors:
            raise HTTPException(404, f"no reactor {reactor_id!r} has published on the broker")
        return reactor_id

    def run_path(run_id: str) -> Path:
        path = options.runs.path(run_id)
        if path is None:
            raise HTTPException(404, f"no run {run_id!r} in the runs folder"
                                if valid_run_id(run_id) else "not a run id")
        return path

    @app.get("/favicon.ico")
    async def favicon() -> Response:
        return Response(status_code=204)  # none: but no 404 in every browser's console

    # --- pages ------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse)
    async def overview(request: Request) -> Response:
        session = gate.session(request)
        return templates.TemplateResponse(request, "overview.html", {
            **base_context(request, session), "fleet": fleet_json(feed.state, now_s()),
            "runs": await asyncio.to_thread(options.runs.run_ids, 20)})

    @app.get("/reactors/{reactor_id}", response_class=HTMLResponse)
    async def reactor_page(request: Request, reactor_id: str) -> Response:
        session = gate.session(request)
        known_reactor(reactor_id)
        view = reactor_json(feed.state, reactor_id, now_s())
        db = options.runs.path(view["run_id"])
        audit, events, phases = ([], [], []) if db is None else await asyncio.gather(
            asyncio.to_thread(recent_audit, db, reactor_id),
            asyncio.to_thread(recent_events, db, reactor_id),
            asyncio.to_thread(recent_phases, db, reactor_id))
        reply = replies.get((session.id, reactor_id)) if session else None
        return templates.TemplateResponse(request, "reactor.html", {
            **base_context(request, session), "r": view, "audit": audit,
            "events": _merged_events(view["events"], events), "phases": phases,
            "has_history": db is not None,
            "actions": gate.actions_for(session), "reply": reply,
            "windows": list(WINDOWS_S)})

    @app.get("/runs/{run_id}", response_class=HTMLResponse)
    async def run_page(request: Request, run_id: str) -> Response:
        session = gate.session(request)
        path = run_path(run_id)
        reactors = [rid for rid, v in feed.state.reactors.items() if v.run_id == run_id]
        return templates.TemplateResponse(request, "run.html", {
            **base_context(request, session), "run_id": run_id, "size": path.stat().st_size,
            "reactors": reactors, "tables": EXPORT_TABLES[1:]})

    def export_name(run_id: str, table: str, suffix: str) -> str:
        """`RUN_ID.csv` for the ticks, `RUN_ID-TABLE.csv` for another table; 400 for a table
        that is not a record table."""
        if table not in EXPORT_TABLES:
            raise HTTPException(400, f"table={table!r:.40}: allowed {', '.join(EXPORT_TABLES)}")
        return f"{run_id}{'' if table == 'ticks' else '-' + table}.{suffix}"

    @app.get("/runs/{run_id}/export.csv")
    async def export_csv(request: Request, run_id: str, table: str = "ticks") -> Response:
        gate.session(request)
        path = run_path(run_id)
        name = export_name(run_id, table, "csv")
        return StreamingResponse(csv_chunks(path, table), media_type="text/csv", headers={
            "Content-Disposition": f'attachment; filename="{name}"'})

    @app.get("/runs/{run_id}/export.parquet")
    async def export_parquet(request: Request, run_id: str, table: str = "ticks") -> Response:
        gate.session(request)
        path = run_path(run_id)
        name = export_name(run_id, table, "parquet")
        return StreamingResponse(parquet_chunks(path, table),
                                 media_type="application/vnd.apache.parquet",
                                 headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @app.get("/runs/{run_id}/report/{name}")
    async def report_file(request: Request, run_id: str, name: str) -> Response:
        gate.session(request)
        path = run_path(run_id)
        served = await asyncio.to_thread(reports.file, run_id, path, name)
        if served is None:
            raise HTTPException(404, f"no report file {name!r}")
        return FileResponse(served)

    @app.get("/runs/{run_id}/report")
    async def report_index(request: Request, run_id: str) -> Response:
        gate.session(request)
        run_path(run_id)
        return RedirectResponse(f"/runs/{run_id}/report/index.html", status_code=303)

    # --- JSON and the live feed -------------------------------------------------------
    @app.get("/api/fleet")
    async def api_fleet(request: Request) -> dict[str, Any]:
        gate.session(request)
        return fleet_json(feed.state, now_s())

    @app.get("/api/reactors/{reactor_id}")
    async def api_reactor(request: Request, reactor_id: str, trend: int = 0) -> dict[str, Any]:
        gate.session(request)
        known_reactor(reactor_id)
        return reactor_json(feed.state, reactor_id, now_s(),
                            trend_points=TREND_LIMIT if trend else 0)

    @app.get("/api/reactors/{reactor_id}/history")
    async def api_history(request: Request, reactor_id: str,
                          window_s: str = "3600") -> dict[str, Any]:
        gate.session(request)
        known_reactor(reactor_id)
        window = _window_s(window_s)
        db = options.runs.path(feed.state.reactors[reactor_id].run_id)
        if db is None:
            raise HTTPException(404, "this reactor's run file is not in the runs folder "
                                "(start the dashboard with --runs DIR)")
        try:
            return await asyncio.to_thread(reactor_history, db, reactor_id, window)
        except KeyError:
            raise HTTPException(404, f"the run file has no ticks of {reactor_id!r}") from None

    @app.get("/events")
    async def events(request: Request, reactor: str | None = None) -> Response:
        session = gate.session(request)
        try:
            listener = feed.listen()
        except TooManyListeners as exc:
            raise HTTPException(503, str(exc)) from None

        async def stream() -> AsyncIterator[str]:
            try:
                yield "retry: 2000\n\n"
                while True:
                    if session is not None and gate.sessions is not None \
                            and gate.sessions.get(session.id) is None:
                        yield "event: logout\ndata: {}\n\n"
                        return
                    try:
                        await asyncio.wait_for(listener.wake.wait(), KEEPALIVE_S)
                    except TimeoutError:
                        yield ": keepalive\n\n"
                        continue
                    if feed.closing:
                        return
                    link = listener.link_changed
                    listener.link_changed = False
                    for rid in sorted(listener.take()):
                        if reactor is None or rid == reactor:
                            body = json.dumps(reactor_json(feed.state, rid, now_s()))
                            yield f"event: reactor\ndata: {body}\n\n"
                    if link:
                        yield f"event: link\ndata: {json.dumps({'link': feed.state.link})}\n\n"
                    await asyncio.sleep(options.sse_min_interval_s)
            finally:
                feed.unlisten(listener)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store",
                                          "X-Accel-Buffering": "no"})

    # --- login, logout, actions -------------------------------------------------------
    @app.get("/login", response_class=HTMLResponse)
    async def login_page(request: Request) -> Response:
        if gate.read_only:
            return RedirectResponse("/", status_code=303)
        token = secrets.token_urlsafe(32)
        response = templates.TemplateResponse(request, "login.html", {
            **base_context(request, None), "error": None, "login_csrf": token})
        response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict",
                            secure=gate.tls, path="/login")
        return response

    @app.post("/login", response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        if gate.read_only:
            raise HTTPException(403, "read-only: no accounts configured")
        form = await request.form()
        expected = request.cookies.get(LOGIN_CSRF_COOKIE)
        if not tokens_match(expected, str(form.get("csrf_token", ""))):
            raise HTTPException(403, "missing or wrong CSRF token: reload the login page")
        username, password = str(form.get("username", "")), str(form.get("password", ""))
        session = await asyncio.to_thread(gate.login, username, password)
        if session is None:
            return templates.TemplateResponse(request, "login.html", {
                **base_context(request, None), "login_csrf": expected,
                "error": "wrong name or password (or too many tries: wait a few minutes)"},
                status_code=401)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(SESSION_COOKIE, session.id, httponly=True, samesite="strict",
                            secure=gate.tls, path="/")
        return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        session = gate.session(request)
        form = await request.form()
        if session is None:
            raise HTTPException(403, "read-only: no accounts configured")
        if not gate.csrf_ok(session, _csrf(request, form)):
            raise HTTPException(403, "missing or wrong CSRF token")
        gate.logout(session)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.post("/reactors/{reactor_id}/actions")
    async def action(request: Request, reactor_id: str) -> Response:
        session = gate.session(request)
        if session is None:
            raise HTTPException(403, "read-only: no accounts configured")
        form = await request.form()
        if not gate.csrf_ok(session, _csrf(request, form)):
            raise HTTPException(403, "missing or wrong CSRF token")
        why = gate.why_no_actions(session)
        if why is not None:
            raise HTTPException(403, why)
        known_reactor(reactor_id)
        name = str(form.get("action", ""))
        params = {k: str(v) for k, v in form.items() if k not in RESERVED_FIELDS}
        account = gate.account(session)
        if account is None:
            raise HTTPException(403, "this account is no longer configured")
        try:
            reply = await act(account, reactor=reactor_id, action=name, params=params,
                              reason=str(form.get("reason", "")), settings=feed.settings,
                              wall_clock=options.wall_clock, new_nonce=options.new_nonce,
                              timeout_s=options.action_timeout_s)
            status = 200
        except ActionRefused as exc:
            reply = {"ok": False, "code": exc.code, "message": str(exc)}
            status = 403 if exc.code == "forbidden" else 400
        except TimeoutError:
            reply = {"ok": False, "code": "timeout",
                     "message": f"no reply from the controller in {options.action_timeout_s:g} s"}
            status = 504
        except aiomqtt.MqttError as exc:
            reply = {"ok": False, "code": "broker", "message": f"broker unreachable: {exc}"}
            status = 502
        reply = {**reply, "action": name}
        if "application/json" in request.headers.get("accept", ""):
            return JSONResponse(reply, status_code=status)
        replies[(session.id, reactor_id)] = reply
        while len(replies) > REPLIES_KEPT:
            replies.popitem(last=False)
        return RedirectResponse(f"/reactors/{reactor_id}#reply", status_code=303)

    return app


def _merged_events(live: list[dict[str, Any]], stored: list[dict[str, Any]]
                   ) -> list[dict[str, Any]]:
    """The run file's events and the live ones it does not have yet, newest first, once each
    (the file has most live events too; a dashboard without --runs has only the live ones)."""
    key = "{t_s}|{label}|{message}".format_map
    seen = {key(n) for n in stored}
    return sorted([*stored, *(n for n in live if key(n) not in seen)],
                  key=lambda n: n["t_s"] if n["t_s"] is not None else float("-inf"),
                  reverse=True)


def _csrf(request: Request, form: Any) -> str | None:
    token = form.get("csrf_token") or request.headers.get("x-csrf-token")
    return None if token is None else str(token)


def _window_s(text: str) -> float | None:
    """`window_s`: seconds (1 to 400 days), or `all`; 400 naming the range otherwise."""
    if text in WINDOWS_S:
        return WINDOWS_S[text]
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 1.0 <= value <= MAX_WINDOW_S:
        raise HTTPException(400, f"window_s: seconds from 1 to {MAX_WINDOW_S:g}, or "
                            f"{', '.join(WINDOWS_S)}; got {text[:40]!r}")
    return value
