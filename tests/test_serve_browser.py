"""``edgecxr serve`` in a real browser: headless Chromium (Debian's chromium and chromium-driver) driven by Selenium.

Logs in, uploads a film from ../shared/data/cxr3-fullres, reads the result, toggles the heatmap (the
film and the heatmap share one fixed slot: the page does not move), records an outcome and finds it
on the monitoring page; then, at a phone's 390 px, every page fits its width (the document is no
wider than the viewport). Screenshots go in the test's tmp folder.
"""
from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import urllib.request

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.common.by import By

from clinic import free_port, wait_for
from conftest import child_env
from edgecxr.core.model import load_model

pytestmark = [pytest.mark.clinic, pytest.mark.slow]  # about 17 s: a server, a browser, two widths
PASSWORD = "browser test password"
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # localhost, never through a proxy


def answers(url: str) -> bool:
    try:
        return _DIRECT.open(url, timeout=2).status == 200
    except OSError:
        return False


@pytest.fixture()
def served(tmp_path):
    """``python -m edgecxr serve`` with the bundled default model on a free port: its base URL."""
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    (tmp_path / "pw").chmod(0o600)
    port = free_port()
    with open(tmp_path / "serve.stderr", "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgecxr", "serve", "--store", str(tmp_path / "store"), "--port", str(port), "--password-file", str(tmp_path / "pw")],
            stdout=subprocess.DEVNULL, stderr=err, env=child_env(),
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: answers(url + "/login") or proc.poll() is not None, 120, "edgecxr serve to answer")
        assert proc.poll() is None, (tmp_path / "serve.stderr").read_text()
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    assert "Traceback" not in (tmp_path / "serve.stderr").read_text()


@pytest.fixture()
def browser():
    options = Options()
    options.binary_location = shutil.which("chromium") or "chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1400", "--no-proxy-server"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=DriverService(executable_path=shutil.which("chromedriver") or "chromedriver"))
    driver.implicitly_wait(5)
    yield driver
    driver.quit()


def text_of(browser, element_id: str) -> str | None:
    """The text of the element with ``element_id`` on the current page; None while the page is being replaced."""
    try:
        return browser.find_element(By.ID, element_id).text
    except (StaleElementReferenceException, NoSuchElementException):
        return None


def header_text(browser) -> str | None:
    """The page header's text; None while the page is being replaced."""
    try:
        return browser.find_element(By.TAG_NAME, "header").text
    except (StaleElementReferenceException, NoSuchElementException):
        return None


def test_log_in_upload_toggle_heatmap_record_outcome_and_monitor(served, browser, shared_data, tmp_path):
    film = sorted((shared_data / "cxr3-fullres" / "Pneumonia").glob("*.png"))[0]
    shots = tmp_path / "screenshots"
    shots.mkdir()

    browser.get(served + "/login")
    browser.find_element(By.NAME, "user").send_keys("admin")
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.ID, "login").click()
    wait_for(lambda: "Log out" in (header_text(browser) or ""), 30, "the logged-in page")

    browser.get(served + "/upload")
    browser.find_element(By.NAME, "file").send_keys(str(film))
    browser.find_element(By.ID, "send").click()
    wait_for(lambda: "/study/" in browser.current_url, 120, "the study page")
    label = browser.find_element(By.ID, "label").text
    assert label in load_model().labels
    assert film.name in browser.page_source and "RESEARCH USE - NOT A DIAGNOSIS" in browser.page_source
    if label == "Normal":  # no heatmap on a Normal call unless asked for
        assert not browser.find_elements(By.ID, "heatmap-toggle")
        browser.find_element(By.ID, "ask-heatmap").click()
        wait_for(lambda: "heatmap=1" in browser.current_url, 30, "the study page with its heatmap")
    plain, result = browser.find_element(By.CSS_SELECTOR, "img.plain"), browser.find_element(By.CSS_SELECTOR, "img.result")
    assert plain.is_displayed() and not result.is_displayed()
    assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", plain) > 0  # the film loaded
    browser.save_screenshot(str(shots / "study.png"))
    slot = browser.find_element(By.CSS_SELECTOR, ".film").rect
    below = browser.find_element(By.CSS_SELECTOR, ".legend").rect
    browser.find_element(By.ID, "heatmap-toggle").click()
    assert result.is_displayed() and not plain.is_displayed()
    wait_for(lambda: browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", result) > 0, 30, "the heatmap picture")
    assert browser.find_element(By.CSS_SELECTOR, ".film").rect == slot  # the same slot...
    assert browser.find_element(By.CSS_SELECTOR, ".legend").rect == below  # ...so nothing below it moves
    browser.save_screenshot(str(shots / "heatmap.png"))

    browser.find_element(By.CSS_SELECTOR, "input[name=outcome][value=positive]").click()
    browser.find_element(By.NAME, "note").send_keys("sputum smear positive")
    browser.find_element(By.ID, "record").click()
    # the form posts and the study page loads again: read the new page, not the old one going stale
    wait_for(lambda: text_of(browser, "outcome") == "lab-confirmed positive", 30, "the recorded outcome")
    assert text_of(browser, "note") == "sputum smear positive"
    study_url = browser.current_url

    browser.get(served + "/")
    rows = browser.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert len(rows) == 1 and label in rows[0].text and "lab-confirmed positive" in rows[0].text
    browser.save_screenshot(str(shots / "worklist.png"))

    browser.get(served + "/monitoring")
    cells = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#weeks tbody tr td")]
    assert cells[2] == "1" and cells[4] == "1" and cells[5] == "1"  # films read, with outcome, positive (after week and profile)
    # sensitivity with its counts and 95% interval (flagged without a site profile: any call but Normal)
    assert ("0/1; 95% CI 0–79 %" if label == "Normal" else "1/1; 95% CI 21–100 %") in cells[8]
    browser.save_screenshot(str(shots / "monitoring.png"))

    # a phone: 390 px wide, every page fits
    browser.set_window_size(390, 844)
    for name, url in (("worklist", served + "/"), ("study", study_url), ("monitoring", served + "/monitoring"),
                      ("upload", served + "/upload"), ("users", served + "/users")):
        browser.get(url)
        width, viewport = browser.execute_script("return [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert viewport <= 390 and width <= viewport, (name, width, viewport)
        browser.save_screenshot(str(shots / f"phone-{name}.png"))
    assert sorted(p.name for p in shots.iterdir()) == ["heatmap.png", "monitoring.png", "phone-monitoring.png", "phone-study.png",
                                                       "phone-upload.png", "phone-users.png", "phone-worklist.png", "study.png", "worklist.png"]
    assert all(p.stat().st_size > 1000 for p in shots.iterdir())
    # and at the desktop width too
    browser.set_window_size(1280, 1400)
    for url in (served + "/", study_url, served + "/monitoring"):
        browser.get(url)
        width, viewport = browser.execute_script("return [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert width <= viewport, (url, width, viewport)
