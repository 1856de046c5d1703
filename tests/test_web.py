"""The web page of `jobgpt serve` in a real headless browser: Debian's chromium and
chromium-driver, driven by Selenium through an explicit driver path (nothing is downloaded).
Skipped, with the reason, where they are not installed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serve_harness import Server, runaway_checkpoint, serving, wait_idle

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
    reason=f"needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)",
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The model that writes one Korean token forever: a stream runs until it is stopped."""
    yield from serving(tmp_path_factory, "web", runaway_checkpoint)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1200,1000", "--lang=ko-KR"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def wait_for(browser, condition, what: str, limit_s: float = 30.0) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    status = browser.find_element("id", "status").text
    raise AssertionError(f"timed out waiting for {what}; the page says: {status!r}")


def test_stream_a_korean_answer_then_stop_it(server: Server, browser, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    def find(id_: str):
        return browser.find_element(By.ID, id_)

    browser.get(server.url + "/")
    wait_for(browser, lambda: "파라미터" in find("card").text, "the model card")
    assert "검증 손실" in find("card").text and "0.2500" in find("card").text
    assert not find("key-row").is_displayed()  # no API key on this server: no key field
    find("length").clear()
    find("length").send_keys("10000")
    find("prompt").clear()
    find("prompt").send_keys("서울 백엔드 개발자 채용 공고:")
    find("run-complete").click()
    wait_for(browser, lambda: len(find("output").text) > 20, "streamed text")
    assert "생성 중" in find("status").text and find("stop").is_enabled()
    streamed = find("output").text
    assert "\ufffd" not in streamed
    find("stop").click()
    wait_for(browser, lambda: "중지됨" in find("status").text, "the stopped status")
    assert wait_idle(server, limit_s=5)  # the server freed the slot: the abort reached it
    shown = len(find("output").text)
    time.sleep(0.3)
    assert len(find("output").text) == shown  # nothing arrives after the stop
    browser.save_screenshot(str(tmp_path / "page.png"))
    assert (tmp_path / "page.png").stat().st_size > 10_000


def test_ask_about_a_posting(server: Server, browser) -> None:
    from selenium.webdriver.common.by import By

    def find(id_: str):
        return browser.find_element(By.ID, id_)

    browser.get(server.url + "/")
    wait_for(browser, lambda: "파라미터" in find("card").text, "the model card")
    find("length").clear()
    find("length").send_keys("12")
    find("posting").send_keys("=== [한빛소프트] 백엔드 개발자 채용 ===\n회사명: 한빛소프트")
    find("run-qa").click()
    wait_for(browser, lambda: "완료" in find("status").text, "the finished answer")
    assert "토큰 12개" in find("status").text and "길이 제한" in find("status").text
    assert find("output").text
    assert not find("stop").is_enabled()
    # an error from the API shows its message: an empty posting is refused
    find("posting").clear()
    find("run-qa").click()
    wait_for(browser, lambda: "오류 400" in find("status").text, "the error message")
    assert httpx.get(server.url + "/health").json()["active"] == 0
