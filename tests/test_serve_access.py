"""``edgecxr serve``'s accounts and its nurse-facing study page, through Flask's test client: server-side sessions
that end, roles, throttled logins, the Host check, private files, outcome history, the instance rule for re-used
SOP Instance UIDs, and the result as a nurse reads it (score bar, REFER banner, heatmap only when it helps).
"""
from __future__ import annotations

import base64
import io
import logging
import re
import stat

import cv2
import numpy as np
import pytest
from pydicom.uid import UID

from clinic import USERS, WebPage, basic, wrap
from conftest import toy_u8
from edgecxr.core.model import Model

pytestmark = pytest.mark.clinic


def png(cls: int, seed: int = 0) -> bytes:
    ok, data = cv2.imencode(".png", toy_u8(cls, seed=seed, size=(96, 96)))
    assert ok
    return data.tobytes()


def dicom(pixels: np.ndarray, uid: str | None = None) -> bytes:
    ds = wrap(pixels, "Testperson^Una", "ID-777")
    if uid is not None:
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = UID(uid)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.fixture()
def page(tmp_path, model_path):
    p = WebPage(tmp_path / "store", Model(model_path))
    yield p
    p.service.stop()


def cookie(page: WebPage) -> str | None:
    found = page.client.get_cookie("edgecxr_session")
    return None if found is None else found.value


def test_logout_ends_the_session_and_a_replayed_cookie_is_refused(page):
    assert page.login("rev") == 302
    saved = cookie(page)
    assert saved and "rev" not in saved and len(saved) >= 40  # a random id, not a readable {"user": ...}
    token = page.token("/upload")
    assert page.client.get("/").status_code == 200
    assert page.logout() == 302
    assert cookie(page) is None  # the browser is told to forget it
    # an attacker who saved the cookie (and a form's token) replays both: the session is gone
    page.client.set_cookie("edgecxr_session", saved)
    r = page.client.get("/")
    assert r.status_code == 302 and r.headers["Location"] == "/login"
    r = page.client.post("/upload", data={"csrf": token, "file": (io.BytesIO(png(1)), "a.png")}, content_type="multipart/form-data")
    assert r.status_code == 302 and r.headers["Location"] == "/login"
    assert page.received() == []
    # logging in again gives a new id: the one from before login is not kept (no session fixation)
    before = cookie(page)
    assert page.login("rev") == 302 and cookie(page) not in (None, before, saved)


def test_sessions_expire_when_idle_and_after_their_lifetime(page):
    from edgecxr.clinic.web import accounts

    now = [1_000_000.0]
    page.site.accounts.clock = lambda: now[0]
    assert page.login("rita") == 302
    now[0] += accounts.IDLE - 5
    assert page.client.get("/").status_code == 200  # used within the idle time: still open, and its idle clock restarts
    now[0] += accounts.IDLE - 5
    assert page.client.get("/").status_code == 200
    now[0] += accounts.IDLE + 1
    assert page.client.get("/").headers.get("Location") == "/login"  # idle too long
    assert page.login("rita") == 302
    for _ in range(accounts.LIFETIME // (accounts.IDLE - 60) + 1):  # kept busy, still ended after LIFETIME
        now[0] += accounts.IDLE - 60
        last = page.client.get("/")
    assert last.headers.get("Location") == "/login"


def test_the_cookie_is_httponly_strict_and_secure_over_https_or_behind_a_proxy_that_says_so(page):
    def set_cookie(**kwargs) -> str:
        r = page.client.get("/login", **kwargs)
        return r.headers["Set-Cookie"]

    plain = set_cookie()
    assert "HttpOnly" in plain and "SameSite=Strict" in plain and "Secure" not in plain
    page.client.delete_cookie("edgecxr_session")
    assert "Secure" in set_cookie(base_url="https://localhost")
    page.client.delete_cookie("edgecxr_session", domain="localhost")
    assert "Secure" in set_cookie(headers={"X-Forwarded-Proto": "https"})


def test_roles_reader_reviewer_admin(page):
    assert page.login("rita") == 302
    assert page.client.get("/users").status_code == 403
    assert 'href="/upload"' not in page.client.get("/").text
    assert page.login("rev") == 302
    code, location = page.upload(png(1), "a.png")
    assert code == 302
    assert page.client.get("/users").status_code == 403
    assert page.login("admin") == 302
    users = page.client.get("/users").text
    assert all(f"<td>{name}</td><td>{role}</td>" in users for name, (role, _) in USERS.items())
    # a removed user's session ends at once
    assert page.login("rita") == 302 and page.client.get("/").status_code == 200
    assert page.site.accounts.remove_user("rita")
    assert page.client.get("/").headers.get("Location") == "/login"


def test_outcome_history_note_kept_unless_changed_form_prefilled_and_reads_recorded(page):
    assert page.login("rev") == 302
    _, location = page.upload(png(1), "a.png")
    key = location.rsplit("/", 1)[1]
    post = lambda **form: page.client.post(f"{location}/outcome", data={"csrf": page.token(location), **form})  # noqa: E731
    assert post(outcome="positive", note="GeneXpert MTB positive").status_code == 302
    assert post(outcome="negative").status_code == 302  # a client that sends no note field keeps the note
    text = page.client.get(location).text
    assert '<p id="note">GeneXpert MTB positive</p>' in text
    assert 'value="negative" required checked' in text and 'value="positive" required>' in text  # the form shows the outcome now
    assert '<textarea name="note" maxlength="2000">GeneXpert MTB positive</textarea>' in text  # and the note: sent back as it is
    assert page.login("admin") == 302
    assert post(outcome="not_done", note="").status_code == 302  # a note changed (cleared) on purpose
    history = page.site.index.history(key)
    assert [(h["outcome"], h["note"], h["user"]) for h in history] == [
        ("positive", "GeneXpert MTB positive", "rev"), ("negative", "GeneXpert MTB positive", "rev"), ("not_done", "", "admin")]
    assert all(h["time"][:2] == "20" for h in history)
    rows = re.findall(r"<tr><td>[^<]+</td><td>(\w+)</td><td>([^<]+)</td>", page.client.get(location).text)
    assert rows == [("rev", "lab-confirmed positive"), ("rev", "lab-confirmed negative"), ("admin", "test not done")]
    audit = [line for line in (page.root / "web" / "audit.jsonl").read_text().splitlines() if '"outcome"' in line]
    assert len(audit) == 3 and '"user": "admin"' in audit[-1] and "GeneXpert" not in "".join(audit)
    assert [r["user"] for r in page.site.index.reads(key)] == ["rev", "rev", "rev", "admin", "admin"]  # every study page shown


def test_failed_logins_are_throttled_per_user_and_address_and_logged(page, caplog, monkeypatch):
    from edgecxr.clinic.web import accounts, auth

    checks = []
    real = auth.check_password
    monkeypatch.setattr(auth, "check_password", lambda p, line: checks.append(1) or real(p, line))
    caplog.set_level(logging.WARNING, logger="edgecxr.clinic.web")
    for _ in range(accounts.MAX_FAILURES):
        assert page.login("rev", "guess") == 403
    assert len(checks) == accounts.MAX_FAILURES
    assert sum("failed login for user 'rev' from 127.0.0.1" in m for m in caplog.messages) == accounts.MAX_FAILURES
    # now even the right password is refused, without a check (no scrypt work for the guesser)
    r = page.client.post("/login", data={"csrf": page.token("/login"), "user": "rev", "password": USERS["rev"][1]})
    assert r.status_code == 429 and "too many failed logins" in r.text and len(checks) == accounts.MAX_FAILURES
    assert "login refused without a check: too many failures for user 'rev' or from 127.0.0.1" in caplog.messages[-1]
    r = page.client.get("/api/studies", headers=basic("rev"))  # HTTP Basic is throttled the same way
    assert r.status_code == 429 and len(checks) == accounts.MAX_FAILURES
    assert page.login("rita") == 302  # another user from this address still gets in
    # guessing other names from one address: stopped at ADDRESS_FACTOR times the per-user limit
    for i in range(accounts.MAX_FAILURES * (accounts.ADDRESS_FACTOR - 1)):
        wrong = {"Authorization": "Basic " + base64.b64encode(f"guess{i}:x".encode()).decode()}
        assert page.client.get("/api/studies", headers=wrong).status_code == 401
    assert page.client.get("/api/studies", headers=basic("admin"), environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 429
    assert page.client.get("/api/studies", headers=basic("admin"), environ_base={"REMOTE_ADDR": "10.0.0.2"}).status_code == 200
    # an anonymous API request without credentials costs no password check at all
    before = len(checks)
    assert page.client.get("/api/studies").status_code == 401 and len(checks) == before


def test_the_host_header_is_checked_on_every_request(page, tmp_path, model_path):
    from edgecxr.clinic.web.app import allowed_hosts, create_app

    for host in ("evil.example", "evil.example:8080", "127.0.0.1.evil.example"):
        for path in ("/", "/login", "/api/studies", "/static/style.css"):
            r = page.client.get(path, headers={"Host": host, **basic()})
            assert r.status_code == 400 and "does not answer to that host name" in r.text, (host, path)
    for host in ("localhost", "localhost:8080", "127.0.0.1:8080", "[::1]:8080"):
        assert page.client.get("/login", headers={"Host": host}).status_code == 200, host
    assert allowed_hosts("0.0.0.0", ()) == {"localhost", "127.0.0.1", "::1"}
    assert allowed_hosts("0.0.0.0", ("Clinic-PC.local",)) == {"clinic-pc.local"}
    page.site.allowed_hosts = allowed_hosts("0.0.0.0", ("clinic-pc.local",))
    client = create_app(page.site).test_client()
    assert client.get("/login", headers={"Host": "Clinic-PC.local:8080"}).status_code == 200
    assert client.get("/login", headers={"Host": "localhost"}).status_code == 400


def test_store_files_and_folders_are_private(page, tmp_path):
    assert page.login("rev") == 302
    _, location = page.upload(png(1), "a.png")
    page.client.get(f"{location}/film.png")
    page.client.post(f"{location}/outcome", data={"csrf": page.token(location), "outcome": "positive", "note": "n"})
    web = page.root / "web"
    found = [web, *web.rglob("*")]
    assert {p.name for p in found} >= {"index.sqlite", "accounts.sqlite", "uploads.jsonl", "audit.jsonl", "received", "previews"}
    for path in found:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))


def test_an_old_store_is_made_private_at_start(tmp_path, model_path):
    from edgecxr.clinic.web import server

    web = tmp_path / "store" / "web"
    (web / "results").mkdir(parents=True)
    (web / "results" / "old.png").write_bytes(b"x")
    (web / "results").chmod(0o755)
    (web / "results" / "old.png").chmod(0o644)
    server.private_store(tmp_path / "store")
    assert stat.S_IMODE((web / "results").stat().st_mode) == 0o700 and stat.S_IMODE((web / "results" / "old.png").stat().st_mode) == 0o600


def test_a_reused_sop_instance_uid_with_other_pixels_is_a_new_study_with_a_warning(page):
    from edgecxr.clinic.instances import CHANGED

    first, second = toy_u8(0, seed=7, size=(96, 96)), toy_u8(2, seed=8, size=(96, 96))
    uid = "1.2.826.0.1.3680043.8.498.424242"
    a = page.client.post("/api/predict", data={"file": (io.BytesIO(dicom(first, uid)), "a.dcm")}, headers=basic()).json
    again = page.client.post("/api/predict", data={"file": (io.BytesIO(dicom(first, uid)), "a-again.dcm")}, headers=basic()).json
    b = page.client.post("/api/predict", data={"file": (io.BytesIO(dicom(second, uid)), "b.dcm")}, headers=basic()).json
    assert again["key"] == a["key"] and CHANGED not in a["warnings"]  # same UID, same pixels: the same instance
    assert b["key"] != a["key"] and CHANGED in b["warnings"]  # same UID, other pixels: a new study, never a's result
    assert b["probabilities"] != a["probabilities"]
    b_again = page.client.post("/api/predict", data={"file": (io.BytesIO(dicom(second, uid)), "b2.dcm")}, headers=basic()).json
    assert b_again["key"] == b["key"]
    assert page.client.get("/api/studies", headers=basic()).json["total"] == 2
    assert page.login("rita") == 302
    from markupsafe import escape

    shown = str(escape(CHANGED))
    assert shown in page.client.get(f"/study/{b['key']}").text and shown in page.client.get("/").text


def test_the_instance_rule_in_the_shared_code(tmp_path):
    import pydicom

    from edgecxr.clinic.instances import instance_key
    from edgecxr.clinic.store import Store

    store = Store(tmp_path / "s")
    uid = "1.2.3.4"
    film = dicom(toy_u8(0, seed=1, size=(32, 32)), uid)
    other = dicom(toy_u8(1, seed=2, size=(32, 32)), uid)
    pixels = {name: pydicom.dcmread(io.BytesIO(data)).PixelData for name, data in (("film", film), ("other", other))}
    assert instance_key(store, uid, pixels["film"]) == (store.key(uid), "new")  # nothing stored yet
    store.write_bytes(store.path("received", store.key(uid), ".dcm"), film)
    assert instance_key(store, uid, pixels["film"]) == (store.key(uid), "same")
    key, verdict = instance_key(store, uid, pixels["other"])
    assert verdict == "changed" and key != store.key(uid)
    store.write_bytes(store.path("received", key, ".dcm"), other)
    assert instance_key(store, uid, pixels["other"]) == (key, "same")


def test_the_study_page_a_nurse_reads(page, model_path):
    from edgecxr.clinic.journal import Journal

    results = Journal(page.root / "results.jsonl")
    op = [{"for": "abnormal", "threshold": 0.35, "target_sensitivity": 0.9}]
    results.once("result", "a" * 64, file=None, label="Pneumonia", probabilities={"Normal": 0.2, "Pneumonia": 0.8}, warnings=[],
                 abnormal_score=0.8, refer=True, operating_point=op, results=[])
    results.once("result", "b" * 64, file=None, label="Normal", probabilities={"Normal": 0.9, "Pneumonia": 0.1}, warnings=[],
                 abnormal_score=0.1, refer=False, operating_point=op, results=[])
    assert page.login("rita") == 302
    refer = page.client.get("/study/" + "a" * 64).text
    assert '<p class="banner refer-banner" id="banner">REFER' in refer
    assert '<rect x="0" y="2" width="80.00" height="8" fill="#b00020">' in refer  # the score on the bar, red at or above the line
    assert '<line x1="35.00" x2="35.00"' in refer and '<span id="threshold">0.35</span>' in refer
    assert 'id="heatmap-toggle"' in refer and 'class="result"' in refer  # an abnormal call has its heatmap to toggle
    normal = page.client.get("/study/" + "b" * 64).text
    assert 'id="banner">No refer' in normal and 'fill="#2e6da4"' in normal
    assert 'id="heatmap-toggle"' not in normal and 'class="result"' not in normal and 'id="ask-heatmap"' in normal
    asked = page.client.get("/study/" + "b" * 64 + "?heatmap=1").text
    assert 'id="heatmap-toggle"' in asked and "asked for on a Normal call" in asked
    css = page.client.get("/static/style.css").text
    assert "@media print" in css and "aspect-ratio: 1 / 1" in css and "visibility: hidden" in css  # a fixed slot: no jump
    assert 'class="print-only">Printed from edgecxr' in refer and "RESEARCH USE - NOT A DIAGNOSIS" in refer


def test_the_film_viewer_full_resolution_and_window(page):
    big = np.tile(np.linspace(0, 65535, 1500, dtype=np.uint16), (1200, 1))  # a 16-bit film wider than the preview's 1024 px
    key = page.client.post("/api/predict", data={"file": (io.BytesIO(dicom(big)), "big.dcm")}, headers=basic()).json["key"]
    assert page.login("rita") == 302

    def get(query: str) -> np.ndarray:
        r = page.client.get(f"/study/{key}/film.png{query}")
        assert r.status_code == 200, r.text
        picture = cv2.imdecode(np.frombuffer(r.data, np.uint8), cv2.IMREAD_GRAYSCALE)
        assert picture is not None
        return picture

    assert get("").shape == (819, 1024) and get("?full=1").shape == (1200, 1500)
    plain, narrow = get("?full=1")[0], get("?full=1&center=50&width=20")[0]
    assert narrow[0] == 0 and narrow[-1] == 255 and (narrow == 0).sum() > 3 * (plain == 0).sum()  # more contrast over the middle
    assert 0 < narrow[750] < 255
    text = page.client.get(f"/study/{key}?center=40&width=30").text
    assert f'src="/study/{key}/film.png?center=40&amp;width=30"' in text


def test_http_basic_pays_one_password_check_a_minute_not_one_a_request(page, monkeypatch):
    from edgecxr.clinic.web import accounts, auth

    checks = []
    real = auth.check_password
    monkeypatch.setattr(auth, "check_password", lambda p, line: checks.append(1) or real(p, line))
    now = [1_000_000.0]
    page.site.accounts.clock = lambda: now[0]
    for _ in range(5):
        assert page.client.get("/api/studies", headers=basic("rita")).status_code == 200
    assert len(checks) == 1
    now[0] += accounts.VERIFIED_FOR + 1
    assert page.client.get("/api/studies", headers=basic("rita")).status_code == 200 and len(checks) == 2
    page.site.accounts.set_user("rita", "reader", "a new password 2")  # a changed password is not remembered
    assert page.client.get("/api/studies", headers=basic("rita")).status_code == 401


def test_the_throttle_forgets_failures_after_its_window():
    from edgecxr.clinic.web.accounts import MAX_FAILURES, WINDOW, Throttle

    now = [0.0]
    throttle = Throttle(clock=lambda: now[0])
    for _ in range(MAX_FAILURES):
        throttle.failed("ann", "10.0.0.9")
    assert throttle.blocked("ann", "10.0.0.9") and throttle.blocked("ann", "10.0.0.1") and not throttle.blocked("bob", "10.0.0.9")
    now[0] += WINDOW + 1
    assert not throttle.blocked("ann", "10.0.0.9") and throttle._failures == {}
