"""The Flask application of ``edgecxr serve``: worklist, study page, upload, JSON API, monitoring.

Security model: anyone who can reach the port may read (the worklist shows no patient
identifiers; the names films were uploaded or dropped under are shown only to the logged-in
user); anything that changes state (upload, outcome) needs the one account, through the login
form (a session cookie, SameSite=Strict, and a CSRF token in every form) or, for the JSON API,
HTTP Basic with the same credentials (a cross-site browser request to the API is refused).
Uploads are limited to :data:`MAX_UPLOAD` bytes and to image content. Every response carries a
strict Content-Security-Policy (no script at all: the heatmap toggle is plain HTML and CSS) and
no error shows a traceback.
"""
from __future__ import annotations

import math
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask, Response, abort, jsonify, redirect, render_template, request, session, url_for
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as Redirect

from edgecxr import __version__
from edgecxr.clinic.results import NOTICE
from edgecxr.clinic.web import auth, monitoring, pictures
from edgecxr.clinic.web.index import OUTCOMES, Filters, Index
from edgecxr.clinic.web.uploads import UploadError, Uploads
from edgecxr.core.card import ModelCard
from edgecxr.core.imageio import ImageError

MAX_UPLOAD = 40 * 2**20  # bytes of one request
PER_PAGE = 50
RESULT_WAIT = 120.0  # seconds an upload waits for its result
KEY = re.compile(r"[0-9a-f]{64}")
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass
class Site:
    """What the routes work on: the index, the two stores' folders, the uploads, the model's card, the account."""

    index: Index
    roots: dict[str, Path]  # origin -> store folder
    uploads: Uploads
    card: ModelCard
    user: str
    password_line: str


def create_app(site: Site, secret: bytes) -> Flask:
    """The application over ``site``; ``secret`` signs the session cookie."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=secret, MAX_CONTENT_LENGTH=MAX_UPLOAD, SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Strict",
    )
    app.jinja_env.globals.update(notice=NOTICE, version=__version__, outcomes=OUTCOMES, csrf_token=_csrf_token, logged_in=_logged_in)

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers.update(HEADERS)
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Any, int]:
        code = exc.code or 500
        own = exc.description is not None and exc.description != type(exc).description  # abort(code, "why")
        message = str(exc.description) if own else _MESSAGES.get(code, exc.name)
        if request.path.startswith("/api/"):
            response = jsonify({"error": message})
            if code == 401:
                response.headers["WWW-Authenticate"] = 'Basic realm="edgecxr", charset="UTF-8"'
            return response, code
        return render_template("error.html", code=code, message=message), code

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> tuple[Any, int]:
        app.logger.error("unexpected error on %s: %s", request.path, type(exc).__name__)
        message = f"unexpected error ({type(exc).__name__})"
        if request.path.startswith("/api/"):
            return jsonify({"error": message}), 500
        return render_template("error.html", code=500, message=message), 500

    def checked_form() -> None:
        """Refuse a form POST without login or with a CSRF token that is not the session's."""
        if not auth.same_token(request.form.get("csrf"), session.get("csrf")):
            abort(400, "the form has expired or did not come from this page: reload it and try again")
        if not _logged_in():
            abort(403)

    def api_login() -> None:
        """Refuse an API request without the account's HTTP Basic credentials, or sent cross-site by a browser."""
        if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            abort(403)
        if not _basic_ok(site, request.headers.get("Authorization")):
            abort(401)

    def study_or_404(key: str) -> dict[str, Any]:
        if not KEY.fullmatch(key):
            abort(404)
        site.index.sync()
        study = site.index.study(key)
        if study is None:
            abort(404)
        return study

    @app.get("/")
    def worklist() -> str:
        filters, page = _filters(), _page()
        site.index.sync()
        rows, total = site.index.page(filters, page, PER_PAGE)
        pages = max(1, math.ceil(total / PER_PAGE))
        return render_template("worklist.html", rows=rows, total=total, page=page, pages=pages, filters=filters, args=_filter_args(filters))

    @app.get("/study/<key>")
    def study(key: str) -> str:
        row = study_or_404(key)
        record = row["record"]
        card = site.card if record.get("model_sha256") == site.card.sha256 else None
        return render_template("study.html", s=row, r=record, card=card)

    @app.get("/study/<key>/film.png")
    def film(key: str) -> Response:
        row = study_or_404(key)
        root = site.roots[row["origin"]]
        try:
            data = pictures.cached(site.uploads.service.store, f"{key}.film.png", lambda: pictures.film_png(root, key))
        except ImageError:
            data = None
        return _png(data)

    @app.get("/study/<key>/result.png")
    def result(key: str) -> Response:
        row = study_or_404(key)
        root = site.roots[row["origin"]]
        files = row["record"].get("results", [])
        return _png(pictures.cached(site.uploads.service.store, f"{key}.result.png", lambda: pictures.result_png(root, files)))

    @app.post("/study/<key>/outcome")
    def outcome(key: str) -> Redirect:
        checked_form()
        study_or_404(key)
        value, note = request.form.get("outcome", ""), request.form.get("note", "").strip()[:2000]
        if value not in OUTCOMES:
            abort(400, f"choose an outcome: {', '.join(OUTCOMES.values())}")
        site.index.record_outcome(key, value, note)
        site.uploads.service.audit.write("outcome", key, outcome=value)
        return redirect(url_for("study", key=key))

    @app.route("/upload", methods=["GET", "POST"])
    def upload() -> Any:
        if request.method == "GET":
            return render_template("upload.html", error=None)
        checked_form()
        try:
            key = _take(site, request.files.get("file"))
        except UploadError as exc:
            return render_template("upload.html", error=str(exc)), 400
        return redirect(url_for("study", key=key))

    @app.post("/api/predict")
    def api_predict() -> Any:
        api_login()
        try:
            key = _take(site, request.files.get("file"))
        except UploadError as exc:
            return jsonify({"error": str(exc)}), 400
        row = site.index.study(key)
        assert row is not None, "_take returns once the study is indexed"
        if row["status"] == "failed":
            return jsonify({"file": site.uploads.names.get(key), "error": row["reason"], "key": key}), 422
        return jsonify({**{k: v for k, v in row["record"].items() if k not in ("time", "event")}, "key": key})

    @app.get("/api/studies")
    def api_studies() -> Any:
        filters, page = _filters(), _page()
        names = _basic_ok(site, request.headers.get("Authorization"))
        site.index.sync()
        rows, total = site.index.page(filters, page, PER_PAGE)
        return jsonify({"total": total, "page": page, "per_page": PER_PAGE, "studies": [_public(r, names) for r in rows]})

    @app.get("/monitoring")
    def monitoring_page() -> str:
        site.index.sync()
        return render_template("monitoring.html", table=monitoring.weekly(site.index.read()))

    @app.get("/monitoring.csv")
    def monitoring_csv() -> Response:
        site.index.sync()
        text = monitoring.as_csv(monitoring.weekly(site.index.read()))
        return Response(text, mimetype="text/csv", headers={"Content-Disposition": "attachment; filename=edgecxr-monitoring.csv"})

    @app.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        if request.method == "GET":
            return render_template("login.html", error=None)
        if not auth.same_token(request.form.get("csrf"), session.get("csrf")):
            abort(400, "the form has expired or did not come from this page: reload it and try again")
        user, password = request.form.get("user", ""), request.form.get("password", "")
        if not (secrets.compare_digest(user.encode(), site.user.encode()) and auth.check_password(password, site.password_line)):
            return render_template("login.html", error="wrong user name or password"), 403
        session.clear()
        session["user"], session["csrf"] = site.user, auth.new_token()
        return redirect(url_for("worklist"))

    @app.post("/logout")
    def logout() -> Redirect:
        if not auth.same_token(request.form.get("csrf"), session.get("csrf")):
            abort(400, "the form has expired or did not come from this page: reload it and try again")
        session.clear()
        return redirect(url_for("worklist"))

    return app


_MESSAGES = {
    400: "the request could not be understood",
    401: "this needs the user name and password (HTTP Basic)",
    403: "log in first: only the logged-in user can change anything",
    404: "no such page or study",
    405: "that method is not allowed here",
    413: f"the upload is larger than {MAX_UPLOAD // 2**20} MB",
}


def _take(site: Site, upload: Any) -> str:
    """Store an uploaded film and wait until the index holds its result or failure; its key."""
    if upload is None or not upload.filename:
        raise UploadError("choose a film to upload (form field 'file')")
    key = site.uploads.take(upload.read(), upload.filename)
    _wait(lambda: site.index.sync() >= 0 and site.index.study(key) is not None, RESULT_WAIT)
    return key


def _wait(done: Callable[[], bool], timeout: float) -> None:
    end = time.monotonic() + timeout
    while not done():
        if time.monotonic() > end:
            raise UploadError(f"no result within {timeout:g} s; the film is kept and will appear in the worklist")
        time.sleep(0.02)


def _csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = auth.new_token()
    return str(session["csrf"])


def _logged_in() -> bool:
    return "user" in session


def _basic_ok(site: Site, header: str | None) -> bool:
    given = auth.basic_credentials(header)
    return given is not None and secrets.compare_digest(given[0].encode(), site.user.encode()) and auth.check_password(given[1], site.password_line)


def _filters() -> Filters:
    def date(name: str) -> str | None:
        value = request.args.get(name, "")
        if value and not DATE.fullmatch(value):
            abort(400, f"{name}: a date is written YYYY-MM-DD")
        return value or None

    return Filters(refer=request.args.get("refer") == "1", unreviewed=request.args.get("unreviewed") == "1", since=date("since"), until=date("until"))


def _filter_args(filters: Filters) -> dict[str, str]:
    out = {"refer": "1" if filters.refer else "", "unreviewed": "1" if filters.unreviewed else "", "since": filters.since or "", "until": filters.until or ""}
    return {k: v for k, v in out.items() if v}


def _page() -> int:
    value = request.args.get("page", "1")
    if not value.isdigit() or int(value) < 1:
        abort(400, "page: a whole number from 1")
    return int(value)


def _public(row: dict[str, Any], names: bool) -> dict[str, Any]:
    """A study as ``GET /api/studies`` lists it; the name it came under only for an authenticated client."""
    out = {k: row[k] for k in ("key", "origin", "time", "status", "label", "abnormal_score", "refer", "warnings", "reason", "outcome")}
    out["probabilities"] = row["record"].get("probabilities")
    if names:
        out["file"] = row["file"]
    return out


def _png(data: bytes | None) -> Response:
    if data is None:
        abort(404)
    return Response(data, mimetype="image/png")
