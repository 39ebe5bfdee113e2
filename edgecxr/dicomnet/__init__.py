"""edgecxr in a clinic's DICOM network: ``edgecxr listen`` (a Storage SCP) and ``edgecxr watch`` (a drop folder).

Needs the ``clinic`` extra (``pip install 'edgecxr[clinic]'``: pynetdicom, highdicom); the rest of
edgecxr never imports this package. One module per job:

- :mod:`~edgecxr.dicomnet.store`: the store folder, its salt and pseudonymous keys, atomic writes;
- :mod:`~edgecxr.dicomnet.journal`: the append-only JSON-lines logs (``audit.jsonl``, ``results.jsonl``);
- :mod:`~edgecxr.dicomnet.instances`: which DICOM instances are accepted (header alone) and when two are the same;
- :mod:`~edgecxr.dicomnet.results`: a classification as a DICOM Structured Report and a Secondary Capture;
- :mod:`~edgecxr.dicomnet.worker`: the classifying thread, one instance at a time, exactly once;
- :mod:`~edgecxr.dicomnet.forward`: the on-disk send queue, retried with backoff;
- :mod:`~edgecxr.dicomnet.service`: worker and sender run, resumed and drained together;
- :mod:`~edgecxr.dicomnet.health`: the running service's status file and ``listen --check``;
- :mod:`~edgecxr.dicomnet.listen` and :mod:`~edgecxr.dicomnet.watch`: the two ways films come in.
"""
