"""The docs' screenshots of ``edgecxr serve`` (worklist, study page, the worklist on a phone), taken in headless
Chromium on made-up films.

    python -m benchmarks.serve_screenshots --out docs/screenshots

No real film or patient is shown: :func:`synthetic_film` draws a chest-like picture (two dark lung
fields, a bright mediastinum, rib arcs, noise) from a seed, and every other film is wrapped as
DICOM for a made-up patient (``DEMO-...``). Starts ``python -m edgecxr serve`` with the bundled
default model on a new store, uploads the films through the API (one a file that is not a valid
PNG, to show a failed row), logs in, records an outcome, and saves ``worklist.png`` and
``study.png`` (1200 px wide) and ``phone-worklist.png`` (390 px). Needs the clinic and test
extras and Debian's chromium and chromium-driver.
"""
from __future__ import annotations

import argparse
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks.serve import PASSWORD, free_port, upload_ms


def synthetic_film(seed: int, side: int = 1024) -> np.ndarray:
    """A made-up frontal chest film, uint8 (side, side): not an X-ray of anyone."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side] / side
    film = 0.55 + 0.25 * y
    for cx in (0.32 + rng.uniform(-0.02, 0.02), 0.68 + rng.uniform(-0.02, 0.02)):
        lung = ((x - cx) / 0.16) ** 2 + ((y - 0.48) / 0.30) ** 2 < 1
        film = np.where(lung, film - 0.35 + 0.1 * y, film)
    film += 0.18 * np.exp(-(((x - 0.5) / 0.07) ** 2))  # mediastinum
    for k in range(9):  # rib arcs
        arc = np.abs(y - (0.22 + 0.07 * k) - 0.12 * (x - 0.5) ** 2) < 0.008
        film += 0.08 * arc
    if seed % 3 == 1:  # a patchy opacity in one lung
        film += 0.2 * np.exp(-(((x - 0.66) / 0.06) ** 2 + ((y - 0.62) / 0.08) ** 2))
    film += rng.normal(0, 0.02, film.shape)
    film = cv2.GaussianBlur(film.astype(np.float32), (0, 0), side / 400)
    return np.clip(film * 255, 0, 255).astype(np.uint8)


def as_dicom(film: np.ndarray, number: int) -> bytes:
    """``film`` as a DX instance of made-up patient DEMO-<number> (uncompressed, one frame)."""
    import io

    from pydicom import Dataset
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.1.1")
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.AccessionNumber = f"Demo^Patient{number}", f"DEMO-{number:04d}", f"ACC-DEMO-{number:04d}"
    ds.StudyDate, ds.StudyDescription, ds.Modality = f"202612{number:02d}", "CHEST PA (made-up film)", "DX"
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PresentationIntentType = 1, "MONOCHROME2", "FOR PRESENTATION"
    ds.Rows, ds.Columns = film.shape
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = np.ascontiguousarray(film).tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--films", type=int, default=6)
    args = parser.parse_args(argv)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service as DriverService
    from selenium.webdriver.common.by import By

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "pw").write_text(PASSWORD + "\n")
        (root / "pw").chmod(0o600)
        films = []
        for i in range(args.films):
            if i % 2:
                films.append(root / f"IM{i + 1:04d}.dcm")
                films[-1].write_bytes(as_dicom(synthetic_film(i), i + 1))
            else:
                films.append(root / f"synthetic-film-{i + 1}.png")
                cv2.imwrite(str(films[-1]), synthetic_film(i))
        (root / "truncated.png").write_bytes(films[0].read_bytes()[:200])
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen([sys.executable, "-m", "edgecxr", "serve", "--store", str(root / "store"), "--port", str(port),
                                 "--password-file", str(root / "pw")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        options = Options()
        options.binary_location = shutil.which("chromium") or "chromium"
        for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,900", "--no-proxy-server"):
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=DriverService(executable_path=shutil.which("chromedriver") or "chromedriver"))
        try:
            for _ in range(600):
                if socket.socket().connect_ex(("127.0.0.1", port)) == 0:
                    break
                time.sleep(0.1)
            keys = [upload_ms(url, film)[1]["key"] for film in [*films[:2], root / "truncated.png", *films[2:]]]
            driver.get(url + "/login")
            driver.find_element(By.NAME, "user").send_keys("admin")
            driver.find_element(By.NAME, "password").send_keys(PASSWORD)
            driver.find_element(By.ID, "login").click()
            driver.get(f"{url}/study/{keys[0]}")
            driver.find_element(By.CSS_SELECTOR, "input[name=outcome][value=negative]").click()
            driver.find_element(By.ID, "record").click()
            args.out.mkdir(parents=True, exist_ok=True)
            driver.get(url + "/")
            driver.save_screenshot(str(args.out / "worklist.png"))
            driver.set_window_size(1200, 1250)
            driver.get(f"{url}/study/{keys[-1]}?heatmap=1")
            driver.find_element(By.ID, "heatmap-toggle").click()
            driver.save_screenshot(str(args.out / "study.png"))
            driver.set_window_size(390, 844)
            driver.get(url + "/")
            driver.save_screenshot(str(args.out / "phone-worklist.png"))
        finally:
            driver.quit()
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    print(f"wrote worklist.png, study.png and phone-worklist.png in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
