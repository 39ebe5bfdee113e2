"""The clinic's DICOM network and drop folder: ``edgecxr listen`` (a Storage SCP) and ``edgecxr watch`` (a folder).

- :mod:`~edgecxr.clinic.dicomnet.listen`: the Storage SCP (pynetdicom), storing and acknowledging;
- :mod:`~edgecxr.clinic.dicomnet.watch`: films dropped into a folder, taken in once each.

Both hand what they take in to the service of :mod:`edgecxr.clinic` (store, worker, sender).
"""
