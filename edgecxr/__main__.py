"""``python -m edgecxr`` is the ``edgecxr`` command."""
from edgecxr.cli import main

main()
