"""The manifest beside every seed dump (the files themselves reach the disk through
:mod:`movelib.base.files`)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from ..base.errors import ArtifactError, DumpFileMissing
from ..base.text import shown_path
from ..source.datafile.schema import reference_validator, schema_mtime
from .compress import is_compressed

FORMAT = "movelib-seed-dump"
FORMAT_VERSION = 1
# The checkout's schema of this file (src layout).
SCHEMA_FILE = Path(__file__).resolve().parents[3] / "schemas" / "manifest.schema.json"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Manifest:
    dump_file: str
    size: int
    sha256: str
    row_counts: dict[str, int]
    migrations: list[str]
    data_sha256: str | None
    data_file: str | None
    source_server_version: str
    environment: str | None
    created_at: str
    tool_version: str
    release: str | None = None
    movement_versions: dict[str, int] = field(default_factory=dict)
    # every library version and its state, hashed (tables.LIBRARY_SHA256); None in
    # manifests written before it existed
    library_sha256: str | None = None
    # the form that ships (movelib.ship.compress): {"file", "format", "size", "sha256"}; None
    # for a dump shipped as its SQL
    compressed: dict[str, Any] | None = None
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    @property
    def migration_version(self) -> str | None:
        return self.migrations[-1] if self.migrations else None

    def to_json(self) -> str:
        data = asdict(self)
        data["migration_version"] = self.migration_version
        if self.compressed is None:
            del data["compressed"]
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str, schema_file: Path | None = None) -> Manifest:
        """Parse and validate (``schemas/manifest.schema.json``); one line when refused."""
        try:
            # a float is never an integer here ("size": 1.0 is refused, not rounded)
            data = json.loads(text, parse_float=Decimal)
        except ValueError as exc:
            raise ArtifactError(f"{where} is not valid JSON ({exc}); refusing the dump") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ArtifactError(f"{where} is not a movelib seed-dump manifest; refusing the dump")
        if data.get("format_version") != FORMAT_VERSION:
            raise ArtifactError(
                f"{where} has format version {data.get('format_version')!r}; this movelib reads "
                f"version {FORMAT_VERSION}. Use the movelib release that wrote it."
            )
        problem = _schema_problem(data, schema_file or SCHEMA_FILE)
        if problem:
            raise ArtifactError(f"{where} is not a valid manifest: {problem}; refusing the dump")
        data.pop("migration_version", None)
        return cls(**data)


def _schema_problem(data: object, schema_file: Path) -> str | None:
    from jsonschema.exceptions import best_match

    validator = reference_validator(schema_file, schema_mtime(schema_file))
    error = best_match(validator.iter_errors(data))
    if error is not None:
        where = "/".join(map(str, error.absolute_path)) or "the top level"
        message = error.message if len(error.message) <= 160 else error.message[:160] + "..."
        return f"{where}: {message}"
    # Python's `$` also matches before a final line break, where the schema's ECMA-262 one
    # does not: no value of a manifest holds a control character.
    values: list[tuple[str, object]] = [("", data)]
    while values:
        where, item = values.pop()
        if isinstance(item, dict):
            values.extend((f"{where}/{k}", k) for k in item)
            values.extend((f"{where}/{k}", v) for k, v in item.items())
        elif isinstance(item, list):
            values.extend((f"{where}/{i}", v) for i, v in enumerate(item))
        elif isinstance(item, str) and _CONTROL.search(item):
            return f"{where.lstrip('/') or 'a key'}: {item[:40]!r} holds a control character"
    return None


# The artifacts' names, said once: movements_seed_<UTC>.sql (.sql.gz as a release ships it)
# beside movements_seed_<UTC>.manifest.json.
DUMP_PREFIX = "movements_seed_"
MANIFEST_SUFFIX = ".manifest.json"


def dump_for(manifest_file: Path) -> Path:
    """The dump beside a manifest: its ``.sql.gz`` when there is one, else its ``.sql``."""
    base = manifest_file.name.removesuffix(MANIFEST_SUFFIX)
    compressed = manifest_file.with_name(f"{base}.sql.gz")
    plain = manifest_file.with_name(f"{base}.sql")
    return plain if plain.exists() and not compressed.exists() else compressed


def manifest_path(dump_file: Path) -> Path:
    """``x.sql`` (or ``x.sql.gz``) -> ``x.manifest.json``."""
    return dump_file.with_name(Path(dump_file.name.removesuffix(".gz")).stem + MANIFEST_SUFFIX)


def file_sha256(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


MAX_MANIFEST_BYTES = 1 << 20  # a manifest is about 1 KiB


def read_manifest(dump_file: Path) -> tuple[bytes, Manifest]:
    """The dump's manifest: its bytes, read once, and those same bytes parsed and validated
    (its sha256 of the dump is not checked here). A signature is checked over exactly these
    bytes, and the restore trusts exactly what they say: nothing reads the file again. No
    connection."""
    if dump_file.is_dir():
        raise DumpFileMissing(f"{shown_path(dump_file)} is a directory; give the dump file in it "
                              f"({DUMP_PREFIX}<UTC>.sql, or {DUMP_PREFIX}latest.sql)")
    if not dump_file.is_file():
        raise DumpFileMissing(f"{shown_path(dump_file)}: no such dump file")
    mpath = manifest_path(dump_file)
    from ..base.readonce import read_bounded

    raw = read_bounded(mpath, MAX_MANIFEST_BYTES, "manifest", ArtifactError)
    if raw is None:
        raise ArtifactError(
            f"{shown_path(dump_file)}: its manifest {mpath.name} is missing; a dump without its manifest "
            "cannot be checked, so it is refused"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ArtifactError(f"{shown_path(mpath)} cannot be read ({exc}); refusing the dump") from None
    return raw, Manifest.from_json(text, str(mpath))


def load_manifest(dump_file: Path) -> Manifest:
    """The dump's manifest, validated (:func:`read_manifest`)."""
    return read_manifest(dump_file)[1]


def check_artifact(dump_file: Path) -> Manifest:
    """The dump's manifest, once size and sha256 match; nothing here opens a connection."""
    manifest = load_manifest(dump_file)
    check_size_and_sha256(dump_file, manifest)
    return manifest


def check_size_and_sha256(dump_file: Path, manifest: Manifest) -> None:
    """Refuse ``dump_file`` unless its size and sha256 are ``manifest``'s (its compressed
    form's, for a ``.sql.gz``; the SQL's are compared as it is decompressed and read)."""
    size, sha = file_sha256(dump_file)
    if is_compressed(dump_file):
        shipped = manifest.compressed or {}
        if (size, sha) != (shipped.get("size"), shipped.get("sha256")):
            raise ArtifactError(
                f"{shown_path(dump_file)} does not match its manifest's compressed form (size "
                f"{size} vs {shipped.get('size')}, sha256 {sha[:12]}... vs "
                f"{str(shipped.get('sha256'))[:12]}...): it was changed, truncated or corrupted "
                "after it was written. Refusing it; nothing was touched.")
        return
    if size != manifest.size or sha != manifest.sha256:
        crlf = _crlf_lines(dump_file, manifest)
        why = (f"it has Windows (CRLF) line endings ({crlf:,} lines end in \\r\\n); with LF "
               "line endings it is the dump the manifest describes. An editor or git's "
               f"core.autocrlf converted it: convert it back (`dos2unix {shown_path(dump_file)}`, or a "
               "checkout where .gitattributes keeps it -text) and restore again"
               if crlf else
               "it was changed, truncated or corrupted after it was written")
        raise ArtifactError(
            f"{shown_path(dump_file)} does not match its manifest (size {size} vs {manifest.size}, sha256 "
            f"{sha[:12]}... vs {manifest.sha256[:12]}...): {why}. Refusing it; nothing was "
            "touched."
        )


def _crlf_lines(dump_file: Path, manifest: Manifest) -> int:
    """How many CRLF line endings ``dump_file`` has, when turning each into LF gives exactly
    the manifest's size and sha256; else 0. Only explains a refusal: the dump is still
    refused, as bytes that are not the ones the manifest (and its signature) vouch for."""
    digest, size, crlf, carry = hashlib.sha256(), 0, 0, b""
    with dump_file.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            text = carry + chunk
            carry = b"\r" if text.endswith(b"\r") else b""
            text = text[:-1] if carry else text
            crlf += text.count(b"\r\n")
            text = text.replace(b"\r\n", b"\n")
            digest.update(text)
            size += len(text)
    digest.update(carry)
    size += len(carry)
    matches = crlf and (size, digest.hexdigest()) == (manifest.size, manifest.sha256)
    return crlf if matches else 0
