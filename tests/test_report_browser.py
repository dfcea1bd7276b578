"""The report in a real browser (headless Chromium through selenium and the system chromedriver):
opened from disk, its tables hold the CSVs' rows, a header click sorts, a filter hides rows, every
image loads, no script error; a screenshot is saved under the test's tmp dir (path printed).

Skipped, with the reason, when selenium or Chromium/chromedriver is not installed (Debian:
``apt-get install chromium chromium-driver``; .ci/run installs them)."""

import csv
import shutil
from pathlib import Path

import pytest
from test_report import built_site  # the session's tiny results folder and its site

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed "
                                "(pip install -e '.[test]')")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _which(names, extra=()):
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return next((p for p in extra if Path(p).is_file()), None)


@pytest.fixture(scope="module")
def browser():
    binary = _which(BROWSERS)
    driver_path = _which(["chromedriver"], ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"])
    if binary is None or driver_path is None:
        pytest.skip("no headless browser: Chromium and chromedriver are not installed "
                    "(Debian: apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    # the browser and the driver given by path: selenium-manager (which would go online) is not run
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1800", "--disable-extensions"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return built_site(tmp_path_factory)


def csv_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def body_rows(driver, table_id, visible_only=False):
    rows = driver.find_elements(By.CSS_SELECTOR, f"#{table_id} tbody tr")
    return [r for r in rows if r.is_displayed()] if visible_only else rows


def column(driver, table_id, name):
    """The data-v values of a column, in the rows' current order (hidden rows included)."""
    return driver.execute_script("""
        const t = document.getElementById(arguments[0]);
        const i = [...t.tHead.rows[0].cells].findIndex(c => c.textContent === arguments[1]);
        return [...t.tBodies[0].rows].map(r => r.cells[i].getAttribute('data-v'));
    """, table_id, name)


def images_loaded(driver):
    return driver.execute_script("""
        return [...document.images].map(i => [i.getAttribute('src'), i.complete && i.naturalWidth]);
    """)


def test_report_in_a_browser(browser, site, tmp_path):
    results, out = site
    browser.get((out / "index.html").as_uri())
    runs = csv_rows(results / "runs.csv")

    # the tables hold the CSVs' rows
    assert len(body_rows(browser, "sweep-top-runs")) == len(runs)
    assert len(body_rows(browser, "sweep-sub-runs")) == len(csv_rows(results / "sub" / "runs.csv"))
    assert len(body_rows(browser, "sweep-top-board-1")) == len(csv_rows(results / "leaderboard.csv"))
    assert sorted(column(browser, "sweep-top-runs", "run_id")) == sorted(r["run_id"] for r in runs)

    # a header click sorts the rows (numbers as numbers), a second click reverses them
    header = browser.find_element(
        By.XPATH, "//table[@id='sweep-top-runs']/thead/tr/th[text()='loss_ratio']")
    header.click()
    ratios = [float(v) for v in column(browser, "sweep-top-runs", "loss_ratio")]
    assert ratios == sorted(ratios) and header.get_attribute("aria-sort") == "ascending"
    header.click()
    assert [float(v) for v in column(browser, "sweep-top-runs", "loss_ratio")] == sorted(ratios)[::-1]

    # a filter hides rows: the cell select, then the text box
    box = "div.filters[data-for='sweep-top-runs']"
    Select(browser.find_element(By.CSS_SELECTOR, f"{box} select[aria-label='cell']")) \
        .select_by_value("rnn")
    shown = body_rows(browser, "sweep-top-runs", visible_only=True)
    assert len(shown) == sum(r["cell"] == "rnn" for r in runs) == 1
    count = browser.find_element(By.CSS_SELECTOR, f"{box} .count").text
    assert count == f"1 of {len(runs)} rows"
    Select(browser.find_element(By.CSS_SELECTOR, f"{box} select[aria-label='cell']")) \
        .select_by_value("")
    assert len(body_rows(browser, "sweep-top-runs", visible_only=True)) == len(runs)
    browser.find_element(By.CSS_SELECTOR, f"{box} input[type=search]").send_keys("no such run")
    assert body_rows(browser, "sweep-top-runs", visible_only=True) == []
    browser.find_element(By.CSS_SELECTOR, f"{box} input[type=search]").clear()
    browser.refresh()

    # every image of every page loads; no page logs a script error
    pages = [out / "index.html", *sorted((out / "sweeps").rglob("*.html"))]
    for page in pages:
        browser.get(page.as_uri())
        broken = [src for src, width in images_loaded(browser) if not width]
        assert not broken, f"{page.relative_to(out)}: images not loaded: {broken}"
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, f"{page.relative_to(out)}: {errors}"
    assert images_loaded(browser), "the last run page has figures"

    browser.get((out / "index.html").as_uri())
    shot = tmp_path / "report_index.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")
