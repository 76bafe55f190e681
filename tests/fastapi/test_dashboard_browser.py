"""The dashboard in headless Chromium, served by uvicorn, with a circuit tripped by another process.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them). Set
``TNM_DASHBOARD_SCREENSHOT=path.png`` to keep the screenshot the run takes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from tnm.circuit import CircuitBreaker, ServicePolicy
from tnm.circuit_fastapi import circuit_dashboard_router, install

from ..redis_server import free_port

NAMESPACE = "dash-browser"

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",  # the tests run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1200,760",
]

# Run in another process: three failures of "payments", recorded through Redis.
TRIP = """
import sys
from tnm.circuit import CircuitBreaker, ServicePolicy
breaker = CircuitBreaker("redis", redis_url=sys.argv[1], namespace=sys.argv[2],
                         default_policy=ServicePolicy(max_failures=3, open_seconds=60))
breaker.initialize()
for _ in range(3):
    breaker.record_failure("payments", "ConnectionError: payments-api refused")
assert breaker.state("payments").state.value == "open"
breaker.close()
"""


def chromium() -> tuple[str, str]:
    """Paths of the browser and its driver; skip (fail in CI, which installs them) when absent."""
    browser = next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        reason = "chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; .ci/run should have installed them")
        pytest.skip(f"{reason}; .ci/run installs them")
    return browser, driver


@pytest.fixture
def start_browser(tmp_path: Path) -> Iterator[Callable[..., WebDriver]]:
    """Start headless Chromium sessions, each with a new empty profile; all are quit after the test."""
    browser, driver_path = chromium()
    drivers: list[WebDriver] = []

    def start(*, javascript: bool = True) -> WebDriver:
        options = Options()
        options.binary_location = browser
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={tmp_path / f'profile-{len(drivers)}'}")
        if not javascript:
            options.add_experimental_option(
                "prefs", {"profile.managed_default_content_settings.javascript": 2}
            )
        driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
        driver.set_page_load_timeout(20)
        drivers.append(driver)
        return driver

    yield start
    for driver in drivers:
        driver.quit()


@pytest.fixture
def serve(redis_url: str) -> Iterator[Callable[[FastAPI], str]]:
    """Run an app in a real uvicorn server on 127.0.0.1 (a free port); stopped after the test."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(app: FastAPI) -> str:
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 15
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            assert thread.is_alive(), "uvicorn stopped while starting"
            time.sleep(0.01)
        servers.append((server, thread))
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


def dashboard_app(redis_url: str, **dashboard_options: object) -> tuple[FastAPI, CircuitBreaker]:
    breaker = CircuitBreaker(
        "redis",
        redis_url=redis_url,
        namespace=NAMESPACE,
        default_policy=ServicePolicy(window_seconds=60, max_failures=3, open_seconds=60),
        service_policies={"inventory": ServicePolicy(max_failures=2, open_seconds=0.2)},
    )
    app = FastAPI()
    install(app, breaker)
    app.include_router(circuit_dashboard_router(prefix="/circuits", **dashboard_options))  # type: ignore[arg-type]
    return app, breaker


def some_circuits(breaker: CircuitBreaker) -> None:
    """Circuits in every state but the one the test makes: payments stays closed for now."""
    breaker.state("payments")
    breaker.record_failure("search", "TimeoutError: search took 2.0 s")
    breaker.force_open("ledger", "maintenance window")
    for _ in range(2):
        breaker.record_failure("inventory", "ConnectionError: inventory refused")


def trip_from_another_process(redis_url: str) -> None:
    subprocess.run([sys.executable, "-c", TRIP, redis_url, NAMESPACE], check=True, timeout=60)


def row_state(driver: WebDriver, service: str) -> str | None:
    state = driver.execute_script(
        "const row = document.querySelector(`tr[data-service='${arguments[0]}']`);"
        "return row ? row.getAttribute('data-state') : null;",
        service,
    )
    return None if state is None else str(state)


def allow_all() -> None:
    """Authorization stand-in: everyone may act (the screenshot shows the operator buttons)."""


def test_row_turns_open_live_without_reload(
    redis_url: str, serve: Callable[[FastAPI], str], start_browser: Callable[..., WebDriver], tmp_path: Path
) -> None:
    """A circuit tripped by another process through Redis turns "open" on the page within 2 s, no reload;
    the operator's Reset button closes it."""
    app, breaker = dashboard_app(redis_url, refresh_seconds=0.5, expose_reasons=True, authorize=allow_all)
    base = serve(app)
    some_circuits(breaker)
    driver = start_browser()
    driver.get(f"{base}/circuits/")
    WebDriverWait(driver, 10, poll_frequency=0.05).until(
        lambda d: d.find_element(By.ID, "live-status").text.startswith("Live")
    )
    assert row_state(driver, "payments") == "closed"
    driver.execute_script("window.notReloaded = true;")  # a reload would drop it

    trip_from_another_process(redis_url)
    WebDriverWait(driver, 2, poll_frequency=0.05).until(lambda d: row_state(d, "payments") == "open")

    assert driver.execute_script("return window.notReloaded === true;")
    # Read in one script: the page re-renders the table live, so an element found in one
    # call may be gone by the next.
    text, colour = driver.execute_script(
        "const b = document.querySelector(`tr[data-service='payments'] .badge`);"
        "return [b.textContent.trim(), getComputedStyle(b).backgroundColor];"
    )
    assert text == "open"
    assert colour == "rgb(207, 34, 46)"  # red
    WebDriverWait(driver, 5, poll_frequency=0.05).until(lambda d: row_state(d, "inventory") == "half-open")
    history = driver.execute_script("return document.querySelector('section.history').innerText;")
    assert "payments" in history
    assert "noticed when the page read it" in history

    screenshot = Path(os.environ.get("TNM_DASHBOARD_SCREENSHOT") or tmp_path / "dashboard.png")
    assert driver.save_screenshot(str(screenshot))
    assert screenshot.read_bytes().startswith(b"\x89PNG")

    # The operator's Reset button: confirmed, posted by the script, accepted as same-origin.
    reset = "tr[data-service='payments'] form[action^='reset'] button"
    WebDriverWait(driver, 5, poll_frequency=0.05, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda d: d.find_element(By.CSS_SELECTOR, reset).click() or True  # re-found if the table re-rendered
    )
    WebDriverWait(driver, 5, poll_frequency=0.05).until(expected_conditions.alert_is_present()).accept()
    WebDriverWait(driver, 2, poll_frequency=0.05).until(lambda d: row_state(d, "payments") == "closed")
    assert breaker.state("payments").state.value == "closed"
    assert driver.execute_script("return window.notReloaded === true;")


def test_without_javascript_the_browser_reloads_the_table(
    redis_url: str, serve: Callable[[FastAPI], str], start_browser: Callable[..., WebDriver]
) -> None:
    """With scripts off, the page is a plain table the browser reloads; the change shows after a reload."""
    app, breaker = dashboard_app(redis_url, noscript_refresh_seconds=1)
    base = serve(app)
    breaker.state("payments")
    driver = start_browser(javascript=False)
    driver.get(f"{base}/circuits/")
    first, status = driver.execute_script(  # one read: the page may reload between two
        "return [document.querySelector(`tr[data-service='payments']`).getAttribute('data-state'),"
        " document.getElementById('live-status').textContent];"
    )
    assert first == "closed"
    assert "Live" not in status  # the page's script did not run
    assert "reloads every 1 s" in status  # (in <noscript>, which Selenium never counts as visible text)

    trip_from_another_process(redis_url)

    def reloaded_open(d: WebDriver) -> bool:
        return (
            d.find_element(By.CSS_SELECTOR, "tr[data-service='payments']").get_attribute("data-state")
            == "open"
        )

    WebDriverWait(
        driver,
        10,
        poll_frequency=0.1,
        ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
    ).until(reloaded_open)


# -- the policy form ------------------------------------------------------------------

FIELD = "tr[data-service='payments'] input[name='max_failures']"
APPLY = "tr[data-service='payments'] .policy-form button"
SUMMARY = "tr[data-service='payments'] details.policy-edit summary"


def policy_text(driver: WebDriver) -> str:
    return str(
        driver.execute_script(
            "return document.querySelector(`tr[data-service='payments'] td.policy`).innerText;"
        )
    )


def fill_and_apply(driver: WebDriver, value: str) -> None:
    if not driver.execute_script(f"return document.querySelector(`{SUMMARY}`).parentElement.open;"):
        driver.find_element(By.CSS_SELECTOR, SUMMARY).click()
    field = driver.find_element(By.CSS_SELECTOR, FIELD)
    field.clear()
    field.send_keys(value)
    driver.find_element(By.CSS_SELECTOR, APPLY).click()


class TestPolicyFormInChromium:
    def test_with_javascript(
        self, redis_url: str, serve: Callable[[FastAPI], str], start_browser: Callable[..., WebDriver]
    ) -> None:
        """The operator opens Edit policy, sets max failures to 2 and applies: the fleet override is
        stored, the row says so without a reload, and the live refresh never wiped the open form."""
        app, breaker = dashboard_app(redis_url, refresh_seconds=0.2, authorize=allow_all)
        base = serve(app)
        breaker.state("payments")
        driver = start_browser()
        driver.get(f"{base}/circuits/")
        WebDriverWait(driver, 10, poll_frequency=0.05).until(
            lambda d: d.find_element(By.ID, "live-status").text.startswith("Live")
        )
        driver.execute_script("window.notReloaded = true;")
        assert "from code" in policy_text(driver)
        WebDriverWait(
            driver, 5, poll_frequency=0.05, ignored_exceptions=(StaleElementReferenceException,)
        ).until(lambda d: fill_and_apply(d, "2") or True)
        WebDriverWait(driver, 5, poll_frequency=0.05).until(expected_conditions.alert_is_present()).accept()
        WebDriverWait(driver, 5, poll_frequency=0.05).until(
            lambda d: "changed for the fleet" in policy_text(d)
        )
        assert "2 failures / 60 s" in policy_text(driver)
        assert breaker.policy_overrides() == {"payments": {"max_failures": 2}}
        assert breaker.policy_for("payments").max_failures == 2
        assert driver.execute_script("return window.notReloaded === true;")

    def test_without_javascript(
        self, redis_url: str, serve: Callable[[FastAPI], str], start_browser: Callable[..., WebDriver]
    ) -> None:
        """With scripts off the form is a plain post: the browser comes back to the page, which shows
        the change; Clear override returns the service to its code's policy."""
        app, breaker = dashboard_app(redis_url, noscript_refresh_seconds=60, authorize=allow_all)
        base = serve(app)
        breaker.state("payments")
        driver = start_browser(javascript=False)
        driver.get(f"{base}/circuits/")
        fill_and_apply(driver, "4")
        WebDriverWait(driver, 10, poll_frequency=0.05).until(
            lambda d: "changed for the fleet" in policy_text(d)
        )
        assert breaker.policy_for("payments").max_failures == 4
        driver.find_element(
            By.CSS_SELECTOR, "tr[data-service='payments'] form[action^='clear-policy'] button"
        ).click()
        WebDriverWait(driver, 10, poll_frequency=0.05).until(lambda d: "from code" in policy_text(d))
        assert breaker.policy_source("payments") == "code"
