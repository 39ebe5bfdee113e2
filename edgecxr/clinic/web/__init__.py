"""``edgecxr serve``: a small web page over the store, for the nurse or clinician with a browser.

Needs the ``clinic`` extra (Flask, waitress); it runs over the service of :mod:`edgecxr.clinic` and never imports
:mod:`edgecxr.clinic.dicomnet`; inside edgecxr only the command line imports it.
Flask because it is small, long maintained and renders on the server with Jinja2, whose
autoescaping makes every shown value text; its test client drives every route in the tests.
waitress serves it: a pure-Python production WSGI server, no compiler, no C library, fits a Pi.
One module per job:

- :mod:`~edgecxr.clinic.web.auth`: password hashes (scrypt), HTTP Basic, CSRF tokens;
- :mod:`~edgecxr.clinic.web.accounts`: users with roles, server-side sessions, login throttling;
- :mod:`~edgecxr.clinic.web.index`: the SQLite index of studies, outcomes, their history and reads, caught up from the stores' logs;
- :mod:`~edgecxr.clinic.web.patients`: who a study is (patient ID, accession, study date, description), for logged-in users;
- :mod:`~edgecxr.clinic.web.uploads`: a film uploaded through the page or the API, into the upload store;
- :mod:`~edgecxr.clinic.web.pictures`: the film and its heatmap picture as PNG for the browser;
- :mod:`~edgecxr.clinic.web.monitoring`: films read, share flagged, sensitivity, specificity and yield per week;
- :mod:`~edgecxr.clinic.web.app`: the Flask application, its routes and security headers;
- :mod:`~edgecxr.clinic.web.server`: the private store folder, the accounts, the upload service, waitress until SIGTERM.
"""
