"""The documentation inside the project is complete on its own and names no machine's paths."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tracked_text_files() -> list[Path]:
    if shutil.which("git") and (ROOT / ".git").exists():
        names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        files = [ROOT / n for n in names.splitlines()]
    else:                                                   # an unpacked sdist: everything but build outputs
        files = [p for p in ROOT.rglob("*") if ".venv" not in p.parts and "build" not in p.parts]
    out = []
    for p in files:
        if p.is_file() and p.suffix not in (".png", ".jpg", ".npy", ".pt", ".gz", ".whl"):
            try:
                p.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            out.append(p)
    return out


def test_no_machine_paths_anywhere_in_the_project():
    here = [str(ROOT)] if len(str(ROOT)) > 4 else []       # wherever this checkout happens to live
    generic = re.compile("(" + "|".join(["/" + "work/", "/" + "home/[A-Za-z]", "/" + "Users/[A-Za-z]",
                                           "/" + "root/", r"[A-Z]:\\\\" + "Users"]) + ")")
    hits = []
    for path in _tracked_text_files():
        for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if generic.search(line) or any(h in line for h in here):
                hits.append(f"{path.relative_to(ROOT)}:{no}: {line.strip()[:120]}")
    assert not hits, "machine paths in the project:\n" + "\n".join(hits)


def test_papers_page_is_the_course_own_and_readme_points_at_it():
    papers = (ROOT / "docs" / "papers.md").read_text(encoding="utf-8")
    for needle in ("Hirano", "Chen", "doi:10.1371/journal.pone.0243963", "doi:10.1002/mp.15208"):
        assert needle in papers
    for term in ("zeta", "eps", "fooling_rate", "fooling_rate_vs_labels", "fooling_rate_balanced",
                 "fooling_rate_reweighted", "target_success_rate", "robust_accuracy", "defense_rate",
                 "attack_success_rate", "median_rho_adv", "random control", "sensitivity"):
        assert f"| {term}" in papers or f"| `{term}`" in papers or f"({term}" in papers or f"(`{term}`" in papers, term
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/papers.md" in readme and "PAPERS.md" not in readme


@pytest.mark.parametrize("needle", ["## Requirements", "disk", "memory", "GPU", "01 ~9 min"])
def test_readme_states_requirements(needle):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Requirements"):]
    section = section[:section.index("\n## ", 5)]
    assert needle in section
