"""git's ``allowed_signers`` file, read as OpenSSH's sshsig.c reads it, quirks included: a line
ssh-keygen cannot read is skipped (and named), option values must be quoted, principals are
patterns (``*``, ``?``, ``!``), validity windows are local time unless marked UTC."""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ..base.errors import AllowedSignersUnreadable
from ..base.readonce import read_bounded
from .sshkeys import (
    OTHER_NAMES,
    VERIFIED_NAMES,
    WHITESPACE,
    PublicKey,
    UnsupportedKey,
    b64_pton,
    key_from_blob,
    printable,
)

MAX_ALLOWED_SIGNERS_BYTES = 1024 * 1024



def _match(value: bytes, pattern: bytes) -> bool:
    """match.c match_pattern: ``*`` and ``?`` wildcards, byte by byte, case-sensitive."""
    i = j = 0
    while True:
        if j == len(pattern):
            return i == len(value)
        if pattern[j] == ord("*"):
            while j < len(pattern) and pattern[j] == ord("*"):
                j += 1
            if j == len(pattern):
                return True
            return any(_match(value[k:], pattern[j:]) for k in range(i, len(value))
                       if pattern[j] == ord("?") or value[k] == pattern[j])
        if i == len(value) or (pattern[j] != ord("?") and pattern[j] != value[i]):
            return False
        i, j = i + 1, j + 1


def _match_list(value: bytes, patterns: bytes) -> int:
    """match.c match_pattern_list: 1 when a pattern matches, -1 when a negated one (``!``)
    does, else 0; a pattern of 1023 bytes or more ends the list with 0."""
    got, i = 0, 0
    while i < len(patterns):
        negated = patterns[i] == ord("!")
        i += negated
        end = patterns.find(b",", i)
        end = len(patterns) if end < 0 else end
        sub = patterns[i:end]
        if len(sub) >= 1023:
            return 0
        i = end + 1
        if _match(value, sub):
            if negated:
                return -1
            got = 1
    return got


def _strdelimw(line: bytes) -> tuple[bytes, bytes] | None:
    """misc.c strdelimw: the first field (a double quote starts a quoted part that may hold
    spaces) and the rest; None when ssh-keygen finds no field and rest (an unmatched quote, or
    nothing after the field)."""
    stop = next((i for i, c in enumerate(line) if c in WHITESPACE + b'"'), None)
    if stop is None:
        return None
    if line[stop] == ord('"'):
        line = line[:stop] + line[stop + 1:]
        close = line.find(b'"', stop)
        if close < 0:
            return None
        return line[:close], line[close + 1:].lstrip(WHITESPACE)
    return line[:stop], line[stop + 1:].lstrip(WHITESPACE)


class _NotAKeyType(ValueError):
    """The field is no key type: ssh-keygen then reads it as options."""


def _read_key(text: bytes) -> tuple[PublicKey, bytes]:
    """sshkey_read: ``key-type base64``, the type one of OpenSSH's full names and the blob's."""
    space = next((i for i, c in enumerate(text) if c in b" \t"), None)
    if space is None:
        raise ValueError("no key")
    name = text[:space].decode("latin-1")
    if name not in VERIFIED_NAMES and name not in OTHER_NAMES:
        raise _NotAKeyType(f"'{printable(text[:space])}' is not a key type")
    rest = text[space:].lstrip(b" \t")
    if not rest:
        raise ValueError("no key after the key type")
    end = next((i for i, c in enumerate(rest) if c in b" \t"), len(rest))
    if name in OTHER_NAMES:
        raise UnsupportedKey(name)
    key = key_from_blob(b64_pton(rest[:end]))
    if key.key_type != VERIFIED_NAMES[name]:
        raise ValueError(f"the line says {name}, the key is {key.key_type}")
    return key, rest[end:]


def _advance_past_options(text: bytes) -> int:
    """authfile.c sshkey_advance_past_options: the first unquoted space or tab."""
    i, quoted = 0, False
    while i < len(text) and (quoted or text[i] not in b" \t"):
        if text[i] == ord("\\") and text[i + 1:i + 2] == b'"':
            i += 1
        elif text[i] == ord('"'):
            quoted = not quoted
        i += 1
    if i == len(text) and quoted:
        raise ValueError("an unterminated quote in the options")
    return i


def _dequote(opts: bytes, i: int, name: str) -> tuple[bytes, int]:
    """misc.c opt_dequote: a value in double quotes (``\\"`` inside is a quote)."""
    if opts[i:i + 1] != b'"':
        raise ValueError(f'{name}= has no value in double quotes (write {name}="...")')
    value, i = bytearray(), i + 1
    while i < len(opts) and opts[i] != ord('"'):
        if opts[i] == ord("\\") and opts[i + 1:i + 2] == b'"':
            i += 1
        value.append(opts[i])
        i += 1
    if i == len(opts):
        raise ValueError(f"{name}= has no closing quote")
    return bytes(value), i + 1


def _strptime_number(buf: bytes, i: int, low: int, high: int, digits: int) -> tuple[int, int]:
    """glibc strptime's get_number: spaces, then up to ``digits`` digits while the value can
    still grow within ``high``."""
    while i < len(buf) and buf[i] in b" \t\n\v\f\r":
        i += 1
    if i == len(buf) or not 48 <= buf[i] <= 57:
        raise ValueError
    value = 0
    while True:
        value, i, digits = value * 10 + buf[i] - 48, i + 1, digits - 1
        if not (digits > 0 and value * 10 <= high and i < len(buf) and 48 <= buf[i] <= 57):
            break
    if not low <= value <= high:
        raise ValueError
    return value, i


def _absolute_time(value: bytes) -> tuple[int, bool]:
    """misc.c parse_absolute_time: YYYYMMDD, YYYYMMDDHHMM or YYYYMMDDHHMMSS, UTC with a
    trailing Z or UTC (any case), else local time (mktime, standard time); seconds since the
    epoch, which must be positive. Days past a month's end roll over, as mktime does."""
    size, utc = len(value), False
    if size > 1 and value[-1:].lower() == b"z":
        size, utc = size - 1, True
    elif size > 3 and value[-3:].lower() == b"utc":
        size, utc = size - 3, True
    if size not in (8, 12, 14):
        raise ValueError
    v = value
    buf = v[0:4] + b"-" + v[4:6] + b"-" + v[6:8]
    if size >= 12:
        buf += b"T" + v[8:10] + b":" + v[10:12]
    if size == 14:
        buf += b":" + v[12:14]
    fields, i = [], 0
    for n, (low, high, digits) in enumerate([(0, 9999, 4), (1, 12, 2), (1, 31, 2), (0, 23, 2),
                                             (0, 59, 2), (0, 61, 2)][:size // 2 - 1 if size > 8 else 3]):
        if n:
            if i == len(buf) or buf[i] != b"--T::"[n - 1]:
                raise ValueError
            i += 1
        number, i = _strptime_number(buf, i, low, high, digits)
        fields.append(number)
    if i != len(buf):
        raise ValueError
    fields += [0] * (6 - len(fields))
    moment = (fields[0], fields[1], fields[2], fields[3], fields[4], fields[5], 0, 0, 0)
    try:
        seconds = calendar.timegm(moment) if utc else int(time.mktime(moment))
    except (ValueError, OverflowError):
        raise ValueError from None
    if seconds <= 0:
        raise ValueError
    return seconds, utc


def _when(seconds: int, utc: bool) -> datetime:
    return datetime.fromtimestamp(seconds, UTC) if utc else datetime.fromtimestamp(seconds).astimezone()


@dataclass(frozen=True)
class AllowedSigner:
    """One line of an ``allowed_signers`` file (see ssh-keygen(1), ALLOWED SIGNERS)."""

    principals: str  # the patterns, as written (undecodable bytes kept as surrogates)
    key: PublicKey
    namespaces: str | None = None
    valid_after: datetime | None = None
    valid_before: datetime | None = None
    cert_authority: bool = False
    where: str = ""

    def allows_namespace(self, namespace: str) -> bool:
        return self.namespaces is None or _match_list(_raw(namespace), _raw(self.namespaces)) == 1

    def in_window(self, at: int) -> bool:
        """sshsig.c: not valid while ``at`` < valid-after, expired once ``at`` > valid-before."""
        return not ((self.valid_after and at < int(self.valid_after.timestamp()))
                    or (self.valid_before and at > int(self.valid_before.timestamp())))

    def matches_principal(self, principal: str) -> bool:
        return _match_list(_raw(principal), _raw(self.principals)) == 1


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _cooked(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _parse_options(opts: bytes) -> dict[str, object]:
    """sshsig.c sshsigopt_parse: cert-authority, namespaces="...", valid-after="...",
    valid-before="...", each at most once, comma-separated; anything else refuses the line."""
    found: dict[str, object] = {}
    i = 0
    while i < len(opts) and opts[i] not in b" \t":
        rest = opts[i:].lower()
        if rest.startswith(b"cert-authority"):
            found["cert-authority"], i = True, i + len("cert-authority")
        else:
            name = next((n for n in ("namespaces", "valid-after", "valid-before")
                         if rest.startswith(n.encode() + b"=")), None)
            if name is not None:
                if name in found:
                    raise ValueError(f'more than one {name}= (ssh-keygen refuses the line)')
                value, i = _dequote(opts, i + len(name) + 1, name)
                if name == "namespaces":
                    found[name] = _cooked(value)
                else:
                    try:
                        found[name] = _when(*_absolute_time(value))
                    except ValueError:
                        raise ValueError(f"{name}=\"{printable(value)}\" is not a time like 20260101, "
                                         "202601011200 or 20260101120000Z") from None
        if i == len(opts) or opts[i] in b" \t":
            break
        if opts[i] != ord(","):
            word = opts[i:].split(b",")[0].split(b"=")[0]
            known = word.lower() in (b"namespaces", b"valid-after", b"valid-before")
            raise ValueError(f"option '{printable(word)}' needs a value (write {printable(word)}=\"...\")"
                             if known else f"unknown option '{printable(word)}'")
        i += 1
        if i == len(opts):
            raise ValueError("the options end with a comma")
    after, before = found.get("valid-after"), found.get("valid-before")
    if isinstance(after, datetime) and isinstance(before, datetime) and before <= after:
        raise ValueError("valid-before is not later than valid-after")
    return found


def _parse_line(line: bytes, where: str) -> AllowedSigner | None:
    """sshsig.c parse_principals_key_and_options: ``principals [options] key-type base64
    [comment]``; None for a blank or comment line, ValueError for one ssh-keygen skips."""
    line = line.split(b"\0", 1)[0]  # C strings end at a NUL
    text = line.lstrip(b" \t")
    if not text or text.startswith(b"#"):
        return None
    fields = _strdelimw(text)
    if fields is None:
        raise ValueError("an unterminated quote, or nothing after the principals")
    principals, text = fields
    opts = b""
    try:
        key, _comment = _read_key(text)
    except UnsupportedKey:
        raise
    except ValueError as first:
        try:  # not a key: options, then the key
            end = _advance_past_options(text)
            if end == len(text):
                raise ValueError("no key after the options") from None
            opts, text = text[:end], text[end + 1:].lstrip(b" \t")
            key, _comment = _read_key(text)
        except ValueError:
            if isinstance(first, _NotAKeyType):
                raise
            raise first from None  # it was a key type: what was wrong with that key says most
    found = _parse_options(opts)
    valid_after, valid_before = found.get("valid-after"), found.get("valid-before")
    namespaces = found.get("namespaces")
    return AllowedSigner(
        principals=_cooked(principals), key=key,
        namespaces=namespaces if isinstance(namespaces, str) else None,
        valid_after=valid_after if isinstance(valid_after, datetime) else None,
        valid_before=valid_before if isinstance(valid_before, datetime) else None,
        cert_authority="cert-authority" in found, where=where)


@dataclass(frozen=True)
class AllowedSigners:
    """An allowed_signers file as read once: its usable lines, and the ones ssh-keygen skips."""

    path: Path
    signers: list[AllowedSigner] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "<file>:<line>: why"
    exists: bool = True


def _parse(data: bytes, source: str) -> tuple[list[AllowedSigner], list[str]]:
    signers, skipped = [], []
    lines = data.split(b"\n")
    for number, line in enumerate(lines, 1):
        if number == len(lines) and not line:
            break
        where = f"{source}:{number}"
        try:
            signer = _parse_line(line + b"\n" * (number < len(lines)), where)
        except UnsupportedKey as exc:
            skipped.append(f"{where}: a {printable(exc.name)} key, which movelib does not verify")
        except ValueError as exc:
            skipped.append(f"{where}: {exc}")
        else:
            if signer is not None:
                signers.append(signer)
    return signers, skipped


def parse_allowed_signers(text: str | bytes, source: str) -> list[AllowedSigner]:
    """The lines ssh-keygen would use; a line it cannot read is skipped (see
    :func:`read_allowed_signers` for why)."""
    data = text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")
    return _parse(data, source)[0]


def read_allowed_signers(path: Path) -> AllowedSigners:
    """The file read once: a missing file trusts nobody; one that is not a regular file, is
    larger than 1 MiB or cannot be read is an :class:`AllowedSignersUnreadable`."""
    data = read_bounded(path, MAX_ALLOWED_SIGNERS_BYTES, "allowed_signers file",
                         AllowedSignersUnreadable, "point paths.allowed_signers at the file itself")
    if data is None:
        return AllowedSigners(path, exists=False)
    signers, skipped = _parse(data, str(path))
    return AllowedSigners(path, signers, skipped)


def load_allowed_signers(path: Path) -> list[AllowedSigner]:
    """The file's usable signers; a missing file trusts nobody."""
    return read_allowed_signers(path).signers

