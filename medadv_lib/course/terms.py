"""Terms before use: every glossary term is defined in the course at its first appearance.

The glossary (``docs/glossary.md``) and the notebooks follow one convention, checked by
``tests/test_terms.py``:

*The terms.* Every ``###`` entry of the glossary has a ``- **Terms.**`` line listing the terms a student
meets in the notebooks: concepts separated by ``;``, the aliases of one concept by ``,`` (the first alias
names the concept), e.g. ``- **Terms.** sensitivity, recall; PPV, positive predictive value``.  A line
that starts with ``none`` (``- **Terms.** none: ...``) leaves the entry unchecked; an entry without a
``Terms.`` line is an error, so that a new entry cannot go unchecked by accident.  The entry's anchor is
GitHub's: the heading in lower case, without punctuation (word characters, spaces and hyphens stay),
spaces turned into hyphens.

*A use.* A concept is *used* in a markdown cell when one of its aliases occurs there as a whole word,
case-insensitively, with a space or a hyphen between its words (``fooling rate``, ``fooling-rate``)
and an optional plural on the last word (``UAPs``, ``accuracies``).  Code (inline or fenced), link
targets and HTML comments are not read; link *text* is.

*A definition.* A markdown cell *defines* a concept when it holds a relative markdown link to the
glossary entry, ``[text](../docs/glossary.md#anchor)``, whose text contains one of the concept's aliases
(by the same rule as a use), e.g. ``[defense rate](../docs/glossary.md#defense-rate-defense_rate--our-working-definition)``.
The sentence around the link defines the concept for the student; the link leads to the full entry.

*The rule.* Walking the markdown cells of ``notebooks/NN_*.ipynb`` in course order (notebook number,
then cell index), a concept must not be used before the cell that first defines it; a use in the
defining cell itself is fine.  Code cells are not read.  Everything here is plain JSON and regular
expressions: no kernel, no imports beyond the standard library.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Term", "CellRef", "TermUse", "glossary_anchor", "glossary_anchors", "parse_glossary", "term_pattern", "markdown_cells",
           "term_uses", "used_before_defined", "broken_glossary_links"]

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.M)
_TERMS_LINE = re.compile(r"^\s*-\s+\*\*Terms\.\*\*\s*(.*)$", re.M)
_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_LINK = re.compile(r"\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(([^()\s]*)(?:\s+\"[^\"]*\")?\)")


@dataclass(frozen=True)
class Term:
    """One concept of the glossary: its name (the first alias), every alias, and the entry it lives in."""
    name: str
    aliases: tuple[str, ...]
    anchor: str
    heading: str


@dataclass(frozen=True, order=True)
class CellRef:
    """A markdown cell in course order: the notebook's position in the course, its file name, the cell's index
    among *all* the notebook's cells (as ``nbformat`` counts them) and its id."""
    order: int
    notebook: str
    index: int
    cell_id: str | None = None

    def __str__(self) -> str:
        return f"{self.notebook}, cell {self.index}" + (f" (id {self.cell_id})" if self.cell_id else "")


@dataclass(frozen=True)
class TermUse:
    """Where a concept is first used and first defined in the course (``None``: never)."""
    term: Term
    first_use: CellRef | None
    first_definition: CellRef | None

    @property
    def used_before_defined(self) -> bool:
        return self.first_use is not None and (self.first_definition is None or self.first_use < self.first_definition)

    def __str__(self) -> str:
        defined = str(self.first_definition) if self.first_definition else "nowhere"
        return f"{self.term.name!r} (#{self.term.anchor}): first used in {self.first_use}, defined in {defined}"


def glossary_anchor(heading: str) -> str:
    """GitHub's anchor of a markdown heading: lower case, code ticks and punctuation dropped (word characters,
    spaces and hyphens stay), every space a hyphen.  ``"Defense rate (`defense_rate`) — ours"`` ->
    ``"defense-rate-defense_rate--ours"``."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def glossary_anchors(text: str) -> list[str]:
    """Every heading's anchor, duplicates numbered as GitHub does (``name``, ``name-1``, ...)."""
    seen: dict[str, int] = {}
    out = []
    for _, head in _HEADING.findall(_FENCE.sub("", text)):
        base = glossary_anchor(head)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.append(base if n == 0 else f"{base}-{n}")
    return out


def parse_glossary(path: Path | str) -> list[Term]:
    """The glossary's checked concepts, in the glossary's order (see the module docstring for the format).

    Raises ``ValueError`` for a ``###`` entry without a ``- **Terms.**`` line, or with an empty one."""
    text = Path(path).read_text(encoding="utf-8")
    terms: list[Term] = []
    for entry in re.split(r"^(?=### )", _FENCE.sub("", text), flags=re.M)[1:]:
        heading = entry.splitlines()[0][4:].strip()
        anchor = glossary_anchor(heading)
        found = _TERMS_LINE.search(entry)
        if not found or not found.group(1).strip():
            raise ValueError(f"glossary entry {heading!r} has no '- **Terms.**' line (write 'none: <why>' to "
                             "leave it unchecked)")
        value = found.group(1).strip()
        if value.lower().startswith("none"):
            continue
        for concept in value.split(";"):
            aliases = tuple(a.strip().strip(".") for a in concept.split(",") if a.strip().strip("."))
            if aliases:
                terms.append(Term(aliases[0], aliases, anchor, heading))
    return terms


def term_pattern(alias: str) -> re.Pattern:
    """The regular expression of one alias: case-insensitive, whole words, a space or a hyphen between
    words, an optional plural (``s``, ``es``, ``y`` -> ``ies``) on the last word."""
    words = re.split(r"[\s\-]+", alias.strip())
    last = words[-1]
    plural = f"{re.escape(last)}(?:s|es)?"
    if last[-1:].lower() == "y":
        plural = f"(?:{plural}|{re.escape(last[:-1])}ies)"
    body = r"[\s\-]+".join([re.escape(w) for w in words[:-1]] + [plural])
    return re.compile(rf"(?<!\w){body}(?!\w)", re.I)


def _prose(source: str) -> str:
    """A markdown cell as the text a student reads: no code, no link targets, no comments."""
    text = _COMMENT.sub(" ", _FENCE.sub(" ", source))
    text = _LINK.sub(lambda m: m.group(1), text)
    return _CODE_SPAN.sub(" ", text)


def _links(source: str) -> list[tuple[str, str]]:
    """Every markdown link of a cell outside code, as ``(text, target)``."""
    return _LINK.findall(_COMMENT.sub(" ", _FENCE.sub(" ", source)))


def _glossary_fragment(target: str, glossary_name: str) -> str | None:
    """The fragment of a relative link to the glossary file (``../docs/glossary.md#x`` -> ``x``), else None."""
    if re.match(r"^[a-z][a-z0-9+.-]*:|^/", target, re.I):      # absolute or with a scheme: not ours
        return None
    path, _, fragment = target.partition("#")
    return fragment if path.rsplit("/", 1)[-1] == glossary_name and fragment else None


def markdown_cells(notebooks) -> list[tuple[CellRef, str]]:
    """The markdown cells of ``notebooks`` (paths, taken in the given order) with their source."""
    out = []
    for order, nb in enumerate(notebooks):
        nb = Path(nb)
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
        for index, cell in enumerate(cells):
            if cell.get("cell_type") == "markdown":
                src = cell.get("source", "")
                out.append((CellRef(order, nb.name, index, cell.get("id")), "".join(src) if isinstance(src, list) else src))
    return out


def term_uses(notebooks, glossary: Path | str) -> list[TermUse]:
    """For every concept of ``glossary``, the first markdown cell of ``notebooks`` (in the given order, which
    should be the course order) that uses it and the first that defines it."""
    glossary = Path(glossary)
    terms = parse_glossary(glossary)
    first_use: dict[Term, CellRef] = {}
    first_def: dict[Term, CellRef] = {}
    patterns = {t: [term_pattern(a) for a in t.aliases] for t in terms}
    for ref, source in markdown_cells(notebooks):
        text = _prose(source)
        links = [(t, f) for t, target in _links(source) if (f := _glossary_fragment(target, glossary.name))]
        for term, pats in patterns.items():
            if term not in first_use and any(p.search(text) for p in pats):
                first_use[term] = ref
            if term not in first_def and any(f == term.anchor and any(p.search(_prose(t)) for p in pats)
                                             for t, f in links):
                first_def[term] = ref
    return [TermUse(t, first_use.get(t), first_def.get(t)) for t in terms]


def used_before_defined(notebooks, glossary: Path | str) -> list[TermUse]:
    """The concepts used in a markdown cell before (in course order) the cell that defines them, or never
    defined; an empty list when the course follows the convention."""
    return [u for u in term_uses(notebooks, glossary) if u.used_before_defined]


def broken_glossary_links(notebooks, glossary: Path | str) -> list[str]:
    """Links from the notebooks' markdown to a glossary anchor that no heading of the glossary has."""
    glossary = Path(glossary)
    anchors = set(glossary_anchors(glossary.read_text(encoding="utf-8")))
    return [f"{ref}: #{f}" for ref, source in markdown_cells(notebooks) for _, target in _links(source)
            if (f := _glossary_fragment(target, glossary.name)) and f not in anchors]
