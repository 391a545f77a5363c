"""The review page in a real browser: headless Chromium driven by Selenium.

Needs Debian's ``chromium`` and ``chromium-driver`` packages (``.ci/run`` installs them
with apt-get where it can) and the ``selenium`` package; the tests skip, saying which is
missing, without them. Set ``SOUNDSCAPE_REVIEW_SCREENSHOT=path.png`` to keep the
screenshot (docs/review.png is made so).
"""

import os
import shutil
import time
from pathlib import Path

import pytest

CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium") or "",
                             shutil.which("chromium-browser") or "") if p and os.path.exists(p)),
                None)
DRIVER = next((p for p in ("/usr/bin/chromedriver", shutil.which("chromedriver") or "")
               if p and os.path.exists(p)), None)

pytest.importorskip("fastapi", reason="the review page needs fastapi (pip install -e .[review])")
pytest.importorskip("uvicorn", reason="the review page needs uvicorn (pip install -e .[review])")
webdriver = pytest.importorskip(
    "selenium.webdriver", reason="selenium is needed for the browser tests (pip install -e .[dev])")
if CHROMIUM is None or DRIVER is None:
    _missing = "chromium" if CHROMIUM is None else "chromedriver"
    pytest.skip(f"headless Chromium not available: {_missing} not found (Debian: apt-get install "
                "chromium chromium-driver)", allow_module_level=True)

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from _review_data import make_inputs  # noqa: E402
from soundscape.review import read_review, serve  # noqa: E402


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return make_inputs(tmp_path_factory.mktemp("review-browser"))


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=900,800", "--autoplay-policy=no-user-gesture-required",
                "--mute-audio"):
        options.add_argument(arg)
    try:
        driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    except Exception as exc:  # e.g. a chromedriver of another Chromium version
        pytest.skip(f"headless Chromium did not start ({type(exc).__name__}: "
                    f"{str(exc).splitlines()[0] if str(exc) else ''})")
    yield driver
    driver.quit()


@pytest.fixture
def page(inputs, tmp_path, browser):
    server = serve(inputs["events_path"], inputs["audio"], review_table=tmp_path / "review.csv",
                   port=0, block=False, quiet=True)
    browser.get(server.url)
    yield server
    server.stop()


def _wait(browser, script: str, timeout: float = 20.0):
    return WebDriverWait(browser, timeout).until(lambda d: d.execute_script(script))


def _progress(browser) -> str:
    return browser.find_element(By.ID, "progress").text


def test_listen_answer_five_clips_with_the_keyboard_and_reload(browser, page, inputs):
    total = len(inputs["events"])
    _wait(browser, "return document.getElementById('progress').textContent.includes('reviewed')")
    assert _progress(browser) == f"0 / {total} reviewed"
    # the clip's audio loaded: its duration is the clip's
    duration = _wait(browser, "const a = document.getElementById('player');"
                              "return a.readyState >= 1 && a.duration > 0 && a.duration;")
    first = page.table.read().iloc[0]
    assert duration == pytest.approx(first["end_time"] - first["start_time"], abs=0.01)
    # ... and plays
    played = browser.execute_async_script(
        "const done = arguments[arguments.length - 1]; const a = document.getElementById('player');"
        "a.play().then(() => setTimeout(() => done(a.currentTime), 300))"
        ".catch(e => done(String(e)));")
    assert isinstance(played, (int, float)) and played > 0, played

    body = browser.find_element(By.TAG_NAME, "body")
    keys = ["y", "n", "u", "o", "y"]
    for k, key in enumerate(keys, start=1):
        if key == "o":  # other class: o, type the class, Enter
            body.send_keys("o")
            field = browser.switch_to.active_element
            assert field.get_attribute("id") == "other-class"
            field.send_keys("bird\n")
        else:
            body.send_keys(key)
        WebDriverWait(browser, 10).until(lambda d: _progress(d) == f"{k} / {total} reviewed")
    # a note on the sixth clip, saved with its verdict
    body.send_keys("t")
    browser.switch_to.active_element.send_keys("two calls\n")
    body.send_keys("n")
    WebDriverWait(browser, 10).until(lambda d: _progress(d) == f"6 / {total} reviewed")

    browser.refresh()  # reopening continues at the first clip without a verdict
    WebDriverWait(browser, 10).until(lambda d: _progress(d) == f"6 / {total} reviewed")
    assert browser.find_element(By.ID, "position").text == f"clip 7 of {total}"
    browser.find_element(By.TAG_NAME, "body").send_keys("k")  # back to the sixth
    WebDriverWait(browser, 10).until(
        lambda d: d.find_element(By.ID, "verdict").text == "no")
    assert browser.find_element(By.ID, "note").get_attribute("value") == "two calls"

    table = read_review(page.table.path)
    assert table["verdict"].tolist()[:7] == ["yes", "no", "unsure", "other", "yes", "no", ""]
    assert table["other_class"].tolist()[3] == "bird"
    assert table["note"].tolist()[5] == "two calls"
    assert (table["verdict"].iloc[6:] == "").all()


def test_screenshot_shows_the_spectrogram(browser, page, tmp_path):
    _wait(browser, "return document.getElementById('class').textContent !== ''")
    body = browser.find_element(By.TAG_NAME, "body")
    for _ in range(30):  # next (j) to the first woodcock clip: a new picture each time
        if browser.find_element(By.ID, "class").text == "woodcock":
            break
        body.send_keys("j")
    assert browser.find_element(By.ID, "class").text == "woodcock"
    _wait(browser, "const i = document.getElementById('spectrogram');"
                   "return i.complete && i.naturalWidth > 0 && i.src.includes('/image?');")
    size = browser.execute_script("const i = document.getElementById('spectrogram');"
                                  "return [i.naturalWidth, i.naturalHeight, i.width];")
    assert size[0] > 300 and size[1] > 100 and size[2] > 300
    _wait(browser, "return document.getElementById('player').readyState >= 1")
    time.sleep(0.2)
    target = Path(os.environ.get("SOUNDSCAPE_REVIEW_SCREENSHOT") or tmp_path / "review.png")
    assert browser.save_screenshot(str(target))
    from PIL import Image

    shot = Image.open(target)
    assert shot.size[0] >= 800
    # the spectrogram's dark background fills a good part of the page
    import numpy as np

    dark = (np.asarray(shot.convert("L")) < 40).mean()
    assert dark > 0.1, dark
