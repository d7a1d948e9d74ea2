"""User-facing configuration errors.

Every mistake a user can make in a YAML file or an ``-o`` override ends up as a
:class:`ConfigError` that names where it happened, what was found, what was
expected and, when we can guess, what was probably meant.
"""
from __future__ import annotations

import difflib
from typing import Iterable, Optional


def did_you_mean(word: str, candidates: Iterable[str], n: int = 3) -> str:
    """Return a ' Did you mean: a, b?' suffix (or '') for ``word`` among ``candidates``."""
    candidates = [str(c) for c in candidates]
    close = difflib.get_close_matches(str(word), candidates, n=n, cutoff=0.5)
    if not close:
        lowered = {c.lower(): c for c in candidates}
        close = [lowered[c] for c in difflib.get_close_matches(str(word).lower(), list(lowered), n=n, cutoff=0.5)]
    return f" Did you mean: {', '.join(close)}?" if close else ""


class ConfigError(ValueError):
    """A mistake in the user's configuration.

    Args:
        key: dotted key path such as ``Optimizer.lr.name`` (may be empty).
        message: what is wrong and what was expected.
        hint: optional suggestion for the fix.
    """

    def __init__(self, key: str, message: str, hint: Optional[str] = None):
        self.key = key
        self.message = message
        self.hint = hint
        text = f"{key}: {message}" if key else message
        if hint:
            text += f" ({hint})"
        super().__init__(text)


def check_mapping(cfg: object, key: str, known, example: str, what: str = "key") -> None:
    """Raise a ConfigError unless ``cfg`` is a dict whose keys are all in ``known``.

    ``example`` shows the expected shape (e.g. ``{num_workers: 0}``); unknown keys get a
    did-you-mean over ``known``.
    """
    if not isinstance(cfg, dict):
        raise ConfigError(key, f"expected a mapping such as {example}, got {cfg!r}")
    for name in cfg:
        if name not in known:
            raise ConfigError(f"{key}.{name}", f"unknown {what}",
                              f"accepted: {', '.join(known)}.{did_you_mean(name, known)}")
