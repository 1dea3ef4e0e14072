"""The web dashboard in a real headless Chromium (Selenium driving Debian's chromium and chromium-driver) against
a live beat, worker and ``beatd web`` (issue 13): every page, trigger now and the run appearing without a
reload, pause and resume, a dead letter retried, no console errors, the XSS probe inert.

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

from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
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


def _console_errors(driver: Any) -> list[dict[str, Any]]:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def _no_alert(driver: Any) -> None:
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018


def test_the_dashboard_in_a_browser(
    tmp_path: Path, shared_redis: RedisServer, namespace: str, daemons: Callable[..., Daemon], browser: Any
) -> None:
    """Every page renders with its content; "trigger now" shows the run on the job page without a reload;
    pause and resume; retry of a dead letter; no console error; the ``<script>`` result stays text."""
    config = web_config(tmp_path, shared_redis, namespace)
    port = _free_port()
    env = {"BEATD_WEB_ADMIN_TOKEN": ADMIN_TOKEN}
    daemons("beat", "-c", str(config), name="beat")
    daemons("worker", "-c", str(config), name="worker")
    daemons("web", "-c", str(config), "--port", str(port), env=env, name="web")
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: _answers(f"{base}/api/v1/health"), 30, 0.1, what="beatd web")
    client = Client.from_config(config, environ={})
    xss = client.trigger("xss")
    xss.wait(timeout=30)
    failed = client.trigger("fail")
    wait_for(lambda: client.dead_letters(5), 30, 0.1, what="a dead letter")

    browser.get(f"{base}/login?token={ADMIN_TOKEN}")  # sets the session cookie, then the overview
    wait_for(lambda: "Jobs in trouble" in browser.page_source, 30, 0.1, what="the overview")
    assert (
        "fail" in browser.find_element(By.ID, "trouble").text
        and "failing" in browser.find_element(By.ID, "trouble").text
    )
    shots = REPO / "docs" / "img" if os.environ.get("BEATD_WEB_SCREENSHOTS") == "1" else tmp_path
    browser.save_screenshot(str(shots / "overview.png"))

    browser.get(f"{base}/jobs")
    assert {"xss", "fail", "report"} <= {link.text for link in browser.find_elements(By.CSS_SELECTOR, "#jobs td a")}
    browser.get(f"{base}/runs/{xss.fire_id}")
    assert XSS in browser.find_element(By.CSS_SELECTOR, "pre.result").text  # shown as text, not run
    _no_alert(browser)
    for path, text in (("/workers", "worker"), ("/audit", "trigger"), ("/dead", "no retries left")):
        browser.get(base + path)
        assert text in browser.find_element(By.TAG_NAME, "main").text, path

    browser.get(f"{base}/jobs/xss")
    browser.execute_script("window.beatdNoReload = 42")  # gone if the page reloads
    before = len(browser.find_elements(By.CSS_SELECTOR, "#history tr.first"))
    browser.find_element(By.ID, "trigger").click()

    def shown() -> bool:
        rows = browser.find_elements(By.CSS_SELECTOR, "#history tr.first")
        return len(rows) > before and "succeeded" in browser.find_element(By.ID, "history").text

    wait_for(shown, 30, 0.2, what="the new run on the job page")
    assert browser.execute_script("return window.beatdNoReload") == 42
    assert "triggered xss" in browser.find_element(By.ID, "flash").text
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "svg.timeline rect.mark"), 30, 0.2, what="marks")
    browser.save_screenshot(str(shots / "job.png"))

    browser.find_element(By.NAME, "reason").send_keys("maintenance <i>window</i>")
    browser.find_element(By.ID, "pause").click()
    wait_for(lambda: "paused: maintenance <i>window</i>" in browser.find_element(By.ID, "job-state").text, 15, 0.2)
    assert client.store.paused()["xss"]["actor"] == "web"
    browser.find_element(By.XPATH, "//button[text()='resume']").click()
    wait_for(lambda: "paused:" not in browser.find_element(By.ID, "job-state").text, 15, 0.2, what="resumed")
    assert "xss" not in client.store.paused()

    browser.get(f"{base}/dead")
    dead_id = client.dead_letters(5)[0]["id"]
    browser.find_element(By.CSS_SELECTOR, f"tr[id='dead-{dead_id}'] button.retry").click()
    wait_for(lambda: "put back" in browser.find_element(By.ID, "flash").text, 15, 0.2, what="the retry")
    wait_for(lambda: len(client.runs_of_fire("fail", failed.fire_id)) >= 3, 30, 0.2, what="the retried attempt")
    assert browser.execute_script("return document.querySelectorAll('script:not([src])').length") == 0
    _no_alert(browser)
    assert _console_errors(browser) == []
    client.close()
