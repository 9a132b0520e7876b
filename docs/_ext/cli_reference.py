"""Sphinx directive ``critdiff-cli``: the command-line reference, read from the argparse parsers.

``critdiff_ref.cli._build_parser()`` is the one source of every sub-command, flag, default and help
string; this directive renders it at build time (one section per sub-command: usage, then a table of
its arguments), so the reference cannot drift from the code.
"""

from __future__ import annotations

import argparse

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles


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


def _cell(text: str) -> str:
    """Literal text for an RST table cell (no markup interpreted)."""
    text = text.replace("\\", "\\\\").replace("`", "\\`").replace("*", "\\*").replace("|", "\\|")
    text = text.replace("_", "\\_")
    return text or "-"


def _command_rst(name: str, parser: argparse.ArgumentParser, help_line: str) -> list[str]:
    title = f"critdiff {name}"
    lines = [f".. _cli-{name}:", "", title, "-" * len(title), ""]
    if help_line:
        lines += [_cell(help_line[0].upper() + help_line[1:]) + ".", ""]
    usage = parser.format_usage().strip()
    lines += ["::", ""] + ["    " + ln for ln in usage.splitlines()] + [""]
    rows = [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]
    if rows:
        lines += [".. list-table::", "   :header-rows: 1", "   :widths: 30 15 55", "",
                  "   * - argument", "     - default", "     - meaning"]
        for a in rows:
            flags = ", ".join(a.option_strings) if a.option_strings else (a.metavar or a.dest)
            lines += [f"   * - ``{flags}``", f"     - {_cell(_default(a))}", f"     - {_cell(_help_text(a))}"]
        lines.append("")
    return lines


class CritdiffCLI(SphinxDirective):
    """Render every ``critdiff`` sub-command of ``critdiff_ref.cli`` (no arguments)."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        from critdiff_ref import cli

        parser = cli._build_parser()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        helps = {c.dest: c.help for c in sub._choices_actions}
        lines = ["``critdiff`` with no sub-command runs ``critdiff " + cli.DEFAULT_COMMAND + "``.", ""]
        for name, p in sub.choices.items():
            lines += _command_rst(name, p, helps.get(name) or "")
        container = nodes.section()
        container.document = self.state.document
        nested_parse_with_titles(self.state, StringList(lines, source="critdiff_ref.cli"), container)
        return container.children


def setup(app):
    app.add_directive("critdiff-cli", CritdiffCLI)
    return {"version": "1", "parallel_read_safe": True}
