"""The viewer page (GET /) in a real headless browser, Debian's chromium driven by Selenium,
against the service on a loopback port with the planted-mask predictor (conftest). The truth is
the rectangles drawn into the image: the page must list their classes and areas, and the
screenshot's pixels must show each rectangle tinted in its class's colour."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from steelseg.service.app import ServiceSettings, create_app

from .conftest import GRAY, make_predictor, planted, png_bytes, serve

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed: pip install selenium")
uvicorn = pytest.importorskip("uvicorn", reason="uvicorn is not installed: pip install uvicorn")
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL = "apt-get install chromium chromium-driver"
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
]
SCRATCH_AT, PIT_AT, BACKGROUND_AT = (34, 9), (105, 43), (70, 30)  # (x, y) inside planted()'s rectangles, and outside
SCRATCH_RGB, PIT_RGB = (230, 25, 75), (0, 130, 200)  # classes 1 and 3 in overlay.COLORS
OPACITY = 0.35  # the page's default mask opacity


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    for path, what in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromedriver")):
        if not os.access(path, os.X_OK):
            if os.environ.get("STEELSEG_REQUIRE_BROWSER"):  # CI (.ci/run) installed it: a skip would hide a failure
                pytest.fail(f"{what} not found at {path} although STEELSEG_REQUIRE_BROWSER is set: {INSTALL}")
            # tests/conftest.py repeats this at the end of the run
            pytest.skip(f"{what} not found at {path}; install it with `{INSTALL}`")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)  # with both paths given, Selenium Manager never downloads
    for flag in FLAGS + [f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the page's console, for failure messages
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def service():
    with serve(create_app(make_predictor())) as url:
        yield url


def wait_for(browser, selector: str, timeout: float = 10) -> None:
    """Wait until ``selector`` matches; else fail with the page's state, error box and console."""
    try:
        WebDriverWait(browser, timeout).until(lambda d: d.find_elements(By.CSS_SELECTOR, selector))
    except TimeoutException:
        state = browser.execute_script(
            "return [document.body.dataset.state, document.body.dataset.model,"
            " document.getElementById('error').textContent]"
        )
        console = [entry["message"] for entry in browser.get_log("browser")]
        pytest.fail(f"the page never matched {selector!r}: state, model, error = {state}; console: {console}")


def upload(browser, url: str, path: Path, state: str = "done") -> None:
    browser.get(url)
    wait_for(browser, 'body[data-model="ready"]')
    browser.find_element(By.ID, "file").send_keys(str(path))
    wait_for(browser, f'body[data-state="{state}"]')


def defect_rows(browser) -> dict[str, dict[str, str]]:
    """The defects table: class name -> {area, score, components}."""
    rows = {}
    for row in browser.find_elements(By.CSS_SELECTOR, "#defects tbody tr[data-class-id]"):
        name = row.find_element(By.CSS_SELECTOR, ".name").text.split("·")[-1].strip()
        rows[name] = {key: row.find_element(By.CSS_SELECTOR, f".{key}").text for key in ("area", "score", "components")}
    return rows


def screen_pixels(
    browser, image_shape: tuple[int, int], points: dict[str, tuple[int, int]], save: Path | None = None
) -> dict:
    """The screenshot's RGB at the centre of each image pixel (x, y) of ``points``, found from the
    image canvas's place on the page and the device pixel ratio."""
    canvas = browser.find_element(By.ID, "image-canvas")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", canvas)
    left, top, width, height, ratio = browser.execute_script(
        "const r = arguments[0].getBoundingClientRect();"
        " return [r.left, r.top, r.width, r.height, window.devicePixelRatio]",
        canvas,
    )
    png = browser.get_screenshot_as_png()
    if save is not None:
        save.write_bytes(png)
    shot = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    image_height, image_width = image_shape
    found = {}
    for name, (x, y) in points.items():
        column = int((left + (x + 0.5) * width / image_width) * ratio)
        row = int((top + (y + 0.5) * height / image_height) * ratio)
        found[name] = shot[row, column]
    return found


def blend(gray: int, color: tuple[int, int, int]) -> np.ndarray:
    return (1 - OPACITY) * gray + OPACITY * np.array(color)


def test_page_lists_the_planted_defects_and_tints_them_in_their_class_colours(browser, service, tmp_path):
    image, _ = planted()
    path = tmp_path / "strip.png"
    path.write_bytes(png_bytes(image))
    upload(browser, service, path)

    assert defect_rows(browser) == {
        "scratch": {"area": "300", "score": "1.000", "components": "1"},
        "pit": {"area": "96", "score": "1.000", "components": "1"},
    }
    assert "patch" not in browser.find_element(By.ID, "defects").text
    legend = browser.find_element(By.ID, "legend").text
    assert all(name in legend for name in ("scratch", "patch", "pit"))
    toggles = browser.find_elements(By.CSS_SELECTOR, "#legend input[data-class-id]")
    assert [t.get_attribute("data-class-id") for t in toggles] == ["1", "2", "3"] and all(
        t.is_selected() for t in toggles
    )
    pixel_thresholds = [
        td.text for td in browser.find_elements(By.CSS_SELECTOR, "#thresholds tbody tr td:nth-child(3)")
    ]
    assert pixel_thresholds == ["0.5", "0.5", "0.5"]  # PostProcess.uniform(3, 0.5, 0)
    assert "fake threshold network" in browser.find_element(By.ID, "backend").text
    assert "strip.png" in browser.find_element(By.ID, "summary").text

    screenshot = tmp_path / "viewer.png"
    points = {"scratch": SCRATCH_AT, "pit": PIT_AT, "background": BACKGROUND_AT}
    seen = screen_pixels(browser, image.shape, points, save=screenshot)
    if os.environ.get("STEELSEG_SCREENSHOT_DIR"):
        target = Path(os.environ["STEELSEG_SCREENSHOT_DIR"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, target / "viewer.png")
    r, g, b = seen["scratch"]
    assert r > g + 40, f"scratch not red-tinted: {seen['scratch']}"
    np.testing.assert_allclose(seen["scratch"], blend(250, SCRATCH_RGB), atol=6)
    r, g, b = seen["pit"]
    assert b > r + 40 and b > g, f"pit not blue-tinted: {seen['pit']}"
    np.testing.assert_allclose(seen["pit"], blend(10, PIT_RGB), atol=6)
    r, g, b = seen["background"]
    assert abs(r - g) < 10 and abs(g - b) < 10 and abs(g - GRAY) < 6, f"background not plain gray: {seen['background']}"

    browser.find_element(By.CSS_SELECTOR, '#legend input[data-class-id="1"]').click()
    seen = screen_pixels(browser, image.shape, points)
    r, g, b = seen["scratch"]
    assert abs(r - g) < 10 and abs(g - b) < 10 and g > 240, (
        f"scratch still tinted after its toggle was cleared: {seen['scratch']}"
    )
    assert seen["pit"][2] > seen["pit"][0] + 40, "the pit's mask went with the scratch's"


def test_an_error_from_the_service_is_shown_in_the_error_box(browser, service, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not an image\n")
    upload(browser, service, path, state="error")

    error = browser.find_element(By.ID, "error")
    assert error.is_displayed()
    assert "415" in error.text and "notes.txt: content type text/plain is not an image" in error.text
    assert browser.find_elements(By.CSS_SELECTOR, "#defects tbody tr[data-class-id]") == []


def test_a_service_that_needs_a_key_asks_for_it_and_then_answers(browser, tmp_path):
    image, _ = planted()
    path = tmp_path / "strip.png"
    path.write_bytes(png_bytes(image))
    with serve(create_app(make_predictor(), ServiceSettings(api_key="s3cret"))) as url:
        browser.get(url)
        wait_for(browser, 'body[data-model="error"]')
        error = browser.find_element(By.ID, "error")
        assert error.is_displayed() and "401" in error.text and "API key" in error.text
        assert "required" in browser.find_element(By.ID, "key-box").text

        browser.find_element(By.ID, "api-key").send_keys("s3cret")
        browser.find_element(By.ID, "key-apply").click()
        wait_for(browser, 'body[data-model="ready"]')
        assert not error.is_displayed()
        browser.find_element(By.ID, "file").send_keys(str(path))
        wait_for(browser, 'body[data-state="done"]')
        assert set(defect_rows(browser)) == {"scratch", "pit"}
