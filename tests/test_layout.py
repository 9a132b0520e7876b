"""The package layout (issue 19, CONVENTIONS "Layout"): a small root, concept packages whose
``__init__`` is their public face, one home per public name, no import cycles, and the old import
paths the README once gave still working (deprecated)."""

from __future__ import annotations

import ast
import importlib
import re
import warnings
from pathlib import Path

import pytest

import critdiff_ref
from critdiff_ref import _moved

PACKAGE = Path(critdiff_ref.__file__).parent
ROOT_MODULES = {"__init__", "__main__", "_args", "_io", "_moved", "_progress", "_threads", "_user_code", "cli", "errors", "lattice", "observables", "processes", "scores",
                "strategies", "testing"}
PACKAGES = {"objective", "phi4", "report", "samplers", "targets", "theory", "sweep", "thermo", "trainers", "validate"}


def _modules() -> dict[str, Path]:
    """Dotted name -> file of every module in the package."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _top_level_imports(name: str, path: Path) -> set[str]:
    """Modules of the package imported at module level by ``name`` (function-level imports are lazy)."""
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                mod = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not mod.startswith("critdiff_ref"):
                continue
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                sub = f"{mod}.{alias.name}"
                found.add(sub if sub in MODULES else mod)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("critdiff_ref"))
    return found & set(MODULES)


def test_the_root_holds_only_the_shared_modules_and_the_concept_packages():
    entries = {p.stem for p in PACKAGE.glob("*.py")}
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert entries == ROOT_MODULES
    assert packages == PACKAGES


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_every_concept_package_names_its_theory_sections(package):
    doc = importlib.import_module(f"critdiff_ref.{package}").__doc__ or ""
    assert "THEORY" in doc


def test_no_import_cycles():
    """Depth-first search over the module-level import graph; a back edge is a cycle."""
    graph = {name: _top_level_imports(name, path) - {name} for name, path in MODULES.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


@pytest.mark.parametrize("name", sorted(n for n, p in MODULES.items() if p.name != "__init__.py"))
def test_a_module_exports_only_what_it_defines(name):
    """No module re-exports a sibling's names: everything in ``__all__`` is defined in the module itself."""
    tree = ast.parse(MODULES[name].read_text())
    defined, exported = set(), []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for t in ast.walk(target):
                    if isinstance(t, ast.Name):
                        defined.add(t.id)
                        if t.id == "__all__":
                            exported = [e.value for e in node.value.elts]
    assert not [n for n in exported if n not in defined]


VALIDATE = PACKAGE / "validate"
VALIDATE_MODULES = {name: path for name, path in MODULES.items() if name.startswith("critdiff_ref.validate")}


# every folder of the package but the root (whose shared modules are ROOT_MODULES, checked above)
FOLDERS = sorted({p.parent.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE})


def test_the_folder_list_covers_every_concept_package():
    """The parametrisation below must not be empty or miss a package (a check that cannot fail is none)."""
    assert PACKAGES <= {f.split("/")[0] for f in FOLDERS}


@pytest.mark.parametrize("folder", FOLDERS)
def test_no_folder_holds_more_than_12_modules_flat(folder):
    """CONVENTIONS "Layout": a folder that grows past ~12 modules is cut by sub-concept into a subpackage."""
    modules = [p for p in (PACKAGE / folder).glob("*.py") if p.name != "__init__.py"]
    assert len(modules) <= 12, (folder, sorted(p.name for p in modules))


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_are_under_500_lines(name):
    assert len(MODULES[name].read_text().splitlines()) <= 500, name


@pytest.mark.parametrize("name", sorted(n for n, p in VALIDATE_MODULES.items() if p.name == "__init__.py"))
def test_validate_package_faces_define_no_function_or_class(name):
    """A package ``__init__`` only hands names on (statements that assign imported names are allowed)."""
    tree = ast.parse(MODULES[name].read_text())
    defined = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    assert not defined, (name, defined)


@pytest.mark.parametrize("name", sorted(VALIDATE_MODULES))
def test_validate_imports_no_private_name_from_another_module(name):
    """No ``_private`` function, class or constant crosses a module boundary (the package's shared private
    modules ``critdiff_ref._io`` / ``_threads`` are modules, not names, and may be imported)."""
    path = VALIDATE_MODULES[name]
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    private = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            mod = (".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
                   if node.level else node.module or "")
            private += [f"{mod}.{a.name}" for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__") and f"{mod}.{a.name}" not in MODULES]
    assert not private, (name, private)


@pytest.mark.parametrize("name", sorted(VALIDATE_MODULES))
def test_validate_modules_import_nothing_inside_functions_from_validate(name):
    """Imports within validate/ happen at module level (no function-level import back up into the package)."""
    path = VALIDATE_MODULES[name]
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    late = []
    for fn in ast.walk(ast.parse(path.read_text())):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom):
                    mod = (".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
                           if node.level else node.module or "")
                    if mod.startswith("critdiff_ref.validate"):
                        late.append(mod)
    assert not late, (name, late)


def test_no_code_parses_a_check_display_name():
    """Tables read the structured fields of a check (kind, steps, target), never its display name."""
    # .name (or ["name"]) followed by a string method or a separator, or a substring test on a name
    pattern = re.compile(r"(\.name\b|\[\"name\"\])[^\n]*(split|rsplit|startswith|endswith|\"@\"|\"/)"
                         r"|\" in \w+(\.name\b|\[\"name\"\])|\"/covariance@\" in|\"/order\"")
    offenders = []
    for path in [*VALIDATE.rglob("*.py"), PACKAGE / "sweep" / "jobs.py", PACKAGE / "sweep" / "table.py"]:
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(PACKAGE)}:{i}: {line.strip()}")
    assert not offenders, offenders


@pytest.mark.parametrize("old", sorted(_moved.MOVED))
def test_old_readme_import_paths_still_work_with_a_deprecation_warning(old):
    home = importlib.import_module(_moved.MOVED[old][0])
    name = next(n for n in home.__all__)
    with pytest.warns(DeprecationWarning, match=_moved.MOVED[old][0]):
        stand_in = _moved.moved_module(old)
    assert getattr(stand_in, name) is getattr(home, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert getattr(importlib.import_module(old), name) is getattr(home, name)
        parent, _, short = old.rpartition(".")
        assert getattr(getattr(importlib.import_module(parent), short), name) is getattr(home, name)
    with pytest.raises(AttributeError, match="no attribute"):
        stand_in.no_such_name


def test_an_unknown_root_attribute_is_still_an_attribute_error():
    with pytest.raises(AttributeError):
        critdiff_ref.no_such_module
