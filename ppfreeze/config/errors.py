"""User-facing configuration errors.

Every mistake a user can make in a YAML file or an ``-o`` override ends up as a
:class:`ConfigError` that names where it happened, what was found, what was
expected and, when we can guess, what was probably meant.
"""
from __future__ import annotations

import difflib
from typing import Iterable, Optional

from ..errors import EXIT_CONFIG, PPFreezeError, located_message


def did_you_mean(word: str, candidates: Iterable[str], n: int = 3) -> str:
    """Return a ' Did you mean: a, b?' suffix (or '') for ``word`` among ``candidates``."""
    candidates = [str(c) for c in candidates]
    close = difflib.get_close_matches(str(word), candidates, n=n, cutoff=0.5)
    if not close:
        lowered = {c.lower(): c for c in candidates}
        close = [lowered[c] for c in difflib.get_close_matches(str(word).lower(), list(lowered), n=n, cutoff=0.5)]
    return f" Did you mean: {', '.join(close)}?" if close else ""


class ConfigError(PPFreezeError, ValueError):
    """A mistake in the user's configuration.

    Args:
        key: dotted key path such as ``Optimizer.lr.name`` (may be empty).
        message: what is wrong and what was expected.
        hint: optional suggestion for the fix.
    """

    kind = "configuration error"
    exit_code = EXIT_CONFIG

    def __init__(self, key: str, message: str, hint: Optional[str] = None):
        self.key = key
        self.message = message
        self.hint = hint
        super().__init__(located_message(key, message, hint))

    def nested_under(self, prefix: str) -> "ConfigError":
        """This error with its key placed under ``prefix``.

        Components report their own argument names (``scale``); the caller knows where the
        component sits in the config (``DataLoader.Train.dataset.transform_ops[2].NormalizeImage``).
        A key that already starts with ``prefix`` is kept.
        """
        if not prefix or self.key == prefix or self.key.startswith(prefix + ".") or self.key.startswith(prefix + "["):
            return self
        nested = ConfigError(f"{prefix}.{self.key}" if self.key else prefix, self.message, self.hint)
        nested.__cause__ = self.__cause__
        return nested


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
