"""Helpers of the clinic tests (edgecxr listen / watch): films wrapped as DICOM, a real Orthanc, a listener process.

Made-up patients only: every wrapped film carries a distinctive fake name and ID, which the tests
then look for in everything edgecxr writes.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import UID, ComputedRadiographyImageStorage, CTImageStorage, DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian, generate_uid

from conftest import child_env

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # localhost, never through a proxy
DX = DigitalXRayImageStorageForPresentation
CR = ComputedRadiographyImageStorage
CT = CTImageStorage


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wrap(pixels: np.ndarray, patient: str, patient_id: str, study_uid: str | None = None, sop_class: str = DX) -> Dataset:
    """A DX (or ``sop_class``) instance of a uint8/uint16 gray film, for a made-up patient."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = UID(sop_class)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = patient
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19610704"
    ds.PatientSex = "F"
    ds.AccessionNumber = "ACC" + patient_id[-6:]
    ds.InstitutionName = "Made-up Hospital of " + patient.split("^")[0]
    ds.StudyID, ds.StudyDate, ds.StudyTime, ds.ReferringPhysicianName = "1", "20260101", "101010", ""
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "DX", 1, 1
    ds.PatientOrientation = ["L", "F"]
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    bits = 8 if pixels.dtype == np.uint8 else 16
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit, ds.PixelRepresentation = bits - 1, 0
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    return ds


# The README's auto-routing script: every CR or DX film Orthanc stores goes on to edgecxr (results, SR and OT, do not).
ROUTE_LUA = """
function OnStoredInstance(instanceId, tags, metadata, origin)
  if tags['Modality'] == 'CR' or tags['Modality'] == 'DX' then
    SendToModality(instanceId, 'edgecxr')
  end
end
"""


def orthanc_config(folder: Path, http_port: int, dicom_port: int, edgecxr_port: int | None = None) -> Path:
    """A configuration of a private Orthanc: its own storage, localhost only; with ``edgecxr_port``, edgecxr
    registered as a modality and :data:`ROUTE_LUA` routing films to it."""
    config = {
        "Name": "edgecxr-test",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "storage"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": "ORTHANC",
        "DicomCheckCalledAet": True,  # a PACS that refuses an association called by another name (a permanent rejection)
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "HttpServerEnabled": True,
        "Plugins": [],
        "DicomModalities": {"edgecxr": ["EDGECXR", "127.0.0.1", edgecxr_port]} if edgecxr_port else {},
    }
    if edgecxr_port:
        (folder / "route.lua").write_text(ROUTE_LUA)
        config["LuaScripts"] = [str(folder / "route.lua")]
    path = folder / "orthanc.json"
    path.write_text(json.dumps(config, indent=2))
    return path


class Orthanc:
    """A real Orthanc (the Debian package's binary) on free localhost ports, its REST API at :attr:`url`."""

    def __init__(self, folder: Path, dicom_port: int | None = None, edgecxr_port: int | None = None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.http_port, self.dicom_port, self.edgecxr_port = folder, free_port(), dicom_port or free_port(), edgecxr_port
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.config = orthanc_config(folder, self.http_port, self.dicom_port, edgecxr_port)
        self.proc: subprocess.Popen | None = None

    def start(self) -> Orthanc:
        log = open(self.folder / "orthanc.log", "ab")
        binary = shutil.which("Orthanc", path=os.environ.get("PATH", "") + os.pathsep + "/usr/sbin")
        assert binary, "Orthanc is not installed (apt-get install orthanc; .ci/run does)"
        self.proc = subprocess.Popen([binary, str(self.config)], stdout=log, stderr=log)
        wait_for(lambda: self._up(), 60, "Orthanc to answer on its HTTP port")
        return self

    def _up(self) -> bool:
        assert self.proc is not None
        assert self.proc.poll() is None, (self.folder / "orthanc.log").read_text()[-2000:]
        try:
            self.get("/system")
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        self.proc = None

    def get(self, path: str) -> Any:
        with _DIRECT.open(self.url + path, timeout=10) as r:
            data = r.read()
        return json.loads(data) if data[:1] in (b"{", b"[") else data

    def post(self, path: str, body: Any) -> Any:
        """POST ``body`` (bytes or a str as it is, anything else as JSON); the JSON answer."""
        data = body if isinstance(body, bytes) else body.encode() if isinstance(body, str) else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method="POST")
        with _DIRECT.open(request, timeout=30) as r:
            return json.loads(r.read())

    def instances(self) -> list[dict[str, Any]]:
        """Every instance Orthanc holds, as {ID, ParentSeries, MainDicomTags...} (expanded)."""
        return self.get("/instances?expand")


class Listener:
    """``python -m edgecxr listen`` as a child process, stdout and stderr kept in files."""

    def __init__(self, store: Path, port: int, *args: str) -> None:
        self.store, self.port, self.args = store, port, args
        self.proc: subprocess.Popen | None = None
        self.out, self.err = store.parent / f"{store.name}.stdout", store.parent / f"{store.name}.stderr"

    def start(self) -> Listener:
        with open(self.out, "ab") as out, open(self.err, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edgecxr", "listen", "--port", str(self.port), "--store", str(self.store), *self.args],
                stdout=out, stderr=err, env=child_env(), cwd=self.store.parent,
            )
        wait_for(lambda: self._listening(), 60, "edgecxr listen to accept associations")
        return self

    def _listening(self) -> bool:
        assert self.proc is not None
        assert self.proc.poll() is None, self.err.read_text()
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def close(self) -> None:
        """Kill the process if it still runs (a test's teardown, whatever the test did)."""
        if self.proc is not None and self.proc.poll() is None:
            self.kill()

    def terminate(self, timeout: float = 120) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def audit(self) -> list[dict[str, Any]]:
        from edgecxr.clinic.journal import read_journal

        return read_journal(self.store / "audit.jsonl")  # its rotated files too

    def key(self, uid: str) -> str:
        import hashlib

        return hashlib.sha256((self.store / "salt").read_bytes().strip() + uid.encode()).hexdigest()


def dcmtk(tool: str) -> str:
    """The path of DCMTK's (or dicom3tools') ``tool``: never a same-named script of the running venv (pynetdicom installs
    ``echoscu``, ``storescu``... there, which take other options), so the tests talk to edgecxr as a PACS would."""
    venv_bin = str(Path(sys.prefix) / "bin")
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p and os.path.realpath(p) != os.path.realpath(venv_bin))
    found = shutil.which(tool, path=path + os.pathsep + "/usr/bin")
    assert found is not None, f"{tool} is not installed (apt-get install dcmtk dicom3tools)"
    return found


def wait_for(condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.1) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds (a guard, not a timed test)."""
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, f"gave up waiting for {what}"
        time.sleep(poll)


def events(audit: list[dict[str, Any]], event: str) -> list[str]:
    """The keys of the audit lines of ``event``, in order."""
    return [r["key"] for r in audit if r["event"] == event]


def send(port: int, datasets: list[Dataset], ae_title: str = "EDGECXR", contexts: list[str] | None = None) -> list[int | None]:
    """C-STORE ``datasets`` over one association with pynetdicom's SCU; the status of each (None: no answer)."""
    from pynetdicom import AE

    ae = AE(ae_title="TESTSCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 180  # a loaded CI machine answers slowly; the tests are not about speed
    for cls in contexts or sorted({str(d.SOPClassUID) for d in datasets}):
        ae.add_requested_context(cls, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title=ae_title)
    assert assoc.is_established, "association with edgecxr listen was not established"
    statuses: list[int | None] = []
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            statuses.append(int(status.Status) if "Status" in status else None)
    finally:
        if assoc.is_established:
            assoc.release()
    return statuses


def dicom_errors(path) -> list[str]:
    """The Error lines of dciodvfy (dicom3tools) on the file at ``path``."""
    done = subprocess.run([dcmtk("dciodvfy"), str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error")]


def make_certificates(folder) -> dict[str, str]:
    """A self-made CA and, signed by it, a certificate for the listener (localhost) and one for a sender: {name: PEM path}."""
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60, cwd=folder)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=edgecxr test CA", "-keyout", "ca.key", "-out", "ca.crt")
    for name in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={'localhost' if name == 'server' else 'TESTSCU'}", "-keyout", f"{name}.key", "-out", f"{name}.csr")
        (folder / f"{name}.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.crt")
    return {name: str(folder / name) for name in ("ca.crt", "server.crt", "server.key", "client.crt", "client.key")}


PASSWORD = "correct horse battery"
USERS = {"admin": ("admin", PASSWORD), "rita": ("reader", "reader password 1"), "rev": ("reviewer", "reviewer password 1")}


def basic(user: str = "admin") -> dict[str, str]:
    """An ``Authorization: Basic`` header of one of :data:`USERS`."""
    import base64

    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{USERS[user][1]}".encode()).decode()}


class WebPage:
    """``edgecxr serve``'s application over a fresh store in Flask's test client, with the users of :data:`USERS`,
    and helpers to log in and to send forms with the page's CSRF token."""

    def __init__(self, root: Path, model: Any, public_read: bool = False) -> None:
        from edgecxr.clinic.web import server
        from edgecxr.clinic.web.app import allowed_hosts, create_app

        self.root = root
        users = server.accounts(root)
        for name, (role, password) in USERS.items():
            users.set_user(name, role, password)
        self.site, self.service = server.open_site(root, model, allowed_hosts("127.0.0.1", ()), public_read)
        self.app = create_app(self.site)
        self.client = self.app.test_client()

    def token(self, path: str = "/upload") -> str:
        import re

        found = re.search(r'name="csrf" value="([^"]+)"', self.client.get(path).text)
        assert found, f"no CSRF token on {path}"
        return found.group(1)

    def login(self, user: str = "admin", password: str | None = None) -> int:
        password = USERS[user][1] if password is None else password
        return self.client.post("/login", data={"csrf": self.token("/login"), "user": user, "password": password}).status_code

    def logout(self) -> int:
        return self.client.post("/logout", data={"csrf": self.token("/")}).status_code

    def upload(self, data: bytes, name: str) -> tuple[int, str]:
        import io

        r = self.client.post("/upload", data={"csrf": self.token(), "file": (io.BytesIO(data), name)}, content_type="multipart/form-data")
        return r.status_code, r.headers.get("Location", "") or r.text

    def received(self) -> list[str]:
        return sorted(p.name for p in (self.root / "web" / "received").iterdir())
