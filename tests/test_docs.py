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


@pytest.mark.parametrize("needle", ["## Requirements", "disk", "memory", "GPU", "| time |"])
def test_readme_states_requirements(needle):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Requirements"):]
    section = section[:section.index("\n## ", 5)]
    assert needle in section


# --------------------------------------------------------------------------------------------
# docs/glossary.md and docs/instructor.md: linked from the README, complete, and naming only what exists
# --------------------------------------------------------------------------------------------

COURSE_DOCS = ("docs/glossary.md", "docs/instructor.md")
_DOTTED = re.compile(r"\bmedadv_lib(?:\.[A-Za-z_]\w*)+")
_SOURCE_PATH = re.compile(r"\bmedadv_lib/[\w/]+\.py\b")


def _doc(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def _resolve(dotted: str):
    """Import the longest module prefix of ``dotted`` and get the remaining attributes from it."""
    import importlib
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)          # AttributeError names what the doc gets wrong
        return obj
    raise ModuleNotFoundError(dotted)


def _notebook_files() -> dict[str, Path]:
    """The course notebooks by number: the committed ones in a git checkout (a notebook still being
    written in the working tree does not count yet), else every ``NN_*.ipynb``."""
    files = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if shutil.which("git") and (ROOT / ".git").exists():
        tracked = set(subprocess.run(["git", "ls-files", "notebooks"], cwd=ROOT, capture_output=True, text=True,
                                     check=True).stdout.split())
        files = [p for p in files if f"notebooks/{p.name}" in tracked]
    return {p.name[:2]: p for p in files}


def _parameters(nb: Path) -> set[str]:
    import json
    cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
    src = "".join(next(c["source"] for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])))
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)\s*=", src, flags=re.M))


@pytest.mark.parametrize("doc", COURSE_DOCS)
def test_course_docs_are_linked_from_the_readme(doc):
    assert (ROOT / doc).is_file()
    assert f"]({doc})" in (ROOT / "README.md").read_text(encoding="utf-8"), f"README.md does not link {doc}"


@pytest.mark.parametrize("doc", COURSE_DOCS)
def test_course_docs_name_only_library_objects_that_exist(doc):
    text = _doc(doc)
    names = sorted(set(_DOTTED.findall(text)))
    assert len(names) >= 10, f"{doc} should point at the library's functions by their dotted names"
    missing = []
    for name in names:
        try:
            _resolve(name)
        except (ImportError, AttributeError) as exc:
            missing.append(f"{name} ({type(exc).__name__}: {exc})")
    assert not missing, f"{doc} names library objects that do not exist:\n" + "\n".join(missing)
    absent = [p for p in set(_SOURCE_PATH.findall(text)) if not (ROOT / p).is_file()]
    assert not absent, f"{doc} names source files that do not exist: {absent}"


def test_glossary_defines_every_reported_number_with_its_function_and_notebook():
    text = _doc("docs/glossary.md")
    for term in ("ζ", "`zeta`", "mean image norm", "`fooling_rate`", "`fooling_rate_vs_labels`",
                 "`fooling_rate_per_class`", "`fooling_rate_balanced`", "`fooling_rate_reweighted`",
                 "100 normal, 100 pneumonia, 31 COVID-19", "`target_success_rate`",
                 "Random control", "`robust_accuracy`", "`defense_rate`", "`attack_success_rate`",
                 "ρ_adv", "Wilson interval", "White-box", "Black-box", "transfer", "Gradient masking",
                 "`steps_restarts`", "`gradient_free`", "`large_eps`", "sensitivity", "PPV",
                 "Balanced accuracy", "FAST vs full mode", "Precision policy", "bf16", "channels_last",
                 "Pixel space [0, 1]", "Grad-CAM"):
        assert term in text, f"the glossary does not define {term!r}"
    entries = re.split(r"^### ", text, flags=re.M)[1:]
    assert len(entries) >= 20
    for entry in entries:
        head = entry.splitlines()[0]
        if "White-box" in head:                       # one entry, several terms
            continue
        assert "**Definition.**" in entry and "**Library.**" in entry and "**Introduced in.**" in entry, head
    notebooks = _notebook_files()
    for nn in set(re.findall(r"[Nn]otebooks? (\d\d)\b", text)):
        assert nn in notebooks, f"the glossary refers to notebook {nn}, which does not exist"


def test_instructor_guide_has_a_plan_per_notebook_and_names_real_parameters():
    text = _doc("docs/instructor.md")
    sections = {nn: (head, body) for nn, head, body in
                re.findall(r"^## (\d\d) ·(.*?)$(.*?)(?=^## |\Z)", text, flags=re.M | re.S)}
    notebooks = _notebook_files()
    for nn, nb in notebooks.items():
        assert nn in sections, f"docs/instructor.md has no lesson plan for {nb.name}"
        head, body = sections[nn]
        assert "planned" not in head.lower(), (f"{nb.name} exists now: replace the 'planned' placeholder of "
                                               f"notebook {nn} in docs/instructor.md by its lesson plan")
        assert nb.name in head + body, f"the plan for notebook {nn} should name {nb.name}"
        for part in ("**Show live", "**Questions to ask.**", "**Pitfalls.**"):
            assert part in body, f"the plan for {nb.name} lacks {part}"
        params = _parameters(nb)
        for name in re.findall(r"`([A-Z][A-Z0-9_]*) = [^`]+`", body):
            assert name in params, f"docs/instructor.md sets {name} for {nb.name}, which has no such parameter"
    for nn, (head, _) in sections.items():
        if nn not in notebooks:
            assert "planned" in head.lower(), f"docs/instructor.md plans notebook {nn} as if it existed"
    for needle in ("out of order", "Stale caches", "Full mode on a CPU", "Confounded sources", "2-core CPU",
                   "bf16"):
        assert needle in text, needle


# --------------------------------------------------------------------------------------------
# The README's numbers are one recorded run's (issue 20): rendered from docs/recorded_run.json
# --------------------------------------------------------------------------------------------

def test_readme_numbers_are_the_recorded_runs_rendering():
    import json

    from medadv_lib.course.recorded import readme_block, render_block
    record = json.loads((ROOT / "docs" / "recorded_run.json").read_text(encoding="utf-8"))
    assert record["cpu"] and record["date"] and record["precision"], "the record names its CPU, date and precision"
    assert readme_block(_doc("README.md")) == render_block(record), (
        "README.md's recorded-run block differs from docs/recorded_run.json: run `make readme-numbers` "
        "after `make tutorial` instead of editing the numbers by hand")


def test_the_recorded_run_block_is_replaced_and_a_readme_without_markers_is_refused():
    from medadv_lib.course.recorded import END, START, replace_block
    assert replace_block(f"a\n{START}\nold 0.828\n{END}\nb", f"{START}\nnew\n{END}") == f"a\n{START}\nnew\n{END}\nb"
    with pytest.raises(ValueError, match="markers"):
        replace_block("no block here", "x")


def test_a_run_is_summarised_with_intervals(tmp_path):
    import json

    from medadv_lib.course.recorded import render_block, summarize_run
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "01_train_classifiers.json").write_text(json.dumps([
        {"model": "resnet18", "test_accuracy": 0.8, "balanced_accuracy": 0.75, "precision": "fp32 + channels_last",
         "seconds": 300, "epochs": 10, "image_size": 112}]))
    s = summarize_run(tmp_path)
    acc = s["models"]["resnet18"]["test_accuracy"]
    assert acc["n"] > 300 and acc["lo"] < 0.8 < acc["hi"] and s["seconds"] == {"01_train_classifiers": 300}
    assert "80.0% [" in render_block(s) and "that machine only" in render_block(s)


def test_data_page_is_linked_and_its_licence_table_counts_the_snapshot():
    """docs/data.md: linked from the README's data section; one row per source with its image count as
    metadata.csv has it (and the ieee8023 copy's count per stated licence)."""
    import pandas as pd

    from medadv_lib.data import find_data_dir
    from medadv_lib.data.manifest import verify_dataset
    from medadv_lib.data.sources import NIH_METADATA, SOURCES
    readme = _doc("README.md")
    data_section = readme[readme.index("## Data"):readme.index("\n## ", readme.index("## Data") + 5)]
    assert "](docs/data.md)" in data_section
    page = _doc("docs/data.md")
    rows = {line.split("`")[1]: line for line in page.splitlines() if line.startswith("| `")}
    assert set(rows) == {s.repo for s in SOURCES} | {NIH_METADATA.repo}
    root = find_data_dir()
    if not verify_dataset(root)["ok"]:
        pytest.skip(f"{root} is not the shared snapshot the page describes")
    meta = pd.read_csv(root / "metadata.csv", dtype=str, keep_default_na=False)
    for source in SOURCES:
        assert f"| {int((meta['source_repo'] == source.repo).sum())} |" in rows[source.repo], source.repo
    ieee = meta[meta["source_repo"] == SOURCES[0].repo]["license"].value_counts()
    for licence, n in ieee.items():
        shown = "none stated" if licence == "not stated in source metadata" else licence.strip('"')
        assert f"{shown}\" {n}" in rows[SOURCES[0].repo] or f"{shown} {n}" in rows[SOURCES[0].repo], (licence, n)
    for phrase in ("Non-commercial and research-only terms apply to the images", "never commits an image",
                   "medadv data manifest", "medadv data check --verify"):
        assert phrase in page
