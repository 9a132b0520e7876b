"""Role ``optdoc``: a link to a page that another part of the project may add later.

``{optdoc}`Extending critdiff_ref <guides/extending>``` renders as an ordinary document link when
``guides/extending.md`` is part of the build, and as plain emphasised text when it is not, so a page
can point at a guide before it exists without breaking the warning-free (``-W``) build.
"""

from __future__ import annotations

import posixpath
import re

from docutils import nodes
from sphinx import addnodes


def optdoc_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    env = inliner.document.settings.env
    m = re.fullmatch(r"\s*(.*?)\s*<([^>]+)>\s*", text, re.S)
    title, target = (m.group(1), m.group(2)) if m else (text, text)
    target = target.removesuffix(".md")
    docname = posixpath.normpath(posixpath.join(posixpath.dirname(env.docname), target))
    if docname not in env.found_docs:
        return [nodes.emphasis(title, title)], []
    ref = addnodes.pending_xref(rawtext, refdomain="std", reftype="doc", reftarget="/" + docname,
                                refexplicit=True, refwarn=True, refdoc=env.docname)
    ref += nodes.inline(title, title, classes=["xref", "std", "std-doc"])
    return [ref], []


def setup(app):
    app.add_role("optdoc", optdoc_role)
    return {"version": "1", "parallel_read_safe": True}
