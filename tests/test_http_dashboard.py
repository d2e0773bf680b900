"""The live dashboard in real headless Chromium (Selenium + Debian's chromium-driver) against a
running emulation of the real firmware: the page loads, its values change over time, its charts
have time axes, y scales, a tooltip and history from memory, a device with an injected fault goes
ALERT -> QUARANTINE (shown in red, and as a band on its charts), the person presses CLEAR in the
page, the coordinator sends CLEAR (a ledger `action` entry) and the device leaves QUARANTINE
(a CLEAR marker); the static snapshot page renders without a live stream. Screenshots (1400 px
wide) are written to build/test-artifacts/ (ARTIFACTS)."""
import os
import shutil
import sys
import time

import pytest

from becomingone.emulate.faults import parse_faults
from becomingone.emulate.runner import Emulation

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
HAVE_BROWSER = os.path.exists(CHROMIUM) and os.path.exists(DRIVER)
ALERT_LEVEL = 0.60                 # the devices' ALERT threat level (docs/DEVICE.md)
ARTIFACTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "build",
                         "test-artifacts")


def _shot(driver, name):
    os.makedirs(ARTIFACTS, exist_ok=True)
    path = os.path.join(ARTIFACTS, name)
    driver.save_screenshot(path)
    return path


def _charts(driver, dev):
    """What the page drew for a device: uPlot canvases, axis labels, series labels."""
    return driver.execute_script("""
      const el = document.getElementById('device-' + arguments[0]);
      return {canvases: el.querySelectorAll('.chart canvas').length,
              labels: [...el.querySelectorAll('.u-label')].map((x) => x.textContent),
              series: [...el.querySelectorAll('.u-legend .u-series th, .u-legend .u-series .u-label')]
                        .map((x) => x.textContent),
              ticks: el.querySelectorAll('.u-axis').length,
              axes: (el.dataset.axes || '').split('|')};""", dev)


def _runtime():
    exe = os.path.join(os.path.dirname(sys.executable), "micropython")
    return "micropython" if os.path.exists(exe) or shutil.which("micropython") else "cpython"


def _browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1400,1200", "--no-first-run", "--disable-extensions"):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)


def _until(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = pred()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))


def _band_pixels(driver, dev):
    return driver.execute_script("""
      const cv = document.querySelector('#device-' + arguments[0] + ' .chart.control canvas');
      const d = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data;
      let n = 0;
      for (let i = 0; i < d.length; i += 4)
        // the band: red at about 20 % opacity (the red lines are opaque)
        if (d[i + 3] > 30 && d[i + 3] < 90 && d[i] > d[i + 1] + 60 && d[i] > d[i + 2] + 60) n++;
      return n;""", dev)


@pytest.mark.skipif(not HAVE_BROWSER, reason="chromium and chromium-driver (Debian packages) are "
                    "not installed; CI installs them (.ci/run)")
def test_dashboard_live_values_quarantine_and_clear(tmp_path):
    from selenium.webdriver.common.by import By
    emu = Emulation(devices=2, duration=None, runtime=_runtime(), faults=parse_faults("fault=1@3"),
                    data_dir=str(tmp_path / "emu"), http="127.0.0.1:0")
    emu.start()
    driver = None
    try:
        c = emu.coordinator
        url = emu.cell.http.url
        driver = _browser()
        driver.get(url)
        assert driver.title == "BecomingONE dashboard"
        card = _until(lambda: driver.find_elements(By.ID, "device-1"), 30, "device 1's card")[0]
        _until(lambda: driver.find_elements(By.ID, "device-2"), 30, "device 2's card")

        def beat():
            t = card.find_element(By.CSS_SELECTOR, ".v-beat").text
            return int(t) if t.isdigit() else None
        first = _until(beat, 20, "device 1's first beat on the page")
        _until(lambda: (beat() or 0) > first, 20, "the beat shown to change")
        _until(lambda: driver.find_element(By.ID, "conn").text == "live", 10, "the live indicator")
        seq = int(driver.find_element(By.TAG_NAME, "body").get_attribute("data-seq"))
        _until(lambda: int(driver.find_element(By.TAG_NAME, "body").get_attribute("data-seq")) > seq,
               10, "a newer snapshot")
        assert int(driver.find_element(By.ID, "ledger-size").text) >= 1
        # charts: uPlot with a UTC time axis, y scales with units, every Master window
        ch = _until(lambda: (c := _charts(driver, 1))["canvases"] >= 2 and c, 20, "device 1's charts")
        assert ch["ticks"] >= 4 and "time (UTC)" in ch["axes"]
        assert "coherence C (0..1)" in ch["axes"] and "error, duty, threat" in ch["axes"]
        _until(lambda: any("Master 600s" in x for x in _charts(driver, 1)["series"]), 30,
               "the Master windows in the legend")
        # readable at 1,400 px: nothing wider than the window
        assert driver.execute_script("return document.documentElement.scrollWidth") <= 1400
        # the tooltip: hovering a chart shows the time and values
        from selenium.webdriver.common.action_chains import ActionChains
        over = card.find_element(By.CSS_SELECTOR, ".chart.control .u-over")
        ActionChains(driver).move_to_element_with_offset(over, 50, 20).perform()
        _until(lambda: "UTC" in driver.find_element(By.ID, "tooltip").text, 10, "the tooltip")
        # the time-range picker reloads the history from memory
        from selenium.webdriver.support.ui import Select
        Select(driver.find_element(By.ID, "range")).select_by_value("120")

        # the injected fault: device 1 goes into QUARANTINE, which stands out in red
        _until(lambda: card.get_attribute("data-decision") == "QUARANTINE", 60, "QUARANTINE")
        assert "d-QUARANTINE" in card.get_attribute("class").split()
        badge = card.find_element(By.CSS_SELECTOR, ".decision")
        assert badge.text == "QUARANTINE"
        assert badge.value_of_css_property("background-color") in ("rgba(220, 38, 38, 1)",
                                                                   "rgb(220, 38, 38)")
        # the ledger's timeline on the page: ALERT before QUARANTINE for device 1
        def timeline():               # read in one script: the rows are replaced live
            return [tuple(x) for x in driver.execute_script(
                "return [...document.querySelectorAll('#decisions tr')]"
                ".map((r) => [r.cells[1].textContent, r.className]);")]
        # (the ledger is in commit order: the QUARANTINE record may be mined and committed first)
        _until(lambda: {("1", "QUARANTINE"), ("1", "ALERT")} <= set(timeline()), 30,
               "ALERT and QUARANTINE in the page's timeline")
        shot = _shot(driver, "dashboard-quarantine.png")
        # the QUARANTINE band on device 1's charts: red-tinted pixels in its control chart
        assert _band_pixels(driver, 1) > 50, "no QUARANTINE band drawn"

        # like a person: CLEAR once the fault has passed (threat back under the ALERT level)
        def calm():
            t = card.find_element(By.CSS_SELECTOR, ".v-threat").text
            return t not in ("", "-") and float(t) < ALERT_LEVEL
        _until(calm, 40, "device 1's threat to fall back while latched")
        size_before = c.ledger.size
        driver.find_element(By.ID, "clear-1").click()
        _until(lambda: "CLEAR sent" in card.find_element(By.CSS_SELECTOR, ".note").text, 10,
               "the page to confirm CLEAR")
        # the coordinator sent it and wrote the action to the ledger
        c.ledger.flush(5)
        clears = [e.data for e in c.ledger.entries(size_before, c.ledger.size)
                  if e.data["kind"] == "action" and e.data.get("action") == "clear"]
        assert clears and clears[-1]["device"] == 1 and clears[-1]["sent"] is True
        # the device leaves QUARANTINE: in its own telemetry and on the page
        def released():
            s = c.call(lambda: c.sessions.get(1).last_telemetry)
            return not int(s["decision_state"]) & 0x80
        _until(released, 30, "device 1's quarantine latch to clear")
        _until(lambda: card.get_attribute("data-decision") != "QUARANTINE", 15,
               "the page to show device 1 out of QUARANTINE")
        assert "d-QUARANTINE" not in card.get_attribute("class").split()
        _until(lambda: ("1", "clear") in timeline(), 15, "the CLEAR in the page's timeline")
        _shot(driver, "dashboard-cleared.png")
        # the static snapshot page: no event stream, so it finishes loading; ready flag set
        driver.get(url + "snapshot")
        _until(lambda: driver.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1",
               20, "the static snapshot page")
        assert driver.find_element(By.ID, "conn").text == "static snapshot"
        assert _charts(driver, 1)["canvases"] >= 2
        _shot(driver, "dashboard-snapshot.png")
        assert os.path.getsize(shot) > 20000
    finally:
        if driver is not None:
            driver.quit()
        emu.shutdown()
