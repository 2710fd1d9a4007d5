"""No hidden layering: ``medadv_lib``'s subpackages import each other in one direction only.

The layers, low to high (a subpackage may import its own and lower layers, never a higher one)::

    medadv_lib (the package root: LABELS, __version__)
    runtime, stats, errors, claims      leaf utilities (claims uses stats)
    data
    models
    attacks, defenses                   defenses use the attacks (adversarial training runs PGD)
    metrics
    train                               the training loop (data, models, defenses, metrics)
    viz
    widgets
    course
    cli, __main__

The checker reads the source with :mod:`ast` (nothing is imported) and collects every import:
module-level and function-local, absolute and relative, and ``importlib.import_module("medadv_lib...")``
with a literal name.  It fails on

(a) an import from a lower layer into a higher one;
(b) a cycle between subpackages (also within one layer);
(c) a cross-subpackage import of a private name (``_name``, or a path through a ``_module``);
(d) a function-local import without a trailing comment saying why it is local (an optional or heavy
    dependency, or genuine lazy loading).

A new subpackage must be given a layer here.
"""
from __future__ import annotations

import ast
import functools
import io
import tokenize
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "medadv_lib"
SRC = Path(__file__).resolve().parents[1] / PACKAGE

LAYERS = (
    (PACKAGE,),
    ("runtime", "stats", "errors", "claims"),
    ("data",),
    ("models",),
    ("attacks", "defenses"),
    ("metrics",),
    ("train",),
    ("viz",),
    ("widgets",),
    ("course",),
    ("cli", "__main__"),
)


@dataclass(frozen=True)
class Import:
    module: str          # the importing module, e.g. "medadv_lib.viz.uap"
    target: str          # the imported module, e.g. "medadv_lib.attacks.uap.cache"
    names: tuple         # the names taken from it (empty for ``import x``)
    line: int
    local: bool          # inside a function
    commented: bool      # a comment on the statement's lines
    statement: bool = True   # an import statement (not an ``import_module("...")`` call)

    @property
    def internal(self) -> bool:
        return self.target == PACKAGE or self.target.startswith(PACKAGE + ".")

    def where(self) -> str:
        return f"{self.module}:{self.line}"


def read_package(src: Path = SRC) -> dict[str, tuple[str, bool]]:
    """``{module name: (source, is_package)}`` of every ``.py`` file under ``src``."""
    out = {}
    for path in sorted(src.rglob("*.py")):
        parts = list(path.relative_to(src.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path.read_text(encoding="utf-8"), is_package)
    return out


def _comment_lines(source: str) -> set[int]:
    return {tok.start[0] for tok in tokenize.generate_tokens(io.StringIO(source).readline)
            if tok.type == tokenize.COMMENT}


@functools.lru_cache(maxsize=None)
def collect_imports(module: str, source: str, is_package: bool, modules: frozenset[str]) -> tuple[Import, ...]:
    """Every import of ``module`` (given its ``source``): statements anywhere in the module, and
    ``import_module``/``__import__`` calls with a literal name (``statement=False``)."""
    comments = _comment_lines(source)
    package = module.split(".") if is_package else module.split(".")[:-1]
    found: list[Import] = []

    def add(node, target, names, local):
        lines = range(node.lineno, (node.end_lineno or node.lineno) + 1)
        commented = any(n in comments for n in lines)
        statement = not isinstance(node, ast.Call)
        subs = [n for n in names if f"{target}.{n}" in modules]     # ``from pkg import submodule``
        for n in subs:
            found.append(Import(module, f"{target}.{n}", (), node.lineno, local, commented, statement))
        plain = tuple(n for n in names if n not in subs)
        if plain or not names:
            found.append(Import(module, target, plain, node.lineno, local, commented, statement))

    def visit(node, local):
        for child in ast.iter_child_nodes(node):
            inner = local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    add(child, alias.name, (), local)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package[:len(package) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                add(child, target, tuple(a.name for a in child.names), local)
            elif (isinstance(child, ast.Call) and child.args and isinstance(child.args[0], ast.Constant)
                  and isinstance(child.args[0].value, str)
                  and (getattr(child.func, "attr", None) == "import_module"
                       or getattr(child.func, "id", None) in ("import_module", "__import__"))):
                add(child, child.args[0].value, (), local)     # a hidden import by name
            visit(child, inner)

    visit(ast.parse(source), False)
    return tuple(found)


def subpackage(module: str) -> str:
    """``medadv_lib.viz.uap`` → ``viz``; the package root is ``medadv_lib``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _private(imp: Import) -> list[str]:
    path = [p for p in imp.target.split(".")[2:] if p.startswith("_") and not p.startswith("__")]
    names = [n for n in imp.names if n.startswith("_") and not (n.startswith("__") and n.endswith("__"))]
    return path + names


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return out


def check(sources: dict[str, tuple[str, bool]], layers=LAYERS) -> list[str]:
    """Every violation of rules (a)-(d) in ``sources`` (``{module: (source, is_package)}``), as text."""
    rank = {pkg: i for i, tier in enumerate(layers) for pkg in tier}
    modules = frozenset(sources)
    problems, edges, seen, uncommented = [], {}, {}, set()
    for module, (source, is_package) in sorted(sources.items()):
        src = subpackage(module)
        if src not in rank:
            problems.append(f"{module}: subpackage {src!r} has no layer in LAYERS")
            continue
        for imp in collect_imports(module, source, is_package, modules):
            dst = subpackage(imp.target)
            if imp.local and imp.statement and not imp.commented and imp.where() not in uncommented:
                uncommented.add(imp.where())
                problems.append(f"(d) {imp.where()}: function-local import of {imp.target} without a comment "
                                "saying why (move it to the top of the module, or say e.g. '# lazy: ... is heavy')")
            if not imp.internal or dst == src:
                continue
            edges.setdefault(src, set()).add(dst)
            seen.setdefault((src, dst), imp)
            if dst not in rank:
                problems.append(f"{imp.where()}: imports {imp.target}, whose subpackage has no layer in LAYERS")
            elif rank[dst] > rank[src]:
                problems.append(f"(a) {imp.where()}: {src} (layer {rank[src]}) imports {imp.target} "
                                f"from the higher layer {rank[dst]} ({dst})")
            private = _private(imp)
            if private:
                problems.append(f"(c) {imp.where()}: imports the private {', '.join(private)} of {imp.target}")
    for comp in find_cycles(edges):
        links = [seen[a, b].where() + f" ({a} -> {b})" for a in comp for b in comp if (a, b) in seen]
        problems.append(f"(b) cycle between {', '.join(comp)}: " + "; ".join(links))
    return problems


# ------------------------------------------------------------------------------------------------ the package

def test_medadv_lib_keeps_its_layers():
    problems = check(read_package())
    assert not problems, "import structure:\n" + "\n".join(problems)


def test_every_subpackage_has_a_layer_and_every_layer_exists():
    present = {subpackage(m) for m in read_package()}
    listed = [p for tier in LAYERS for p in tier]
    assert len(listed) == len(set(listed))
    assert present == set(listed)


def test_the_checker_sees_the_package():
    """Guard against a checker that passes because it finds nothing: it sees hundreds of imports."""
    sources = read_package()
    imports = [i for m, (s, p) in sources.items() for i in collect_imports(m, s, p, frozenset(sources))]
    internal = [i for i in imports if i.internal]
    assert len(sources) > 50 and len(internal) > 200
    assert len({subpackage(i.module) for i in internal}) >= 10
    assert any(i.local and i.target == "matplotlib.pyplot" for i in imports)      # function-local ones too
    assert any(i.target == "medadv_lib.course.rules" and i.module == "medadv_lib.course" for i in internal)


# ------------------------------------------------------------------------------------ the checker on planted code

def _tree(**modules) -> dict[str, tuple[str, bool]]:
    """A synthetic package with a root module: keyword ``data__init`` → the package ``medadv_lib.data``,
    ``data__x`` → the module ``medadv_lib.data.x``, ``data___common`` → ``medadv_lib.data._common``."""
    out = {PACKAGE: ('LABELS = ("a", "b")\n', True)}
    for key, source in modules.items():
        parts = key.split("__")
        is_package = parts[-1] == "init"
        name = ".".join([PACKAGE, *(parts[:-1] if is_package else parts)])
        out[name] = (source, is_package)
        if not is_package and len(parts) > 1:
            out.setdefault(".".join([PACKAGE, *parts[:-1]]), ("", True))
    return out


def test_a_clean_tree_passes():
    tree = _tree(data__init="from .. import LABELS\n",
                 models__init="from ..data import LABELS\n\ndef f():\n    import torch  # lazy: heavy\n")
    assert check(tree) == []


@pytest.mark.parametrize("statement", ["from ..models import build\n", "from medadv_lib.models import build\n",
                                       "import medadv_lib.models.spec\n", "from .. import models\n",
                                       "def f():\n    from ..models import build  # lazy\n",
                                       "importlib.import_module('medadv_lib.models')\n"])
def test_an_upward_import_fails(statement):
    tree = _tree(data__loader=statement, models__init="", models__spec="")
    problems = check(tree)
    assert len(problems) == 1 and problems[0].startswith("(a) medadv_lib.data.loader:"), problems


def test_a_cycle_fails_even_within_one_layer():
    tree = _tree(attacks__init="from ..defenses import train_against\n",
                 defenses__init="from ..attacks import pgd\n")
    problems = check(tree)
    assert len(problems) == 1 and problems[0].startswith("(b) cycle between attacks, defenses"), problems
    assert "medadv_lib.attacks:1" in problems[0] and "medadv_lib.defenses:1" in problems[0]


@pytest.mark.parametrize("statement", ["from ..data import _secret\n", "from ..data.build import _helper\n",
                                       "from ..data._common import public\n", "import medadv_lib.data._common\n"])
def test_a_private_import_across_subpackages_fails(statement):
    tree = _tree(models__x=statement, data__init="", data__build="", data___common="")
    problems = check(tree)
    assert len(problems) == 1 and problems[0].startswith("(c) medadv_lib.models.x:1"), problems


def test_a_private_import_within_a_subpackage_and_a_dunder_pass():
    tree = _tree(data__init="from ._common import _helper\nfrom .. import __name__ as n\n", data___common="")
    assert check(tree) == []


@pytest.mark.parametrize("body,ok", [("    import json\n", False),
                                     ("    from ..data import load  # lazy: reads files\n", True),
                                     ("    from ..data import (load,\n        save)  # lazy: reads files\n", True),
                                     ("    x = '# not a comment'; import json\n", False),
                                     ("    lambda: __import__('json')\n", True)])
def test_a_function_local_import_needs_a_comment(body, ok):
    tree = _tree(models__x="def f():\n" + body, data__init="")
    problems = check(tree)
    assert (problems == []) if ok else (len(problems) == 1 and problems[0].startswith("(d) medadv_lib.models.x:2"))


def test_a_subpackage_without_a_layer_fails():
    assert check(_tree(plugins__init="")) == ["medadv_lib.plugins: subpackage 'plugins' has no layer in LAYERS"]
