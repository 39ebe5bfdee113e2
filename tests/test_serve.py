"""``edgecxr serve`` through Flask's test client: every route and error, the security rules, the index and monitoring.

The modules that need the clinic extra (Flask, highdicom) are imported inside the tests, so this module collects
in a ``.[test]`` install without it (the board tier), where ``-m "not clinic"`` deselects its tests.
"""
from __future__ import annotations

import base64
import csv
import io
import json
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from clinic import PASSWORD, WebPage, basic, free_port, wait_for, wrap
from conftest import child_env, toy_u8
from edgecxr.clinic.journal import Journal, read_lines
from edgecxr.clinic.web import auth, monitoring
from edgecxr.core.model import Model

pytestmark = pytest.mark.clinic
BASIC = basic("admin")
XSS = "<img src=x onerror=alert(1)>"


def png(cls: int, seed: int = 0) -> bytes:
    ok, data = cv2.imencode(".png", toy_u8(cls, seed=seed, size=(96, 96)))
    assert ok
    return data.tobytes()


@pytest.fixture()
def page(tmp_path, model_path):
    p = WebPage(tmp_path / "store", Model(model_path))
    yield p
    p.service.stop()


def test_reading_needs_a_login_and_every_response_has_the_security_headers(page):
    from edgecxr.clinic.web.app import HEADERS

    anonymous = {"/": 302, "/upload": 302, "/monitoring": 302, "/monitoring.csv": 302, "/study/" + "0" * 64: 302, "/login": 200,
                 "/api/studies": 401, "/no-such-page": 302}
    for path, code in anonymous.items():
        r = page.client.get(path)
        assert r.status_code == code, path
        assert code != 302 or r.headers["Location"] == "/login", path
        for name, value in HEADERS.items():
            assert r.headers[name] == value, (path, name)
    assert "default-src 'self'" in HEADERS["Content-Security-Policy"] and "frame-ancestors 'none'" in HEADERS["Content-Security-Policy"]
    assert page.login("rita") == 302
    for path in ("/", "/monitoring", "/monitoring.csv"):
        assert page.client.get(path).status_code == 200, path
    assert page.client.get("/no-such-page").status_code == 404
    assert "0 studies" in page.client.get("/").text
    assert "as a reviewer to upload" in page.client.get("/upload").text  # a reader sees, does not upload


def test_no_write_without_login(page):
    token = page.token("/login")  # a valid token of this session, but no login
    r = page.client.post("/upload", data={"csrf": token, "file": (io.BytesIO(png(1)), "a.png")}, content_type="multipart/form-data")
    assert r.status_code == 302 and r.headers["Location"] == "/login"
    r = page.client.post("/api/predict", data={"file": (io.BytesIO(png(1)), "a.png")})
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic") and "error" in r.json
    wrong = {"Authorization": "Basic " + base64.b64encode(b"admin:guess").decode()}
    assert page.client.post("/api/predict", data={"file": (io.BytesIO(png(1)), "a.png")}, headers=wrong).status_code == 401
    assert page.received() == []
    assert page.login(password="guess") == 403
    assert page.received() == []
    # a reader may log in and read, but neither upload (page or API) nor record an outcome
    assert page.login("rita") == 302
    assert page.upload(png(1), "a.png")[0] == 403
    r = page.client.post("/api/predict", data={"file": (io.BytesIO(png(1)), "a.png")}, headers=basic("rita"))
    assert r.status_code == 403 and "reviewer" in r.json["error"]
    assert page.received() == []


def test_a_forged_csrf_token_is_refused(page):
    assert page.login() == 302
    for forged in ("", "forged-token"):
        r = page.client.post("/upload", data={"csrf": forged, "file": (io.BytesIO(png(1)), "a.png")}, content_type="multipart/form-data")
        assert r.status_code == 400 and "did not come from this page" in r.text
    assert page.received() == []
    # a browser's cross-site request to the API is refused even with the right credentials, and says why (not "log in")
    for method in (page.client.post, page.client.get):
        path = "/api/predict" if method == page.client.post else "/api/studies"
        r = method(path, headers={**BASIC, "Sec-Fetch-Site": "cross-site"})
        assert r.status_code == 403 and "cross-site" in r.json["error"] and "log in" not in r.json["error"], path
    assert page.received() == []
    # the same credentials from a script (no Sec-Fetch-Site) or this site's own pages work
    assert page.client.get("/api/studies", headers=BASIC).status_code == 200
    assert page.client.get("/api/studies", headers={**BASIC, "Sec-Fetch-Site": "same-origin"}).status_code == 200


def test_upload_shows_the_result_and_the_file_name_is_inert_text(page):
    assert page.login() == 302
    code, location = page.upload(png(1), XSS + ".png")
    assert code == 302 and location.startswith("/study/")
    key = location.rsplit("/", 1)[1]
    text = page.client.get(location).text
    record = page.site.index.study(key)["record"]
    assert f'<h2 id="label">{record["label"]}</h2>' in text
    assert XSS not in text and "&lt;img src=x onerror=alert(1)&gt;.png" in text
    assert "Research and software testing only" in text and "RESEARCH USE - NOT A DIAGNOSIS" in text
    for picture in ("film.png", "result.png"):
        r = page.client.get(f"{location}/{picture}")
        assert r.status_code == 200 and r.mimetype == "image/png" and r.data.startswith(b"\x89PNG")
    assert cv2.imdecode(np.frombuffer(page.client.get(f"{location}/film.png").data, np.uint8), cv2.IMREAD_GRAYSCALE).shape == (96, 96)
    # logged out, the study is not shown at all
    assert page.logout() == 302
    r = page.client.get(location)
    assert r.status_code == 302 and r.headers["Location"] == "/login"


def test_a_path_traversal_file_name_is_stored_by_key(page):
    assert page.login() == 302
    code, location = page.upload(png(2), "../../../../tmp/evil.png")
    key = location.rsplit("/", 1)[1]
    assert code == 302 and page.received() == [f"{key}.png"]
    assert not (page.root.parent / "tmp" / "evil.png").exists() and not Path("/tmp/evil.png").exists()
    assert page.site.index.study(key)["file"] == "evil.png"
    assert read_lines(page.root / "web" / "uploads.jsonl")[-1] == {**read_lines(page.root / "web" / "uploads.jsonl")[-1], "key": key, "file": "evil.png"}


def test_an_outcome_is_recorded_its_note_is_inert_and_monitoring_counts_it(page):
    assert page.login() == 302
    _, location = page.upload(png(1), "a.png")
    key = location.rsplit("/", 1)[1]
    note = "<script>alert('note')</script>"
    r = page.client.post(f"{location}/outcome", data={"csrf": page.token(location), "outcome": "positive", "note": note})
    assert r.status_code == 302
    text = page.client.get(location).text
    assert note not in text and "&lt;script&gt;alert(&#39;note&#39;)&lt;/script&gt;" in text
    assert '<p id="outcome">lab-confirmed positive</p>' in text
    assert "lab-confirmed positive" in page.client.get("/").text
    assert "0 studies" in page.client.get("/?unreviewed=1").text
    assert [line["event"] for line in read_lines(page.root / "web" / "audit.jsonl") if line["key"] == key] == ["received", "classified", "outcome"]
    assert "alert" not in (page.root / "web" / "audit.jsonl").read_text()  # the note stays out of the audit log
    row = next(csv.DictReader(io.StringIO(page.client.get("/monitoring.csv").text)))
    # tiny model, no Normal label: not flagged; a confirmed positive that was not flagged is a false negative
    assert {k: row[k] for k in monitoring.COLUMNS} | {"week": ""} == {
        "week": "", "profile": "tiny-int8 1.0.0, no site profile", "read": "1", "flagged": "0", "share_flagged": "0.0000", "with_outcome": "1", "positive": "1", "negative": "0",
        "true_positive": "0", "false_negative": "1", "true_negative": "0", "false_positive": "0", "sensitivity": "0.0000", "specificity": "", "yield": "",
    }
    assert "<td>1</td>" in page.client.get("/monitoring").text
    # a bad outcome value is refused with a page
    r = page.client.post(f"{location}/outcome", data={"csrf": page.token(location), "outcome": "maybe"})
    assert r.status_code == 400 and "choose an outcome" in r.text


def test_api_predict_answers_what_predict_json_prints_and_lists_studies(page, model_path, tmp_path):
    film = tmp_path / "film.png"
    film.write_bytes(png(2, seed=4))
    r = page.client.post("/api/predict", data={"file": (io.BytesIO(film.read_bytes()), "film.png")}, headers=BASIC)
    assert r.status_code == 200
    expected = Model(model_path).predict(film, heatmap=True).to_dict()
    got = r.json
    assert set(expected) <= set(got) and got["file"] == "film.png"
    assert got["label"] == expected["label"] and got["probabilities"] == expected["probabilities"] and got["warnings"] == expected["warnings"]
    assert page.client.get("/api/studies").status_code == 401
    listed = page.client.get("/api/studies", headers=basic("rita")).json
    assert listed["total"] == 1 and listed["studies"][0]["key"] == got["key"] and listed["studies"][0]["file"] == "film.png"
    assert listed["studies"][0]["description"] == "film.png"  # a film that is not DICOM is described by its name
    # the same film again: the same study, not a second one
    again = page.client.post("/api/predict", data={"file": (io.BytesIO(film.read_bytes()), "other.png")}, headers=BASIC).json
    assert again["key"] == got["key"] and page.client.get("/api/studies", headers=BASIC).json["total"] == 1


def test_a_dicom_upload_is_identified_to_logged_in_users_only_and_never_in_logs(page, tmp_path):
    buffer = io.BytesIO()
    ds = wrap(toy_u8(0, seed=5, size=(96, 96)), "Plimsoll^Araminta", "AP-424242")
    ds.StudyDescription, ds.StudyDate = "CHEST PA Plimsoll", "20261203"
    ds.save_as(buffer, enforce_file_format=True)
    r = page.client.post("/api/predict", data={"file": (io.BytesIO(buffer.getvalue()), "IM0001")}, headers=BASIC)
    assert r.status_code == 200 and sorted(f.rsplit(".", 2)[-2] for f in r.json["results"]) == ["sc", "sr"]
    key = r.json["key"]
    assert page.received() == [f"{key}.dcm"]
    assert page.login("rita") == 302
    picture = cv2.imdecode(np.frombuffer(page.client.get(f"/study/{key}/result.png").data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert picture.ndim == 3 and picture.shape[1] >= 768  # the Secondary Capture's RGB picture, at least MIN_WIDTH wide
    assert page.client.get(f"/study/{key}/film.png").data.startswith(b"\x89PNG")
    # the worklist and the study page say who it is; a search finds it by patient ID, accession or description
    worklist, study = page.client.get("/").text, page.client.get(f"/study/{key}").text
    for shown in ("AP-424242", "ACC424242", "2026-12-03", "CHEST PA Plimsoll"):
        assert shown in worklist and shown in study, shown
    for query, found in (("AP-4242", 1), ("acc424", 1), ("CHEST PA", 1), ("nobody", 0), ("50%_", 0)):
        assert f"{found} studies" in page.client.get("/", query_string={"q": query}).text, query
    listed = page.client.get("/api/studies?q=AP-424242", headers=basic("rita")).json["studies"]
    assert [(s["patient_id"], s["accession"], s["study_date"]) for s in listed] == [("AP-424242", "ACC424242", "2026-12-03")]
    assert "Araminta" not in worklist + study  # the name is not shown: ID and accession say who it is
    # never in a log: not the store's logs, not the index's neighbours, not the server's log lines
    logs = "".join(p.read_text() for p in (page.root / "web").glob("*.jsonl"))
    assert logs and not any(value in logs for value in ("AP-424242", "ACC424242", "Plimsoll", "Araminta"))


def test_a_public_read_kiosk_shows_results_but_never_patients_names_or_notes(tmp_path, model_path):
    kiosk = WebPage(tmp_path / "store", Model(model_path), public_read=True)
    try:
        buffer = io.BytesIO()
        wrap(toy_u8(0, seed=6, size=(96, 96)), "Plimsoll^Araminta", "AP-515151").save_as(buffer, enforce_file_format=True)
        key = kiosk.client.post("/api/predict", data={"file": (io.BytesIO(buffer.getvalue()), "IM0002")}, headers=BASIC).json["key"]
        assert kiosk.login("rev") == 302
        location = f"/study/{key}"
        kiosk.client.post(f"{location}/outcome", data={"csrf": kiosk.token(location), "outcome": "positive", "note": "GeneXpert MTB positive"})
        assert kiosk.logout() == 302
        shown = "".join(kiosk.client.get(path).text for path in ("/", location, "/api/studies", "/monitoring"))
        assert "lab-confirmed positive" in shown and key[:12] in shown  # results are public on a kiosk
        assert not any(v in shown for v in ("AP-515151", "ACC515151", "IM0002", "GeneXpert", "Plimsoll"))
        r = kiosk.client.get("/?q=AP-515151")
        assert r.status_code == 403 and "needs a login" in r.text
        assert kiosk.client.get(f"{location}/original").status_code == 404
        assert [e["user"] for e in kiosk.site.index.reads(key)] == ["rev", "-"]  # every read recorded, the kiosk's as "-"
    finally:
        kiosk.service.stop()


def test_refused_and_failed_uploads_are_readable(page):
    r = page.client.post("/api/predict", data={"file": (io.BytesIO(b"%PDF-1.4 not a film"), "scan.pdf")}, headers=BASIC)
    assert r.status_code == 400 and r.json == {"error": "not an image file: only PNG, JPEG, BMP, TIFF or DICOM films are accepted"}
    r = page.client.post("/api/predict", data={}, headers=BASIC)
    assert r.status_code == 400 and "choose a film" in r.json["error"]
    assert page.received() == []
    # an image header with nothing decodable behind it: stored, classified as failed, shown with its reason
    broken = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200
    r = page.client.post("/api/predict", data={"file": (io.BytesIO(broken), "broken.png")}, headers=BASIC)
    assert r.status_code == 422 and r.json["file"] == "broken.png" and r.json["error"]
    assert page.login() == 302
    worklist = page.client.get("/").text
    assert f"failed: {r.json['error']}" in worklist and "broken.png" in worklist  # a failed study keeps its name
    study = page.client.get(f"/study/{r.json['key']}")
    assert study.status_code == 200 and r.json["error"] in study.text and "broken.png" in study.text
    assert page.client.get(f"/study/{r.json['key']}/film.png").status_code == 404  # nothing to decode...
    original = page.client.get(f"/study/{r.json['key']}/original")  # ...but the film as received is there
    assert original.status_code == 200 and original.data == broken and 'id="original"' in study.text
    assert "Traceback" not in worklist + study.text
    # on the page too
    code, text = page.upload(b"just text", "notes.txt")
    assert code == 400 and "not an image file" in text


def test_an_upload_over_the_limit_is_refused(page):
    from edgecxr.clinic.web.app import MAX_UPLOAD

    big = b"\x89PNG\r\n\x1a\n" + b"\x00" * (50 * 2**20)
    assert len(big) > MAX_UPLOAD
    r = page.client.post("/api/predict", data={"file": (io.BytesIO(big), "big.png")}, headers=BASIC)
    assert r.status_code == 413 and r.json == {"error": "the upload is larger than 40 MB"}
    assert page.login() == 302
    r = page.client.post("/upload", data={"csrf": page.token(), "file": (io.BytesIO(big), "big.png")}, content_type="multipart/form-data")
    assert r.status_code == 413 and "larger than 40 MB" in r.text
    assert page.received() == []


def test_bad_addresses_and_parameters_get_readable_errors(page):
    assert page.login("rita") == 302
    page.client.post("/api/predict", data={"file": (io.BytesIO(png(1)), "a.png")}, headers=BASIC)
    key = page.client.get("/api/studies", headers=BASIC).json["studies"][0]["key"]
    for path, code, words in (
        ("/study/" + "0" * 64, 404, "no such page or study"),
        ("/study/..%2F..%2Fetc%2Fpasswd", 404, "no such page or study"),
        ("/study/nothex/film.png", 404, "no such page or study"),
        ("/?page=0", 400, "page: a whole number from 1 to 1,000,000"),
        ("/?page=99999999999999999999999", 400, "page: a whole number"),
        ("/?page=%EF%BC%91", 400, "page: a whole number"),  # a full-width digit one: isdigit() but not ASCII
        ("/?page=-1", 400, "page: a whole number"),
        ("/?since=yesterday", 400, "YYYY-MM-DD"),
        ("/?since=2026-13-45", 400, "a real date"),
        ("/?until=2026-02-30", 400, "a real date"),
        ("/?since=2026-02-02&until=2026-02-01", 400, "on or before until"),
        ("/?refer=yes", 400, "refer: one of 0, 1"),
        ("/?unreviewed=2", 400, "unreviewed: one of"),
        ("/?q=" + "x" * 101, 400, "q: at most 100"),
        ("/?q=%00", 400, "printable"),
        (f"/study/{key}?heatmap=maybe", 400, "heatmap: one of"),
        (f"/study/{key}?center=101", 400, "center: a whole number from 0 to 100"),
        (f"/study/{key}/film.png?width=0", 400, "width: a whole number from 1 to 100"),
        (f"/study/{key}/film.png?full=2", 400, "full: one of"),
        ("/api/studies?page=x", 400, "page: a whole number"),
        ("/api/studies?page=99999999999999999999999", 400, "page: a whole number"),
        ("/api/studies?since=2026-13-45", 400, "a real date"),
    ):
        r = page.client.get(path, headers=BASIC if path.startswith("/api/") else {})
        assert r.status_code == code and words in r.text and "Traceback" not in r.text, (path, r.status_code, r.text[-300:])
    assert page.client.get("/?page=1000000").status_code == 200  # the largest page is an empty page, not an error
    r = page.client.get("/api/predict")
    assert r.status_code == 405 and r.json == {"error": "that method is not allowed here"}


def test_studies_from_listen_and_watch_appear_with_filters_and_pages(page, model_path):
    """The store `listen` / `watch` write: one film classified, one failed, and 60 result lines for the filters and pages."""
    from edgecxr.clinic.service import Service

    main = Service(page.root, Model(model_path), None, "EDGECXR", 5.0)
    good, bad = main.store.content_key(png(0)), main.store.content_key(b"bad")
    main.store.write_bytes(main.store.path("received", good, ".png"), png(0))
    main.store.write_bytes(main.store.path("received", bad, ".png"), b"\x89PNG\r\n\x1a\n" + b"\x01" * 64)
    main.start()  # the two received films are pending: the worker classifies them
    wait_for(lambda: len(read_lines(page.root / "results.jsonl")) == 1 and (page.root / "failed" / f"{bad}.json").exists(), 60, "both films done")
    results = Journal(page.root / "results.jsonl")
    for i in range(60):
        results.once("result", f"{i:064x}", file=None, label="Pneumonia", probabilities={"Normal": 0.2, "Pneumonia": 0.8},
                     warnings=[], abnormal_score=0.8, refer=i % 3 == 0, operating_point=[{"for": "abnormal", "threshold": 0.5, "target_sensitivity": 0.9}])
    page.client.environ_base["HTTP_AUTHORIZATION"] = BASIC["Authorization"]  # the API needs credentials
    listed = page.client.get("/api/studies").json
    assert listed["total"] == 62 and len(listed["studies"]) == 50
    assert {s["status"] for s in listed["studies"]} == {"classified"}  # newest first: the 60 lines came last
    assert page.client.get("/api/studies?page=2").json["studies"][-1]["key"] in (good, bad)
    assert page.client.get("/api/studies?refer=1").json["total"] == 20
    today = listed["studies"][0]["time"][:10]
    assert page.client.get(f"/api/studies?since={today}&until={today}").json["total"] == 62
    assert page.client.get("/api/studies?since=2999-01-01").json["total"] == 0
    assert page.client.get("/api/studies?until=2000-01-01").json["total"] == 0
    assert page.login() == 302
    text = page.client.get("/?page=2").text
    assert "62 studies, page 2 of 2" in text and "failed: " in text and 'href="/?page=1"' in text
    assert page.client.get(f"/study/{good}/film.png").data.startswith(b"\x89PNG")
    assert page.client.get(f"/study/{good}/result.png").data.startswith(b"\x89PNG")
    refer_page = page.client.get(f"/study/{0:064x}").text
    assert '<span class="refer">REFER</span>' in refer_page and "refer when the abnormal score ≥ 0.5000" in refer_page
    assert 'id="banner">REFER' in refer_page and '<span id="threshold">0.50</span>' in refer_page
    main.stop()


def test_monitoring_per_week():
    rows = [{"time": "2026-11-30T10:00:00+00:00", "flagged": f, "outcome": o} for f, o in
            [(True, "positive"), (True, "negative"), (False, "negative"), (False, "positive"), (False, None), (True, "not_done")]]
    rows.append({"time": "2026-11-29T10:00:00+00:00", "flagged": True, "outcome": "positive"})
    newer, older = monitoring.weekly(rows)
    assert {k: newer[k] for k in monitoring.COLUMNS} == {"week": "2026-W49", "profile": "", "read": 6, "flagged": 3, "share_flagged": 0.5, "with_outcome": 4,
                     "positive": 2, "negative": 2,
                     "true_positive": 1, "false_negative": 1, "true_negative": 1, "false_positive": 1,
                     "sensitivity": 0.5, "specificity": 0.5, "yield": 0.5}
    assert older["week"] == "2026-W48" and older["sensitivity"] == 1.0 and older["specificity"] is None
    recalibrated = monitoring.weekly([{"time": "2026-11-30T10:00:00+00:00", "flagged": True, "outcome": None, "profile": p} for p in "abb"])
    assert [(w["week"], w["profile"], w["read"]) for w in recalibrated] == [("2026-W49", "b", 2), ("2026-W49", "a", 1)]
    record = {"model": "resnet18-int8", "model_version": "1.2.0", "head": "site", "operating_point": [{"for": "abnormal", "threshold": 0.35}]}
    assert monitoring.profile_of(record) == "resnet18-int8 1.2.0, refer at abnormal ≥ 0.3500, site head"
    assert monitoring.profile_of({"model": "m", "model_version": "1"}) == "m 1, no site profile"
    assert newer["counts"]["sensitivity"] == (1, 2) and newer["counts"]["share_flagged"] == (3, 6)
    assert newer["sensitivity_low"] == pytest.approx(0.0945, abs=1e-4) and newer["sensitivity_high"] == pytest.approx(0.9055, abs=1e-4)
    assert older["sensitivity_low"] == pytest.approx(0.2065, abs=1e-4) and older["sensitivity_high"] == 1.0  # 1 of 1: 21-100%
    assert older["specificity_low"] is None
    assert monitoring.as_csv([newer]).splitlines()[1] == (
        "2026-W49,,6,3,0.5000,4,2,2,1,1,1,1,0.5000,0.5000,0.5000,0.1876,0.8124,0.0945,0.9055,0.0945,0.9055,0.0945,0.9055")


def test_passwords_are_hashed_with_scrypt(tmp_path):
    from edgecxr.clinic.web import server

    line = auth.hash_password("s3cret-words")
    assert line.startswith("scrypt$") and "s3cret" not in line
    assert auth.check_password("s3cret-words", line) and not auth.check_password("s3cret-wordz", line)
    assert not auth.check_password("x", "garbage") and auth.hash_password("a") != auth.hash_password("a")
    users = server.accounts(tmp_path)
    users.set_user("ann", "reviewer", "s3cret-words")
    assert users.check("ann", "s3cret-words") == "reviewer" and users.check("ann", "wrong") is None and users.check("bob", "x") is None
    assert "s3cret" not in (tmp_path / "web" / "accounts.sqlite").read_bytes().decode("latin-1")
    assert auth.basic_credentials("Basic " + base64.b64encode(b"u:p:q").decode()) == ("u", "p:q")
    assert auth.basic_credentials("Basic !!") is None and auth.basic_credentials(None) is None


def test_serve_command_errors(runner, tmp_path, model_path):
    from edgecxr.cli import main
    from edgecxr.clinic.web.app import HEADERS

    r = runner.invoke(main, ["serve", "--help"])
    assert r.exit_code == 0 and "--password-file" in r.output and "HTTP Basic" in r.output
    r = runner.invoke(main, ["serve", "--store", str(tmp_path / "s"), "--model", model_path])
    assert r.exit_code == 2 and "no password set for this store" in r.stderr
    short = tmp_path / "pw"
    short.write_text("short\n")
    short.chmod(0o600)
    r = runner.invoke(main, ["serve", "--store", str(tmp_path / "s"), "--password-file", str(short), "--model", model_path])
    assert r.exit_code == 2 and "at least 8 characters" in r.stderr
    short.write_text(PASSWORD + "\n")
    short.chmod(0o644)
    r = runner.invoke(main, ["serve", "--store", str(tmp_path / "s"), "--password-file", str(short), "--model", model_path])
    assert r.exit_code == 2 and "readable by group or others (mode 0644): chmod 600" in r.stderr and "Traceback" not in r.output
    short.chmod(0o600)
    r = runner.invoke(main, ["serve", "--store", str(tmp_path / "s"), "--add-user", "nurse", "--role", "reviewer", "--password-file", str(short)])
    assert r.exit_code == 0 and "user nurse saved with role reviewer" in r.stderr
    from edgecxr.clinic.web import server

    assert server.accounts(tmp_path / "s").users() == [("nurse", "reviewer")]
    r = runner.invoke(main, ["serve", "--store", str(tmp_path / "s"), "--remove-user", "nobody"])
    assert r.exit_code == 2 and "no such user (users: nurse)" in r.stderr
    r = runner.invoke(main, ["serve", "--store", str(tmp_path / "s"), "--remove-user", "nurse"])
    assert r.exit_code == 0 and "user nurse removed" in r.stderr and server.accounts(tmp_path / "s").users() == []
    (tmp_path / "file").write_text("not a folder")
    r = runner.invoke(main, ["serve", "--store", str(tmp_path / "file" / "s"), "--add-user", "x", "--password-file", str(short)])
    assert r.exit_code == 2 and "cannot keep the accounts there" in r.stderr and isinstance(r.exception, SystemExit)
    r = runner.invoke(main, ["serve", "--store", str(tmp_path / "s"), "--add-user", "a:b", "--password-file", str(short)])
    assert r.exit_code == 2 and "without ':'" in r.stderr
    r = runner.invoke(main, ["serve", "--store", str(tmp_path / "s"), "--add-user", "x", "--role", "boss", "--password-file", str(short)])
    assert r.exit_code == 2 and "'boss' is not one of" in r.stderr
    assert json.loads(json.dumps(HEADERS))  # the headers are plain strings


def test_serve_warns_off_localhost_stops_on_sigterm_and_holds_its_store(tmp_path, model_path):
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    (tmp_path / "pw").chmod(0o600)
    command = [sys.executable, "-m", "edgecxr", "serve", "--store", str(tmp_path / "store"), "--password-file", str(tmp_path / "pw"), "--model", model_path]
    err = tmp_path / "serve.stderr"
    with open(err, "wb") as fh:
        proc = subprocess.Popen([*command, "--host", "0.0.0.0", "--port", str(free_port())], stdout=subprocess.DEVNULL, stderr=fh, env=child_env())
    try:
        wait_for(lambda: b"serving" in err.read_bytes() or proc.poll() is not None, 60, "edgecxr serve to start")
        assert "warning: serving on 0.0.0.0: anyone who can reach this machine" in err.read_text()
        second = subprocess.run([*command, "--port", str(free_port())], capture_output=True, text=True, env=child_env(), timeout=60)
        assert second.returncode == 2 and "the store is in use by another edgecxr process" in second.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    assert "Traceback" not in err.read_text() and "edgecxr: stopped" in err.read_text()
