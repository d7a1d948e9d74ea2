"""Read users' text files (configs, image lists, label maps) as UTF-8.

A UTF-8 byte-order mark (Windows editors write one) is dropped; bytes that are not UTF-8 (a
list saved as GBK or Latin-1) are a ConfigError naming the file, the line and the column,
instead of a ``UnicodeDecodeError`` traceback or an image path that starts with ``\\ufeff``.
"""
from __future__ import annotations

from typing import Iterator, Tuple

from ..config.errors import ConfigError

_ENCODING_HINT = "save the file as UTF-8 (e.g. iconv -f GBK -t UTF-8 old.txt > new.txt)"


def decode_utf8(data: bytes, path: str, key: str = "") -> str:
    """``data`` as text (a leading BOM removed), or a ConfigError locating the first bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise ConfigError(key, f"{path}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x} at column {column})",
                          _ENCODING_HINT) from None


def read_text(path: str, key: str = "") -> str:
    """The whole file as text (see :func:`decode_utf8`)."""
    with open(path, "rb") as f:
        return decode_utf8(f.read(), path, key)


def iter_text_lines(path: str, key: str = "") -> Iterator[Tuple[int, str]]:
    """``(1-based line number, line without its end of line)`` for every line of the file.

    Lines end at ``\\n`` (a ``\\r`` before it is dropped), so the numbers are what editors show.
    """
    text = read_text(path, key)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for number, line in enumerate(lines, start=1):
        yield number, line[:-1] if line.endswith("\r") else line
