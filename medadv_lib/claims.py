"""Claims checked in code: a sentence of the notebook's prose next to the test that keeps it true.

    >>> check("the UAP beats its random control", fool > random_fool, f"{fool:.3f} vs {random_fool:.3f}")
    ✓ the UAP beats its random control (0.296 vs 0.032)

A failed claim prints ✗.  Under the course runner (``make test``/``make tutorial``/CI, which set
``MEDADV_STRICT_CLAIMS=1``) it raises :class:`ClaimFailed` naming the claim, so the notebook test fails
instead of the prose silently contradicting its own outputs.  In an interactive session it only warns:
a student who changes a parameter may legitimately break a claim, and should see which.

A claim states a fact about the science that holds on any machine, with a tolerance that follows from
the data (:func:`above`: two rates whose 95 % Wilson intervals are apart; :func:`not_worse`: a paired
exact test), never a band fitted to one run, a sample size or a timing.  What depends on the machine
(a CPU timing) is at most :func:`warn`: it prints ⚠ and never fails a run.  Every ``check``/``warn``
of the notebooks is listed, with the fact it protects and why it cannot fail for the wrong reason, in
``docs/claims.md`` (``tests/test_claims_audit.py`` fails on an unlisted one).
"""
from __future__ import annotations

import math
import os

from .stats import mcnemar_exact, wilson_interval

STRICT_ENV = "MEDADV_STRICT_CLAIMS"


class ClaimFailed(AssertionError):
    """A prose claim that the notebook's own outputs contradict."""


def strict() -> bool:
    """True when failed claims raise (``$MEDADV_STRICT_CLAIMS`` is ``1``)."""
    return os.environ.get(STRICT_ENV, "0") == "1"


def check(claim: str, ok, detail: str = "") -> bool:
    """Print ``✓ claim (detail)`` or ``✗ claim (detail)``; raise :class:`ClaimFailed` for a false
    claim when :func:`strict`.  Returns ``bool(ok)``."""
    ok = bool(ok)
    print(f"{'✓' if ok else '✗'} {claim}" + (f" ({detail})" if detail else ""))
    if not ok and strict():
        raise ClaimFailed(f"claim broken: {claim}" + (f" ({detail})" if detail else ""))
    return ok


def warn(claim: str, ok, detail: str = "") -> bool:
    """Like :func:`check` for a statement that depends on this machine (a CPU timing, say): prints
    ``✓ claim`` or ``⚠ claim (detail)`` and never raises, strict or not.  Returns ``bool(ok)``."""
    ok = bool(ok)
    print(f"{'✓' if ok else '⚠'} {claim}" + (f" ({detail})" if detail else "") + ("" if ok else " — depends on this machine"))
    return ok


def above(k1: int, n1: int, k2: int, n2: int, z: float = 1.96) -> bool:
    """True when the rate ``k1/n1`` lies above ``k2/n2`` beyond sampling noise: the lower end of the
    first's Wilson interval (95 % for ``z = 1.96``) is above the upper end of the second's.

    Conservative (two intervals apart means p well under 0.05), so a claim built on it fails only
    when the difference is small against the number of images, not because a machine's last bits moved.

        >>> above(100, 348, 20, 348), above(12, 56, 8, 56)
        (True, False)
    """
    if min(n1, n2) <= 0:
        return False
    return wilson_interval(int(k1), int(n1), z)[0] > wilson_interval(int(k2), int(n2), z)[1]


def more(k1: int, n1: int, k2: int, n2: int, alpha: float = 0.05) -> bool:
    """True when ``k1/n1`` is significantly larger than ``k2/n2``: the one-sided Fisher exact test has
    p < ``alpha``.  More powerful than :func:`above` on a few dozen images (11/52 vs 2/52: p ≈ 0.008,
    although the two Wilson intervals overlap), and still exact: one or two images of noise cannot pass it.

        >>> more(11, 52, 2, 52), more(3, 52, 2, 52)
        (True, False)
    """
    from scipy.stats import fisher_exact  # lazy: scipy.stats takes seconds to import, only more() needs it
    if min(n1, n2) <= 0:
        return False
    table = [[int(k1), int(n1) - int(k1)], [int(k2), int(n2) - int(k2)]]
    return bool(fisher_exact(table, alternative="greater")[1] < alpha)


def count(rate: float, n: int) -> int:
    """The number of images behind a rate over ``n`` images (rates are stored as fractions)."""
    return int(round(float(rate) * int(n)))


def not_worse(a, b, alpha: float = 0.05) -> bool:
    """Paired: outcome ``a`` (per image, e.g. "fooled by PGD") is not significantly *rarer* than ``b``
    on the same images — the one-sided exact McNemar test of "``a`` succeeds less often" has
    p ≥ ``alpha``.  Fails only when the discordant images favour ``b`` clearly (e.g. 0 vs 5 gives
    p = 1/32 < 0.05), never for one or two images of noise.

        >>> not_worse([1, 1, 0, 0], [1, 0, 1, 0]), not_worse([0] * 6, [1] * 6)
        (True, False)
    """
    t = mcnemar_exact(a, b)              # the discordant counts (and the shape check) of the two-sided test
    n = t["discordant"]
    p = sum(math.comb(n, i) for i in range(t["a_only"] + 1)) / 2 ** n if n else 1.0   # P(X <= a_only), X ~ Bin(n, 1/2)
    return p >= alpha


def render(text: str) -> None:
    """Show a sentence built from the outputs as Markdown (plain text outside a notebook)."""
    try:
        from IPython.display import Markdown, display  # optional: plain text outside IPython
        display(Markdown(text))
    except ImportError:       # pragma: no cover - IPython is a course dependency
        print(text)
