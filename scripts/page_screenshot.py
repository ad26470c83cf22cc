"""The screenshot in the README: `emorec serve` (the released model) on a loopback port, the page in
headless Chromium (Debian's chromium + chromium-driver through Selenium), one uploaded clip, its
result.

    .venv/bin/python scripts/page_screenshot.py CLIP.wav [--out docs/serve_page.png]
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip")
    parser.add_argument("--model", default=None)
    parser.add_argument(
        "--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "serve_page.png")
    )
    args = parser.parse_args()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from emorec.serve.process import ServeProcess

    with ServeProcess(args.model) as server:
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium")
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=480,1000"):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
        try:
            driver.get(server.url + "/")
            driver.find_element(By.ID, "file").send_keys(str(Path(args.clip).resolve()))
            driver.find_element(By.ID, "send").click()
            WebDriverWait(driver, 60).until(lambda d: d.find_element(By.ID, "top-emotion").text)
            time.sleep(0.5)
            driver.save_screenshot(args.out)
            print(f"{args.out}: top emotion {driver.find_element(By.ID, 'top-emotion').text}")
        finally:
            driver.quit()


if __name__ == "__main__":
    main()
