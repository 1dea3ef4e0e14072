"""Who may see and do what in ``beatd web``: tokens from the environment, two roles, CSRF tokens.

- ``BEATD_WEB_READ_TOKEN`` reads every page and GET endpoint; ``BEATD_WEB_ADMIN_TOKEN`` also acts (trigger,
  pause, resume, backfill, retry and drop dead letters). Each may hold several tokens separated by commas.
- Neither set: on a loopback address a random admin token is made for this process (printed once, with a
  login URL); on any other address ``beatd web`` refuses to start.
- A request carries its token as ``Authorization: Bearer TOKEN`` (API clients) or in the session cookie set
  by ``/login`` (browsers; HttpOnly, SameSite=Strict). An action is a POST; one authenticated by the cookie
  must also carry the CSRF token of its session (form field ``csrf`` or header ``X-CSRF-Token``), which the
  pages embed. A bearer token is never sent by a browser on its own, so such a request needs none.
- An action is audited with the actor ``web:FINGERPRINT``, the first 8 hex digits of the SHA-256 of the token
  used (``printf %s "$TOKEN" | sha256sum | cut -c1-8``): which token acted, without writing the token down.
- A token never appears in a page, a log line or a redirect: ``/login?token=`` (the link ``beatd web`` prints)
  sets the cookie and redirects, and uvicorn's access log shows ``token=***`` (:class:`RedactTokens`).
- The login form carries a nonce that must equal the one in its own short-lived cookie (``LOGIN_COOKIE``,
  SameSite=Strict, so another site's form cannot log a browser in under a token of its choosing); the log-out
  form carries the session's CSRF token; a ``/login?token=`` link logs in only on a navigation the browser
  says no other site started (``Sec-Fetch-Site`` ``none`` or ``same-origin``, or no such header).
- Served on a loopback address, only requests naming a loopback host (``Host: localhost:8080``,
  ``127.0.0.1``, ``[::1]``) or one of ``--allowed-host`` are answered (421 otherwise): a page of another site
  whose name was re-pointed at 127.0.0.1 (DNS rebinding) reaches nothing, not even the health check.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "ADMIN",
    "COOKIE",
    "LOGIN_COOKIE",
    "READ",
    "RedactTokens",
    "Tokens",
    "actor_of",
    "allowed_hosts",
    "host_allowed",
    "loopback",
]

READ = "read"
ADMIN = "admin"
COOKIE = "beatd_session"
"""The session cookie: the token itself (the server keeps no sessions)."""
LOGIN_COOKIE = "beatd_login"
"""The login form's nonce cookie (double submit: the form's hidden ``nonce`` must equal it)."""

READ_ENV = "BEATD_WEB_READ_TOKEN"
ADMIN_ENV = "BEATD_WEB_ADMIN_TOKEN"


def loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (only this machine can connect)."""
    return host in {"localhost", "::1"} or host.startswith("127.")


def host_allowed(header: str, allowed: frozenset[str] | None) -> bool:
    """Whether a request's ``Host`` header names one of ``allowed`` (lower case, no port; None: any host)."""
    return allowed is None or host_name(header) in allowed


def host_name(text: str) -> str:
    """The host name of a ``Host`` header or ``--allowed-host`` value: lower case, without port or brackets
    (``[::1]:8080`` -> ``::1``, ``Beatd.Internal:443`` -> ``beatd.internal``, ``::1`` stays)."""
    host = text.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        return host.partition(":")[0]
    return host


def allowed_hosts(bind: str, extra: tuple[str, ...] = ()) -> frozenset[str] | None:
    """The host names a server bound to ``bind`` answers: on a loopback address the loopback names, the address
    itself and ``extra``; on any other address only ``extra`` when given, else any (None)."""
    names = {host_name(name) for name in extra if name.strip()}
    if loopback(bind):
        return frozenset({"localhost", "127.0.0.1", "::1", host_name(bind), *names})
    return frozenset(names) if names else None


@dataclass(frozen=True)
class Tokens:
    """The tokens of each role, and the secret CSRF tokens are derived with (random per process)."""

    read: tuple[str, ...]
    admin: tuple[str, ...]
    generated: bool = False
    """True when no token was configured and ``admin`` holds one made for this process."""
    secret: bytes = b""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], host: str) -> Tokens:
        """The tokens of ``environ``; a generated admin token when none is set and ``host`` is loopback.
        ValueError (a sentence for the operator) when none is set on any other address."""
        read = _tokens(environ.get(READ_ENV, ""))
        admin = _tokens(environ.get(ADMIN_ENV, ""))
        secret = secrets.token_bytes(32)
        if read or admin:
            return cls(read, admin, False, secret)
        if not loopback(host):
            raise ValueError(f"beatd web on {host} needs {ADMIN_ENV} and/or {READ_ENV} set (only a loopback "
                             "address gets a generated token)")  # fmt: skip
        return cls((), (secrets.token_urlsafe(24),), True, secret)

    def role(self, token: str | None) -> str | None:
        """The role ``token`` grants (ADMIN, READ), or None."""
        if not token:
            return None
        given = token.encode()  # bytes: compare_digest refuses str with non-ASCII characters
        if any(hmac.compare_digest(given, known.encode()) for known in self.admin):
            return ADMIN
        if any(hmac.compare_digest(given, known.encode()) for known in self.read):
            return READ
        return None

    def csrf(self, token: str) -> str:
        """The CSRF token of the session holding ``token``."""
        return hmac.new(self.secret, token.encode(), hashlib.sha256).hexdigest()[:40]

    def csrf_ok(self, token: str, presented: str | None) -> bool:
        """Whether ``presented`` is the CSRF token of the session holding ``token``."""
        return bool(presented) and hmac.compare_digest(self.csrf(token).encode(), str(presented).encode())

    def sign(self, text: str) -> str:
        """A signature of ``text`` by this process (the flash message an action redirects with: a link made
        elsewhere cannot put words on a page)."""
        return hmac.new(self.secret, b"flash:" + text.encode(), hashlib.sha256).hexdigest()[:32]

    def signed(self, text: str, signature: str | None) -> bool:
        """Whether ``signature`` is :meth:`sign` of ``text``."""
        return bool(signature) and hmac.compare_digest(self.sign(text).encode(), str(signature).encode())


def actor_of(token: str) -> str:
    """The audit actor of the holder of ``token``: ``web:`` and the first 8 hex digits of its SHA-256."""
    return "web:" + hashlib.sha256(token.encode()).hexdigest()[:8]


_TOKEN_IN_QUERY = re.compile(r"([?&]token=)[^&\s]*", re.IGNORECASE)


class RedactTokens(logging.Filter):
    """A logging filter (on uvicorn's access log) writing ``token=***`` for the token of a ``/login?token=``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_TOKEN_IN_QUERY.sub(r"\1***", item) if isinstance(item, str) else item
                                for item in record.args)  # fmt: skip
        if isinstance(record.msg, str):
            record.msg = _TOKEN_IN_QUERY.sub(r"\1***", record.msg)
        return True


def _tokens(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())
