"""Least-privilege roles, with the limits DBAs and managed services put on application roles.

* A role that is no superuser, owns its database and has ``statement_timeout``,
  ``idle_in_transaction_session_timeout`` and ``lock_timeout`` of 0.2 s on it seeds, dumps and
  restores 20k movements, whose statements outlast those limits: movelib turns them off for its
  own transactions only.
* A role that owns nothing but a schema in a shared database (``search_path`` set on the role,
  no TEMPORARY privilege) takes a restore of the first one's dump, verifies and reseeds it, and
  retires movements.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from support import CANONICAL, Cli, Server, assert_no_secret, dsn_as, owned_database, role

from movelib.database.tables import LIBRARY_CONTENT_SHA256
from movelib.source.synth import write_synthetic


@pytest.mark.slow
def test_role_limits_do_not_break_seed_dump_restore(cli: Cli, pg18: Server, tmp_path: Path) -> None:
    data = tmp_path / "movements-20k.json"
    write_synthetic(20_000, data)
    with role(pg18, limits=True) as app:
        source = dsn_as(pg18, app, owned_database(pg18, app))
        copy = dsn_as(pg18, app, owned_database(pg18, app))
        with psycopg.connect(source) as conn:  # the limits are real for this role's queries
            assert conn.execute("SHOW statement_timeout").fetchone() == ("200ms",)
            with pytest.raises(psycopg.errors.QueryCanceled):
                conn.execute("SELECT pg_sleep(0.5)")
        for step in [("seed", "--dsn", source, "--file", str(data), "--quiet"),
                     ("dump", "--dsn", source, "--output-dir", str(tmp_path)),
                     ("migrate", "--dsn", copy),
                     ("restore", "--dump-file", str(tmp_path / "movements_seed_latest.sql"),
                      "--dsn", copy, "--yes"),
                     ("verify", "--dsn", copy, "--file", str(data)),
                     ("diff", "--from", source, "--to", copy)]:
            result = cli(*step)
            assert result.code == 0, f"inv {step[0]} as a role with 0.2 s limits:\n{result.output[-3000:]}"
            assert_no_secret(result.output)
        with psycopg.connect(copy) as conn:
            assert conn.execute("SELECT count(*) FROM movement_current").fetchone() == (20_000,)
            # the premise: at this size movelib's statements outlast the role's limit, so each
            # task above ran them with the limits off (this one is `inv verify --release`'s)
            with pytest.raises(psycopg.errors.QueryCanceled):
                conn.execute(LIBRARY_CONTENT_SHA256)


def test_a_role_that_owns_only_a_schema_in_a_shared_database(cli: Cli, pg18: Server, tmp_path: Path) -> None:
    with role(pg18) as owner, role(pg18) as tenant:
        source = dsn_as(pg18, owner, owned_database(pg18, owner))
        shared = f"t_{uuid.uuid4().hex[:12]}"
        with pg18.admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(shared)))
            conn.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} SET search_path = movelib").format(
                sql.Identifier(tenant), sql.Identifier(shared)))
        try:
            with psycopg.connect(pg18.dsn(shared), autocommit=True) as conn:
                conn.execute(sql.SQL("CREATE SCHEMA movelib AUTHORIZATION {}").format(sql.Identifier(tenant)))
                conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
                conn.execute(sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC").format(
                    sql.Identifier(shared)))
                conn.execute("CREATE TABLE public.someone_elses (x int)")  # not ours to touch
            target = dsn_as(pg18, tenant, shared)
            with psycopg.connect(target) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("CREATE TEMPORARY TABLE t (x int)")
            five = tmp_path / "five.json"
            five.write_text(json.dumps(json.loads(CANONICAL.read_text())[:5]))
            revised = tmp_path / "revised.json"
            revised.write_text(json.dumps([{**m, "name": m["name"] + " (revised)"} if i < 2 else m
                                           for i, m in enumerate(json.loads(CANONICAL.read_text()))]))
            for step in [("seed", "--dsn", source),
                         ("dump", "--dsn", source, "--output-dir", str(tmp_path)),
                         ("restore", "--dump-file", str(tmp_path / "movements_seed_latest.sql"),
                          "--dsn", target, "--yes"),
                         ("verify", "--dsn", target), ("seed", "--dsn", target),
                         ("diff", "--from", source, "--to", target),
                         ("seed", "--dsn", target, "--file", str(five), "--retire"),
                         # the source's release now changes two movements: merged without TEMPORARY
                         ("seed", "--dsn", source, "--file", str(revised), "--new-versions"),
                         ("dump", "--dsn", source, "--output-dir", str(tmp_path)),
                         ("restore", "--dump-file", str(tmp_path / "movements_seed_latest.sql"),
                          "--dsn", target, "--yes")]:
                result = cli(*step)
                assert result.code == 0, f"inv {step[0]}:\n{result.output[-3000:]}"
            assert "merged: 2 version(s) added, 0 removed, 8 kept" in result.output  # 3 un-retired too
            with psycopg.connect(pg18.dsn(shared)) as conn:
                assert conn.execute("SELECT count(*) FROM movelib.movement_current").fetchone() == (8,)
                assert conn.execute("SELECT to_regclass('movelib.movement_library') IS NOT NULL, "
                                    "to_regclass('public.movement_library') IS NULL, "
                                    "to_regclass('public.someone_elses') IS NOT NULL").fetchone() \
                    == (True, True, True)
        finally:
            pg18.drop_database(shared)
