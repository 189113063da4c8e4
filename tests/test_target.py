"""Which database a task touches, and how it is shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from movelib.base import secrets
from movelib.base.errors import ConfigError, InvalidTarget
from movelib.database.profiles import load_profiles
from movelib.database.target import ENV_VAR, mask_conninfo, resolve_target

PROFILES = load_profiles()
ENV_DSN = "postgresql://env:envpw@10.0.0.1:5432/fromenv"
DOTENV_DSN = "postgresql://dot:dotpw@10.0.0.2:5432/fromdotenv"


@pytest.fixture
def dotenv(tmp_path: Path) -> Path:
    path = tmp_path / ".env"
    path.write_text(f"{ENV_VAR}={DOTENV_DSN}\n")
    return path


def test_profiles_are_the_guides() -> None:
    local, staging = PROFILES["local"], PROFILES["staging"]
    assert local.url() == "postgresql://athlete:athlete@127.0.0.1:55432/athlete_planning"
    assert staging.url() == (
        "postgresql://athlete:athlete_staging@127.0.0.1:55433/athlete_planning_staging"
    )


def test_dsn_option_wins_over_everything(dotenv: Path) -> None:
    t = resolve_target(dsn="postgresql://a:b@h:1/d", profile=None, profiles=PROFILES,
                       environ={ENV_VAR: ENV_DSN}, dotenv_path=dotenv)
    assert (t.source, t.dbname) == ("--dsn", "d")


def test_environment_wins_over_dotenv_and_default_profile(dotenv: Path) -> None:
    t = resolve_target(dsn=None, profile=None, profiles=PROFILES,
                       environ={ENV_VAR: ENV_DSN}, dotenv_path=dotenv)
    assert (t.source, t.dbname) == (ENV_VAR, "fromenv")


def test_dotenv_is_used_when_the_environment_has_nothing(dotenv: Path) -> None:
    t = resolve_target(dsn=None, profile=None, profiles=PROFILES, environ={},
                       dotenv_path=dotenv)
    assert t.dbname == "fromdotenv"
    assert t.source == f"{ENV_VAR} in .env"


def test_default_is_the_local_profile(tmp_path: Path) -> None:
    t = resolve_target(dsn=None, profile=None, profiles=PROFILES, environ={},
                       dotenv_path=tmp_path / "missing.env")
    assert t.profile is not None and t.profile.name == "local"
    assert t.describe() == (
        "postgresql://athlete:***@127.0.0.1:55432/athlete_planning (profile local)"
    )


def test_an_explicit_profile_beats_an_exported_dsn(dotenv: Path) -> None:
    t = resolve_target(dsn=None, profile="staging", profiles=PROFILES,
                       environ={ENV_VAR: ENV_DSN}, dotenv_path=dotenv)
    assert t.describe() == (
        "postgresql://athlete:***@127.0.0.1:55433/athlete_planning_staging (profile staging)"
    )


def test_dsn_and_profile_together_are_refused() -> None:
    with pytest.raises(InvalidTarget, match="either --dsn or --profile"):
        resolve_target(dsn=ENV_DSN, profile="local", profiles=PROFILES, environ={})


def test_unknown_profile_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="known profiles: local, staging"):
        resolve_target(dsn=None, profile="prod", profiles=PROFILES, environ={})


@pytest.mark.parametrize(
    ("dsn", "masked"),
    [
        pytest.param("postgresql://u:p%40ss%3A%2F%25%23@db.example:5432/app",
                     "postgresql://u:***@db.example:5432/app", id="url-with-encoded-password"),
        pytest.param("host=db port=6432 user=u password=secret dbname=app sslmode=require",
                     "postgresql://u:***@db:6432/app?sslmode=require", id="key-value-dsn"),
        pytest.param("postgresql://u@db/app", "postgresql://u@db/app", id="no-password"),
        pytest.param("postgresql://u:pw@db/app?password=other",
                     "postgresql://u:***@db/app", id="password-in-query"),
    ],
)
def test_masking_never_shows_the_password(dsn: str, masked: str) -> None:
    assert mask_conninfo(dsn) == masked


def test_an_unparseable_dsn_is_refused_without_echoing_it() -> None:
    with pytest.raises(InvalidTarget) as info:
        resolve_target(dsn="postgresql://u:hunter2@db:notaport/x?bogus=1", profile=None,
                       profiles=PROFILES, environ={})
    assert "hunter2" not in str(info.value)


def test_redaction_covers_every_spelling_of_a_registered_password() -> None:
    secrets.register("p@ss:/%# word", public=("u", "db", "app"))
    text = "p@ss:/%# word | p%40ss%3A%2F%25%23%20word | p%40ss%3A/%25%23%20word | p%40ss%3A%2F%25%23+word"
    assert secrets.redact(text) == "*** | *** | *** | ***"


def test_a_password_equal_to_the_user_name_does_not_mask_the_user_name() -> None:
    secrets.register("athlete", public=("athlete", "127.0.0.1", "athlete_planning"))
    assert secrets.redact("user athlete") == "user athlete"


def test_profiles_can_be_overridden_and_extended() -> None:
    profiles = load_profiles({"staging": {"port": "6000"},
                              "qa": {"host": "h", "port": 1, "user": "u", "password": "p",
                                     "database": "d"}})
    assert profiles["staging"].port == 6000
    assert profiles["qa"].url() == "postgresql://u:p@h:1/d"
    with pytest.raises(ConfigError, match="missing"):
        load_profiles({"half": {"host": "h"}})


def test_a_dotenv_line_python_dotenv_skips_is_named_by_number_and_nothing_is_logged(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from movelib.database.target import read_dotenv

    path = tmp_path / ".env"
    path.write_text("A=1\nnot a line\nB=2\nalso not secret=pw\n", encoding="utf-8")
    logger = logging.getLogger("dotenv.main")
    handlers, propagate = list(logger.handlers), logger.propagate
    with caplog.at_level(logging.DEBUG), pytest.raises(InvalidTarget, match=r"\(line 2, 4\)") as refused:
        read_dotenv(path)
    assert "pw" not in str(refused.value)
    assert caplog.records == [] and capsys.readouterr().err == ""
    assert logger.handlers == handlers and logger.propagate is propagate  # left as it was
    path.write_text("A=1\nB='two words'\n", encoding="utf-8")
    assert read_dotenv(path) == {"A": "1", "B": "two words"}


def test_the_psql_child_gets_the_environments_tls_settings_and_the_dsns_win(monkeypatch: pytest.MonkeyPatch) -> None:
    """psql (the dump's reader, db.psql) reaches the target as movelib's own connection does:
    PGSSLMODE and PGSSLROOTCERT from the environment, unless the DSN says otherwise. Without
    them psql would fall back to sslmode=prefer and never check the server's certificate."""
    from movelib.database.psql import child_env
    from movelib.database.target import target_from_dsn

    monkeypatch.setenv("PGSSLMODE", "verify-full")
    monkeypatch.setenv("PGSSLROOTCERT", "/etc/movelib/ca.crt")
    env = child_env(target_from_dsn("postgresql://athlete:pw@db.example.com/athlete_planning", "--dsn"))
    assert (env["PGSSLMODE"], env["PGSSLROOTCERT"]) == ("verify-full", "/etc/movelib/ca.crt")
    env = child_env(target_from_dsn("postgresql://athlete:pw@db.example.com/athlete_planning?sslmode=require", "--dsn"))
    assert env["PGSSLMODE"] == "require" and env["PGPASSWORD"] == "pw"
