"""The package's shape: no import circle between its modules, counting every import (at module
level, inside functions, under ``TYPE_CHECKING``), and no wing importing one above it (base < source,
database < seed < ship), so the layers the README draws are the ones the code has."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "movelib"


def module_files(root: Path) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package's ``__init__``)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    """Each module -> the package's modules it imports, wherever the import statement sits."""
    modules = module_files(root)
    top = root.name
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: from . import x, from ..y import z
                    parts = package.split(".")
                    base = ".".join(parts[:len(parts) - node.level + 1]
                                    + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                for alias in node.names:
                    # `from . import db` imports the module db; `from .db import rows`, a name of db
                    module = f"{base}.{alias.name}"
                    imported.add(module if module in modules else base)
        # `import movelib.a.b` needs movelib.a.b; a name that is no module is dropped
        graph[name] = {m for m in imported if m in modules and m != name
                       and (m == top or m.startswith(f"{top}."))}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as ``[a, b, ..., a]``, or None."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path: list[str] = []
        on_path: set[str] = set()
        stack = [(start, iter(sorted(graph[start])))]
        path.append(start)
        on_path.add(start)
        while stack:
            node, following = stack[-1]
            step = next(following, None)
            if step is None:
                stack.pop()
                path.pop()
                on_path.discard(node)
                done.add(node)
            elif step in on_path:
                return [*path[path.index(step):], step]
            elif step not in done:
                stack.append((step, iter(sorted(graph[step]))))
                path.append(step)
                on_path.add(step)
    return None


def test_the_package_has_no_import_circle_counting_imports_inside_functions() -> None:
    graph = import_graph(PACKAGE)
    assert len(graph) > 30 and "movelib.ship.dump" in graph
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("files, circle", [
    pytest.param({"__init__.py": "", "a.py": "def f():\n    from .b import g\n",
                  "b.py": "from . import a\n"}, ["pkg.a", "pkg.b", "pkg.a"],
                 id="import-inside-a-function-counts"),
    pytest.param({"__init__.py": "", "a.py": "import pkg.sub.c\n", "sub/__init__.py": "",
                  "sub/c.py": "from ..a import x\n"}, ["pkg.a", "pkg.sub.c", "pkg.a"],
                 id="absolute-and-parent-relative-imports-count"),
    pytest.param({"__init__.py": "", "a.py": "from typing import TYPE_CHECKING\n"
                  "if TYPE_CHECKING:\n    from .b import B\n", "b.py": "from .a import A\n"},
                 ["pkg.a", "pkg.b", "pkg.a"], id="type-checking-imports-count"),
    pytest.param({"__init__.py": "", "a.py": "from .b import B\n", "b.py": "import os\n"},
                 None, id="a-chain-is-no-circle"),
])
def test_the_circle_finder_sees_every_kind_of_import(tmp_path: Path, files: dict[str, str],
                                                     circle: list[str] | None) -> None:
    root = tmp_path / "pkg"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    assert find_cycle(import_graph(root)) == circle


# The wings from the ground up, and which wings each may import: the base nothing above it,
# source and database side by side on the base, the seed on those three, ship on all of them.
WINGS = ("base", "source", "database", "seed", "ship")
MAY_IMPORT = {
    "base": {"base"},
    "source": {"base", "source"},
    "database": {"base", "database"},
    "seed": {"base", "source", "database", "seed"},
    "ship": set(WINGS),
}


def wing_of(module: str) -> str | None:
    """``movelib.ship.dump`` -> ``ship``; the top package (the version) is in no wing."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in MAY_IMPORT else None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every ``a -> b`` where b's wing is not one a's wing may import (the top package, which
    holds only the version, may be imported by any)."""
    return sorted(f"{module} -> {imported}" for module, imports in graph.items()
                  for imported in imports
                  if wing_of(imported) is not None
                  and wing_of(imported) not in MAY_IMPORT.get(wing_of(module) or "", set()))


def test_every_module_sits_in_a_wing_and_imports_only_the_base_and_the_wings_below() -> None:
    graph = import_graph(PACKAGE)
    top = PACKAGE.name
    outside = sorted(m for m in graph if m != top and wing_of(m) is None)
    assert not outside, f"modules in no wing: {outside}"
    assert sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()) == sorted(WINGS)
    upward = upward_imports(graph)
    assert not upward, "imports that reach up a wing: " + ", ".join(upward)


@pytest.mark.parametrize("files, upward", [
    pytest.param({"base/a.py": "from ..ship import b\n", "ship/b.py": ""},
                 ["pkg.base.a -> pkg.ship.b"], id="the-base-reaching-up"),
    pytest.param({"source/a.py": "def f():\n    from ..database.b import x\n", "database/b.py": ""},
                 ["pkg.source.a -> pkg.database.b"], id="side-by-side-wings-inside-a-function"),
    pytest.param({"ship/a.py": "from ..seed.b import x\nfrom ..base import c\n", "seed/b.py": "",
                  "base/c.py": "from .. import __version__\n"}, [], id="downward-is-fine"),
])
def test_the_wing_check_sees_an_import_that_reaches_up(tmp_path: Path, files: dict[str, str],
                                                        upward: list[str]) -> None:
    root = tmp_path / "pkg"
    for name, text in {"__init__.py": "", **{f"{w}/__init__.py": "" for w in WINGS}, **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    assert upward_imports(import_graph(root)) == upward


def test_the_readme_architecture_names_every_module_once_in_its_wing() -> None:
    readme = (PACKAGE.parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Architecture"):readme.index("## Layout")]
    rows = re.findall(r"^\| `([a-z]+)/`[^|]*\|(.*)\|$", section.split("| wing | modules |", 1)[1], re.M)
    assert [wing for wing, _ in rows] == list(WINGS), "one row per wing, from the ground up"
    for wing, cell in rows:
        named = re.findall(r"`([a-z_]+/?)`", cell)
        folder = PACKAGE / wing
        modules = sorted({p.stem for p in folder.glob("*.py") if p.stem != "__init__"}
                         | {f"{p.name}/" for p in folder.iterdir() if (p / "__init__.py").is_file()})
        assert sorted(named) == modules, (
            f"{wing}/: not in README's architecture: {sorted(set(modules) - set(named))}; named but "
            f"absent or twice: {sorted(n for n in named if n not in modules or named.count(n) > 1)}")


def test_the_constraints_pin_every_dependency_the_project_names() -> None:
    """`constraints.txt` (what CI and the README install with) pins each package pyproject.toml
    names, runtime and test, at one exact version."""
    import tomllib

    def name(requirement: str) -> str:
        return re.split(r"[\[<>=!~;\s]", requirement, maxsplit=1)[0].lower().replace("_", "-")

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    named = {name(r) for r in project["dependencies"]}
    named |= {name(r) for extra in project["optional-dependencies"].values() for r in extra}
    named.discard("movelib")
    pins = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            package, _, version = line.partition("==")
            assert version and re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", version), line
            pins[package.lower().replace("_", "-")] = version
    assert not named - set(pins), sorted(named - set(pins))


def test_the_entry_points_exist_and_readme_lists_them_as_the_package_does() -> None:
    import importlib

    import movelib

    for entry in movelib.ENTRY_POINTS:
        module, _, function = entry.rpartition(".")
        assert callable(getattr(importlib.import_module(f"movelib.{module}"), function)), entry
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    listed = ", ".join(f"`{e}`" for e in movelib.ENTRY_POINTS[:-1]) + f" and `{movelib.ENTRY_POINTS[-1]}`"
    assert listed in readme


def test_the_counts_the_docs_quote_are_the_suites() -> None:
    """A number SECURITY.md quotes for what a test file covers is that file's own count."""
    import test_forged_dumps
    import test_live_restore
    from reliability import test_bad_input, test_crash

    text = " ".join((ROOT / "SECURITY.md").read_text(encoding="utf-8").split())

    def quoted(pattern: str) -> int:
        found = re.findall(pattern, text)
        assert len(found) == 1, f"SECURITY.md says {pattern!r} {len(found)} times"
        return int(found[0])

    assert quoted(r"(\d+) forged dumps") == len(test_forged_dumps.FORGERIES)
    assert quoted(r"(\d+) forged manifests") == (len(test_forged_dumps.MANIFEST_FORGERIES)
                                                 + len(test_forged_dumps.SMUGGLED_VERSIONS))
    assert quoted(r"catalog snapshot of (\d+) parts") == len(test_live_restore.SNAPSHOT)
    assert quoted(r"\((\d+)\+ malformed files") <= len(test_bad_input.CASES)
    assert quoted(r"\((\d+)\+ trials each") <= test_crash.TRIALS
