"""Terms before use: no glossary term appears in the course's markdown before the cell that defines it.

The convention (``medadv_lib.course.terms``, and the header of ``docs/glossary.md``): a cell defines a term
when it links the term's glossary entry with the term in the link's text; walking notebooks 00 -> 06 cell by
cell, no term may be used before that cell.  Pure JSON and regular expressions: no kernel runs.
"""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from medadv_lib.course import terms
from medadv_lib.course.runner import course_notebooks

ROOT = Path(__file__).resolve().parents[1]
GLOSSARY = ROOT / "docs" / "glossary.md"

# --------------------------------------------------------------------------------------------
# The real course
# --------------------------------------------------------------------------------------------


def test_the_glossary_lists_the_terms_of_every_entry():
    found = terms.parse_glossary(GLOSSARY)
    names = {t.name for t in found}
    assert len(found) >= 30
    for name in ("fooling rate", "defense rate", "ζ", "robust accuracy", "gradient masking", "accuracy"):
        assert name in names, name
    anchors = set(terms.glossary_anchors(GLOSSARY.read_text(encoding="utf-8")))
    assert {t.anchor for t in found} <= anchors


def test_the_course_defines_every_glossary_term_before_it_uses_it():
    notebooks = course_notebooks()
    assert [nb.name[:2] for nb in notebooks][:2] == ["00", "01"]
    late = terms.used_before_defined(notebooks, GLOSSARY)
    assert not late, ("glossary terms used before the cell that defines them (link the entry, with the term as "
                      "the link's text, in the cell of the first use):\n" + "\n".join(map(str, late)))


def test_the_course_links_only_glossary_anchors_that_exist():
    broken = terms.broken_glossary_links(course_notebooks(), GLOSSARY)
    assert not broken, "links to glossary anchors that no heading has:\n" + "\n".join(broken)


# --------------------------------------------------------------------------------------------
# The matching rules
# --------------------------------------------------------------------------------------------


def test_anchors_are_githubs():
    assert terms.glossary_anchor("Defense rate (`defense_rate`) — our working definition") == \
        "defense-rate-defense_rate--our-working-definition"
    assert terms.glossary_anchor("Pixel space [0, 1]") == "pixel-space-0-1"
    assert terms.glossary_anchor("Accuracy, sensitivity, PPV, balanced accuracy, macro-F1") == \
        "accuracy-sensitivity-ppv-balanced-accuracy-macro-f1"


@pytest.mark.parametrize("alias, text", [
    ("fooling rate", "The Fooling Rates rise"), ("fooling rate", "the fooling-rate curve"),
    ("UAP", "two UAPs"), ("accuracy", "their accuracies"), ("macro-F1", "the macro F1 score"),
    ("ζ", "at ζ = 2%"), ("ρ_adv", "the median ρ_adv per class"),
])
def test_a_term_matches_case_hyphen_and_plural_variants(alias, text):
    assert terms.term_pattern(alias).search(text)


@pytest.mark.parametrize("alias, text", [
    ("UAP", "UAPX"), ("accuracy", "inaccuracy"), ("PPV", "PPVx"), ("collapse", "collapsible"),
])
def test_a_term_matches_whole_words_only(alias, text):
    assert not terms.term_pattern(alias).search(text)


# --------------------------------------------------------------------------------------------
# Planted courses
# --------------------------------------------------------------------------------------------

FAKE_GLOSSARY = """# Glossary

## Group

### Fooling rate (`fooling_rate`)
- **Definition.** The share of images whose prediction changes.
- **Terms.** fooling rate, FR

### Widget
- **Definition.** A slider.
- **Terms.** none: a tool, not a concept
"""
FR_LINK = "[fooling rate](../docs/glossary.md#fooling-rate-fooling_rate)"


def _course(tmp_path: Path, cells_00: list[tuple[str, str]], cells_01: list[tuple[str, str]]) -> list[Path]:
    """Two notebooks ``00_a``, ``01_b`` in tmp_path/notebooks and the glossary in tmp_path/docs; cells are
    ``("md" | "code", source)``."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "glossary.md").write_text(FAKE_GLOSSARY, encoding="utf-8")
    (tmp_path / "notebooks").mkdir()
    paths = []
    for name, cells in (("00_a.ipynb", cells_00), ("01_b.ipynb", cells_01)):
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src)
                    for kind, src in cells]
        path = tmp_path / "notebooks" / name
        nbformat.write(nb, path)
        paths.append(path)
    return course_notebooks(tmp_path / "notebooks")


def test_a_term_used_before_its_definition_is_reported_with_its_notebook_and_cell(tmp_path):
    notebooks = _course(
        tmp_path,
        [("md", "# 00\nIntro."), ("code", "x = 1"), ("md", "We will measure the fooling rates of a widget.")],
        [("md", f"The {FR_LINK} is the share of images whose prediction changes.")])
    late = terms.used_before_defined(notebooks, tmp_path / "docs" / "glossary.md")
    assert [(u.term.name, u.first_use.notebook, u.first_use.index) for u in late] == [("fooling rate", "00_a.ipynb", 2)]
    assert (late[0].first_definition.notebook, late[0].first_definition.index) == ("01_b.ipynb", 0)
    assert "00_a.ipynb, cell 2" in str(late[0])


def test_a_term_never_defined_is_reported_and_code_does_not_count(tmp_path):
    notebooks = _course(tmp_path, [("code", "# the fooling rate, in code only"), ("md", "Text.")],
                        [("md", "An `fooling rate` in code, [a link](fooling_rate.md), and then the FR.")])
    late = terms.used_before_defined(notebooks, tmp_path / "docs" / "glossary.md")
    assert [(u.first_use.notebook, u.first_use.index, u.first_definition) for u in late] == [("01_b.ipynb", 0, None)]


def test_a_correct_course_passes(tmp_path):
    notebooks = _course(
        tmp_path,
        [("md", "# 00\nIntro."), ("md", f"The {FR_LINK} (the share of images whose prediction changes) ...")],
        [("md", "Fooling rates again, and the FR, with no link."), ("code", "fooling_rate = 0")])
    glossary = tmp_path / "docs" / "glossary.md"
    assert terms.used_before_defined(notebooks, glossary) == []
    (use,) = terms.term_uses(notebooks, glossary)
    assert (use.first_use.index, use.first_definition.index) == (1, 1)
    assert terms.broken_glossary_links(notebooks, glossary) == []


def test_a_link_defines_only_the_term_in_its_text_and_only_to_an_existing_anchor(tmp_path):
    notebooks = _course(
        tmp_path,
        [("md", "A [widget](../docs/glossary.md#fooling-rate-fooling_rate) that shows the fooling rate."),
         ("md", "The [fooling rate](../docs/glossary.md#fooling-rate) of ...")],
        [("md", f"The {FR_LINK}.")])
    glossary = tmp_path / "docs" / "glossary.md"
    (late,) = terms.used_before_defined(notebooks, glossary)
    assert (late.first_use.index, late.first_definition.notebook) == (0, "01_b.ipynb")
    (broken,) = terms.broken_glossary_links(notebooks, glossary)
    assert broken.startswith("00_a.ipynb, cell 1") and broken.endswith(": #fooling-rate")


def test_an_entry_without_a_terms_line_is_an_error(tmp_path):
    path = tmp_path / "glossary.md"
    path.write_text("# Glossary\n\n### Fooling rate\n- **Definition.** ...\n", encoding="utf-8")
    with pytest.raises(ValueError, match="Fooling rate"):
        terms.parse_glossary(path)
