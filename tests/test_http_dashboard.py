"""The live dashboard in real headless Chromium (Selenium + Debian's chromium-driver) against a
running emulation of the real firmware: the page loads, its values change over time, a device
with an injected fault goes ALERT -> QUARANTINE (shown in red), the person presses CLEAR in the
page, the coordinator sends CLEAR (a ledger `action` entry) and the device leaves QUARANTINE."""
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
        driver.save_screenshot(str(tmp_path / "quarantine.png"))

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
        driver.save_screenshot(str(tmp_path / "cleared.png"))
    finally:
        if driver is not None:
            driver.quit()
        emu.shutdown()
