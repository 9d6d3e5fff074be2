"""End to end in a real headless browser: open the page, upload a photo, download the result.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them) and selenium;
skipped with a clear message only where they are absent. Set ``SEGUE_SCREENSHOT=path.png``
to keep the screenshot (the README's picture was made that way).
"""

import base64
import io
import os
import shutil
import socket
import threading
import time

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from segue.serve import create_app  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="headless browser test needs Debian's chromium and chromium-driver")

FETCH_AS_BASE64 = """
const done = arguments[arguments.length - 1];
fetch(arguments[0]).then(r => r.arrayBuffer()).then(buf => {
  const u = new Uint8Array(buf); let s = '';
  for (let i = 0; i < u.length; i++) s += String.fromCharCode(u[i]);
  done(btoa(s));
});
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server_url():
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def browser(tmp_path):
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,900"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=opts)
    yield driver
    driver.quit()


def test_upload_protect_download(server_url, browser, tmp_path):
    """A real ORL face (the embedded data set), 2x: what the README's screenshot shows."""
    from segue.data import orl_root

    face = np.asarray(Image.open(orl_root() / "s1" / "1.pgm").convert("RGB").resize((184, 224), Image.BICUBIC))
    src = tmp_path / "face.png"
    Image.fromarray(face).save(src)

    browser.get(server_url)
    browser.find_element(By.ID, "files").send_keys(str(src))
    WebDriverWait(browser, 90).until(lambda d: d.find_elements(By.CSS_SELECTOR, "a.download"))
    link = browser.find_element(By.CSS_SELECTOR, "a.download")
    assert link.get_attribute("download") == "face.protected.png"
    assert "PSNR" in browser.find_element(By.CSS_SELECTOR, ".state").text
    assert "HaarPSI 0." in browser.find_element(By.CSS_SELECTOR, ".state").text
    data = base64.b64decode(browser.execute_async_script(FETCH_AS_BASE64, link.get_attribute("href")))
    out = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)
    assert out.shape == face.shape
    assert 0 < np.abs(out - face.astype(np.int16)).max() <= 9
    shot = tmp_path / "page.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("SEGUE_SCREENSHOT"):
        shutil.copy(shot, os.environ["SEGUE_SCREENSHOT"])
