"""Movement data files, with no database: reading, checking and the canonical form.

``load.py`` validates a file (:func:`load_movements`): the fast pass (``batches.py`` reads,
``scan.py`` checks, ``fanout.py`` splits a large file between two processes) and, only when it
raises :class:`NeedsReport`, the precise report (``precise.py``), which lists every problem.
``canonical.py`` is the form a content hash is taken of; ``records.py`` what a pass yields;
``entries.py`` what is kept of each record between passes; ``schema.py`` the schema file and
its validators.
"""

from .batches import NeedsReport
from .canonical import canonical_bytes, canonical_json, content_hash
from .entries import Entries, Entry
from .load import load_movements
from .precise import check_document, parse_json
from .records import Dataset, Movement, Problem, Progress

__all__ = [
    "Dataset",
    "Entries",
    "Entry",
    "Movement",
    "NeedsReport",
    "Problem",
    "Progress",
    "canonical_bytes",
    "canonical_json",
    "check_document",
    "content_hash",
    "load_movements",
    "parse_json",
]
