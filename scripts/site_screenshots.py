"""Screenshots of pages of the documentation site, as a reader's browser shows them: the site is
built strictly (``mkdocs build --strict``) into a temporary folder, served on a loopback port and
opened in headless Chromium (Debian's chromium + chromium-driver through Selenium).

    .venv/bin/python scripts/site_screenshots.py \
        [--pages index,ARCHITECTURE] [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import functools
import http.server
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pages", default="index,ARCHITECTURE", help="page names without .md, comma-separated"
    )
    parser.add_argument("--out", default=str(REPO / "docs" / "screenshots"))
    parser.add_argument("--width", type=int, default=1440)
    parser.add_argument("--height", type=int, default=900)
    args = parser.parse_args()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not shutil.which("chromium") or not shutil.which("chromedriver"):
        sys.exit(
            "chromium and chromedriver are needed"
            " (Debian: apt-get install chromium chromium-driver)"
        )
    with tempfile.TemporaryDirectory() as site:
        subprocess.run(
            [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", site],
            cwd=REPO,
            check=True,
        )
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=site)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium")
        for flag in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            f"--window-size={args.width},{args.height}",
        ):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
        try:
            for name in args.pages.split(","):
                path = "" if name == "index" else f"{name}/"
                driver.get(f"http://127.0.0.1:{server.server_port}/{path}")
                out = Path(args.out) / f"site_{name.lower()}.png"
                driver.save_screenshot(str(out))
                print(out)
        finally:
            driver.quit()
            server.shutdown()


if __name__ == "__main__":
    main()
