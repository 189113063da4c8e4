"""Every failure a user is expected to meet, one class each.

Each message says what happened, to which target (password masked) and what to do next.
The task layer turns any :class:`MovelibError` into an exit code and one readable message;
nothing here prints or exits.
"""

from __future__ import annotations

from collections.abc import Sequence

# The exit-code contract, the same for every task and under --json: 0 yes (done, equal, valid,
# would succeed); NO (1): the answer is no (drift, a mismatch, invalid data, a refusal, a dry run
# that would be refused); COULD_NOT_ANSWER (2): the question could not be answered (a target
# unreachable, bad usage or configuration, a missing file); 130 interrupted (Ctrl-C).
NO = 1
COULD_NOT_ANSWER = 2
INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
# The contract in words, where `inv --help` and each task's help say it.
EXIT_CODES = (f"exit codes, every task: 0 yes (done, equal, valid, would succeed); {NO} no (drift, "
              "a mismatch, invalid data, a refusal, a dry run that would be refused); "
              f"{COULD_NOT_ANSWER} could not answer (unreachable, bad usage or configuration, a "
              f"missing file); {INTERRUPTED} interrupted")


class MovelibError(Exception):
    """Base class: an expected failure with a message meant for the user; a "no" unless the
    class says the task could not answer."""

    exit_code = NO


class ConfigError(MovelibError):
    """A setting, option or profile is missing or malformed."""

    exit_code = COULD_NOT_ANSWER


class InvalidTarget(MovelibError):
    """The DSN cannot be parsed, or the options name more than one target."""

    exit_code = COULD_NOT_ANSWER


class TargetUnreachable(MovelibError):
    """No PostgreSQL server answered at the target."""

    exit_code = COULD_NOT_ANSWER


class TlsRefused(TargetUnreachable):
    """The TLS handshake failed: a certificate that does not verify, TLS required on one side
    only, a CA file that is missing."""


class AuthenticationFailed(MovelibError):
    """The server answered but refused the login."""

    exit_code = COULD_NOT_ANSWER


class DatabaseMissing(MovelibError):
    """The server answered but the target database does not exist."""

    exit_code = COULD_NOT_ANSWER


class SchemaNotApplied(MovelibError):
    """The movement tables are missing from the target."""

    exit_code = COULD_NOT_ANSWER


class DatabaseError(MovelibError):
    """A SQL statement failed in a way the tool did not anticipate."""

    exit_code = COULD_NOT_ANSWER


class LockTimeout(MovelibError):
    """Another run holds the target's lock for longer than we are willing to wait."""

    exit_code = COULD_NOT_ANSWER


class MigrationError(MovelibError):
    """A migration failed; nothing of it was recorded."""


class EmulatorError(MovelibError):
    """An emulator could not be started, stopped or inspected."""

    exit_code = COULD_NOT_ANSWER


class FileInUse(MovelibError):
    """A file or folder to replace or delete is held open by another program (on Windows), or
    may not be changed."""

    exit_code = COULD_NOT_ANSWER


class PortInUse(EmulatorError):
    """The profile's port is held by something that is not this profile's emulator."""


class BackendUnavailable(EmulatorError):
    """The requested emulator backend cannot run on this machine."""


class DataFileError(MovelibError):
    """The data file is unreadable, is not valid JSON, or breaks the schema."""

    def __init__(self, message: str, problems: Sequence[object] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)


class DataFileUnreadable(DataFileError):
    """The data file is there but cannot be read as a file: permission denied, a symlink loop, a
    FIFO, a device. The question could not be asked of its content."""

    exit_code = COULD_NOT_ANSWER


class DataFileMissing(DataFileError):
    """The data file named does not exist."""

    exit_code = COULD_NOT_ANSWER


class PublishedEditError(MovelibError):
    """The data changes movements that are already published (and therefore immutable)."""

    def __init__(self, slugs: Sequence[str], data_file: str | None = None, target: str = "") -> None:
        self.slugs = list(slugs)
        lines = [f"ERROR   {slug} :: Published movements cannot be edited" for slug in self.slugs]
        file = (f" --file {data_file}" if data_file else "") + target
        lines.append(
            f"{len(self.slugs)} published movement(s) differ from the data file; nothing was "
            f"written. Published movements are immutable: `inv seed{file} --dry-run` shows the "
            f"differences, `inv seed{file} --new-versions` publishes them as new versions, or "
            "revert the change in the data file."
        )
        super().__init__("\n".join(lines))


class DryRunRefused(MovelibError):
    """``inv seed --dry-run``: the plan (printed) has changes the seed would refuse."""

    def __init__(self, message: str, plan: object) -> None:
        super().__init__(message)
        self.plan = plan  # the movelib.seed.plan.Plan that was printed


class VerificationFailed(MovelibError):
    """The database does not hold what a completed seed must leave behind."""


class DriftFound(MovelibError):
    """``inv diff``: the two libraries differ (listed above the message)."""


class ArtifactError(MovelibError):
    """A seed dump or its manifest is missing, malformed, or does not match."""


class ArtifactWriteError(MovelibError):
    """A file could not be written (a full disk, no permission); nothing half-written stays."""

    exit_code = COULD_NOT_ANSWER


class DumpFileMissing(ArtifactError):
    """The dump file named does not exist, or is not a file."""

    exit_code = COULD_NOT_ANSWER


class RestoreFailed(MovelibError):
    """A restore failed; the transaction was rolled back and the target is as it was."""


class RestoreCouldNotRun(RestoreFailed):
    """The server could not apply a restore for a reason of its own (a character the database's
    encoding cannot hold, a resource or a privilege it lacks), not because the dump or the
    target's rows were refused: the question was not answered, as for the same error in a seed."""

    exit_code = COULD_NOT_ANSWER


class ConfirmationRequired(MovelibError):
    """A destructive step needs a yes that was not given."""


class ReleaseError(MovelibError):
    """A release cannot be cut (bad version, existing tag, dirty tree...)."""


class ReleaseUsage(ReleaseError):
    """The command names what is not a release or not there: a version spelt otherwise than
    v1.0, a release folder without its one manifest, a manifest file that does not exist."""

    exit_code = COULD_NOT_ANSWER


class SigningError(ReleaseError):
    """The release manifest (or tag) could not be signed: no key, no ssh-keygen, a refused key."""


class SigningUnavailable(SigningError):
    """What signing needs is not there: the key file, or ssh-keygen."""

    exit_code = COULD_NOT_ANSWER


class SignatureRefused(ArtifactError):
    """A release signature is malformed or unsupported; the subclasses say what else is wrong."""


class UnsignedRelease(SignatureRefused):
    """The restore needs a signed release and the manifest has no signature."""


class UnknownSigner(SignatureRefused):
    """The signing key is not in the allowed_signers file."""


class SignatureMismatch(SignatureRefused):
    """The signature does not match the manifest: it was changed after signing."""


class SignerExpired(SignatureRefused):
    """The signer's key is outside its valid-after / valid-before window."""


class WrongNamespace(SignatureRefused):
    """The signature was made for another namespace, or the key may not sign movelib releases."""


class SignatureUnreadable(SignatureRefused):
    """A ``.sig`` exists but is not a regular file, is too large, or cannot be read: never taken
    for no signature."""


class AllowedSignersUnreadable(ConfigError):
    """The allowed_signers path is not a regular file (a FIFO, a directory, a device), is too
    large, or cannot be read."""


class ProtectedTarget(MovelibError):
    """The target is labelled production and the run was not explicitly allowed on it."""


class TrustRefused(SignatureRefused):
    """A production restore's signatures are not by enough distinct signers pinned in the target
    database (nothing pinned, a signer not pinned, fewer than the threshold)."""


class TrustBroken(MovelibError):
    """The pinned trust does not match its hash-chained log (a signer or threshold written
    behind the triggers, an entry edited or deleted): ``inv trust.list`` says what."""


class TrustChangeError(ConfigError):
    """``inv trust.*`` cannot make the change asked for: a key file that holds no public key, a
    principal movelib cannot pin, a fingerprint nothing pinned has, a threshold out of range."""


class DowngradeRefused(MovelibError):
    """The restore would replace a release with an older one (or a signed release with an
    unsigned dump); ``--allow-downgrade`` allows it on purpose."""


class PromotionRefused(MovelibError):
    """``inv promote``: the source does not hold exactly the release to promote."""
