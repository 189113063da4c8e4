"""Side-by-side benchmarks: movelib against the database's own tools, same server, same run.

    python benchmarks/run.py [--sizes 1000,10000,100000] [--rounds 3] [--write]

For each size N it starts from a fresh database each time and measures, one right after the
other on one embedded PostgreSQL server, each pair ``--rounds`` times with the two sides taking
turns to go first (the medians are compared):

* seed (``inv seed``) vs the floor: the same final rows, dumped with ``pg_dump --data-only`` and
  replayed with ``psql -1`` into the same empty migrated schema (triggers and keys included);
* a reseed of unchanged data vs the first seed;
* validation (``inv validate``) of the N-record file;
* ``inv dump`` vs ``pg_dump`` of the same tables; ``inv restore`` vs ``psql -1 -f`` of the same file;
* ``inv --list`` wall time, and the peak RSS of the largest seed;
* with ``--live N[,M]``, a restore into a live database: a release differing by 10 movements
  restored over a copy of the N-movement library it came from (a merge) beside the full restore
  of the same release into an empty database: time, WAL written (``pg_current_wal_insert_lsn``),
  peak RSS, and the worst wait of a reader polling the library every 10 ms during each;
* once per size, with no reference of their own (the large row compares them with their time
  at the largest ``--sizes``): ``inv seed --dry-run --format json`` of the seeded file,
  ``inv diff`` of the library and a copy of it (equal), a retire (``inv seed --retire`` of a
  file of the first 10 movements into another copy: every other movement retired) and
  ``inv diff --json`` of the library and that retired copy (every movement differs, exit 1).

Every figure is a wall-clock time of the command a user would type, printed as a ratio. With
``--write`` the table is also written into benchmarks/README.md with the machine and date.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from movelib.database.emulator.embedded import EmbeddedEmulator  # noqa: E402
from movelib.database.emulator.pgbin import wheel_bin_dir  # noqa: E402
from movelib.database.profiles import Profile  # noqa: E402
from movelib.source.synth import write_synthetic  # noqa: E402

PASSWORD = "bench-pw"
TABLES = ["movement_seed_run", "movement_staging", "movement_audit_log", "movement_library",
          "movement_current"]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Bench:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.bin = wheel_bin_dir()
        self.profile = Profile("bench", "127.0.0.1", free_port(), "bench", PASSWORD, "postgres")
        self.server = EmbeddedEmulator(self.profile, base_dir=base, bin_dir=self.bin)
        self.env = {**os.environ, "PGPASSWORD": PASSWORD, "PGHOST": "127.0.0.1",
                    "PGPORT": str(self.profile.port), "PGUSER": "bench",
                    "INVOKE_PATHS_DOTENV": str(base / "none.env")}
        self.env.pop("PLANNING_DATABASE_URL", None)
        # as a user runs it: with the bytecode caches (an inherited PYTHONDONTWRITEBYTECODE
        # would recompile movelib's modules in every `inv`, but not the installed libraries)
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.n = 0
        self.rss = 0.0

    def dsn(self, db: str) -> str:
        return f"postgresql://bench:{quote(PASSWORD)}@127.0.0.1:{self.profile.port}/{db}"

    def fresh(self, migrated: bool = False) -> str:
        self.n += 1
        name = f"b{self.n}"
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        if migrated:
            self.inv("migrate", "--dsn", self.dsn(name))
        return name

    def settle(self) -> None:
        """Write out what earlier steps left dirty, so no command pays for the one before it."""
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute("CHECKPOINT")
        if hasattr(os, "sync"):
            os.sync()

    def copy(self, db: str) -> str:
        """A new database holding what ``db`` holds (``CREATE DATABASE ... TEMPLATE``)."""
        self.n += 1
        name = f"b{self.n}"
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(db)))
        return name

    def run(self, *cmd: str, settle: bool = True, codes: tuple[int, ...] = (0,)) -> float:
        """Wall time of ``cmd``; its peak RSS (grandchildren included) is kept in ``self.rss``.
        An exit code other than ``codes`` stops the benchmark."""
        if sys.platform == "win32":
            raise SystemExit("the benchmark reads peak memory through wait4: run it on Linux")
        if settle:
            self.settle()  # not timed
        with tempfile.TemporaryFile() as out:
            started = time.perf_counter()
            proc = subprocess.Popen(cmd, env=self.env, cwd=ROOT, stdout=out, stderr=out)
            _, status, usage = os.wait4(proc.pid, 0)
            elapsed = time.perf_counter() - started
            proc.returncode = os.waitstatus_to_exitcode(status)
            self.rss = usage.ru_maxrss / 1024  # kB on Linux
            if proc.returncode not in codes:
                out.seek(0)
                raise SystemExit(f"{' '.join(cmd[:4])}... failed:\n"
                                 f"{out.read().decode(errors='replace')}")
        return elapsed

    def inv(self, *args: str, settle: bool = True, codes: tuple[int, ...] = (0,)) -> float:
        return self.run(sys.executable, "-m", "invoke", *args, settle=settle, codes=codes)

    def python(self, code: str) -> float:
        return self.run(sys.executable, "-c", code, settle=False)

    def python_copy(self, db: str, data_sql: Path) -> float:
        """The Python floor of a seed: a process that imports invoke and psycopg, connects and
        loads the rows of ``data_sql`` (pg_dump --data-only) with COPY in one transaction."""
        return self.run(sys.executable, "-c", PYTHON_COPY, self.dsn(db), str(data_sql))

    def tool(self, name: str, *args: str) -> float:
        return self.run(str(self.bin / name), *args)


PLACEHOLDERS = ROOT / "data" / "movements-canonical.json"  # the 8 movements of the repository
# What Bench.python_copy runs: pg_dump's one-line statements executed, its COPY blocks copied.
PYTHON_COPY = """
import sys
import invoke, psycopg
with psycopg.connect(sys.argv[1]) as conn, open(sys.argv[2], encoding="utf-8") as lines:
    cur = conn.cursor()
    for line in lines:
        if line.startswith("COPY ") and line.rstrip().endswith("FROM stdin;"):
            with cur.copy(line.rstrip()[:-1]) as copy:
                for row in lines:
                    if row == "\\\\.\\n":
                        break
                    copy.write(row)
        elif line.strip() and not line.startswith(("--", "\\\\")):  # psql's \\restrict: not SQL
            cur.execute(line)
"""


def everyday(bench: Bench, rounds: int) -> dict[str, tuple[float, float]]:
    """What people wait for every day, against the floor of the same kind of process: an
    unchanged ``inv seed`` of the 8 placeholders against a Python process that imports invoke
    and psycopg, connects and runs one query; ``inv --list`` against ``inv --version``;
    ``inv validate`` of the placeholders against ``python -c "import invoke"``. Alternated
    rounds, medians; no CHECKPOINT between them (nothing is written)."""
    db = bench.fresh()
    dsn = bench.dsn(db)
    bench.inv("seed", "--dsn", dsn, "--file", str(PLACEHOLDERS), "--quiet")
    connect_floor = ("import invoke, psycopg\n"
                     f"with psycopg.connect({dsn!r}) as c: c.execute('SELECT 1').fetchone()")
    pairs: dict[str, tuple[tuple[str, ...], Callable[[], float]]] = {
        "seed of 8, unchanged vs connect floor": (
            ("seed", "--dsn", dsn, "--file", str(PLACEHOLDERS), "--quiet"),
            lambda: bench.python(connect_floor)),
        "`inv --list` vs `inv --version`": (
            ("--list",), lambda: bench.inv("--version", settle=False)),
        "validate 8 vs `import invoke`": (
            ("validate", "--file", str(PLACEHOLDERS), "--quiet"),
            lambda: bench.python("import invoke")),
    }
    times: dict[str, tuple[list[float], list[float]]] = {}
    for turn in range(rounds):
        for name, (ours, theirs) in pairs.items():
            a, b = times.setdefault(name, ([], []))
            if turn % 2:
                b.append(theirs())
                a.append(bench.inv(*ours, settle=False))
            else:
                a.append(bench.inv(*ours, settle=False))
                b.append(theirs())
    return report_times("-", times)


def report_times(n: object, times: dict[str, tuple[list[float], list[float]]],
                 ) -> dict[str, tuple[float, float]]:
    for name, (ours, theirs) in times.items():
        print(f"  {n} {name}: movelib {', '.join(f'{t:.2f}' for t in ours)} s; "
              f"reference {', '.join(f'{t:.2f}' for t in theirs)} s", flush=True)
    return {name: (statistics.median(ours), statistics.median(theirs))
            for name, (ours, theirs) in times.items()}


def measure(bench: Bench, n: int, work: Path, rounds: int, rss: dict[str, float],
            alone: dict[str, float]) -> dict[str, tuple[float, float]]:
    """Each pair ``rounds`` times, the two sides in alternating order; the median of each side.

    The machine is shared and noisy (the same pg_dump took 1.7 s and 4.0 s in one run): the
    median of alternated runs is the fairest comparison of what each side costs. Every single
    time is printed too; ``rss`` gets the peak RSS of each of our steps (MB), ``alone`` the
    time of each step that has no reference (:data:`ALONE`), run once in the first round.
    """
    data = work / f"synth-{n}.json"
    write_synthetic(n, data)
    few = work / "synth-10.json"  # the same first 10 movements as every synthetic file
    write_synthetic(10, few)
    times: dict[str, tuple[list[float], list[float]]] = {}

    def ours(step: str, *args: str, codes: tuple[int, ...] = (0,)) -> float:
        elapsed = bench.inv(*args, codes=codes)
        rss[step] = max(rss.get(step, 0.0), bench.rss)
        return elapsed

    def once(step: str, *args: str, codes: tuple[int, ...] = (0,)) -> None:
        alone[step] = ours(step, *args, codes=codes)
        print(f"  {n:,} {step}: movelib {alone[step]:.2f} s, peak RSS {rss[step]:.0f} MB",
              flush=True)

    def pair(name: str, mine: tuple[Any, ...], theirs: tuple[Any, ...], turn: int) -> None:
        """Run (function, *args) of each side, alternating which goes first."""
        a, b = times.setdefault(name, ([], []))
        if turn % 2:
            b.append(theirs[0](*theirs[1:]))
            a.append(mine[0](*mine[1:]))
        else:
            a.append(mine[0](*mine[1:]))
            b.append(theirs[0](*theirs[1:]))

    replay = ("psql", "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1")

    data_sql = work / f"data-{n}.sql"
    for turn in range(rounds):
        db = bench.fresh()
        seed = ("seed", "--dsn", bench.dsn(db), "--file", str(data), "--quiet")
        if turn == 0:  # the floor replays the rows of the first seed
            first = ours("seed", *seed)
            bench.tool("pg_dump", "--data-only", "-d", db, *[f"--table={t}" for t in TABLES],
                       "-f", str(data_sql))
            floor = bench.tool(*replay, "-d", bench.fresh(migrated=True), "-f", str(data_sql))
            times["seed vs COPY floor"] = ([first], [floor])
        else:
            pair("seed vs COPY floor", (ours, "seed", *seed),
                 (bench.tool, *replay, "-d", bench.fresh(migrated=True), "-f", str(data_sql)), turn)
        # the same rows loaded by a Python process (start-up, invoke and psycopg included)
        times.setdefault("seed vs Python COPY floor", ([], []))[1].append(
            bench.python_copy(bench.fresh(migrated=True), data_sql))
        times.setdefault("reseed (unchanged) vs first seed", ([], []))[0].append(
            ours("reseed", *seed))
        times.setdefault("validate", ([], []))[0].append(
            ours("validate", "validate", "--file", str(data), "--quiet"))
        if turn == 0:
            once("dry-run JSON", "seed", "--dry-run", "--format", "json", "--dsn", bench.dsn(db),
                 "--file", str(data), "--quiet")
            once("diff", "diff", "--from", bench.dsn(db), "--to", bench.dsn(bench.copy(db)))
            retired = bench.copy(db)
            once("retire", "seed", "--retire", "--dsn", bench.dsn(retired), "--file", str(few),
                 "--quiet")
            once("diff --json, all retired", "diff", "--json", "--from", bench.dsn(db), "--to",
                 bench.dsn(retired), codes=(1,))

        dumps = work / f"dumps-{n}-{turn}"
        pair("dump vs pg_dump",
             (ours, "dump", "dump", "--dsn", bench.dsn(db), "--output-dir", str(dumps)),
             (bench.tool, "pg_dump", "-d", db, *[f"--table={t}" for t in TABLES],
              "--table=_yoyo_*", "-f", str(work / f"pg_dump-{n}.sql")), turn)
        dump_file = str(dumps / "movements_seed_latest.sql")
        pair("restore vs psql -1 -f",
             (ours, "restore", "restore", "--dump-file", dump_file, "--dsn",
              bench.dsn(bench.fresh()), "--yes"),
             (bench.tool, *replay, "-d", bench.fresh(), "-f", dump_file), turn)
        if turn == 0 and rounds == 1:
            break
    seeds = times["seed vs COPY floor"][0]
    times["seed vs Python COPY floor"][0].extend(seeds)
    times["reseed (unchanged) vs first seed"][1].extend(seeds)
    times["validate"][1].append(0.8 * n / 100_000)  # against the 100k-in-0.8-s goal
    return report_times(f"{n:,}", times)


class Poller:
    """An application reader: a movement of the current library looked up by slug every 10 ms
    on its own connection while a command runs; the slowest answer is its worst wait."""

    def __init__(self, dsn: str) -> None:
        import threading

        self.dsn = dsn
        self.stop = threading.Event()
        self.worst = 0.0
        self.thread = threading.Thread(target=self.poll, daemon=True)

    def poll(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            slugs = [r[0] for r in conn.execute(
                "SELECT slug FROM movement_current ORDER BY slug LIMIT 1000")]
            turn = 0
            while not self.stop.is_set():  # what the planner asks: one movement at a time
                started = time.perf_counter()
                conn.execute("SELECT name, equipment FROM movement_library_current WHERE slug = %s",
                             (slugs[turn % len(slugs)],)).fetchone()
                self.worst = max(self.worst, time.perf_counter() - started)
                turn += 1
                time.sleep(0.01)

    def __enter__(self) -> Poller:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def live(bench: Bench, n: int, work: Path, rounds: int) -> list[str]:
    """A release differing by 10 movements from an N-movement production library, restored
    (merged) into a copy of that library and, beside it, into an empty database: time, WAL,
    peak RSS and a polling reader's worst wait for each; the goals of issue 30."""
    import json

    data = work / f"synth-{n}.json"
    write_synthetic(n, data)
    newer = work / f"synth-{n}-10-changed.json"
    # line by line (one movement a line), so that this process stays small: a child's peak RSS
    # as wait4 reports it starts from its parent's size at the fork
    with data.open(encoding="utf-8") as lines, newer.open("w", encoding="utf-8") as out:
        for i, line in enumerate(lines):
            if line.startswith("{") and (i - 1) % max(1, n // 10) == 0 and i <= n:
                record = json.loads(line.rstrip().rstrip(","))
                record["name"] += " (revised)"
                comma = "," if line.rstrip().endswith(",") else ""
                line = json.dumps(record, ensure_ascii=False) + comma + "\n"
            out.write(line)
    production = bench.fresh()
    bench.inv("seed", "--dsn", bench.dsn(production), "--file", str(data), "--quiet")
    # a live database's rows have long been read (their hint bits set) and vacuumed: without
    # this, the first reader of a just-seeded library (the restore) writes every page to the WAL
    # (the embedded server has data checksums on)
    with psycopg.connect(bench.dsn(production), autocommit=True) as conn:
        conn.execute("VACUUM")
    source = bench.copy(production)
    bench.inv("seed", "--dsn", bench.dsn(source), "--file", str(newer), "--new-versions", "--quiet")
    dumps = work / f"live-{n}"
    bench.inv("dump", "--dsn", bench.dsn(source), "--output-dir", str(dumps))
    release = str(dumps / "movements_seed_latest.sql")

    def restore(db: str, poll: bool) -> tuple[float, int, float, float]:
        """Time, WAL bytes, peak RSS, worst reader wait (0 without a reader: an empty database
        has no table to read)."""
        with psycopg.connect(bench.dsn("postgres"), autocommit=True) as conn:
            # the WAL position is the server's: no autovacuum of the other databases (the
            # ones just written) may run meanwhile, nor take a core from the restore
            conn.execute("ALTER SYSTEM SET autovacuum = off")
            conn.execute("SELECT pg_reload_conf()")
            while conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                               "WHERE backend_type = 'autovacuum worker'").fetchall():
                time.sleep(0.1)
            bench.settle()
            start = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()
            reader = Poller(bench.dsn(db))
            if poll:
                reader.__enter__()
            try:
                elapsed = bench.inv("restore", "--dump-file", release, "--dsn", bench.dsn(db),
                                    "--yes", settle=False)
            finally:
                if poll:
                    reader.__exit__()
            wal = conn.execute("SELECT pg_current_wal_insert_lsn() - %s::pg_lsn", start).fetchone()
            conn.execute("ALTER SYSTEM RESET autovacuum")
            conn.execute("SELECT pg_reload_conf()")
        assert wal is not None
        return elapsed, int(wal[0]), bench.rss, reader.worst

    fulls: list[tuple[float, int, float, float]] = []
    merges: list[tuple[float, int, float, float]] = []
    for turn in range(rounds):  # alternated; each merge into its own copy of production
        target = bench.copy(production) if turn < rounds - 1 else production
        for side in ("full", "merge") if turn % 2 == 0 else ("merge", "full"):
            if side == "full":
                fulls.append(restore(bench.fresh(), poll=False))
            else:
                merges.append(restore(target, poll=True))

    def median(runs: list[tuple[float, int, float, float]]) -> tuple[float, int, float, float]:
        return (statistics.median(r[0] for r in runs), int(statistics.median(r[1] for r in runs)),
                statistics.median(r[2] for r in runs), max(r[3] for r in runs))

    full, merge = median(fulls), median(merges)
    wal_goal = 20 if n <= 100_000 else 100
    rows = []
    for name, (elapsed, wal, peak, worst) in (("full restore into an empty database", full),
                                              ("restore of 10 changed over the library", merge)):
        print(f"  {n:,} {name} (median of {rounds}): {elapsed:.2f} s, WAL {wal / 2**20:.1f} MB, "
              f"peak RSS {peak:.0f} MB, worst reader wait {worst * 1000:.0f} ms", flush=True)
    rows.append(f"| {n:,} | restore of 10 changed vs full restore (time) | {merge[0]:.2f} s | "
                f"{full[0]:.2f} s | {merge[0] / full[0]:.2f} | <= 0.25 "
                f"({'meets' if merge[0] / full[0] <= 0.25 else 'MISSES'}) |")
    mb = merge[1] / 2**20
    rows.append(f"| {n:,} | restore of 10 changed: WAL (full restore's) | {mb:.1f} MB | "
                f"{full[1] / 2**20:.1f} MB | {merge[1] / full[1]:.3f} | <= {wal_goal} MB "
                f"({'meets' if mb <= wal_goal else 'MISSES'}) |")
    rows.append(f"| {n:,} | restore of 10 changed: peak RSS, worst reader wait | {merge[2]:.0f} MB, "
                f"{merge[3] * 1000:.0f} ms | - | - | <= 300 MB, <= 200 ms "
                f"({'meets' if merge[2] <= 300 and merge[3] <= 0.2 else 'MISSES'}) |")
    return rows


# Goals of issue 15 (ratios; "validate" is against 0.8 s per 100k records).
TARGETS = {
    "seed of 8, unchanged vs connect floor": 1.25,
    "`inv --list` vs `inv --version`": 1.1,
    "validate 8 vs `import invoke`": 1.2,
    "seed vs COPY floor": 2.0,
    "seed vs Python COPY floor": 1.5,
    "reseed (unchanged) vs first seed": 0.1,
    "validate": 1.0,
    "dump vs pg_dump": 1.1,
    "restore vs psql -1 -f": 1.1,
}
LARGE_TARGETS = {"seed vs COPY floor": 1.15}  # at 100k and above
# Below 100k only the seed has a goal, against the Python floor (issue 22: 2x psql's floor was
# below what any Python process can do, its start-up alone being 2x that floor).
SMALL_TARGETS = {"seed vs Python COPY floor": 1.5}
STEPS = {"seed vs COPY floor": "seed", "reseed (unchanged) vs first seed": "reseed",
         "dump vs pg_dump": "dump", "restore vs psql -1 -f": "restore"}
# The steps with no reference of their own, in the large row after STEPS.
ALONE = ("dry-run JSON", "diff", "retire", "diff --json, all retired")


RELEASE = """
import sys
from pathlib import Path
from movelib.database.target import target_from_dsn
from movelib.ship.release import release
release(target_from_dsn(sys.argv[1], "--dsn"), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4])
"""


def compressed(bench: Bench, n: int, work: Path, rounds: int) -> list[str]:
    """A release of N movements as it ships (.sql.gz) beside its SQL: the sizes, the time
    `inv release` takes against `inv dump`, and a restore of each form into an empty database
    (alternated rounds, medians); issue 33's "releases that fit where they go"."""
    import gzip
    import json
    import shutil

    data = work / f"synth-{n}.json"
    if not data.exists():
        write_synthetic(n, data)
    source = bench.fresh()
    bench.inv("seed", "--dsn", bench.dsn(source), "--file", str(data), "--quiet")
    times: dict[str, list[float]] = {"release": [], "dump": [], "gz": [], "sql": []}
    for i in range(rounds):
        root = work / f"rel-{n}-{i}"
        steps = {"release": (sys.executable, "-c", RELEASE, bench.dsn(source), str(root),
                             str(ROOT / "migrations"), "v1"),
                 "dump": (sys.executable, "-m", "invoke", "dump", "--dsn", bench.dsn(source),
                          "--output-dir", str(root / "dumps"))}
        for name in (["release", "dump"] if i % 2 == 0 else ["dump", "release"]):
            times[name].append(bench.run(*steps[name]))
    shipped = next((work / f"rel-{n}-0" / "releases" / "v1").glob("*.sql.gz"))
    manifest = next(shipped.parent.glob("*.manifest.json"))
    plain = work / f"plain-{n}" / shipped.name.removesuffix(".gz")  # gunzip -c, beside its manifest
    plain.parent.mkdir()
    shutil.copyfile(manifest, plain.parent / manifest.name)
    with gzip.open(shipped, "rb") as packed, plain.open("wb") as out:
        shutil.copyfileobj(packed, out, 1 << 20)
    forms = {"gz": shipped, "sql": plain}
    for i in range(rounds):
        for name in (["gz", "sql"] if i % 2 == 0 else ["sql", "gz"]):
            times[name].append(bench.inv("restore", str(forms[name]), "--dsn",
                                         bench.dsn(bench.fresh()), "--yes"))
    facts = json.loads(manifest.read_text())
    sql_mb, gz_mb = facts["size"] / 1e6, facts["compressed"]["size"] / 1e6
    med = {k: statistics.median(v) for k, v in times.items()}
    return [f"| {n:,} | release size: {gz_mb:.1f} MB gzip of {sql_mb:.1f} MB SQL | - | - | "
            f"{gz_mb / sql_mb:.2f} | <= 50 MB to commit ({'fits' if gz_mb <= 50 else 'an asset'}) |",
            measured(f"{n:,}", "inv release (dump + gzip) vs inv dump", med["release"], med["dump"]),
            measured(f"{n:,}", "restore of the .sql.gz vs of its .sql", med["gz"], med["sql"])]


def measured(n: str, name: str, ours: float, theirs: float) -> str:
    """A row without a goal: what it costs, for the record."""
    return f"| {n} | {name} | {ours:.2f} s | {theirs:.2f} s | {ours / theirs:.2f} | - |"


def row(n: str, name: str, ours: float, theirs: float, target: float) -> str:
    ratio = ours / theirs
    verdict = "meets" if ratio <= target else "MISSES"
    return (f"| {n} | {name} | {ours:.2f} s | {theirs:.2f} s | {ratio:.2f} | <= {target} "
            f"({verdict}) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,100000")
    parser.add_argument("--size", type=int, default=None,
                        help="also the large row (e.g. 1000000): seed, reseed, dump, restore, "
                             "dry-run JSON, diff and retire once each, with peak RSS, against "
                             "the largest --sizes' times")
    parser.add_argument("--rounds", type=int, default=3,
                        help="runs of each pair, alternating which side goes first (medians count)")
    parser.add_argument("--everyday-rounds", type=int, default=7,
                        help="rounds of the everyday (8 placeholders, --list) pairs")
    parser.add_argument("--live", default="",
                        help="sizes of the live-database restore rows (e.g. 100000,1000000)")
    parser.add_argument("--compressed", default="",
                        help="sizes of the compressed-release rows (e.g. 100000,1000000)")
    parser.add_argument("--write", action="store_true", help="update benchmarks/README.md")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    started = time.perf_counter()
    rows: list[str] = []
    with tempfile.TemporaryDirectory(prefix="movelib-bench-") as tmp:
        base = Path(tmp)
        bench = Bench(base)
        bench.server.up()
        try:
            for name, (ours, theirs) in everyday(bench, args.everyday_rounds).items():
                rows.append(row("-", name, ours, theirs, TARGETS[name]))
                print(rows[-1], flush=True)
            medians: dict[int, dict[str, tuple[float, float]]] = {}
            rss: dict[int, dict[str, float]] = {}
            alone: dict[int, dict[str, float]] = {}
            for n in sizes:
                rss[n], alone[n] = {}, {}
                medians[n] = measure(bench, n, base, args.rounds, rss[n], alone[n])
                for name, (ours, theirs) in medians[n].items():
                    if n >= 100_000 and name not in SMALL_TARGETS:
                        rows.append(row(f"{n:,}", name, ours, theirs,
                                        LARGE_TARGETS.get(name, TARGETS[name])))
                    elif name in SMALL_TARGETS and n < 100_000:
                        rows.append(row(f"{n:,}", name, ours, theirs, SMALL_TARGETS[name]))
                    else:  # no goal at this size: shown for the record
                        rows.append(f"| {n:,} | {name} | {ours:.2f} s | {theirs:.2f} s | "
                                    f"{ours / theirs:.2f} | - |")
                    print(rows[-1], flush=True)
                print(f"  {n:,} peak RSS (MB): "
                      + ", ".join(f"{k} {v:.0f}" for k, v in rss[n].items()), flush=True)
            for n in (int(s) for s in args.live.split(",") if s):
                for line in live(bench, n, base, args.rounds if n <= 100_000 else 1):
                    rows.append(line)
                    print(line, flush=True)
            for n in (int(s) for s in args.compressed.split(",") if s):
                for line in compressed(bench, n, base, args.rounds if n <= 100_000 else 1):
                    rows.append(line)
                    print(line, flush=True)
            if args.size:
                big = args.size
                rss[big], alone[big] = {}, {}
                medians[big] = measure(bench, big, base, 1, rss[big], alone[big])
                ref = max(sizes) if sizes else None
                steps = [(step, medians[big][name][0],
                          medians[ref][name][0] if ref is not None else None)
                         for name, step in STEPS.items()]
                steps += [(step, alone[big][step], alone[ref][step] if ref is not None else None)
                          for step in ALONE]
                for step, ours, base_time in steps:
                    peak = rss[big][step]
                    mem = f"peak RSS {peak:.0f} MB ({'meets' if peak <= 300 else 'MISSES'} <= 300)"
                    if base_time is None:
                        rows.append(f"| {big:,} | {step} | {ours:.2f} s | - | - | {mem} |")
                    else:
                        factor = ours / base_time
                        rows.append(
                            f"| {big:,} | {step} vs its {ref:,} time | {ours:.2f} s | "
                            f"{base_time:.2f} s | {factor:.2f} | <= 11 "
                            f"({'meets' if factor <= 11 else 'MISSES'}); {mem} |")
                    print(rows[-1], flush=True)
        finally:
            bench.server.down(purge=True)
    total = time.perf_counter() - started
    header = ["| N | measure | movelib | reference | ratio | goal |",
              "| --- | --- | --- | --- | --- | --- |"]
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
               f"PostgreSQL 18 (embedded wheel), {datetime.now(UTC):%Y-%m-%d}")
    print(f"\nmachine: {machine}; whole run {total:.0f} s")
    if args.write:
        readme = ROOT / "benchmarks" / "README.md"
        text = readme.read_text(encoding="utf-8")
        marker = "<!-- results -->"
        head = text.split(marker)[0]
        table = "\n".join([*header, *rows])
        readme.write_text(f"{head}{marker}\n\nMeasured on {machine}; the whole run took "
                          f"{total:.0f} s.\n\n{table}\n", encoding="utf-8")


if __name__ == "__main__":
    main()
