"""Read a gallery list file: one ``image_path<delimiter>label`` per line (PaddleClas format).

Only the first delimiter splits a line, so labels may contain spaces (and even further
delimiters).  Paths are joined to ``IndexProcess.image_root``.  Every mistake names the
file and the 1-based line number.
"""
from __future__ import annotations

import os
from typing import List, Tuple

from ..config.errors import ConfigError
from ..utils.text import iter_text_lines

# YAML single quotes keep backslashes: '\t' arrives as two characters, not a TAB.
_ESCAPED_DELIMITERS = {"\\t": "\t"}

DATA_FILE_KEY = "IndexProcess.data_file"
DELIMITER_KEY = "IndexProcess.delimiter"


def normalize_delimiter(delimiter: str) -> str:
    """Turn a YAML-literal ``\\t`` (backslash + t) into a real TAB; reject an empty delimiter."""
    if not isinstance(delimiter, str) or delimiter == "":
        raise ConfigError(DELIMITER_KEY, f"expected a non-empty string, got {delimiter!r}",
                          'use "\\t" (a TAB, PaddleClas default)')
    return _ESCAPED_DELIMITERS.get(delimiter, delimiter)


def read_gallery_file(path: str, image_root: str, delimiter: str = "\t",
                      check_images: bool = True) -> List[Tuple[str, str]]:
    """Return ``[(image_path joined to image_root, label), ...]`` from a gallery list file.

    Args:
        path: the list file (``IndexProcess.data_file``).
        image_root: directory the image paths are relative to (``IndexProcess.image_root``).
        delimiter: separator between path and label; a literal ``\\t`` means TAB.
        check_images: raise when an image file does not exist (off for ``remove``, which
            needs only the labels).

    Raises:
        ConfigError: missing list file, a line without the delimiter, an empty path or
            label, or a missing image; the message names ``file:line``.
    """
    delimiter = normalize_delimiter(delimiter)
    if not os.path.isfile(path):
        raise ConfigError(DATA_FILE_KEY, f"gallery list file '{path}' does not exist",
                          "point IndexProcess.data_file at a text file of 'image_path<TAB>label' lines")
    entries = []
    for line_no, line in iter_text_lines(path, DATA_FILE_KEY):  # a BOM from Windows editors is fine
        if not line.strip():
            continue
        image, label = _split_line(line, delimiter, path, line_no)
        image_path = os.path.join(image_root, image)
        if check_images and not os.path.isfile(image_path):
            raise ConfigError(DATA_FILE_KEY, f"{path}:{line_no}: image '{image_path}' does not exist",
                              "fix the path or IndexProcess.image_root")
        entries.append((image_path, label))
    return entries


def _split_line(line: str, delimiter: str, path: str, line_no: int) -> Tuple[str, str]:
    """Split one line on the first delimiter, with a located error when that is impossible."""
    where = f"{path}:{line_no}"
    if delimiter not in line:
        hint = f"separate the image path and the label with {delimiter!r}"
        if delimiter == "\t" and " " in line.strip():
            hint = "the line uses spaces; separate the image path and the label with a TAB"
        raise ConfigError(DATA_FILE_KEY, f"{where}: no delimiter {delimiter!r} in line {line!r}; "
                          "expected 'image_path<delimiter>label'", hint)
    image, label = line.split(delimiter, 1)
    image, label = image.strip(), label.strip()
    if not image:
        raise ConfigError(DATA_FILE_KEY, f"{where}: empty image path in line {line!r}",
                          "each line must start with an image path")
    if not label:
        raise ConfigError(DATA_FILE_KEY, f"{where}: empty label in line {line!r}",
                          "put the label after the delimiter")
    return image, label
