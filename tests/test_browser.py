"""The web page of `emorec serve` in a real headless Chromium (Debian's chromium + chromium-driver,
driven by Selenium; nothing is downloaded): a file upload and a microphone recording (Chromium's
fake media stream playing a clip) both end with the top emotion rendered."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import soundfile as sf
from emorec.serve.process import ServeProcess
from test_api import export_random_model, voice

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="Chromium and chromium-driver are not installed "
    "(Debian: apt-get install chromium chromium-driver; .ci/run does it)",
)


def chromium(fake_audio: Path | None = None):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=420,900",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        "--autoplay-policy=no-user-gesture-required",
    ):
        options.add_argument(flag)
    if fake_audio:
        options.add_argument(f"--use-file-for-fake-audio-capture={fake_audio}")
    return webdriver.Chrome(service=Service(DRIVER), options=options)


def wait_for_result(driver, previous: str = "", timeout: float = 60) -> str:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(
        lambda d: (
            d.find_element(By.ID, "top-emotion").text not in ("", previous)
            or d.find_element(By.ID, "error").is_displayed()
        )
    )
    error = driver.find_element(By.ID, "error")
    assert not error.is_displayed(), error.text
    return driver.find_element(By.ID, "top-emotion").text


def clip_for_browser(tmp_path: Path, shared) -> Path:
    """A real RAVDESS clip when the data is here, else a generated voice; 16-bit WAV for the fake
    microphone."""
    if shared is not None:
        from emorec.media.audio import load_audio

        wave = load_audio(
            sorted((shared / "ravdess-speech-16k" / "Actor_03").glob("*.flac"))[7], 16000
        )
    else:
        wave = voice(3.0, 190)
    sf.write(tmp_path / "clip.wav", wave, 16000, subtype="PCM_16")
    return tmp_path / "clip.wav"


def test_the_page_shows_the_top_emotion_of_an_upload_and_of_a_microphone_recording(tmp_path):
    from conftest import shared_data_dir
    from selenium.webdriver.common.by import By

    import emorec

    model = export_random_model(tmp_path / "model")
    clip = clip_for_browser(tmp_path, shared_data_dir())
    expected = emorec.load(model).predict(clip)
    with ServeProcess(model) as server:
        driver = chromium(fake_audio=clip)
        try:
            driver.get(server.url + "/")
            assert driver.find_element(By.TAG_NAME, "h1").text == "emorec"
            driver.find_element(By.ID, "file").send_keys(str(clip))
            driver.find_element(By.ID, "send").click()
            assert wait_for_result(driver) == expected.label
            bars = driver.find_elements(By.CSS_SELECTOR, "#bars li")
            assert [b.get_attribute("data-emotion") for b in bars][0] == expected.label and len(
                bars
            ) == 4
            driver.save_screenshot(str(tmp_path / "page.png"))
            # the microphone: Chromium's fake capture device plays the clip
            driver.execute_script("document.getElementById('top-emotion').textContent = '';")
            driver.find_element(By.ID, "record").click()
            time.sleep(2.5)
            driver.find_element(By.ID, "record").click()
            assert wait_for_result(driver) in expected.probabilities
            assert "s of audio" in driver.find_element(By.ID, "duration").text
        finally:
            driver.quit()
    assert (tmp_path / "page.png").stat().st_size > 10_000
    keep_screenshot(tmp_path / "page.png")


def keep_screenshot(path: Path) -> None:
    """``$EMOREC_SCREENSHOT_DIR/NAME`` as well, when set: how docs/screenshots/ is made."""
    import os

    if os.environ.get("EMOREC_SCREENSHOT_DIR"):
        target = Path(os.environ["EMOREC_SCREENSHOT_DIR"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target / path.name)


def sent_audio(driver):
    """The PCM16 blocks the page streamed, as one int16 array."""
    import base64

    import numpy as np

    encoded = driver.execute_script("""
        const blocks = window.emorecLive.sent;
        const total = blocks.reduce((n, b) => n + b.length, 0);
        const all = new Int16Array(total);
        let at = 0;
        for (const b of blocks) { all.set(b, at); at += b.length; }
        const bytes = new Uint8Array(all.buffer);
        let text = "";
        for (let i = 0; i < bytes.length; i += 8192)
          text += String.fromCharCode(...bytes.subarray(i, i + 8192));
        return btoa(text);""")
    return np.frombuffer(base64.b64decode(encoded), "<i2")


def test_live_view_updates_while_the_microphone_plays_and_ends_with_the_timeline_of_what_it_sent(
    tmp_path,
):
    from conftest import shared_data_dir
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    import emorec

    # Silero VAD gives a generated harmonic tone at most 0.17, so nothing would start
    if shared_data_dir() is None:
        pytest.skip(
            "the live view needs a real voice (../shared/data or $EMOREC_DATA_DIR is absent)"
        )
    model = export_random_model(tmp_path / "model")
    clip = clip_for_browser(tmp_path, shared_data_dir())
    with ServeProcess(model) as server:
        # Chromium's fake microphone plays the clip over and over
        driver = chromium(fake_audio=clip)
        try:
            driver.get(server.url + "/")
            driver.find_element(By.ID, "live").click()
            WebDriverWait(driver, 60).until(
                lambda d: (
                    d.find_element(By.ID, "live-now").text != ""
                    or d.find_element(By.ID, "error").is_displayed()
                )
            )
            assert not driver.find_element(By.ID, "error").is_displayed(), driver.find_element(
                By.ID, "error"
            ).text
            # an interim update
            assert driver.find_element(By.ID, "live-now").text in emorec.load(model).classes
            time.sleep(4)
            driver.find_element(By.ID, "live").click()
            WebDriverWait(driver, 60).until(
                lambda d: d.execute_script("return window.emorecLive.timeline || null")
            )
            shown = driver.execute_script("return window.emorecLive.timeline")
            assert driver.find_elements(By.CSS_SELECTOR, "#live-band span")  # the band was drawn
            assert (
                len(driver.find_elements(By.CSS_SELECTOR, "#live-segments li"))
                == len(shown["segments"])
                > 0
            )
            driver.save_screenshot(str(tmp_path / "live.png"))
            pcm = sent_audio(driver)
        finally:
            driver.quit()
    sf.write(tmp_path / "sent.wav", pcm, 16000, subtype="PCM_16")
    offline = emorec.load(model).timeline(tmp_path / "sent.wav")
    assert shown["duration"] == round(offline.duration, 3)
    assert [s["label"] for s in shown["segments"]] == [s.label for s in offline.segments]
    assert [[round(a, 3), round(b, 3)] for a, b in offline.speech] == shown["speech"]
    assert (tmp_path / "live.png").stat().st_size > 10_000
    keep_screenshot(tmp_path / "live.png")


def test_a_file_gets_a_player_a_band_of_segments_that_play_and_downloads(tmp_path):
    from conftest import shared_data_dir
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    import emorec

    model = export_random_model(tmp_path / "model")
    shared = shared_data_dir()
    if shared is None:
        pytest.skip("needs the shared RAVDESS clips")
    from test_timeline import recording_of_clips

    files = sorted((shared / "ravdess-speech-16k" / "Actor_09").glob("*.flac"))[3:6]
    recording_of_clips(files, tmp_path / "talk.flac", seed=6)
    data, rate = sf.read(tmp_path / "talk.flac")
    sf.write(tmp_path / "talk.wav", data, rate, subtype="PCM_16")
    offline = emorec.load(model).timeline(tmp_path / "talk.wav")
    with ServeProcess(model) as server:
        driver = chromium()
        try:
            driver.get(server.url + "/")
            driver.find_element(By.ID, "file").send_keys(str(tmp_path / "talk.wav"))
            driver.find_element(By.ID, "send").click()
            wait_for_result(driver)
            # never the clip model
            assert "mean of speech windows" in driver.find_element(By.ID, "whole-how").text
            band = driver.find_elements(By.CSS_SELECTOR, "#file-band button.segment")
            assert len(band) == len(offline.segments) == len(files)
            assert all(offline.segments[0].label in band[0].get_attribute("title") for _ in [0])
            assert len(driver.find_elements(By.CSS_SELECTOR, "#legend li")) == 4
            band[1].click()  # plays the second segment from its start
            start, end = offline.segments[1].start, offline.segments[1].end
            WebDriverWait(driver, 20).until(
                lambda d: d.execute_script(
                    "const p = document.getElementById('player'); return !p.paused && "
                    "p.currentTime > arguments[0];",
                    start + 0.2,
                )
            )
            at = driver.execute_script("return document.getElementById('player').currentTime")
            assert start <= at <= end + 0.5
            texts = {
                name: driver.execute_async_script(
                    "const done = arguments[arguments.length - 1];"
                    "fetch(document.getElementById(arguments[0]).href).then((r) "
                    "=> r.text()).then(done);",
                    f"download-{name}",
                )
                for name in ("csv", "json", "vtt")
            }
            assert texts["csv"].splitlines()[0] == "start,end,label," + ",".join(offline.classes)
            assert len(texts["csv"].strip().splitlines()) == len(offline.segments) + 1
            assert texts["vtt"].startswith("WEBVTT") and texts["vtt"].count(" --> ") == len(
                offline.segments
            )
            import json

            assert [s["label"] for s in json.loads(texts["json"])["segments"]] == [
                s.label for s in offline.segments
            ]
            driver.find_element(By.CSS_SELECTOR, "#about summary").click()
            assert "Labels:" in driver.find_element(By.ID, "about-classes").text
            driver.save_screenshot(str(tmp_path / "file.png"))
        finally:
            driver.quit()
    keep_screenshot(tmp_path / "file.png")
