"""The ASGI app of ``beatd web``: each endpoint of ``views.ENDPOINTS`` as ``/api/v1`` JSON and, for a GET with a
template, as a page; login, static files, the OpenAPI document, security headers. Handlers are thin: they
check the role (and CSRF), call the view, and render what it returns."""

from __future__ import annotations

import dataclasses
import hmac
import json
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

import jinja2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from beatd.errors import ConfigError, UnknownJob, UsageProblem
from beatd.store import StoreError, StoreUnavailable
from beatd.web.openapi import openapi_document
from beatd.web.security import ADMIN, COOKIE, LOGIN_COOKIE, Tokens, actor_of, host_allowed
from beatd.web.views import ENDPOINTS, Endpoint, Web

__all__ = ["API", "create_app"]

API = "/api/v1"
HERE = Path(__file__).parent
BODY_LIMIT = 1 << 20
"""The largest body an action takes, bytes (a trigger's overrides are bounded far below it)."""
FORM_LIMIT = 1 << 16
"""The largest body the login and log-out forms take, bytes (a token, a nonce and a path)."""
LOGIN_FORM_AGE = 3600
"""Seconds a login form stays usable (its nonce cookie's lifetime)."""
_OWN_NAVIGATION = frozenset({"none", "same-origin"})
"""The ``Sec-Fetch-Site`` of a navigation a ``/login?token=`` link may log in by: typed, pasted or opened from
a terminal (``none``, also assumed when a browser sends no such header) or from this site's own pages."""
NAV = (("/", "Overview"), ("/jobs", "Jobs"), ("/workers", "Workers"), ("/dead", "Dead letters"), ("/audit", "Audit"))
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")  # fmt: skip


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True)
    environment.filters["q"] = lambda value: quote(str(value), safe="")
    environment.filters["pretty"] = lambda value: json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    environment.filters["pct"] = lambda value: f"{value * 100:.0f}%" if isinstance(value, int | float) else "-"
    environment.filters["secs"] = lambda value: f"{float(value):.3f}s" if isinstance(value, int | float) else "-"
    return environment


class _Headers(BaseHTTPMiddleware):
    """Security headers on every response; a request naming a host this server does not answer gets 421."""

    def __init__(self, app: Any, hosts: frozenset[str] | None) -> None:
        super().__init__(app)
        self.hosts = hosts

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        if not host_allowed(request.headers.get("host", ""), self.hosts):
            response: Response = JSONResponse({"error": "this server does not answer for that host name"}, 421)
        else:
            response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", _CSP)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        if request.url.path.startswith("/static/"):
            response.headers["Cache-Control"] = "max-age=300"
        else:
            response.headers["Cache-Control"] = "no-store"
        return response


class _App:
    """The handlers, bound to one Web (client and catalogue), the tokens and the templates."""

    def __init__(self, web: Web, tokens: Tokens) -> None:
        self.web = web
        self.tokens = tokens
        self.templates = _environment()

    # -- who is asking ---------------------------------------------------------------------------------------
    def credentials(self, request: Request) -> tuple[str | None, str | None, bool]:
        """(token, role, by cookie) of the request."""
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            token = header[7:].strip()
            return token, self.tokens.role(token), False
        cookie = request.cookies.get(COOKIE)
        return cookie, self.tokens.role(cookie), True

    def render(self, request: Request, template: str, data: Any, status: int = 200, **extra: Any) -> HTMLResponse:
        token, role, _ = self.credentials(request)
        body = self.templates.get_template(template).render(
            data=data, role=role, admin=role == ADMIN, csrf=self.tokens.csrf(token) if token and role else "",
            nav=NAV, path=request.url.path, url=str(request.url.path) + (f"?{request.url.query}" if request.url.query
            else ""), flash=self.flash(request), namespace=self.web.client.config.namespace,
            **extra,
        )  # fmt: skip
        return HTMLResponse(body, status)

    def flash(self, request: Request) -> str:
        """The message an action redirected here with (only one this process signed: never a link's words)."""
        message = request.query_params.get("flash", "")
        return message if self.tokens.signed(message, request.query_params.get("sig")) else ""

    def refuse(self, request: Request, api: bool, status: int, message: str) -> Response:
        if api:
            return JSONResponse({"error": message}, status)
        if status == 401:
            return RedirectResponse(f"/login?next={quote(request.url.path, safe='/')}", 303)
        return self.render(request, "error.html", {"error": message}, status)

    # -- endpoints ------------------------------------------------------------------------------------------
    def read_handler(self, endpoint: Endpoint, api: bool) -> Any:
        async def handle(request: Request) -> Response:
            _, role, _ = self.credentials(request)
            if role is None:
                return self.refuse(request, api, 401, "a read or admin token is needed")
            outcome = await self._run(request, endpoint, dict(request.query_params), api)
            if isinstance(outcome, Response):
                return outcome
            if api:
                return JSONResponse(outcome)
            assert endpoint.template is not None
            return self.render(request, endpoint.template, outcome)

        return handle

    def action_handler(self, endpoint: Endpoint) -> Any:
        async def handle(request: Request) -> Response:
            token, role, by_cookie = self.credentials(request)
            kind = request.headers.get("content-type", "")
            form = "form" in kind
            wants_page = form and "application/json" not in request.headers.get("accept", "")
            # who asks is judged before the body is read: a stranger's body is never parsed nor held
            if role is None:
                return self.refuse(request, not wants_page, 401, "an admin token is needed")
            if role != ADMIN:
                return self.refuse(request, not wants_page, 403, "this needs the admin role (the token is read-only)")
            length = request.headers.get("content-length", "")
            if length.isdigit() and int(length) > BODY_LIMIT:
                return JSONResponse({"error": f"the body is larger than {BODY_LIMIT} bytes"}, 413)
            body: dict[str, Any] = {}
            if form:
                body = dict(await request.form())
            elif "json" in kind:
                try:
                    loaded = await request.json()
                except ValueError:
                    return JSONResponse({"error": "the body is not JSON"}, 400)
                if not isinstance(loaded, dict):
                    return JSONResponse({"error": "the body must be a JSON object"}, 400)
                body = loaded
            if by_cookie and not self.tokens.csrf_ok(
                token or "", body.get("csrf") or request.headers.get("x-csrf-token")
            ):
                return self.refuse(request, not wants_page, 403, "missing or wrong CSRF token (reload the page)")
            body.pop("csrf", None)
            back = _local(str(body.pop("next", "") or ""))
            acting = dataclasses.replace(self.web, client=self.web.client.acting_as(actor_of(token or "")))
            outcome = await self._run(request, endpoint, body, not wants_page, acting)
            if isinstance(outcome, Response):
                return outcome
            if not wants_page:
                return JSONResponse(outcome)
            if endpoint.template and outcome.get("dry_run"):
                return self.render(request, endpoint.template, outcome)
            target = back or "/"
            separator = "&" if "?" in target else "?"
            message = str(outcome.get("message", "done"))
            flash = f"flash={quote(message, safe='')}&sig={self.tokens.sign(message)}"
            return RedirectResponse(f"{target}{separator}{flash}", 303)

        return handle

    async def _run(
        self, request: Request, endpoint: Endpoint, params: Mapping[str, Any], api: bool, web: Web | None = None
    ) -> Any:
        from starlette.concurrency import run_in_threadpool

        try:  # the client is synchronous: run it in the thread pool, off the event loop
            return await run_in_threadpool(endpoint.run, web or self.web, dict(request.path_params), params)
        except UnknownJob as error:
            return self.refuse(request, api, 404, str(error))
        except UsageProblem as error:
            return self.refuse(request, api, 400, str(error))
        except ConfigError as error:  # this config does not match the deployment (its shards): nothing written
            return self.refuse(request, api, 409, str(error))
        except StoreUnavailable as error:
            return self.refuse(request, api, 503, str(error))
        except StoreError as error:
            return self.refuse(request, api, 502, str(error))

    # -- login ----------------------------------------------------------------------------------------------
    async def login(self, request: Request) -> Response:
        back = _local(request.query_params.get("next", "")) or "/"
        if request.method == "POST":
            form = await _small_form(request)
            if form is None:  # read by no one yet: a stranger's body is not held past the limit
                return JSONResponse({"error": f"the body is larger than {FORM_LIMIT} bytes"}, 413)
            token = str(form.get("token") or "")
            back = _local(str(form.get("next") or "")) or "/"
            nonce = request.cookies.get(LOGIN_COOKIE, "")
            if not nonce or not hmac.compare_digest(nonce.encode(), str(form.get("nonce") or "").encode()):
                return self.login_form(request, "the login form expired (or came from another site): try again",
                                       back, 403)  # fmt: skip
        else:
            token = request.query_params.get("token", "")
            if token and request.headers.get("sec-fetch-site", "none") not in _OWN_NAVIGATION:
                # another site's page sent the browser here (login CSRF): the link a terminal opens says "none"
                return self.login_form(request, "a login link followed from another site is not used: paste the "
                                       "token", back, 403)  # fmt: skip
        if token:
            if self.tokens.role(token) is None:
                return self.login_form(request, "unknown token", back, 401)
            response = RedirectResponse(back, 303)
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/", secure=_secure(request))
            if LOGIN_COOKIE in request.cookies:
                response.delete_cookie(LOGIN_COOKIE, path="/login")
            return response
        return self.login_form(request, "", back)

    def login_form(self, request: Request, error: str, back: str, status: int = 200) -> Response:
        """The login page, with a fresh nonce in its form and in its cookie (login CSRF: double submit)."""
        nonce = secrets.token_urlsafe(18)
        response = self.render(request, "login.html", {"error": error, "next": back, "nonce": nonce}, status)
        response.set_cookie(LOGIN_COOKIE, nonce, max_age=LOGIN_FORM_AGE, httponly=True, samesite="strict",
                            path="/login", secure=_secure(request))  # fmt: skip
        return response

    async def logout(self, request: Request) -> Response:
        token, role, by_cookie = self.credentials(request)
        if role is not None and by_cookie:  # another site's form must not end the session
            form = await _small_form(request)
            if form is None:
                return JSONResponse({"error": f"the body is larger than {FORM_LIMIT} bytes"}, 413)
            if not self.tokens.csrf_ok(token or "", str(form.get("csrf") or "")):
                return self.refuse(request, False, 403, "missing or wrong CSRF token (reload the page)")
        response = RedirectResponse("/login", 303)
        response.delete_cookie(COOKIE, path="/")
        return response

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(openapi_document(ENDPOINTS, API))

    async def health(self, request: Request) -> Response:
        return JSONResponse({"ok": True})

    def routes(self) -> list[BaseRoute]:
        routes: list[BaseRoute] = [
            Route("/login", self.login, methods=["GET", "POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route(f"{API}/openapi.json", self.openapi),
            Route(f"{API}/health", self.health),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]
        for endpoint in ENDPOINTS:
            if endpoint.method == "GET":
                routes.append(Route(API + endpoint.path, self.read_handler(endpoint, True)))
                if endpoint.page:
                    routes.append(Route(endpoint.page, self.read_handler(endpoint, False)))
            else:
                routes.append(Route(API + endpoint.path, self.action_handler(endpoint), methods=["POST"]))
        return routes


async def _small_form(request: Request, limit: int = FORM_LIMIT) -> dict[str, str] | None:
    """The URL-encoded form of ``request``, read no further than ``limit`` bytes (None: the body is longer,
    whether its length is declared or it comes in chunks)."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _secure(request: Request) -> bool:
    """Whether cookies are to be marked Secure: behind a TLS proxy that says so, never sent in clear."""
    return request.url.scheme == "https"


def _local(target: str) -> str:
    """``target`` when it is a path on this site (never another site: no scheme, no ``//``), else ''."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else ""


def create_app(web: Web, tokens: Tokens, hosts: frozenset[str] | None = None) -> Starlette:
    """The ASGI app serving ``web`` to the holders of ``tokens``, answering requests for ``hosts`` (names
    without port, :func:`~beatd.web.security.allowed_hosts`; None: any)."""
    handlers = _App(web, tokens)
    return Starlette(routes=handlers.routes(), middleware=[Middleware(_Headers, hosts=hosts)])
