"""Generate the API reference pages at build time from the package tree.

On ``builder-inited`` the package is walked with :func:`pkgutil.walk_packages`; every public module
(no path component starting with ``_``) gets one page ``api/modules/<dotted.name>.md`` holding an
``automodule`` directive, so a module added, moved or removed changes the reference with no edit here.
A module that cannot be imported in the building environment (an optional dependency missing) gets a
page saying which import failed instead of a broken autodoc.  Pages are rewritten only when their text
changes (incremental builds stay incremental); ``api/modules/`` is generated, not committed.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import traceback
from pathlib import Path

PACKAGE = "critdiff_ref"


def public_modules(package: str = PACKAGE) -> list[str]:
    """Every importable-by-name public module of ``package``, the package itself first, sorted."""
    pkg = importlib.import_module(package)
    names = [package]
    for info in pkgutil.walk_packages(pkg.__path__, prefix=package + ".", onerror=lambda name: None):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        names.append(info.name)
    return sorted(set(names))


def _page(name: str) -> str:
    title = f"`{name}`"
    try:
        importlib.import_module(name)
    except Exception as err:  # an optional dependency missing here: say so instead of failing the build
        last = traceback.format_exception_only(type(err), err)[-1].strip()
        return (f"# {title}\n\nThis module could not be imported where the documentation was built "
                f"(an optional dependency is missing: `{last}`); install the matching extra to use it.\n")
    lines = [f"# {title}", "", "```{eval-rst}", f".. automodule:: {name}", "   :members:", ""]
    for attr, kind in _private_homed(name):
        lines += [f".. auto{kind}:: {name}.{attr}", ""]
    return "\n".join(lines).rstrip() + "\n```\n"


def _private_homed(name: str) -> list[tuple[str, str]]:
    """Names a package hands on whose defining module is private and sits directly in this package.

    ``automodule`` documents what a module defines; a name defined in ``pkg._impl`` would otherwise
    appear nowhere, so it is documented on ``pkg``'s page (its public face).
    """
    module = importlib.import_module(name)
    if not hasattr(module, "__path__"):
        return []
    found = []
    for attr in sorted(getattr(module, "__all__", dir(module))):
        obj = getattr(module, attr, None)
        home = getattr(obj, "__module__", None) or ""
        if not home.startswith(name + "."):
            continue
        rest = home[len(name) + 1:].split(".")
        if len(rest) == 1 and rest[0].startswith("_") and (inspect.isclass(obj) or inspect.isfunction(obj)):
            found.append((attr, "class" if inspect.isclass(obj) else "function"))
    return found


def write_pages(app) -> None:
    out = Path(app.srcdir) / "api" / "modules"
    out.mkdir(parents=True, exist_ok=True)
    wanted = {}
    for name in public_modules():
        wanted[f"{name}.md"] = _page(name)
    for old in out.glob("*.md"):
        if old.name not in wanted:
            old.unlink()
    for fname, text in wanted.items():
        path = out / fname
        if not path.exists() or path.read_text() != text:
            path.write_text(text)


THEORY_CITE = re.compile(r"(?<![`<\w])THEORY (\d+)(?:\.(\d+))?\b(?!\.\d)")


def link_theory_citations(app, what, name, obj, options, lines: list[str]) -> None:
    """Turn "THEORY n" / "THEORY n.m" in a docstring into a link to that theory section.

    Citations inside inline literals (````...````) are left as they are.
    """
    for i, line in enumerate(lines):
        parts = line.split("``")
        for j in range(0, len(parts), 2):  # even parts are outside double-backtick literals
            parts[j] = THEORY_CITE.sub(
                lambda m: f":ref:`THEORY {m[1]}{'.' + m[2] if m[2] else ''} <theory-{m[1]}{'-' + m[2] if m[2] else ''}>`",
                parts[j])
        lines[i] = "``".join(parts)


def setup(app):
    app.connect("builder-inited", write_pages)
    app.connect("autodoc-process-docstring", link_theory_citations)
    return {"version": "1", "parallel_read_safe": True}
