"""The web dashboard's HTTP API and pages (issue 13) in process (Starlette's TestClient) against a real
redis-server and a real worker: every endpoint, the roles, CSRF, escaping and masked secrets."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from beatd.client import Client
from beatd.web import Catalogue, Tokens, Web, create_app
from beatd.web.app import BODY_LIMIT, FORM_LIMIT
from beatd.web.security import COOKIE, LOGIN_COOKIE, actor_of, allowed_hosts, host_allowed
from tests.conftest import REPO
from tests.integration.conftest import Daemon, wait_for
from tests.redis_server import RedisServer
from tests.web_jobs import XSS

READ_TOKEN = "read-token-for-tests"
ADMIN_TOKEN = "admin-token-for-tests"

JOBS = """
xss: {call: tests.web_jobs:xss, every: 1h, tags: [probe]}
fail: {call: tests.web_jobs:fail, every: 1h, retries: 0}
report:
  call: tests.web_jobs:ok
  cron: "0 6 * * *"
  timezone: Europe/Paris
  kwargs: {dsn: "postgresql://app:hunter2@db.internal/app", api_token: "s3cret-token"}
  overrides: true
  tags: [nightly]
dump:
  command: [pg_dump, "postgres://app:hunter2@db.internal/app"]
  cron: "0 3 * * *"
  env: {SLACK_HOOK: "https://hooks.example/services/T0/hook-secret"}
"""


def web_config(tmp_path: Path, server: RedisServer, namespace: str) -> Path:
    """A config with the web tests' jobs (the XSS probe, a job that fails, one with secrets in its kwargs)."""
    path = tmp_path / "beatd.yaml"
    body = textwrap.indent(textwrap.dedent(JOBS).strip("\n"), "  ")
    path.write_text(
        f"redis: {{url: '{server.url}'}}\nnamespace: {namespace}\npythonpath: ['{REPO}']\n"
        f"worker: {{kill_grace: 500ms, concurrency: 4}}\njobs:\n{body}\n"
    )
    return path


@pytest.fixture
def site(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> Iterator[tuple[TestClient, Client]]:
    """The app of a deployment whose worker runs, and a client of it for the assertions."""
    config = web_config(tmp_path, shared_redis, namespace)
    daemons("worker", "-c", str(config), name="worker")
    client = Client.from_config(config, environ={}, actor="web")
    environ = {"BEATD_WEB_READ_TOKEN": READ_TOKEN, "BEATD_WEB_ADMIN_TOKEN": ADMIN_TOKEN}
    tokens = Tokens.from_environ(environ, "127.0.0.1")
    app = create_app(Web(client, Catalogue(client)), tokens, allowed_hosts("127.0.0.1"))
    with TestClient(app, base_url="http://127.0.0.1") as http:
        yield http, client
    client.close()


def bearer(token: str) -> dict[str, str]:
    """The header of an API call with ``token``."""
    return {"Authorization": f"Bearer {token}"}


def csrf_of(page: str) -> str:
    """The CSRF token a page embeds."""
    match = re.search(r'name="csrf-token" content="([0-9a-f]+)"', page)
    assert match, "the page embeds no CSRF token"
    return match.group(1)


def test_every_read_endpoint_answers_json_and_its_page_html(site: tuple[TestClient, Client]) -> None:
    """Each GET endpoint answers JSON to a read token and its page HTML; the OpenAPI document lists them all."""
    http, client = site
    handle = client.trigger("xss")
    handle.wait(timeout=20)
    paths = ["/overview", "/jobs", "/jobs/xss", f"/runs/{handle.fire_id}", "/workers", "/dead", "/audit"]
    for path in paths:
        reply = http.get("/api/v1" + path, headers=bearer(READ_TOKEN))
        assert reply.status_code == 200, (path, reply.text)
        assert reply.headers["content-type"].startswith("application/json")
    http.cookies.set(COOKIE, READ_TOKEN)
    for path in ["/", "/jobs", "/jobs/xss", f"/runs/{handle.fire_id}", "/workers", "/dead", "/audit"]:
        page = http.get(path)
        assert page.status_code == 200 and "<html" in page.text, path
        assert "Content-Security-Policy" in page.headers
    jobs = http.get("/api/v1/jobs", headers=bearer(READ_TOKEN)).json()
    assert [row["name"] for row in jobs["jobs"]] == ["xss", "fail", "report", "dump"] and jobs["total"] == 4
    row = jobs["jobs"][0]
    assert row["last_run"]["status"] == "succeeded" and row["success_rate"] == 1.0 and row["source"] == "yaml"
    assert http.get("/api/v1/jobs?tag=nightly", headers=bearer(READ_TOKEN)).json()["total"] == 1
    assert http.get("/api/v1/jobs?q=FAI", headers=bearer(READ_TOKEN)).json()["jobs"][0]["name"] == "fail"
    job = http.get("/api/v1/jobs/report", headers=bearer(READ_TOKEN)).json()
    assert len(job["next_fires"]) == 10 and job["next_fires"][0].endswith(("+01:00", "+02:00"))
    overview = wait_for(lambda: (o := http.get("/api/v1/overview", headers=bearer(READ_TOKEN)).json())["workers"] and o,
                        20, 0.1, what="the worker's heartbeat")  # fmt: skip
    assert overview["runs"]["hour"].get("succeeded", 0) >= 1 and overview["workers"][0]["alive"]
    document = http.get("/api/v1/openapi.json").json()
    wanted = {"/api/v1/jobs/{name}/trigger", "/api/v1/dead/{entry_id}/retry", "/api/v1/runs/{identifier}"}
    assert wanted <= set(document["paths"])
    assert http.get("/api/v1/jobs/nope", headers=bearer(READ_TOKEN)).status_code == 404
    assert http.get("/api/v1/jobs?status=bogus", headers=bearer(READ_TOKEN)).status_code == 400


def test_without_a_token_or_with_the_wrong_role_or_without_csrf_it_is_refused(site: tuple[TestClient, Client]) -> None:
    """No token: 401 (a page redirects to the login); a read token cannot act (403); a cookie session must send
    its CSRF token (403 without, or with another's); an action is POST only."""
    http, client = site
    assert http.get("/api/v1/jobs").status_code == 401
    assert http.get("/api/v1/jobs", headers=bearer("wrong")).status_code == 401
    login = http.get("/jobs", follow_redirects=False)
    assert login.status_code == 303 and login.headers["location"].startswith("/login")
    assert http.post("/api/v1/jobs/xss/pause").status_code == 401
    assert http.post("/api/v1/jobs/xss/pause", headers=bearer(READ_TOKEN)).status_code == 403
    assert http.get("/api/v1/jobs/xss/pause", headers=bearer(ADMIN_TOKEN)).status_code == 405
    http.cookies.set(COOKIE, ADMIN_TOKEN)
    csrf = csrf_of(http.get("/jobs/xss").text)
    assert http.post("/api/v1/jobs/xss/pause", data={"reason": "x"}).status_code == 403
    assert http.post("/api/v1/jobs/xss/pause", data={"reason": "x", "csrf": "0" * 40}).status_code == 403
    assert "xss" not in client.store.paused()
    reply = http.post("/api/v1/jobs/xss/pause", data={"reason": "x", "csrf": csrf, "next": "/jobs/xss"},
                      follow_redirects=False)  # fmt: skip
    assert reply.status_code == 303 and reply.headers["location"].startswith("/jobs/xss?flash=")
    assert client.store.paused()["xss"]["reason"] == "x"
    assert http.post("/api/v1/jobs/xss/resume", headers={"X-CSRF-Token": csrf, "Accept": "application/json"},
                     data={"next": "//evil.example"}).json()["changed"]  # fmt: skip


def test_a_token_or_csrf_token_with_non_ascii_characters_is_refused_not_an_error(
    site: tuple[TestClient, Client],
) -> None:
    """A bearer token, session cookie, CSRF token or flash signature with non-ASCII characters is compared in
    constant time like any other and refused (401/403, the page without the flash), never a server error."""
    http, client = site
    strange = "tökén-ü"
    assert http.get("/api/v1/jobs", headers={"Authorization": f"Bearer {strange}".encode("latin-1")}).status_code == 401
    assert http.get("/api/v1/jobs", headers={"Cookie": f"{COOKIE}={strange}".encode("latin-1")}).status_code == 401
    http.cookies.set(COOKIE, ADMIN_TOKEN)
    reply = http.post("/api/v1/jobs/xss/pause", data={"reason": "x", "csrf": strange})
    assert reply.status_code == 403 and "xss" not in client.store.paused()
    page = http.get("/jobs/xss", params={"flash": "hello", "sig": strange})
    assert page.status_code == 200 and ">hello<" not in page.text


def test_a_stranger_s_body_is_never_read_and_an_admin_s_is_bounded(site: tuple[TestClient, Client]) -> None:
    """Without a token (or with a read one) an action is refused before its body is read (401/403 whatever
    the body); an admin's body past 1 MiB is refused (413) unread."""
    http, client = site
    junk = {"Content-Type": "application/json"}
    assert http.post("/api/v1/jobs/xss/pause", content=b"{not json", headers=junk).status_code == 401
    assert http.post("/api/v1/jobs/xss/pause", content=b"{not json", headers={**junk, **bearer(READ_TOKEN)}
                     ).status_code == 403  # fmt: skip
    large = json.dumps({"reason": "x" * (BODY_LIMIT + 1)}).encode()
    assert http.post("/api/v1/jobs/xss/pause", content=large, headers={**junk, **bearer(ADMIN_TOKEN)}
                     ).status_code == 413  # fmt: skip
    assert "xss" not in client.store.paused()


def test_actions_trigger_pause_resume_backfill_and_dead_letters_are_audited(site: tuple[TestClient, Client]) -> None:
    """An admin token triggers (the run ends), pauses with a reason and resumes, previews a backfill before it
    emits, and retries and drops dead letters; each audit record names the web actor."""
    http, client = site
    admin = bearer(ADMIN_TOKEN)
    fired = http.post("/api/v1/jobs/xss/trigger", headers=admin).json()
    ended = lambda: [r for r in client.runs_of_fire("xss", fired["fire_id"]) if r["status"] == "succeeded"]  # noqa: E731
    wait_for(ended, 20, 0.1, what="the triggered run")
    assert http.post("/api/v1/jobs/xss/pause", headers=admin, json={"reason": "maintenance"}).json()["changed"]
    assert http.post("/api/v1/jobs/xss/resume", headers=admin, json={"reason": "migration done"}).json()["changed"]
    resumed = next(entry for entry in client.audit(5) if entry["event"] == "resume")
    assert resumed["reason"] == "migration done" and resumed["job"] == "xss"
    preview = http.post("/api/v1/jobs/xss/backfill", headers=admin, json={"start": "2026-01-01T00:00:00Z",
                        "end": "2026-01-01T02:00:00Z"}).json()  # fmt: skip
    assert preview["dry_run"] and len(preview["instants"]) == 3
    assert http.post("/api/v1/jobs/xss/trigger", headers=admin, json={"kwargs": {"a": 1}}).status_code == 400
    failed = http.post("/api/v1/jobs/fail/trigger", headers=admin).json()
    dead = wait_for(lambda: http.get("/api/v1/dead", headers=admin).json()["dead"], 20, 0.1, what="a dead letter")
    assert dead[0]["fire_id"] == failed["fire_id"]
    retried = http.post(f"/api/v1/dead/{dead[0]['id']}/retry", headers=admin)
    assert retried.status_code == 200, retried.text
    again = wait_for(lambda: [d for d in http.get("/api/v1/dead", headers=admin).json()["dead"]
                              if d["id"] != dead[0]["id"]], 20, 0.1, what="the retried fire's dead letter")  # fmt: skip
    assert http.post(f"/api/v1/dead/{again[0]['id']}/drop", headers=admin).status_code == 200
    assert http.post(f"/api/v1/dead/{again[0]['id']}/drop", headers=admin).status_code == 400
    events = {(entry["event"], entry.get("actor")) for entry in client.audit(50)}
    actor = actor_of(ADMIN_TOKEN)
    assert actor.startswith("web:") and ADMIN_TOKEN not in actor
    assert {(event, actor) for event in ("trigger", "pause", "resume", "dead-retry", "dead-drop")} <= events
    overview = http.get("/api/v1/overview", headers=admin).json()
    failing = {"job": "fail", "problem": "failing", "detail": f"fire {failed['fire_id']} ended dead"}
    assert failing in overview["trouble"]


def test_user_strings_are_escaped_and_secrets_never_shown(site: tuple[TestClient, Client]) -> None:
    """A result of ``<script>alert(1)</script>`` and an error message with markup are shown escaped; the URL
    password and a token in a job's kwargs are masked."""
    http, client = site
    handle = client.trigger("xss")
    handle.wait(timeout=20)
    failed = client.trigger("fail")
    wait_for(lambda: any(r["status"] == "dead" for r in client.runs_of_fire("fail", failed.fire_id)), 20, 0.1)
    http.cookies.set(COOKIE, READ_TOKEN)
    for path in (f"/runs/{handle.fire_id}", f"/runs/{failed.fire_id}", "/jobs/xss", "/jobs/report", "/jobs", "/"):
        page = http.get(path).text
        assert XSS not in page and "<b>not bold</b>" not in page, path
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in http.get(f"/runs/{handle.fire_id}").text
    report = http.get("/jobs/report").text + http.get("/api/v1/jobs/report", headers=bearer(READ_TOKEN)).text
    assert "hunter2" not in report and "s3cret-token" not in report and "app:***@db.internal" in report
    dump = http.get("/jobs/dump").text + http.get("/api/v1/jobs/dump", headers=bearer(READ_TOKEN)).text
    assert "hunter2" not in dump and "pg_dump postgres://app:***@db.internal/app" in dump  # the target too
    assert "hook-secret" not in dump and "SLACK_HOOK" in dump  # a command's environment: every value masked


def test_an_audited_trigger_shows_no_secret_of_its_arguments(site: tuple[TestClient, Client]) -> None:
    """A trigger's kwargs are audited; the audit page, its API and the job page mask a secret-looking one and a
    URL's password."""
    http, client = site
    kwargs = {"password": "pw-in-the-audit", "dsn": "redis://u:url-pw@cache/0"}
    assert http.post("/api/v1/jobs/report/trigger", headers=bearer(ADMIN_TOKEN), json={"kwargs": kwargs}).is_success
    assert any(entry.get("kwargs") == kwargs for entry in client.audit(5))  # the audit keeps what was done
    http.cookies.set(COOKIE, READ_TOKEN)
    shown = "".join(http.get(path).text for path in ("/audit", "/jobs/report"))
    shown += http.get("/api/v1/audit", headers=bearer(READ_TOKEN)).text
    assert "pw-in-the-audit" not in shown and "url-pw" not in shown and "u:***@cache" in shown


def test_a_flash_message_is_shown_only_when_an_action_redirected_with_it(site: tuple[TestClient, Client]) -> None:
    """An action's redirect carries its message, signed, and the page shows it; a link with words of its own
    (``?flash=``) shows nothing, so no one can put text on the dashboard."""
    http, _ = site
    http.cookies.set(COOKIE, ADMIN_TOKEN)
    forged = "Session expired: paste your token at evil.example"
    assert forged not in http.get("/jobs/xss", params={"flash": forged}).text
    assert forged not in http.get("/jobs/xss", params={"flash": forged, "sig": "0" * 32}).text
    csrf = csrf_of(http.get("/jobs/xss").text)
    reply = http.post("/api/v1/jobs/xss/pause", data={"reason": "x", "csrf": csrf, "next": "/jobs/xss"})
    assert reply.status_code == 200 and '<p id="flash" class="flash" role="status">paused xss</p>' in reply.text


def test_the_session_cookie_is_secure_over_https(site: tuple[TestClient, Client]) -> None:
    """Over https (a TLS proxy saying so) the login's cookie is also Secure; it is always HttpOnly and
    SameSite=Strict, and the login redirects without the token in the URL."""
    http, _ = site
    plain = http.get("/login", params={"token": READ_TOKEN, "next": "/jobs"}, follow_redirects=False)
    assert plain.headers["location"] == "/jobs" and READ_TOKEN not in plain.headers["location"]
    cookie = plain.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie
    tls = http.get("https://127.0.0.1/login", params={"token": READ_TOKEN}, follow_redirects=False)
    assert "; secure" in tls.headers["set-cookie"].lower()


def test_the_login_form_needs_its_own_nonce_and_the_logout_form_its_csrf_token(
    site: tuple[TestClient, Client],
) -> None:
    """A login POST is refused (403, no session cookie) without the nonce of a login form this browser was
    shown, or with another; with it, the session starts. A log-out POST of a cookie session needs the session's
    CSRF token: another site's form cannot end it."""
    http, _ = site
    forged = http.post("/login", data={"token": READ_TOKEN, "nonce": "guess"}, follow_redirects=False)
    assert forged.status_code == 403 and COOKIE not in forged.headers.get("set-cookie", "")
    page = http.get("/login")
    nonce = re.search(r'name="nonce" value="([^"]+)"', page.text)
    assert nonce and http.cookies.get(LOGIN_COOKIE) == nonce.group(1)
    http.cookies.set(LOGIN_COOKIE, "another-nonce", path="/login")
    mismatched = http.post("/login", data={"token": READ_TOKEN, "nonce": nonce.group(1)}, follow_redirects=False)
    assert mismatched.status_code == 403
    http.cookies.clear()
    page = http.get("/login")
    nonce = re.search(r'name="nonce" value="([^"]+)"', page.text)
    assert nonce
    good = http.post("/login", data={"token": ADMIN_TOKEN, "nonce": nonce.group(1), "next": "/jobs"},
                     follow_redirects=False)  # fmt: skip
    assert good.status_code == 303 and good.headers["location"] == "/jobs"
    assert http.cookies.get(COOKIE) == ADMIN_TOKEN
    assert http.post("/logout", follow_redirects=False).status_code == 403
    assert http.cookies.get(COOKIE) == ADMIN_TOKEN
    csrf = csrf_of(http.get("/jobs").text)
    assert 'name="csrf" value="' + csrf in http.get("/jobs").text  # the page's log-out form carries it
    out = http.post("/logout", data={"csrf": csrf}, follow_redirects=False)
    assert out.status_code == 303 and COOKIE not in http.cookies


def test_a_login_link_followed_from_another_site_starts_no_session(site: tuple[TestClient, Client]) -> None:
    """A ``/login?token=`` navigation another site started (Sec-Fetch-Site cross-site or same-site: login CSRF)
    gets the login form (403) and no session cookie; one typed, opened from a terminal or sent without the
    header logs in."""
    http, _ = site
    for started_by in ("cross-site", "same-site"):
        forged = http.get("/login", params={"token": READ_TOKEN}, headers={"Sec-Fetch-Site": started_by},
                          follow_redirects=False)  # fmt: skip
        assert forged.status_code == 403 and COOKIE not in http.cookies, started_by
        assert READ_TOKEN not in forged.text
    for started_by in ({"Sec-Fetch-Site": "none"}, {"Sec-Fetch-Site": "same-origin"}, {}):
        http.cookies.clear()
        reply = http.get("/login", params={"token": READ_TOKEN}, headers=started_by, follow_redirects=False)
        assert reply.status_code == 303 and http.cookies.get(COOKIE) == READ_TOKEN, started_by


def test_the_login_and_logout_forms_hold_no_larger_body_than_their_limit(site: tuple[TestClient, Client]) -> None:
    """A login or log-out POST longer than FORM_LIMIT, declared or sent in chunks, is refused (413) before the
    body is parsed: a stranger cannot make the server hold a body of any size."""
    http, _ = site
    big = b"token=" + b"x" * FORM_LIMIT

    def chunks() -> Iterator[bytes]:
        yield from (big[at : at + 4096] for at in range(0, len(big), 4096))

    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for path in ("/login", "/logout"):
        http.cookies.set(COOKIE, ADMIN_TOKEN)
        assert http.post(path, content=big, headers=form, follow_redirects=False).status_code == 413, path
        assert http.post(path, content=chunks(), headers=form, follow_redirects=False).status_code == 413, path
    http.cookies.clear()
    page = http.get("/login")
    nonce = re.search(r'name="nonce" value="([^"]+)"', page.text)
    assert nonce
    good = http.post("/login", data={"token": ADMIN_TOKEN, "nonce": nonce.group(1)}, follow_redirects=False)
    assert good.status_code == 303 and http.cookies.get(COOKIE) == ADMIN_TOKEN


@pytest.mark.parametrize(
    ("host", "answered"),
    [("127.0.0.1", True), ("127.0.0.1:8080", True), ("localhost:8080", True), ("LOCALHOST", True),
     ("[::1]:8080", True), ("evil.example", False), ("evil.example:8080", False), ("127.0.0.1.evil.example", False),
     ("", False)],
)  # fmt: skip
def test_on_a_loopback_address_only_loopback_host_names_are_answered(
    site: tuple[TestClient, Client], host: str, answered: bool
) -> None:
    """Served on 127.0.0.1, a request whose Host header names another site (DNS rebinding) gets 421, even for
    the health check and with a valid token; loopback names with any port are answered."""
    http, _ = site
    reply = http.get("/api/v1/jobs", headers={**bearer(READ_TOKEN), "Host": host})
    assert (reply.status_code == 200) is answered
    if not answered:
        assert reply.status_code == 421
        assert http.get("/api/v1/health", headers={"Host": host}).status_code == 421


def test_allowed_hosts_are_the_loopback_names_or_those_given() -> None:
    """A loopback bind answers loopback names and those given; another bind answers any name unless names
    are given, then only those."""
    assert host_allowed("beatd.internal:443", allowed_hosts("0.0.0.0"))
    assert host_allowed("beatd.internal", allowed_hosts("0.0.0.0", ("Beatd.Internal",)))
    assert not host_allowed("evil.example", allowed_hosts("0.0.0.0", ("beatd.internal",)))
    assert host_allowed("beatd.local", allowed_hosts("127.0.0.1", ("beatd.local",)))
    assert host_allowed("beatd.internal:8443", allowed_hosts("0.0.0.0", ("beatd.internal:8443",)))  # port ignored
    assert host_allowed("[fd00::5]:80", allowed_hosts("::", ("[fd00::5]",)))
    assert host_allowed("[::1]", allowed_hosts("::1"))
    assert not host_allowed("evil.example", allowed_hosts("::1"))


def test_the_live_refresh_never_parses_markup_into_the_page() -> None:
    """``app.js`` moves the nodes of the fetched page in (parsed inert by DOMParser) and sets text with
    ``textContent``: no ``innerHTML``, ``outerHTML``, ``insertAdjacentHTML`` or ``document.write``."""
    source = (REPO / "beatd" / "web" / "static" / "app.js").read_text()
    code = "\n".join(line.split("//")[0] for line in source.splitlines())
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in code, sink
    assert "replaceChildren" in code and "textContent" in code


def test_the_access_log_never_shows_a_token(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon]
) -> None:
    """With requests logged (``--log-level info``), the login link's token is written ``token=***``."""
    config = web_config(tmp_path, shared_redis, namespace)
    port = free_port()
    web = daemons("web", "-c", str(config), "--port", str(port), "--log-level", "info",
                  env={"BEATD_WEB_ADMIN_TOKEN": ADMIN_TOKEN}, name="web")  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: answers(f"{base}/api/v1/health"), 30, 0.1, what="beatd web")
    assert answers(f"{base}/login?token={ADMIN_TOKEN}&next=/jobs")
    web.wait_log(r"GET /login\?token=\*\*\*&next=/jobs", timeout=20)
    assert ADMIN_TOKEN not in web.log()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_web_serves_an_inherited_socket_and_stops_cleanly(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, signum: int
) -> None:
    """`beatd web --fd N` answers on the listening socket it inherits; Ctrl-C ends it with 0 and no "Aborted!" (as
    uvicorn.run did), SIGTERM by the signal once it has shut down (uvicorn re-raises it)."""
    config = web_config(tmp_path, shared_redis, namespace)
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("BEATD_", "NOTIFY_"))}
    with socket.socket() as listening, (tmp_path / "web.log").open("w+b") as log:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        process = subprocess.Popen(
            [sys.executable, "-m", "beatd", "web", "-c", str(config), "--fd", str(listening.fileno())], cwd=REPO,
            env={**environment, "BEATD_WEB_ADMIN_TOKEN": ADMIN_TOKEN}, stdout=log, stderr=log,
            pass_fds=[listening.fileno()],
        )  # fmt: skip
        try:
            listening.close()  # the child's copy serves
            wait_for(lambda: answers(f"http://127.0.0.1:{port}/api/v1/health"), 30, 0.1, what="beatd web --fd")
            process.send_signal(signum)
            code = process.wait(30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        log.seek(0)
        output = log.read().decode()
    assert code == (0 if signum == signal.SIGINT else -signal.SIGTERM), output
    assert f"http://127.0.0.1:{port}/" in output and "Aborted" not in output and "Traceback" not in output


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def answers(url: str) -> bool:
    """Whether ``url`` answers at all (any status)."""
    try:
        with urllib.request.urlopen(url, timeout=5):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def test_an_unreadable_progress_value_leaves_the_overview_answering(site: tuple[TestClient, Client]) -> None:
    """A progress value that is not epoch ms (the beat skips such a job and says so) is left out of the
    overview's overdue check, as the store's one progress reader does, never a server error."""
    http, client = site
    client.store.client.hset(client.store.keys.progress, "xss", "not a number")
    reply = http.get("/api/v1/overview", headers=bearer(READ_TOKEN))
    assert reply.status_code == 200, reply.text
    assert not [row for row in reply.json()["trouble"] if row["job"] == "xss" and row["problem"] == "overdue"]
