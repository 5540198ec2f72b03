"""griffe extension for the API reference: mixedpy's docstrings write a parameter as
``name : description`` (the type is in the signature), where numpy style reads the text after the
colon as a type.  Inside Parameters sections this moves that text onto the description lines, so
the reference shows the signature's annotation as the type and the text as the description.
Sphinx roles such as ``:class:`~mixedpy.errors.DataError``` become code spans.  Docstrings in the
package are unchanged; only the copy griffe renders is rewritten.
"""
from __future__ import annotations

import re

from griffe import Extension

# Sphinx roles (:class:`~a.b.C`, :func:`f`, :mod:`m`) have no meaning in Markdown: keep the name as code
_ROLE = re.compile(r":(?:class|func|meth|mod|attr|exc|data|obj):`~?([^`]+)`")
_ENTRY = re.compile(r"^(?P<ind>[ \t]*)(?P<names>[A-Za-z_*][\w, *]*?) : (?P<text>.+)$")


def plain_roles(doc: str) -> str:
    """``:class:`~a.b.C``` -> ```C```, ``:mod:`a.b``` -> ```a.b```."""
    return _ROLE.sub(lambda m: "`" + (m.group(1).rsplit(".", 1)[-1] if m.group(0).count("~") else m.group(1)) + "`",
                     doc)


def split_entries(doc: str) -> str:
    """Rewrite ``name : text`` entries of the Parameters sections of ``doc`` as ``name`` followed
    by ``text`` indented as a description."""
    lines = doc.split("\n")
    out, i = [], 0
    while i < len(lines):
        out.append(lines[i])
        if i + 1 < len(lines) and lines[i].strip() in ("Parameters", "Other Parameters") \
                and re.fullmatch(r"\s*-{3,}", lines[i + 1]):
            indent = lines[i][:len(lines[i]) - len(lines[i].lstrip())]
            out.append(lines[i + 1])
            i += 2
            # the section runs until a blank line followed by an unindented line that is a heading
            while i < len(lines) and not (i + 1 < len(lines) and re.fullmatch(r"\s*-{3,}", lines[i + 1])):
                m = _ENTRY.match(lines[i])
                if m and m.group("ind") == indent:
                    out.append(indent + m.group("names"))
                    out.append(indent + "    " + m.group("text"))
                else:
                    out.append(lines[i])
                i += 1
            continue
        i += 1
    return "\n".join(out)


class ParameterDescriptions(Extension):
    """Apply :func:`split_entries` and :func:`plain_roles` to every docstring griffe loads."""

    def on_instance(self, *, obj, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = plain_roles(split_entries(obj.docstring.value))
