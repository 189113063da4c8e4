"""`inv promote`: release vX reaches production only from a staging that holds exactly vX, and
`.github/workflows/promote.yml` does that step, replayed here against two local databases."""

from __future__ import annotations

import re
import shlex
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from support import ROOT, Cli, Server, allowed_signers, public, rows, table_hashes
from test_trust import Releases, copy_release, labelled, pin, protected, releases, signed  # noqa: F401

from movelib.base.errors import PromotionRefused
from movelib.database.guard import Permission
from movelib.database.settings import Settings
from movelib.database.target import Target
from movelib.ship.promote import promote, release_dump
from movelib.ship.restore_plan import RestoreOptions

WORKFLOW = ROOT / ".github" / "workflows" / "promote.yml"


@pytest.fixture
def staging(pg18: Server) -> Iterator[Target]:
    yield from labelled(pg18, "staging")


@pytest.fixture
def production(pg18: Server) -> Iterator[Target]:
    yield from labelled(pg18, "production")


def project(root: Path, release: Path, version: str, trusted: Path) -> Settings:
    """A project root holding ``releases/<version>/`` (the release's files) and its settings."""
    folder = root / "releases" / version
    folder.mkdir(parents=True)
    for source in release.parent.iterdir():
        shutil.copyfile(source, folder / source.name)
    return Settings.from_mapping({"paths": {"allowed_signers": str(trusted),
                                            "migrations_dir": str(ROOT / "migrations")}}, root)


def into_staging(cli: Cli, staging: Target, dump_file: Path, trusted: Path) -> None:
    result = cli("restore", "--dump-file", str(dump_file), "--dsn", staging.conninfo, "--yes",
                 env={"INVOKE_PATHS_ALLOWED_SIGNERS": str(trusted)})
    assert result.code == 0, result.output


def run_promote(settings: Settings, version: str, staging: Target, production: Target) -> list[str]:
    lines: list[str] = []
    options = RestoreOptions(release_dump(settings.root, version).absolute(), assume_yes=True,
                             permission=Permission(allow_protected=True, confirm=production.dbname))
    promote(settings, version, staging, production, options, lines.append, lambda _q: None)
    return lines


@pytest.fixture
def setup(cli: Cli, staging: Target, production: Target, releases: Releases,  # noqa: F811 - the fixture
          tmp_path: Path) -> dict[str, Any]:
    trusted = allowed_signers(tmp_path, f"a@example.com {public(releases.keys.a)}")
    pin(cli, production, releases.keys.a, "a@example.com")
    newer = signed(releases.newer, tmp_path / "v1.10", releases.keys.a)
    older = signed(releases.older, tmp_path / "v1.9", releases.keys.a)
    settings = project(tmp_path / "project", newer, "v1.10", trusted)
    return {"trusted": trusted, "newer": newer, "older": older, "settings": settings}


def test_promote_is_refused_when_staging_holds_another_release(cli: Cli, staging: Target, production: Target, setup: dict[str, Any]) -> None:
    into_staging(cli, staging, setup["older"], setup["trusted"])
    before = table_hashes(production)
    with pytest.raises(PromotionRefused, match="does not hold exactly it") as refused:
        run_promote(setup["settings"], "v1.10", staging, production)
    assert "does not say it holds release v1.10" in str(refused.value)
    assert "holds release v1.9" in str(refused.value)
    # the advice names the source again (a DSN's password cannot be pasted: where it goes)
    assert "(`inv verify --release v1.10 --dsn <the DSN>`)" in str(refused.value)
    assert table_hashes(production) == before


def test_promote_is_refused_when_staging_holds_other_content_under_the_release(
        cli: Cli, staging: Target, production: Target, setup: dict[str, Any]) -> None:
    into_staging(cli, staging, setup["newer"], setup["trusted"])
    with psycopg.connect(staging.conninfo) as conn:  # a superuser's edit, past the triggers
        conn.execute("SET session_replication_role = replica")
        conn.execute("UPDATE movement_library SET name = 'Back Squat (PWNED)' WHERE slug = 'back-squat'")
    before = table_hashes(production)
    with pytest.raises(PromotionRefused, match="the library's content differs from the release's"):
        run_promote(setup["settings"], "v1.10", staging, production)
    assert table_hashes(production) == before


def test_promote_restores_the_release_when_staging_holds_exactly_it(cli: Cli, staging: Target, production: Target, setup: dict[str, Any]) -> None:
    into_staging(cli, staging, setup["newer"], setup["trusted"])
    lines = run_promote(setup["settings"], "v1.10", staging, production)
    text = "\n".join(lines)
    assert "from: release v1.10: library content matches" in text
    assert f"trust: 1 signer pinned in {production.dbname}, threshold 1" in text
    assert "preview: 8 added" in text and "restore: done" in text
    assert table_hashes(production)["movement_library"] == table_hashes(staging)["movement_library"]
    held = rows(production, "SELECT release, signed_by FROM movement_provenance ORDER BY id DESC LIMIT 1")
    assert held == [("v1.10", "a@example.com")]


# -- the workflow -----------------------------------------------------------------------------


def test_the_promote_workflow_gates_production_on_staging_and_reviewers() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert workflow["permissions"] == {}
    assert workflow[True]["workflow_dispatch"]["inputs"]["version"]["required"] is True  # yaml's `on`
    staging, production = workflow["jobs"]["staging"], workflow["jobs"]["production"]
    assert staging["environment"] == "staging" and production["environment"] == "production"
    assert production["needs"] == "staging"
    for job in (staging, production):
        runs = [step.get("run", "") for step in job["steps"]]
        first_inv = next(i for i, run in enumerate(runs) if run.startswith("inv "))
        attested = next(i for i, run in enumerate(runs) if run.startswith("gh attestation verify"))
        assert attested < first_inv, "the attestation is verified before anything else runs"
        for step in job["steps"]:
            if "uses" in step:
                assert re.fullmatch(r"[\w./-]+@[0-9a-f]{40}", step["uses"]), step["uses"]


def _expand(command: str, env: dict[str, str]) -> list[str]:
    return [re.sub(r"\$([A-Z_]+)", lambda m: env[m.group(1)], word) for word in shlex.split(command)]


def test_the_promote_workflow_replayed_against_two_local_databases(cli: Cli, staging: Target, production: Target,
                                                                   releases: Releases,  # noqa: F811
                                                                   tmp_path: Path) -> None:
    """Each job's `inv` steps run as written, with the environments' secrets standing for two
    local databases; the attestation step needs GitHub and is checked above, not run."""
    version = f"v0.0.1-test{uuid.uuid4().hex[:8]}"
    folder = ROOT / "releases" / version
    trusted = allowed_signers(tmp_path, f"a@example.com {public(releases.keys.a)}")
    pin(cli, production, releases.keys.a, "a@example.com")
    made = copy_release(releases.newer, tmp_path / "made")
    try:
        folder.mkdir(parents=True)
        # the release as `inv release` cuts it: its manifest names the version
        manifest = made.with_name(made.name.replace(".sql", ".manifest.json"))
        text = manifest.read_text().replace('"release": "v1.10"', f'"release": "{version}"')
        (folder / manifest.name).write_text(text)
        shutil.copyfile(made, folder / made.name)
        from movelib.ship.signing import sign_file

        sign_file(folder / manifest.name, releases.keys.a)
        into_staging(cli, staging, folder / made.name, trusted)
        context = {"inputs.version": version, "secrets.STAGING_URL": staging.conninfo,
                   "secrets.PRODUCTION_URL": production.conninfo,
                   "vars.PRODUCTION_DATABASE": production.dbname, "github.token": "unused",
                   "github.repository": "owner/repo"}
        workflow = yaml.safe_load(WORKFLOW.read_text())
        ran = []
        for name in ("staging", "production"):
            job = workflow["jobs"][name]
            env = {k: context[v.strip("${} ")] for k, v in job.get("env", {}).items()}
            for step in job["steps"]:
                run = step.get("run", "")
                if not run.startswith("inv "):
                    continue
                step_env = {**env, **{k: context[v.strip("${} ")] for k, v in step.get("env", {}).items()}}
                # the step's environment is the process's: `--dsn env:STAGING_URL` reads it there
                result = cli(*_expand(run, step_env)[1:], env={**step_env, "INVOKE_PATHS_ALLOWED_SIGNERS": str(trusted)})
                assert result.code == 0, f"{name}: {run}\n{result.output}"
                ran.append(run.split()[1])
        assert ran == ["verify", "promote"]
        held = rows(production, "SELECT release, signed_by FROM movement_provenance ORDER BY id DESC LIMIT 1")
        assert held == [(version, "a@example.com")]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if (ROOT / "releases").is_dir() and not any((ROOT / "releases").iterdir()):
            (ROOT / "releases").rmdir()
