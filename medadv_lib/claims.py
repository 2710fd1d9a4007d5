"""Claims checked in code: a sentence of the notebook's prose next to the test that keeps it true.

    >>> check("the UAP beats its random control", fool > random_fool, f"{fool:.3f} vs {random_fool:.3f}")
    ✓ the UAP beats its random control (0.296 vs 0.032)

A failed claim prints ✗.  Under the course runner (``make test``/``make tutorial``/CI, which set
``MEDADV_STRICT_CLAIMS=1``) it raises :class:`ClaimFailed` naming the claim, so the notebook test fails
instead of the prose silently contradicting its own outputs.  In an interactive session it only warns:
a student who changes a parameter may legitimately break a claim, and should see which.
"""
from __future__ import annotations

import os

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


def render(text: str) -> None:
    """Show a sentence built from the outputs as Markdown (plain text outside a notebook)."""
    try:
        from IPython.display import Markdown, display
        display(Markdown(text))
    except ImportError:       # pragma: no cover - IPython is a course dependency
        print(text)
