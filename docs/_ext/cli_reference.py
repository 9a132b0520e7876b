"""Sphinx directive ``critdiff-cli``: the command-line reference, read from the argparse parsers.

``critdiff_ref.cli._build_parser()`` is the one source of every sub-command, flag, default and help
string; this directive renders it at build time (one section per sub-command: usage, then a table of
its arguments), so the reference cannot drift from the code.  It builds docutils nodes directly, so it
works the same in MyST and reStructuredText pages.
"""

from __future__ import annotations

import argparse

from docutils import nodes
from sphinx.util.docutils import SphinxDirective


def _help_text(action: argparse.Action) -> str:
    """The help string as ``--help`` prints it (``%(default)s`` and friends expanded)."""
    text = action.help or ""
    if "%" in text:
        params = {k: v for k, v in vars(action).items() if v is not argparse.SUPPRESS}
        if params.get("choices") is not None:
            params["choices"] = ", ".join(map(str, params["choices"]))
        text = text % params
    return " ".join(text.split())


def _default(action: argparse.Action) -> str:
    if action.option_strings and action.nargs == 0:
        return "off" if action.default in (False, None) else "on"
    d = action.default
    if d is None or d is argparse.SUPPRESS:
        return "-"
    if isinstance(d, (list, tuple)):
        return " ".join(map(str, d)) or "-"
    return str(d)


def _table(rows: list[tuple[nodes.Node, str, str]]) -> nodes.table:
    table = nodes.table(classes=["critdiff-cli-table"])
    group = nodes.tgroup(cols=3)
    table += group
    for width in (30, 15, 55):
        group += nodes.colspec(colwidth=width)
    head, body = nodes.thead(), nodes.tbody()
    group += head
    group += body

    def row(cells):
        r = nodes.row()
        for cell in cells:
            entry = nodes.entry()
            entry += nodes.paragraph("", "", cell) if isinstance(cell, nodes.Node) else nodes.paragraph(text=cell)
            r += entry
        return r

    head += row(["argument", "default", "meaning"])
    for cells in rows:
        body += row(cells)
    return table


def _command_section(document, name: str, parser: argparse.ArgumentParser, help_line: str) -> nodes.section:
    title = f"critdiff {name}"
    section = nodes.section(ids=[nodes.make_id(f"cli-{name}")], names=[nodes.fully_normalize_name(title)])
    section += nodes.title(text=title)
    if help_line:
        section += nodes.paragraph(text=help_line[0].upper() + help_line[1:] + ".")
    usage = parser.format_usage().strip()
    section += nodes.literal_block(usage, usage, language="none")
    rows = []
    for a in parser._actions:
        if isinstance(a, argparse._HelpAction):
            continue
        flags = ", ".join(a.option_strings) if a.option_strings else (a.metavar or a.dest)
        rows.append((nodes.literal(text=flags), _default(a), _help_text(a) or "-"))
    if rows:
        section += _table(rows)
    document.note_implicit_target(section, section)
    return section


class CritdiffCLI(SphinxDirective):
    """Render every ``critdiff`` sub-command of ``critdiff_ref.cli`` (no arguments)."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        from critdiff_ref import cli

        parser = cli._build_parser()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        helps = {c.dest: c.help for c in sub._choices_actions}
        intro = nodes.paragraph()
        intro += nodes.literal(text="critdiff")
        intro += nodes.Text(" with no sub-command runs ")
        intro += nodes.literal(text=f"critdiff {cli.DEFAULT_COMMAND}")
        intro += nodes.Text(".")
        return [intro] + [_command_section(self.state.document, name, p, helps.get(name) or "")
                          for name, p in sub.choices.items()]


def setup(app):
    app.add_directive("critdiff-cli", CritdiffCLI)
    return {"version": "2", "parallel_read_safe": True}
