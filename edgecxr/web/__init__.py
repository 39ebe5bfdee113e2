"""``edgecxr serve``: a small web page over the store, for the nurse or clinician with a browser.

Needs the ``clinic`` extra (Flask, waitress); the rest of edgecxr never imports this package.
Flask because it is small, long maintained and renders on the server with Jinja2, whose
autoescaping makes every shown value text; its test client drives every route in the tests.
waitress serves it: a pure-Python production WSGI server, no compiler, no C library, fits a Pi.
One module per job:

- :mod:`~edgecxr.web.auth`: password hashes (scrypt), HTTP Basic, CSRF tokens;
- :mod:`~edgecxr.web.accounts`: users with roles, server-side sessions, login throttling;
- :mod:`~edgecxr.web.index`: the SQLite index of studies, outcomes, their history and reads, caught up from the stores' logs;
- :mod:`~edgecxr.web.patients`: who a study is (patient ID, accession, study date, description), for logged-in users;
- :mod:`~edgecxr.web.uploads`: a film uploaded through the page or the API, into the upload store;
- :mod:`~edgecxr.web.pictures`: the film and its heatmap picture as PNG for the browser;
- :mod:`~edgecxr.web.monitoring`: films read, share flagged, sensitivity, specificity and yield per week;
- :mod:`~edgecxr.web.app`: the Flask application, its routes and security headers;
- :mod:`~edgecxr.web.server`: the private store folder, the accounts, the upload service, waitress until SIGTERM.
"""
