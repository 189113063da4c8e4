"""Keep passwords out of everything a user, a log or a child process can see.

Every password the tool learns (from a DSN, the environment or a profile) is registered here,
and :func:`redact` replaces each of its spellings (raw, percent-encoded, form-encoded) with
``***``. The task layer redacts every line it prints; exception texts pass through it too.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import quote, quote_plus

MASK = "***"
MIN_SUBSTITUTED = 4

_lock = threading.Lock()
_secrets: set[str] = set()


def register(password: str | None, public: tuple[str, ...] = ()) -> None:
    """Remember ``password`` so that :func:`redact` hides it from now on.

    ``public`` holds the parts of the same DSN that are shown on purpose (user, host,
    database): a password that is one of them, like the local emulator's ``athlete``, is
    not masked by substitution, or every user name in the output would turn into ``***``.
    Such a password is still never formatted into output: masked DSNs are built from parts.
    Neither is one of under four characters substituted (it would turn every ``p`` of the
    output into ``***``); such a password protects nothing anyway.
    """
    if not password or len(password) < MIN_SUBSTITUTED or any(password in part for part in public):
        return
    with _lock:
        for spelling in (password, quote(password, safe=""), quote(password), quote_plus(password)):
            _secrets.add(spelling)


# A DSN's password wherever a URL appears, even one never parsed as a DSN (a DSN given where a
# path was expected, and echoed as that path: postgresql:/user:pw@host with one slash).
_URL_PASSWORD = re.compile(r"(postgres(?:ql)?:/+[^:/@\s]*:)([^@\s/]+)(@)", re.IGNORECASE)


# a help text's placeholder, and the mask itself escaped for Markdown (the seed plan's target)
_NOT_PASSWORDS = ("password", MASK.replace("*", "\\*"))


def redact(text: str) -> str:
    """``text`` with every registered password (in any of its spellings) masked, and the
    password of anything shaped like a PostgreSQL URL."""
    with _lock:
        spellings = sorted(_secrets, key=len, reverse=True)
    for secret in spellings:
        if secret in text:
            text = text.replace(secret, MASK)
    if "postgres" in text.lower():  # ("password" itself is the placeholder of a help text)
        text = _URL_PASSWORD.sub(lambda m: m.group(0) if m.group(2) in _NOT_PASSWORDS
                                 else f"{m.group(1)}{MASK}{m.group(3)}", text)
    return text
