"""The CLI's promise, in one place: options are checked before any work starts, every failure becomes
one line naming the file or option and the fix (exit status 2), and JSON output is strict JSON.

:func:`validate_args` checks every option a command has by its name (``--batch-size``, ``--epochs``,
``--image-size``, ``--eps``, ``--checkpoint``, ``--out``, ...), so a new command gets the same checks
for free.  :func:`describe_error` (from :mod:`medadv_lib.errors`) turns any exception into that one line.
:func:`jsonable` makes a result strict JSON (``NaN`` and infinities become ``null``).
"""
from __future__ import annotations

import math
import os
import tempfile
from fractions import Fraction
from pathlib import Path

import torchvision

from ..errors import DEBUG_ENV, CLIError, describe_error  # noqa: F401  (re-exported: the CLI's promise in one place)
from ..models import ARCHITECTURES

MIN_IMAGE_SIZE = 32
"""Every course architecture downsamples by 32: a smaller image leaves no spatial map to classify."""

# options that count something: at least 1 when given (None means "the command's default")
_AT_LEAST_ONE = ("batch_size", "epochs", "limit", "train_limit", "steps", "restarts", "workers")

# how each command uses --out (and --runs): a folder it writes into, or a file it writes
_OUT_KIND = {"train": {"out": "dir"}, "defend": {"out": "dir"}, "evaluate": {"out": "dir"},
             "uap": {"out": "file", "runs": "dir"}}


def _opt(name: str) -> str:
    return "--" + name.replace("_", "-")


def budget(text: str) -> float:
    """An ``--eps`` value: a number (``0.0314``) or a fraction of 255 steps (``8/255``)."""
    try:
        return float(Fraction(str(text).strip())) if "/" in str(text) else float(text)
    except (ValueError, ZeroDivisionError):
        raise ValueError(text) from None


budget.__name__ = "budget"


def check_writable_dir(path, option: str) -> Path:
    """Create ``path`` if needed and prove a file can be written in it; :class:`CLIError` naming
    ``option`` otherwise (checked before any work, so nothing is lost to a late ``PermissionError``)."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise CLIError(f"{option} {path} is a file, not a folder: pass a folder (it is created if missing)")
    try:
        p.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=p):
            pass
    except OSError as exc:
        raise CLIError(f"{option} {path} is not writable ({exc.strerror or exc}): pass a folder you can write "
                       "to, or fix its permissions") from None
    return p


def check_checkpoint_file(path, option: str = "--checkpoint") -> None:
    """A checkpoint option names a file: a folder or a missing path is an error naming the fix."""
    p = Path(path).expanduser()
    if p.is_dir():
        found = sorted(p.glob("*.pt"))
        hint = (f"one of its {len(found)} .pt files, e.g. {option} {found[0]}" if found else
                f"it holds no .pt file; train one with `medadv train --model resnet18 --out {path}`")
        raise CLIError(f"{option} {path} is a folder, not a checkpoint file: pass {hint}")
    if not p.exists():
        raise CLIError(f"{option} {path}: checkpoint not found. Train one first: "
                       f"`medadv train --model resnet18 --out {p.parent}` or notebook 01")


def _check_weights(model: str | None, weights: str) -> None:
    """A torchvision weight name that the architecture really has (before anything is trained)."""
    if model not in ARCHITECTURES:
        return                              # the command reports the unknown model itself
    try:
        enum = torchvision.models.get_model_weights(ARCHITECTURES[model])
    except (ValueError, KeyError, AttributeError):
        return
    names = ["DEFAULT", *enum.__members__]
    if weights.replace(f"{enum.__name__}.", "") not in names:
        raise CLIError(f"--weights {weights!r} is not a torchvision weight of {model}: use one of "
                       f"{', '.join(names)} (they need internet), or leave --weights out for random initialisation")


def validate_args(args) -> None:
    """Check every option ``args`` has, by name, before the command does any work."""
    for name in _AT_LEAST_ONE:
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise CLIError(f"{_opt(name)} must be at least 1; got {value}")
    size = getattr(args, "image_size", None)
    if size is not None and size < MIN_IMAGE_SIZE:
        raise CLIError(f"--image-size {size} is below {MIN_IMAGE_SIZE} px, where the networks (which downsample "
                       f"32x) have nothing left to classify: use e.g. --image-size 112 (FAST) or 224 (full)")
    lr = getattr(args, "lr", None)
    if lr is not None and not (math.isfinite(lr) and lr > 0):
        raise CLIError(f"--lr must be a positive number; got {lr}")
    eps = getattr(args, "eps", None)
    if isinstance(eps, (int, float)):
        if not math.isfinite(eps) or eps < 0:
            raise CLIError(f"--eps must be a finite number >= 0 (pixel units, [0,1] images); got {eps}")
        norm = str(getattr(args, "norm", "inf")).strip().lower()
        if eps > 1 and norm in ("inf", "linf", "l_inf", "l∞", "∞"):
            raise CLIError(f"--eps {eps:g} is above 1, but pixels are in [0, 1], so an L∞ budget above 1 can "
                           f"change every pixel completely: did you mean {eps:g}/255 = {eps / 255:.4f}? "
                           "(--eps accepts fractions, e.g. --eps 8/255)")
    for name in ("checkpoint", "transfer_from", "init_from"):
        value = getattr(args, name, None)
        if isinstance(value, (str, os.PathLike)):
            check_checkpoint_file(value, _opt(name))
    weights = getattr(args, "weights", None)
    if weights:
        _check_weights(getattr(args, "model", None), weights)
    for name, kind in _OUT_KIND.get(getattr(args, "command", None), {}).items():
        value = getattr(args, name, None)
        if not value:
            continue
        if kind == "dir":
            check_writable_dir(value, _opt(name))
        else:
            if Path(value).is_dir():
                raise CLIError(f"{_opt(name)} {value} is a folder: pass a file name, e.g. {Path(value) / 'uap.npy'}")
            check_writable_dir(Path(value).expanduser().parent, f"the folder of {_opt(name)}")


def jsonable(obj):
    """``obj`` as strict JSON data: ``NaN``/infinities become ``None``; numpy and torch scalars and
    arrays become Python numbers and lists; paths and other objects become strings."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    for attr in ("tolist", "item"):                       # numpy / torch scalars and arrays
        if hasattr(obj, attr):
            try:
                return jsonable(getattr(obj, attr)())
            except (TypeError, ValueError, RuntimeError):
                pass
    return str(obj)
