"""Where checkpoints live on disk, and how a save becomes visible in one atomic step.

Layout of a run's output directory (``Global.output_dir/<Arch.name>``)::

    latest.pdparams  -> .checkpoints/current/latest/model.pdparams     PaddleClas's names, as symlinks
    latest.pdopt     -> .checkpoints/current/latest/model.pdopt
    latest.pdstates  -> .checkpoints/current/latest/model.pdstates
    epoch_3.pdparams -> .checkpoints/current/epoch_3/model.pdparams    (and so on per name)
    .checkpoints/
        current -> gen-000007                 the commit point: one symlink, replaced by one rename
        gen-000007/  latest -> ../e0003-<digest>   epoch_3 -> ../e0003-<digest>   best_model -> ../e0002-<digest>
        e0003-<digest>/  model.pdparams  model.pdopt  model.pdstates  [model.pdema]

- A checkpoint **set** (the files of one save) is written into ``.checkpoints/.staging-*``,
  flushed to disk, then renamed to ``e<epoch>-<digest>``, where ``<digest>`` is the start of the
  sha256 of its ``model.pdstates``; ``.pdstates`` records the sha256 of every other file. The
  name therefore authenticates ``.pdstates`` and, through it, the whole set: a reader checks the
  digests before it deserialises anything.
- A **generation** maps checkpoint names (``latest``, ``epoch_3``, ``best_model``,
  ``best_model_ema``) to sets. A commit writes a new generation directory and switches
  ``current`` to it with one ``rename``: every name of one epoch changes at once, and a kill at
  any instant leaves either the previous or the new generation, never a mix.
- The names users and PaddleClas tools open (``latest.pdparams`` ...) are symlinks through
  ``current``. They are created once (before the first commit that needs them) and are never
  switched themselves, so the files of one name always come from one set.
- Sets and generations nothing refers to, staging directories and temporary links (also those
  an earlier crash left behind) are removed after each commit and by :meth:`CheckpointStore.clean`.

Checkpoints of the earlier layout (regular files ``latest.pdparams`` ...), and PaddleClas's,
are still found and read; a commit replaces such files by the links. POSIX only (symlinks and
atomic rename).
"""
from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from ..utils.io import file_sha256, fsync_dir, fsync_tree

logger = logging.getLogger("ppfreeze")

STORE_DIR = ".checkpoints"
CURRENT = "current"
FILE_STEM = "model"
SUFFIXES = (".pdparams", ".pdopt", ".pdstates", ".pdema")
STATES = ".pdstates"
#: checkpoint names the engine writes (others in an output directory are left alone)
NAME_PATTERN = re.compile(r"^(latest|best_model|best_model_ema|epoch_\d+)$")
_SET_PATTERN = re.compile(r"^e\d+-([0-9a-f]{32})$")
_GEN_PATTERN = re.compile(r"^gen-(\d+)$")
_TEMP_PREFIXES = (".staging-", ".current.tmp-", ".view.tmp-")
DIGEST_CHARS = 32


@dataclass
class CheckpointFiles:
    """The files of one checkpoint, wherever they live.

    Attributes:
        prefix: the name the user gave or sees (``output/ResNet18/latest``).
        files: suffix -> path of the files present.
        states_digest: the sha256 prefix ``model.pdstates`` must have (a set of this layout),
            or None (the earlier layout or PaddleClas's: nothing to check it against).
    """
    prefix: str
    files: Dict[str, str] = field(default_factory=dict)
    states_digest: Optional[str] = None


def is_set_dir(path: str) -> bool:
    """True for a set directory name of this layout (``e0003-<digest>``)."""
    return bool(_SET_PATTERN.match(os.path.basename(os.path.normpath(path))))


def locate(prefix: str) -> CheckpointFiles:
    """The files that make up checkpoint ``prefix`` (``<dir>/<name>``), committed sets first.

    ``<dir>/.checkpoints/current/<name>`` is authoritative when it exists; otherwise the files
    ``<prefix>.pdparams`` ... themselves (the earlier layout, PaddleClas's, or a path into a set).
    """
    directory, name = os.path.split(os.path.abspath(prefix))
    committed = os.path.join(directory, STORE_DIR, CURRENT, name)
    if os.path.isdir(committed):
        set_dir = os.path.realpath(committed)  # resolved once: a concurrent commit cannot mix two sets
        base = os.path.join(set_dir, FILE_STEM)
    else:
        set_dir, base = os.path.dirname(os.path.realpath(prefix + STATES)), prefix
    found = {s: base + s for s in SUFFIXES if os.path.isfile(base + s)}
    match = _SET_PATTERN.match(os.path.basename(set_dir))
    return CheckpointFiles(prefix, found, match.group(1) if match else None)


class CheckpointStore:
    """The checkpoints of one output directory (see the module docstring for the layout).

    Args:
        directory: the run's output directory (``Global.output_dir/<Arch.name>``).
    """

    def __init__(self, directory: str):
        self.directory = os.path.abspath(directory)
        self.root = os.path.join(self.directory, STORE_DIR)
        self.pending: Dict[str, str] = {}

    # -- reading ------------------------------------------------------------------------------
    def committed(self) -> Dict[str, str]:
        """Name -> set id of the current generation (empty before the first commit)."""
        gen_dir = os.path.join(self.root, CURRENT)
        if not os.path.isdir(gen_dir):
            return {}
        names = {}
        for name in sorted(os.listdir(gen_dir)):
            target = os.path.basename(os.readlink(os.path.join(gen_dir, name)))
            names[name] = target
        return names

    def legacy_names(self) -> List[str]:
        """Checkpoint names stored as regular files (the earlier layout, PaddleClas's)."""
        names = set()
        for entry in os.listdir(self.directory) if os.path.isdir(self.directory) else []:
            stem, suffix = os.path.splitext(entry)
            path = os.path.join(self.directory, entry)
            if suffix in SUFFIXES and NAME_PATTERN.match(stem) and os.path.isfile(path) \
                    and not os.path.islink(path):
                names.add(stem)
        return sorted(names - set(self.committed()))

    def names(self) -> List[str]:
        """Every checkpoint name in the directory, committed or in the earlier layout."""
        return sorted(set(self.committed()) | set(self.legacy_names()), key=_name_order)

    def prefix(self, name: str) -> str:
        """The user-facing prefix of checkpoint ``name`` (``<directory>/<name>``)."""
        return os.path.join(self.directory, name)

    # -- writing ------------------------------------------------------------------------------
    def write_set(self, write: Callable[[str], None], epoch: int) -> str:
        """Write one set and seal it under its content name; returns the set id.

        ``write(base)`` writes ``base + suffix`` for each file, ``.pdstates`` last. Nothing is
        visible under any checkpoint name until :meth:`commit`. On any failure (a full disk,
        an interrupt) the staging directory is removed and the committed checkpoints are
        untouched.
        """
        os.makedirs(self.root, exist_ok=True)
        staging = _new_dir(self.root, ".staging-")
        try:
            write(os.path.join(staging, FILE_STEM))
            fsync_tree(staging)
            set_id = f"e{epoch:04d}-{file_sha256(os.path.join(staging, FILE_STEM + STATES))[:DIGEST_CHARS]}"
            final = os.path.join(self.root, set_id)
            if os.path.isdir(final) and set_id in self.committed().values():
                shutil.rmtree(staging)  # identical content (same digest) is committed already
            else:
                if os.path.exists(final):  # left unreferenced by an interrupted save or cleanup
                    shutil.rmtree(final)
                os.rename(staging, final)
            fsync_dir(self.root)
            return set_id
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def stage(self, names: List[str], set_id: str) -> None:
        """Point ``names`` at ``set_id`` in the next :meth:`commit`."""
        for name in names:
            if not NAME_PATTERN.match(name):
                raise ValueError(f"not a checkpoint name: {name!r}")
            self.pending[name] = set_id

    def commit(self) -> None:
        """Make every staged name visible at once (one rename of ``current``), then tidy up."""
        if not self.pending:
            return
        mapping = {**self.committed(), **self.pending}
        generation = self._write_generation(mapping)
        self._ensure_views(mapping, replace=False)   # new names appear with the commit itself
        link = os.path.join(self.root, f".current.tmp-{os.getpid()}")
        _remove(link)
        os.symlink(generation, link)
        os.replace(link, os.path.join(self.root, CURRENT))   # the commit
        fsync_dir(self.root)
        self.pending = {}
        self._ensure_views(mapping, replace=True)    # files of the earlier layout -> links
        self._collect_garbage(mapping)

    def _write_generation(self, mapping: Dict[str, str]) -> str:
        numbers = [int(m.group(1)) for m in map(_GEN_PATTERN.match, os.listdir(self.root)) if m]
        name = f"gen-{max(numbers, default=0) + 1:06d}"
        staging = _new_dir(self.root, ".staging-gen-")
        try:
            for ckpt_name, set_id in mapping.items():
                os.symlink(os.path.join(os.pardir, set_id), os.path.join(staging, ckpt_name))
            fsync_dir(staging)
            os.rename(staging, os.path.join(self.root, name))
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return name

    def _ensure_views(self, mapping: Dict[str, str], replace: bool) -> None:
        """``<name><suffix>`` links for every file of every committed set; remove stale ones."""
        for name, set_id in mapping.items():
            for suffix in SUFFIXES:
                view = os.path.join(self.directory, name + suffix)
                target = os.path.join(STORE_DIR, CURRENT, name, FILE_STEM + suffix)
                wanted = os.path.isfile(os.path.join(self.root, set_id, FILE_STEM + suffix))
                is_ours = os.path.islink(view) and os.readlink(view) == target
                if wanted and not is_ours and (replace or not os.path.lexists(view)):
                    link = os.path.join(self.directory, f".view.tmp-{os.getpid()}")
                    _remove(link)
                    os.symlink(target, link)
                    os.replace(link, view)
                elif not wanted and replace and os.path.lexists(view):
                    os.remove(view)  # e.g. latest.pdema after EMA was switched off
        fsync_dir(self.directory)

    def _collect_garbage(self, mapping: Dict[str, str]) -> None:
        current = os.readlink(os.path.join(self.root, CURRENT))
        keep = set(mapping.values()) | {CURRENT, current}
        for entry in os.listdir(self.root):
            if entry not in keep:
                _remove(os.path.join(self.root, entry))

    # -- maintenance --------------------------------------------------------------------------
    def clean(self) -> List[str]:
        """Remove what interrupted saves left: staging directories, temporary links, sets and
        generations nothing refers to, and the earlier layout's ``.<file>.*.tmp`` files.
        Call only while holding the output directory's lock. Returns what was removed."""
        removed = []
        if os.path.isdir(self.root):
            committed = self.committed()
            current = os.readlink(os.path.join(self.root, CURRENT)) if committed else None
            keep = set(committed.values()) | {CURRENT, current}
            for entry in os.listdir(self.root):
                if entry not in keep:
                    removed.append(os.path.join(STORE_DIR, entry))
                    _remove(os.path.join(self.root, entry))
        if os.path.isdir(self.directory):
            for entry in os.listdir(self.directory):
                # .<file>.<random>.tmp: ppfreeze.utils.io.atomic_write's temporary files
                if entry.startswith(_TEMP_PREFIXES) or (entry.startswith(".") and entry.endswith(".tmp")):
                    removed.append(entry)
                    _remove(os.path.join(self.directory, entry))
        return removed

    def remove_all(self) -> List[str]:
        """Delete every checkpoint of the directory (``Global.overwrite``); returns the names.

        ``current`` goes first, so an interruption leaves no committed checkpoint rather than
        a partial one; then the links and the earlier layout's files (``.pdstates`` first).
        """
        names = self.names()
        _remove(os.path.join(self.root, CURRENT))
        for name in names:
            for suffix in (STATES,) + tuple(s for s in SUFFIXES if s != STATES):
                _remove(os.path.join(self.directory, name + suffix))
        _remove(self.root)
        return names


def _new_dir(parent: str, prefix: str) -> str:
    """A new uniquely named directory with the usual permissions (``mkdtemp`` makes 0700)."""
    path = os.path.join(parent, f"{prefix}{os.getpid()}-{secrets.token_hex(4)}")
    os.mkdir(path)
    return path


def _remove(path: str) -> None:
    """Remove a file, link or directory tree if it exists."""
    if os.path.islink(path) or os.path.isfile(path):
        os.remove(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def _name_order(name: str):
    match = re.match(r"^epoch_(\d+)$", name)
    return (1, int(match.group(1)), name) if match else (0, 0, name)
