"""review.html in a real headless Chromium (Debian's chromium + chromedriver, driven by selenium):
keyboard verdicts, the downloaded verdict file, untrusted text shown as text, verdicts kept in
local storage, and a screenshot (also saved as docs/review-page.png).

`make test-evaluate` installs chromium when it is missing; under CI (CI=true) a missing browser
fails this test instead of skipping it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contracts.review_rule import preferred_of
from jobs.evaluate.review import blind_sides, write_review
from tests.jobs.conftest import ROOT
from tests.jobs.evaluate.review_sample import HOSTILE, sample_review

DOC_SCREENSHOT = ROOT / "docs" / "review-page.png"
# Root in a container needs --no-sandbox; the window is tall enough that the screenshot shows the
# page's top, the three judged items and the current one.
CHROMIUM_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--window-size=1280,1500",
)


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: make test-evaluate installs it)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not chromedriver:
        _missing("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium is not installed (requirements-test-jobs.txt)")
    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in CHROMIUM_ARGS:
        options.add_argument(arg)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    try:
        driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
        yield driver, downloads
    finally:
        driver.quit()


def keys(driver: Any, *sequence: str) -> None:
    """Keys as a person types them: to whatever element has the focus."""
    from selenium.webdriver.common.action_chains import ActionChains

    chain = ActionChains(driver)
    for key in sequence:
        chain.send_keys(key)
    chain.perform()


def wait_for(check: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s")


def test_a_reviewer_judges_three_items_by_keyboard_and_downloads_the_verdicts(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver, downloads = browser
    review = sample_review()
    page = write_review(review, tmp_path / "reports")["review_page"]
    sides = blind_sides(review["sample_id"], [item["id"] for item in review["items"]])
    driver.get(page.as_uri())

    cards = driver.find_elements(By.CSS_SELECTOR, "section.item")
    assert [c.get_attribute("id") for c in cards] == [f"item-p{i}" for i in range(1, 9)]
    assert driver.execute_script("return document.activeElement.id") == "item-p1"
    assert driver.find_element(By.ID, "progress").text == "0 / 8 judged"

    # Untrusted model text is shown as text: nothing it holds became markup or ran.
    hostile = next(i for i in review["items"] if i["candidate"] == HOSTILE)
    side = sides[hostile["id"]]
    shown = driver.find_element(By.CSS_SELECTOR, f"#item-{hostile['id']} .out[data-side='{side}'] .text")
    assert shown.get_attribute("textContent") == HOSTILE
    assert driver.execute_script("return window.pwned === undefined")
    assert not driver.find_elements(By.CSS_SELECTOR, "main img, main b, main script")

    # The reviewer names themself, returns to the items with Escape, then uses the keys alone.
    name = driver.find_element(By.ID, "reviewer")
    name.click()
    name.send_keys("Ada", Keys.ESCAPE)
    assert driver.execute_script("return document.activeElement.id") == "item-p1"
    keys(driver, "a", "b", "t")
    assert driver.find_element(By.ID, "progress").text == "3 / 8 judged"
    assert driver.execute_script("return document.activeElement.id") == "item-p4"
    assert "current" in driver.find_element(By.ID, "item-p4").get_attribute("class")
    assert driver.find_element(By.CSS_SELECTOR, "#item-p1 .verdict").text == "A better"
    keys(driver, "k", Keys.ARROW_DOWN)  # back to p3 and forward again
    assert driver.execute_script("return document.activeElement.id") == "item-p4"

    keys(driver, "?")
    assert driver.find_element(By.ID, "help").is_displayed()
    keys(driver, Keys.ESCAPE)
    assert not driver.find_element(By.ID, "help").is_displayed()

    keys(driver, "d")
    path = wait_for(lambda: [p for p in downloads.glob("verdicts-*.json") if p.stat().st_size])
    assert [p.name for p in path] == [f"verdicts-{review['sample_id']}-ada.json"]
    verdicts = json.loads(path[0].read_text())
    assert verdicts["review_version"] == 1 and verdicts["sample_id"] == review["sample_id"]
    assert verdicts["reviewer"] == "Ada"
    assert [(v["id"], v["choice"]) for v in verdicts["verdicts"]] == [("p1", "A"), ("p2", "B"), ("p3", "tie")]
    for v in verdicts["verdicts"]:
        assert v["candidate_was"] == sides[v["id"]]
        assert v["preferred"] == preferred_of(v["choice"], sides[v["id"]])
    assert verdicts["verdicts"][2]["preferred"] == "tie"

    # The same picture every run: the status toast has finished fading in.
    wait_for(lambda: driver.execute_script("return getComputedStyle(document.getElementById('toast')).opacity") == "1")
    shot = tmp_path / "review-page.png"
    assert driver.save_screenshot(str(shot))
    shutil.copyfile(shot, DOC_SCREENSHOT)

    # The verdicts stay in the page (local storage keyed by the sample id) across a reload.
    driver.refresh()
    # A reload on a busy 2-core machine can take seconds; say what the page showed if it never comes.
    seen: list[str] = []

    def restored() -> bool:
        seen.append(driver.find_element(By.ID, "progress").text)
        return seen[-1] == "3 / 8 judged"

    try:
        wait_for(restored, timeout=30.0)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; progress after the reload: {sorted(set(seen))}") from exc
    assert driver.find_element(By.ID, "reviewer").get_attribute("value") == "Ada"
    assert driver.execute_script("return document.activeElement.id") == "item-p4"
