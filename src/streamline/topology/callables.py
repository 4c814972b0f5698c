"""Importing the user code a map stage names (`module:function`)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


class CallableError(ValueError):
    """A `module:function` reference that does not import or is not callable."""


def add_import_paths(folders: Iterable[Path]) -> None:
    """Put these folders at the front of sys.path (once each), so user modules import from them.

    They stay there: the runtime calls the imported code, which may import more of its package.
    """
    for folder in reversed([str(f) for f in folders]):
        if folder not in sys.path:
            sys.path.insert(0, folder)


def import_callable(reference: str) -> Callable[..., Any]:
    """The object `module:qualname` names; CallableError saying what failed otherwise."""
    module_name, _, qualname = reference.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            raise CallableError(
                f"cannot import {reference!r}: no module named {exc.name!r} "
                f"(searched the project folder, the current folder and sys.path)"
            ) from None
        raise CallableError(
            f"cannot import {reference!r}: {module_name} imports missing {exc.name!r}"
        ) from None
    except Exception as exc:
        raise CallableError(
            f"cannot import {reference!r}: importing {module_name} failed: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    for part in qualname.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise CallableError(
                f"cannot import {reference!r}: {module_name} has no {qualname!r}"
            ) from None
    if not callable(target):
        raise CallableError(f"{reference!r} is a {type(target).__name__}, not a function")
    return target  # type: ignore[no-any-return]
