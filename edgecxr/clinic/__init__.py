"""edgecxr in a clinic: films taken in, classified once each, results written and sent, and a web page over them.

Needs the ``clinic`` extra (``pip install 'edgecxr[clinic]'``: pynetdicom, highdicom, Flask,
waitress, imagecodecs); ``edgecxr.core`` and ``edgecxr.evaluation`` never import it. The modules here are what
every way in shares:

- :mod:`~edgecxr.clinic.store`: the store folder, its salt and pseudonymous keys, atomic writes;
- :mod:`~edgecxr.clinic.journal`: the append-only JSON-lines logs (``audit.jsonl``, ``results.jsonl``), rotated and retired;
- :mod:`~edgecxr.clinic.instances`: which DICOM instances are accepted (header alone) and when two are the same;
- :mod:`~edgecxr.clinic.ljpeg`: the JPEG Lossless SV1 decoding plugin pydicom is given (imagecodecs);
- :mod:`~edgecxr.clinic.routing`: which films the model reads, by their header (the card's intended films, ``--rules``);
- :mod:`~edgecxr.clinic.results`: a classification as a DICOM Structured Report and a Secondary Capture;
- :mod:`~edgecxr.clinic.uids`: the results' UIDs, under the site's organisation root (``--uid-root``) or pydicom's;
- :mod:`~edgecxr.clinic.writers`: the one registry of result files (each its suffix, films, SOP class, picture);
- :mod:`~edgecxr.clinic.record`: the result record and the log lines made from it;
- :mod:`~edgecxr.clinic.worker`: the classifying thread, one instance at a time, exactly once;
- :mod:`~edgecxr.clinic.forward`: the on-disk send queue, retried with backoff, optionally over DICOM TLS;
- :mod:`~edgecxr.clinic.service`: worker and sender run, resumed and drained together;
- :mod:`~edgecxr.clinic.health`: the running service's status file and ``listen --check``.

The ways in, each a subpackage that imports the modules above and ``edgecxr.core``, never the other:
:mod:`edgecxr.clinic.dicomnet` (``edgecxr listen``, a Storage SCP; ``edgecxr watch``, a drop
folder) and :mod:`edgecxr.clinic.web` (``edgecxr serve``, the page and its uploads).
"""
