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
* ``inv --list`` wall time, and the peak RSS of the largest seed.

Every figure is a wall-clock time of the command a user would type, printed as a ratio. With
``--write`` the table is also written into benchmarks/README.md with the machine and date.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from movelib.emulator.embedded import EmbeddedEmulator  # noqa: E402
from movelib.emulator.pgbin import wheel_bin_dir  # noqa: E402
from movelib.profiles import Profile  # noqa: E402
from movelib.synth import write_synthetic  # noqa: E402

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
        self.n = 0

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

    def run(self, *cmd: str) -> float:
        self.settle()  # not timed
        started = time.perf_counter()
        proc = subprocess.run(cmd, env=self.env, cwd=ROOT, capture_output=True, text=True,
                              check=False)
        elapsed = time.perf_counter() - started
        if proc.returncode:
            raise SystemExit(f"{' '.join(cmd[:4])}... failed:\n{proc.stdout}\n{proc.stderr}")
        return elapsed

    def inv(self, *args: str) -> float:
        return self.run(sys.executable, "-m", "invoke", *args)

    def tool(self, name: str, *args: str) -> float:
        return self.run(str(self.bin / name), *args)


def measure(bench: Bench, n: int, work: Path, rounds: int) -> dict[str, tuple[float, float]]:
    """Each pair ``rounds`` times, the two sides in alternating order; the median of each side.

    The machine is shared and noisy (the same pg_dump took 1.7 s and 4.0 s in one run): the
    median of alternated runs is the fairest comparison of what each side costs. Every single
    time is printed too.
    """
    data = work / f"synth-{n}.json"
    write_synthetic(n, data)
    times: dict[str, tuple[list[float], list[float]]] = {}

    def pair(name: str, ours: tuple[Any, ...], theirs: tuple[Any, ...], turn: int) -> None:
        """Run (function, *args) of each side, alternating which goes first."""
        a, b = times.setdefault(name, ([], []))
        if turn % 2:
            b.append(theirs[0](*theirs[1:]))
            a.append(ours[0](*ours[1:]))
        else:
            a.append(ours[0](*ours[1:]))
            b.append(theirs[0](*theirs[1:]))

    replay = ("psql", "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1")

    data_sql = work / f"data-{n}.sql"
    for turn in range(rounds):
        db = bench.fresh()
        seed = (bench.inv, "seed", "--dsn", bench.dsn(db), "--file", str(data), "--quiet")
        if turn == 0:  # the floor replays the rows of the first seed
            first = bench.inv(*seed[1:])
            bench.tool("pg_dump", "--data-only", "-d", db, *[f"--table={t}" for t in TABLES],
                       "-f", str(data_sql))
            floor = bench.tool(*replay, "-d", bench.fresh(migrated=True), "-f", str(data_sql))
            times["seed vs COPY floor"] = ([first], [floor])
        else:
            pair("seed vs COPY floor", seed,
                 (bench.tool, *replay, "-d", bench.fresh(migrated=True), "-f", str(data_sql)), turn)
        times.setdefault("reseed (unchanged) vs first seed", ([], []))[0].append(
            bench.inv(*seed[1:]))
        times.setdefault("validate", ([], []))[0].append(
            bench.inv("validate", "--file", str(data), "--quiet"))

        dumps = work / f"dumps-{n}-{turn}"
        pair("dump vs pg_dump",
             (bench.inv, "dump", "--dsn", bench.dsn(db), "--output-dir", str(dumps)),
             (bench.tool, "pg_dump", "-d", db, *[f"--table={t}" for t in TABLES],
              "--table=_yoyo_*", "-f", str(work / f"pg_dump-{n}.sql")), turn)
        dump_file = str(dumps / "movements_seed_latest.sql")
        pair("restore vs psql -1 -f",
             (bench.inv, "restore", "--dump-file", dump_file, "--dsn", bench.dsn(bench.fresh()),
              "--yes"),
             (bench.tool, *replay, "-d", bench.fresh(), "-f", dump_file), turn)
    seeds = times["seed vs COPY floor"][0]
    times["reseed (unchanged) vs first seed"][1].extend(seeds)
    times["validate"][1].append(1.0 * n / 100_000)  # against the 100k-in-1-s target
    for name, (ours, theirs) in times.items():
        print(f"  {n:,} {name}: movelib {', '.join(f'{t:.2f}' for t in ours)} s; "
              f"reference {', '.join(f'{t:.2f}' for t in theirs)} s", flush=True)
    return {name: (statistics.median(ours), statistics.median(theirs))
            for name, (ours, theirs) in times.items()}


TARGETS = {
    "seed vs COPY floor": 1.5,
    "reseed (unchanged) vs first seed": 0.2,
    "validate": 1.0,
    "dump vs pg_dump": 1.2,
    "restore vs psql -1 -f": 1.2,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--rounds", type=int, default=3,
                        help="runs of each pair, alternating which side goes first (medians count)")
    parser.add_argument("--write", action="store_true", help="update benchmarks/README.md")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    started = time.perf_counter()
    rows: list[str] = []
    with tempfile.TemporaryDirectory(prefix="movelib-bench-") as tmp:
        base = Path(tmp)
        bench = Bench(base)
        bench.server.up()
        try:
            for n in sizes:
                for name, (ours, theirs) in measure(bench, n, base, args.rounds).items():
                    ratio = ours / theirs
                    target = TARGETS[name]
                    verdict = "meets" if ratio <= target else "MISSES"
                    rows.append(f"| {n:,} | {name} | {ours:.2f} s | {theirs:.2f} s | "
                                f"{ratio:.2f} | <= {target} ({verdict}) |")
                    print(rows[-1], flush=True)
        finally:
            bench.server.down(purge=True)
    lists = []
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "invoke", "--list"], cwd=ROOT, capture_output=True,
                       check=True)
        lists.append(time.perf_counter() - t0)
    inv_list = sorted(lists)[len(lists) // 2]
    rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    total = time.perf_counter() - started
    extra = [
        f"| - | `inv --list` (median of 5) | {inv_list:.2f} s | - | - | <= 0.3 s "
        f"({'meets' if inv_list <= 0.3 else 'MISSES'}) |",
        f"| {max(sizes):,} | peak RSS of any child (the largest seed) | {rss_mb:.0f} MB | - | - | "
        f"<= 300 MB ({'meets' if rss_mb <= 300 else 'MISSES'}) |",
    ]
    for line in extra:
        print(line)
    header = ["| N | measure | movelib | reference | ratio | target |",
              "| --- | --- | --- | --- | --- | --- |"]
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
               f"PostgreSQL 18 (embedded wheel), {datetime.now(UTC):%Y-%m-%d}")
    print(f"\nmachine: {machine}; whole run {total:.0f} s")
    if args.write:
        readme = ROOT / "benchmarks" / "README.md"
        text = readme.read_text(encoding="utf-8")
        marker = "<!-- results -->"
        head = text.split(marker)[0]
        table = "\n".join([*header, *rows, *extra])
        readme.write_text(f"{head}{marker}\n\nMeasured on {machine}; the whole run took "
                          f"{total:.0f} s.\n\n{table}\n", encoding="utf-8")


if __name__ == "__main__":
    main()
