"""The Flask application of ``edgecxr serve``: worklist, study page, upload, JSON API, monitoring.

Security model: every request must name an allowed host (``Host``; DNS rebinding gets 400). Pages
need a login (a reader sees, a reviewer also uploads and records outcomes: :mod:`accounts`),
unless the site serves a kiosk (``public_read``: anyone who reaches the port sees results, never
patient identifiers, file names or notes). The page login is a server-side session: the cookie
carries only a random id (HttpOnly, SameSite=Strict, Secure over HTTPS or behind a proxy that says
so) and every form a CSRF token of that session; logout ends it. The JSON API (``/api/``) takes
HTTP Basic only, and refuses a browser's cross-site request. Failed logins, by either way, are
throttled per user and address and logged. Uploads are limited to :data:`MAX_UPLOAD` bytes and to
image content. Every response carries a strict Content-Security-Policy (no script at all) and no
error shows a traceback; every query parameter is checked (a bad one gets 400).
"""
from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from flask import Flask, Response, abort, g, jsonify, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as Redirect

from edgecxr import __version__
from edgecxr.clinic.results import NOTICE
from edgecxr.clinic.store import received_file
from edgecxr.clinic.web import auth, monitoring, pictures
from edgecxr.clinic.web.accounts import Accounts, Session, Throttle
from edgecxr.clinic.web.index import OUTCOMES, Filters, Index
from edgecxr.clinic.web.uploads import UploadError, Uploads
from edgecxr.core.card import ModelCard
from edgecxr.core.imageio import ImageError
from edgecxr.core.site import NORMAL

MAX_UPLOAD = 40 * 2**20  # bytes of one request
PER_PAGE = 50
MAX_PAGE = 1_000_000
MAX_SEARCH = 100  # characters
RESULT_WAIT = 120.0  # seconds an upload waits for its result
COOKIE = "edgecxr_session"
KEY = re.compile(r"[0-9a-f]{64}")
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
LOGIN_FREE = ("login", "static")  # endpoints a page needs no login for
log = logging.getLogger("edgecxr.clinic.web")


@dataclass
class Site:
    """What the routes work on: the index, the two stores' folders, the uploads, the model's card, the accounts."""

    index: Index
    roots: dict[str, Path]  # origin -> store folder
    uploads: Uploads
    card: ModelCard
    accounts: Accounts
    allowed_hosts: frozenset[str]
    public_read: bool = False
    throttle: Throttle = field(default_factory=Throttle)


def create_app(site: Site) -> Flask:
    """The application over ``site``."""
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=MAX_UPLOAD)

    @app.before_request
    def checked_host_and_session() -> Any:
        if _host(request.host) not in site.allowed_hosts:
            abort(400, "this server does not answer to that host name (see --allowed-host)")
        g.session, g.new_cookie = None, None
        if request.path.startswith("/api/"):
            return None  # the API takes HTTP Basic only, never the cookie
        g.session = site.accounts.resume(request.cookies.get(COOKIE))
        if request.endpoint not in LOGIN_FREE and not site.public_read and not _logged_in():
            return redirect(url_for("login"))
        return None

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers.update(HEADERS)
        if g.get("new_cookie") is not None:
            secure = request.is_secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"
            if g.new_cookie:
                response.set_cookie(COOKIE, g.new_cookie, httponly=True, samesite="Strict", secure=secure)
            else:
                response.delete_cookie(COOKIE, httponly=True, samesite="Strict", secure=secure)
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
        log.error("unexpected error on %s: %s", request.path, type(exc).__name__)
        message = f"unexpected error ({type(exc).__name__})"
        if request.path.startswith("/api/"):
            return jsonify({"error": message}), 500
        return render_template("error.html", code=500, message=message), 500

    def checked_form(role: str) -> Session:
        """Refuse a form POST with a CSRF token that is not the session's, or from a user without ``role``."""
        s = _session()
        if s is None or not auth.same_token(request.form.get("csrf"), s.csrf):
            abort(400, "the form has expired or did not come from this page: reload it and try again")
        if not s.may(role):
            abort(403, f"this needs a {role}'s login" if s.user else None)
        return s

    def throttled_check(user: str, password: str) -> str | None:
        """The role of ``user`` when the password is right; None otherwise; 429 while its failures are too many."""
        address = request.remote_addr or "-"
        if site.throttle.blocked(user, address):
            log.warning("login refused without a check: too many failures for user %r or from %s", user, address)
            abort(429)
        role = site.accounts.check(user, password)
        if role is None:
            site.throttle.failed(user, address)
            log.warning("failed login for user %r from %s", user, address)
        return role

    def api_user(role: str | None = "reviewer") -> str | None:
        """The API client's user (HTTP Basic) when it has ``role``; None for an anonymous client where ``role`` is None."""
        if request.headers.get("Sec-Fetch-Site", "none") not in ("same-origin", "none"):
            abort(403, "a browser's cross-site request to the API is refused (Sec-Fetch-Site); call it from a script or this site's pages")
        given = auth.basic_credentials(request.headers.get("Authorization"))
        if given is None:
            if role is None:
                return None
            abort(401)
        got = throttled_check(*given)
        if got is None:
            abort(401)
        if role is not None and not Session("", given[0], got, "").may(role):
            abort(403, f"this needs a {role}'s credentials")
        return given[0]

    def study_or_404(key: str) -> dict[str, Any]:
        if not KEY.fullmatch(key):
            abort(404)
        site.index.sync()
        study = site.index.study(key)
        if study is None:
            abort(404)
        return _shown(site, study)

    @app.get("/")
    def worklist() -> str:
        filters, page = _filters(_logged_in()), _page()
        site.index.sync()
        rows, total = site.index.page(filters, page, PER_PAGE)
        pages = max(1, math.ceil(total / PER_PAGE))
        return render_template("worklist.html", rows=[_shown(site, r) for r in rows], total=total, page=page, pages=pages,
                               filters=filters, args=_filter_args(filters))

    @app.get("/study/<key>")
    def study(key: str) -> str:
        heatmap = _choice("heatmap", ("", "0", "1")) == "1"
        view = _viewer()
        row = study_or_404(key)
        s = _session()
        site.index.record_read(key, s.user if s and s.user else "-")
        record = row["record"]
        card = site.card if record.get("model_sha256") == site.card.sha256 else None
        show_heat = row["status"] == "classified" and (heatmap or record.get("label") != NORMAL)
        history = site.index.history(key) if _logged_in() else []
        return render_template("study.html", s=row, r=record, card=card, show_heat=show_heat, asked=heatmap, view=view,
                               history=history, has_film=received_file(site.roots[row["origin"]], key) is not None,
                               bar=_bar(record))

    @app.get("/study/<key>/film.png")
    def film(key: str) -> Response:
        full, (center, width) = _choice("full", ("", "0", "1")) == "1", _viewer()
        row = study_or_404(key)
        root = site.roots[row["origin"]]
        name = f"{key}.film{'.full' if full else ''}{'' if (center, width) == (50, 100) else f'.c{center}w{width}'}.png"
        try:
            data = pictures.cached(site.uploads.service.store, name, lambda: pictures.film_png(root, key, full, center, width))
        except ImageError:
            data = None
        return _png(data)

    @app.get("/study/<key>/original")
    def original(key: str) -> Response:
        row = study_or_404(key)
        path = received_file(site.roots[row["origin"]], key)
        if path is None or not _logged_in():
            abort(404)
        return Response(path.read_bytes(), mimetype="application/octet-stream",
                        headers={"Content-Disposition": f"attachment; filename={key[:12]}{path.suffix}"})

    @app.get("/study/<key>/result.png")
    def result(key: str) -> Response:
        row = study_or_404(key)
        root = site.roots[row["origin"]]
        files = row["record"].get("results", [])
        return _png(pictures.cached(site.uploads.service.store, f"{key}.result.png", lambda: pictures.result_png(root, files)))

    @app.post("/study/<key>/outcome")
    def outcome(key: str) -> Redirect:
        s = checked_form("reviewer")
        study_or_404(key)
        value, note = request.form.get("outcome", ""), request.form.get("note")
        if value not in OUTCOMES:
            abort(400, f"choose an outcome: {', '.join(OUTCOMES.values())}")
        assert s.user is not None, "a reviewer is logged in"
        site.index.record_outcome(key, value, None if note is None else note.strip()[:2000], s.user)
        site.uploads.service.audit.write("outcome", key, outcome=value, user=s.user)
        return redirect(url_for("study", key=key))

    @app.route("/upload", methods=["GET", "POST"])
    def upload() -> Any:
        if request.method == "GET":
            return render_template("upload.html", error=None)
        checked_form("reviewer")
        try:
            key = _take(site, request.files.get("file"))
        except UploadError as exc:
            return render_template("upload.html", error=str(exc)), 400
        return redirect(url_for("study", key=key))

    @app.post("/api/predict")
    def api_predict() -> Any:
        api_user("reviewer")
        try:
            key = _take(site, request.files.get("file"))
        except UploadError as exc:
            return jsonify({"error": str(exc)}), 400
        row = site.index.study(key)
        assert row is not None, "_take returns once the study is indexed"
        row = _shown(site, row)
        if row["status"] == "failed":
            return jsonify({"file": site.uploads.names.get(key), "error": row["reason"], "key": key}), 422
        return jsonify({**{k: v for k, v in row["record"].items() if k not in ("time", "event")}, "warnings": row["warnings"], "key": key})

    @app.get("/api/studies")
    def api_studies() -> Any:
        user = api_user("reader" if not site.public_read else None)
        filters, page = _filters(user is not None), _page()
        site.index.sync()
        rows, total = site.index.page(filters, page, PER_PAGE)
        return jsonify({"total": total, "page": page, "per_page": PER_PAGE, "studies": [_public(_shown(site, r), user is not None) for r in rows]})

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
        s = _session()
        if s is None or not auth.same_token(request.form.get("csrf"), s.csrf):
            abort(400, "the form has expired or did not come from this page: reload it and try again")
        user, password = request.form.get("user", "")[:64], request.form.get("password", "")
        if throttled_check(user, password) is None:
            return render_template("login.html", error="wrong user name or password"), 403
        site.accounts.end(s.sid)
        g.session = site.accounts.start(user)
        g.new_cookie = g.session.sid
        return redirect(url_for("worklist"))

    @app.post("/logout")
    def logout() -> Redirect:
        s = _session()
        if s is None or not auth.same_token(request.form.get("csrf"), s.csrf):
            abort(400, "the form has expired or did not come from this page: reload it and try again")
        site.accounts.end(s.sid)
        g.session, g.new_cookie = None, ""
        return redirect(url_for("login"))

    @app.get("/users")
    def users() -> str:
        s = _session()
        if s is None or not s.may("admin"):
            abort(403, "this needs an admin's login")
        return render_template("users.html", users=site.accounts.users())

    def _csrf_token() -> str:
        """The session's CSRF token; a page shown before login starts an anonymous session to hold it."""
        if _session() is None:
            g.session = site.accounts.start()
            g.new_cookie = g.session.sid
        return str(g.session.csrf)

    app.jinja_env.globals.update(notice=NOTICE, version=__version__, outcomes=OUTCOMES, csrf_token=_csrf_token, logged_in=_logged_in,
                                 may=_may, user=lambda: g.session.user if g.get("session") else None, NORMAL=NORMAL)
    return app


_MESSAGES = {
    400: "the request could not be understood",
    401: "this needs a user name and password (HTTP Basic)",
    403: "log in first: only a logged-in user with the right role can do this",
    404: "no such page or study",
    405: "that method is not allowed here",
    413: f"the upload is larger than {MAX_UPLOAD // 2**20} MB",
    429: "too many failed logins for this user or from this address: wait 15 minutes",
}


def _session() -> Session | None:
    return g.get("session")


def _logged_in() -> bool:
    s = _session()
    return s is not None and s.user is not None


def _may(role: str) -> bool:
    s = _session()
    return s is not None and s.may(role)


def _host(host: str) -> str:
    """The name of a ``Host`` header, without its port, lower case (``[::1]:8080`` -> ``::1``)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def allowed_hosts(bound: str, extra: tuple[str, ...]) -> frozenset[str]:
    """The host names the server answers to: ``extra``, or by default the bound address and localhost's names."""
    names = {h.lower() for h in extra} if extra else {bound.lower(), "localhost", "127.0.0.1", "::1"}
    return frozenset(names - {"0.0.0.0", "::"})


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


def _shown(site: Site, row: dict[str, Any]) -> dict[str, Any]:
    """A study as shown: with the upload's own warnings (a re-used SOP Instance UID)."""
    extra = site.uploads.warnings.get(row["key"], []) if row["origin"] == "upload" else []
    return {**row, "warnings": [*row["warnings"], *extra]}


def _choice(name: str, allowed: tuple[str, ...]) -> str:
    value = request.args.get(name, "")
    if value not in allowed:
        abort(400, f"{name}: one of {', '.join(a for a in allowed if a)}")
    return value


def _integer(name: str, default: int, low: int, high: int) -> int:
    value = request.args.get(name)
    if value is None or value == "":
        return default
    if not (value.isascii() and value.isdigit() and len(value) <= 9 and low <= int(value) <= high):
        abort(400, f"{name}: a whole number from {low} to {high:,}")
    return int(value)


def _date(name: str) -> str | None:
    value = request.args.get(name, "")
    if not value:
        return None
    try:
        if not DATE.fullmatch(value):
            raise ValueError
        date.fromisoformat(value)
    except ValueError:
        abort(400, f"{name}: a real date, written YYYY-MM-DD")
    return value


def _filters(identified: bool) -> Filters:
    """The worklist's filters from the query; searching (by patient ID, accession, description, name) needs a login."""
    since, until = _date("since"), _date("until")
    if since and until and since > until:
        abort(400, "since: a date on or before until")
    search = request.args.get("q", "").strip()
    if len(search) > MAX_SEARCH or not search.isprintable():
        abort(400, f"q: at most {MAX_SEARCH} printable characters")
    if search and not identified:
        abort(403, "searching by patient needs a login")
    return Filters(refer=_choice("refer", ("", "0", "1")) == "1", unreviewed=_choice("unreviewed", ("", "0", "1")) == "1",
                   since=since, until=until, search=search or None)


def _filter_args(filters: Filters) -> dict[str, str]:
    out = {"refer": "1" if filters.refer else "", "unreviewed": "1" if filters.unreviewed else "", "since": filters.since or "",
           "until": filters.until or "", "q": filters.search or ""}
    return {k: v for k, v in out.items() if v}


def _page() -> int:
    return _integer("page", 1, 1, MAX_PAGE)


def _viewer() -> tuple[int, int]:
    """The film viewer's window: its centre and width in percent of the film's range (50, 100: as read)."""
    return _integer("center", 50, 0, 100), _integer("width", 100, 1, 100)


def _bar(record: dict[str, Any]) -> dict[str, Any] | None:
    """The abnormal-score bar: the score and the site's refer threshold (None without either), both 0-1."""
    score = record.get("abnormal_score")
    if score is None:
        return None
    threshold = next((op["threshold"] for op in record.get("operating_point") or [] if op.get("for") == "abnormal"), None)
    return {"score": float(score), "threshold": None if threshold is None else float(threshold)}


def _public(row: dict[str, Any], identified: bool) -> dict[str, Any]:
    """A study as ``GET /api/studies`` lists it; who it is and the name it came under only for an authenticated client."""
    out = {k: row[k] for k in ("key", "origin", "time", "status", "label", "abnormal_score", "refer", "warnings", "reason", "outcome")}
    out["probabilities"] = row["record"].get("probabilities")
    if identified:
        out |= {k: row[k] for k in ("file", "patient_id", "accession", "study_date", "description")}
    return out


def _png(data: bytes | None) -> Response:
    if data is None:
        abort(404)
    return Response(data, mimetype="image/png")
