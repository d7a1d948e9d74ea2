"""The error kinds ppfreeze reports to users, and how a tool reports them.

Every error a user can cause or fix derives from :class:`PPFreezeError`; the tools catch by
kind and print one message (no traceback). Anything else is a bug in ppfreeze or in a
component and surfaces with its traceback. Paddle-free, so deploy tools can use it.

- :class:`ppfreeze.config.errors.ConfigError` — a mistake in the configuration (exit 2).
- :class:`DataIntegrityError` — a file on disk is damaged, foreign or unsafe: a checkpoint
  whose digest does not match, a gallery index that does not belong to the model, a weights
  file that would run code when unpickled (exit 3).
- :class:`TrainingError` — the run itself went wrong: the loss diverged, a frozen tensor moved,
  data-parallel ranks drifted apart (exit 1).
"""
from __future__ import annotations

import sys
from typing import Optional

EXIT_TRAINING, EXIT_CONFIG, EXIT_DATA = 1, 2, 3


def located_message(place: str, message: str, hint: Optional[str] = None) -> str:
    """``place: message (hint)``: the text of an error about one file or config key (``place`` may be empty)."""
    text = f"{place}: {message}" if place else message
    return text + (f" ({hint})" if hint else "")


class PPFreezeError(Exception):
    """Base of every error ppfreeze reports as one message."""

    #: how the tools introduce the message
    kind = "error"
    exit_code = EXIT_TRAINING


class DataIntegrityError(PPFreezeError):
    """A file is damaged, incomplete, foreign or unsafe to read.

    Args:
        path: the file or directory concerned.
        message: what is wrong with it.
        hint: what to do about it.
    """

    kind = "data integrity error"
    exit_code = EXIT_DATA

    def __init__(self, path: str, message: str, hint: Optional[str] = None):
        self.path = path
        self.message = message
        self.hint = hint
        super().__init__(located_message(path, message, hint))


class TrainingError(PPFreezeError, RuntimeError):
    """The run went wrong (divergence, a moved frozen tensor, ranks out of sync)."""

    kind = "training stopped"
    exit_code = EXIT_TRAINING


def report(error: PPFreezeError, program: str = "ppfreeze") -> int:
    """Print ``error`` as one line on stderr and return its exit code."""
    print(f"{program}: {error.kind}: {error}", file=sys.stderr)
    return error.exit_code
