"""The web dashboard in a real headless Chromium (Selenium driving Debian's chromium and chromium-driver) against
a live beat, worker and ``beatd web`` (issue 13): every page, trigger now (with arguments) and the run appearing
without a reload, pause and resume, a backfill previewed then emitted, a dead letter retried, no console error
on any page, the XSS probe inert wherever it shows (also after a live refresh).

The live refresh replaces the elements of a page's live regions every few seconds, so every read and click
retries on a stale element (:func:`_retry`), and every wait polls with a generous deadline: a loaded 2-core
machine may be slow, never wrong.

With ``BEATD_WEB_SCREENSHOTS=1`` the screenshots of the overview and a job page are written to docs/img/ (the
README shows them); otherwise to the test's temporary directory."""

from __future__ import annotations

import os
import shutil
import socket
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from beatd.client import Client
from beatd.web.security import actor_of
from tests.conftest import REPO
from tests.integration.conftest import Daemon, wait_for
from tests.integration.test_web_api import ADMIN_TOKEN, web_config
from tests.redis_server import RedisServer
from tests.web_jobs import XSS

CHROMIUM = os.environ.get("BEATD_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("BEATD_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
    pytest.skip(f"no {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)", allow_module_level=True)

from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture
def browser() -> Iterator[Any]:
    """A headless Chromium whose console messages can be read."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


LIVE = 30.0
"""Seconds any wait for the page allows (a loaded 2-core machine, a refresh every 3 s)."""


def _retry(action: Callable[[], Any]) -> Any:
    """``action()``, again while it hits an element a live refresh replaced meanwhile (a few tries)."""
    for _ in range(20):
        try:
            return action()
        except StaleElementReferenceException:
            continue
    return action()


def _text(driver: Any, css: str) -> str:
    """The text of the element ``css`` now ('' when there is none)."""

    def read() -> str:
        found = driver.find_elements(By.CSS_SELECTOR, css)
        return str(found[0].text) if found else ""

    return str(_retry(read))


def _click(driver: Any, by: str, locator: str) -> None:
    """Click the element found by ``locator`` (found again if a refresh replaced it)."""
    _retry(lambda: driver.find_element(by, locator).click())


def _console_errors(driver: Any) -> list[dict[str, Any]]:
    """The console's errors since the last call (a CSP violation is one)."""
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def _refreshed(driver: Any) -> None:
    """Wait until the page's live regions have been refreshed from the server at least once."""
    driver.execute_script("var s = document.getElementById('live-state'); if (s) s.className = 'live';")
    wait_for(lambda: driver.execute_script("return document.getElementById('live-state').className") == "live on",
             LIVE, 0.2, what="a live refresh")  # fmt: skip


def _inert(driver: Any, where: str) -> None:
    """The page ran no script of a probe: no alert open, no inline script or event handler in the DOM."""
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018
    injected = driver.execute_script(
        "return document.querySelectorAll('script:not([src]), [onerror], [onload], [onclick]').length"
    )
    assert injected == 0, where


def _page(driver: Any, url: str, marker: str) -> None:
    """Open ``url`` and wait for ``marker`` in its main part; no console error on the way."""
    driver.get(url)
    wait_for(lambda: marker in _text(driver, "main"), LIVE, 0.2, what=f"{marker!r} on {url}")
    assert _console_errors(driver) == [], url


def test_the_dashboard_in_a_browser(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon], browser: Any
) -> None:
    """Every page renders with its content and no console error; "trigger now" shows the run on the job page
    without a reload; trigger with arguments; pause (the reason an XSS probe) and resume; a backfill previewed
    then emitted; retry of a dead letter; the ``<script>`` result and reason stay text, also after a refresh."""
    config = web_config(tmp_path, shared_redis, namespace)
    port = _free_port()
    env = {"BEATD_WEB_ADMIN_TOKEN": ADMIN_TOKEN}
    daemons("beat", "-c", str(config), name="beat")
    daemons("worker", "-c", str(config), name="worker")
    daemons("web", "-c", str(config), "--port", str(port), env=env, name="web")
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: _answers(f"{base}/api/v1/health"), LIVE, 0.1, what="beatd web")
    client = Client.from_config(config, environ={})
    xss = client.trigger("xss")
    xss.wait(timeout=LIVE)
    failed = client.trigger("fail")
    wait_for(lambda: client.dead_letters(5), LIVE, 0.1, what="a dead letter")
    shots = REPO / "docs" / "img" if os.environ.get("BEATD_WEB_SCREENSHOTS") == "1" else tmp_path

    # the login link sets the session cookie and redirects to the overview, without the token in its URL
    browser.get(f"{base}/login?token={ADMIN_TOKEN}")
    wait_for(lambda: "Jobs in trouble" in _text(browser, "main"), LIVE, 0.2, what="the overview")
    assert ADMIN_TOKEN not in browser.current_url and ADMIN_TOKEN not in browser.page_source
    assert browser.execute_script("return document.cookie") == ""  # HttpOnly: no script reads it
    wait_for(lambda: "failing" in _text(browser, "#trouble") and "fail" in _text(browser, "#trouble"), LIVE, 0.2,
             what="the failing job in trouble")  # fmt: skip
    assert _console_errors(browser) == []
    browser.save_screenshot(str(shots / "overview.png"))

    _page(browser, f"{base}/jobs", "4 jobs")
    names = _retry(lambda: {link.text for link in browser.find_elements(By.CSS_SELECTOR, "#jobs td a")})
    assert {"xss", "fail", "report", "dump"} <= names
    _page(browser, f"{base}/jobs?q=rep", "1 jobs")
    _page(browser, f"{base}/runs/{xss.fire_id}", "attempt 1")
    assert XSS in _text(browser, "pre.result")  # shown as text, not run
    _inert(browser, "run page")
    _refreshed(browser)
    assert XSS in _text(browser, "pre.result")
    _inert(browser, "run page, refreshed")
    for path, text in (("/workers", "worker"), ("/audit", "trigger"), ("/dead", "no retries left")):
        _page(browser, base + path, text)

    _page(browser, f"{base}/jobs/xss", "Next fires")
    browser.execute_script("window.beatdNoReload = 42")  # gone if the page reloads
    before = len(_retry(lambda: browser.find_elements(By.CSS_SELECTOR, "#history tr.first")))
    _click(browser, By.ID, "trigger")

    def shown() -> bool:
        rows = browser.find_elements(By.CSS_SELECTOR, "#history tr.first")
        return len(rows) > before and "succeeded" in browser.find_element(By.ID, "history").text

    wait_for(lambda: _retry(shown), LIVE, 0.2, what="the new run on the job page")
    assert browser.execute_script("return window.beatdNoReload") == 42
    assert "triggered xss" in _text(browser, "#flash")
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "svg.timeline rect.mark"), LIVE, 0.2, what="marks")
    browser.save_screenshot(str(shots / "job.png"))

    reason = f"maintenance <i>window</i> {XSS}"
    _retry(lambda: browser.find_element(By.NAME, "reason").send_keys(reason))
    _click(browser, By.ID, "pause")
    wait_for(lambda: f"paused: {reason}" in _text(browser, "#job-state"), LIVE, 0.2, what="paused")
    assert client.store.paused()["xss"]["actor"] == actor_of(ADMIN_TOKEN)
    assert browser.execute_script("return window.beatdNoReload") == 42
    _inert(browser, "job page, paused")
    _page(browser, f"{base}/", "Jobs in trouble")  # the reason is shown in the overview's trouble list
    wait_for(lambda: reason in _text(browser, "#trouble"), LIVE, 0.2, what="the pause reason in trouble")
    _inert(browser, "overview, paused")
    _page(browser, f"{base}/jobs/xss", "Next fires")
    _retry(lambda: browser.find_element(By.CSS_SELECTOR, "#job-state input[name=reason]").send_keys("done"))
    _click(browser, By.ID, "resume")
    wait_for(lambda: "paused:" not in _text(browser, "#job-state"), LIVE, 0.2, what="resumed")
    assert "xss" not in client.store.paused()
    assert next(entry for entry in client.audit(5) if entry["event"] == "resume")["reason"] == "done"

    _retry(lambda: browser.find_element(By.NAME, "start").send_keys("2026-01-01T00:00:00Z"))
    _retry(lambda: browser.find_element(By.NAME, "end").send_keys("2026-01-01T02:00:00Z"))
    _click(browser, By.XPATH, "//button[text()='preview']")
    wait_for(lambda: "3 fires would be emitted" in _text(browser, "main"), LIVE, 0.2, what="the backfill preview")
    assert not [r for r in client.history_records("xss", limit=50) if r["trigger"] == "backfill"]  # a preview only
    _click(browser, By.ID, "confirm-backfill")
    wait_for(lambda: "emitted 3 fires" in _text(browser, "#flash"), LIVE, 0.2, what="the backfill")
    assert _console_errors(browser) == []

    _page(browser, f"{base}/jobs/report", "Next fires")
    _retry(lambda: browser.find_element(By.NAME, "kwargs").send_keys('{"n": 7}'))
    _click(browser, By.ID, "trigger")
    wait_for(lambda: "triggered report" in _text(browser, "#flash"), LIVE, 0.2, what="the trigger with kwargs")
    assert any(entry.get("kwargs") == {"n": 7} for entry in client.audit(10) if entry.get("job") == "report")

    _page(browser, f"{base}/dead", "no retries left")
    dead_id = client.dead_letters(5)[0]["id"]
    _click(browser, By.CSS_SELECTOR, f"tr[id='dead-{dead_id}'] button.retry")
    wait_for(lambda: "put back" in _text(browser, "#flash"), LIVE, 0.2, what="the retry")
    wait_for(lambda: len(client.runs_of_fire("fail", failed.fire_id)) >= 3, LIVE, 0.2, what="the retried attempt")
    _inert(browser, "dead letters")
    assert _console_errors(browser) == []

    # log out (the form carries the session's CSRF token), then in through the login form (its nonce)
    _click(browser, By.XPATH, "//button[text()='log out']")
    wait_for(lambda: "Log in" in _text(browser, "main"), LIVE, 0.2, what="the login page after logging out")
    browser.get(f"{base}/jobs")  # the session is gone: a page sends the browser to the login
    wait_for(lambda: "Log in" in _text(browser, "main"), LIVE, 0.2, what="the login page for /jobs")
    _retry(lambda: browser.find_element(By.NAME, "token").send_keys(ADMIN_TOKEN))
    _click(browser, By.XPATH, "//button[text()='log in']")
    wait_for(lambda: "4 jobs" in _text(browser, "main"), LIVE, 0.2, what="back on /jobs after logging in")
    assert _console_errors(browser) == []
    client.close()
