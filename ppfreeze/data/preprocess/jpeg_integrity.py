"""Tell a complete JPEG from a truncated or corrupted one, so damage is an error, not training data.

libjpeg (inside OpenCV and Pillow) decodes a damaged JPEG with a *warning* on stderr and
returns an image anyway: grey rows after a truncation, smeared blocks after corrupted bytes.
Two checks close that gap (``DecodeImage(strict=True)``, the default, runs both on JPEGs):

- :func:`jpeg_structure_problem`: the marker structure: SOI first, every segment
  within the file, a frame header before the first scan, entropy-coded data that contains no
  stray markers and restart markers in sequence, and an EOI marker at the end (a truncated
  file has none). Bytes after EOI are allowed (some cameras append data there).
- :func:`decode_with_libjpeg_warnings`: decodes with OpenCV while catching what libjpeg writes
  to file descriptor 2; a "Corrupt JPEG data" / "Premature end of JPEG file" warning becomes a
  failure. Corruption inside the Huffman-coded data (bytes overwritten without creating a
  marker) is invisible to the structure check and shows up only here. Other text written to
  stderr meanwhile (e.g. by another thread) is passed on unchanged.

numpy + the standard library only, so deploy tools use it without paddle.
"""
from __future__ import annotations

import os
import re
import threading
from typing import Callable, Dict, Optional, Tuple

import numpy as np

SOI, EOI, SOS = 0xD8, 0xD9, 0xDA
_RST = range(0xD0, 0xD8)
_FRAME_HEADERS = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # SOF0..SOF15 (not DHT, JPG, DAC)
_STANDALONE = set(_RST) | {0x01}  # markers without a length field (besides SOI / EOI)
# Markers that may follow a scan: more tables and scans (progressive JPEGs), metadata, or the end.
_AFTER_SCAN = {0xC4, 0xCC, 0xDB, 0xDC, 0xDD, SOS, EOI, 0xFE} | set(range(0xE0, 0xF0))

# libjpeg warnings that mean the pixels are not what was encoded (jerror.h JWRN_*); harmless
# ones (unknown JFIF revision, Adobe transform code, a bad ICC profile marker) are not listed.
_DAMAGE_WARNING = re.compile(rb"(Corrupt JPEG data: (?!bad ICC marker)[^\n]*|Premature end of JPEG file"
                             rb"|Inconsistent progression sequence[^\n]*|Invalid SOS parameters[^\n]*)")

_capture_lock = threading.Lock()


def is_jpeg(data: bytes) -> bool:
    """Whether ``data`` starts like a JPEG file (SOI marker)."""
    return len(data) >= 2 and data[0] == 0xFF and data[1] == SOI


def jpeg_structure_problem(data: bytes) -> Optional[str]:
    """What is structurally wrong with the JPEG ``data``, or None when nothing is.

    Walks the marker segments in Python and searches the entropy-coded data with one regular
    expression per scan (a few microseconds for the demo's 2 KB images).
    """
    n = len(data)
    if not is_jpeg(data):
        return "it does not start with a JPEG SOI marker"
    pos, seen_frame = 2, False
    while True:
        while pos + 1 < n and data[pos] == 0xFF and data[pos + 1] == 0xFF:  # fill bytes before a marker
            pos += 1
        if pos + 1 >= n:
            return "the file is truncated (it ends before the end-of-image marker)"
        if data[pos] != 0xFF:
            return f"expected a marker at byte {pos}, found 0x{data[pos]:02x}"
        marker = data[pos + 1]
        if marker == EOI:
            return None if seen_frame else "it ends before any image data"
        if marker in _STANDALONE:
            pos += 2
            continue
        if pos + 3 >= n:
            return "the file is truncated (inside a marker segment)"
        length = (data[pos + 2] << 8) | data[pos + 3]
        if length < 2 or pos + 2 + length > n:
            return f"the file is truncated or corrupt (segment 0x{marker:02x} at byte {pos} runs past the end)"
        seen_frame |= marker in _FRAME_HEADERS
        pos += 2 + length
        if marker == SOS:
            if not seen_frame:
                return "image data comes before the frame header (SOF)"
            pos, problem = _scan_end(data, pos)
            if problem:
                return problem


# Inside entropy-coded data 0xFF is followed by 0x00 (a stuffed data byte), 0xFF (fill) or
# RST0..RST7; anything else ends the scan.
_SCAN_END = re.compile(rb"\xff[^\x00\xff\xd0-\xd7]")
_RESTART = re.compile(rb"\xff[\xd0-\xd7]")


def _scan_end(data: bytes, start: int) -> Tuple[int, Optional[str]]:
    """Walk the entropy-coded data from ``start``; return (position of the next marker, problem)."""
    found = _SCAN_END.search(data, start)
    if found is None:
        return len(data), "the file is truncated (the image data has no end-of-image marker)"
    end = found.start()
    for expected, restart in enumerate(_RESTART.findall(data, start, end)):
        if restart[1] - 0xD0 != expected % 8:
            return end, "corrupt image data (restart markers out of sequence)"
    marker = data[end + 1]
    if marker not in _AFTER_SCAN:
        return end, f"corrupt image data (unexpected marker 0x{marker:02x} at byte {end})"
    return end, None


def decode_with_libjpeg_warnings(decode: Callable[[], np.ndarray]) -> Tuple[Optional[np.ndarray], Optional[str]]:
    """Run ``decode()`` (an OpenCV decode) and return ``(image, libjpeg damage warning or None)``.

    libjpeg reports damage only as a line on stderr (file descriptor 2), which is pointed at a
    pipe for the duration of the call. When descriptor 2 cannot be redirected, no warning is seen.
    """
    with _capture_lock:
        try:
            pipe = _pipe()
            saved = os.dup(2)
        except OSError:   # no descriptor 2 (a daemon), or too many open files
            return decode(), None
        try:
            os.dup2(pipe[1], 2)
            try:
                image = decode()
            finally:
                os.dup2(saved, 2)
        finally:
            os.close(saved)
        captured = _drain(pipe[0])
    warning = _DAMAGE_WARNING.search(captured)
    others = _DAMAGE_WARNING.sub(b"", captured).strip(b"\n")
    if others:  # not libjpeg's (another thread, OpenCV's own log): hand it on unchanged
        os.write(2, others + b"\n")
    return image, warning.group(0).decode("ascii", "replace") if warning else None


_pipes: Dict[int, Tuple[int, int]] = {}


def _pipe() -> Tuple[int, int]:
    """This process's capture pipe (a forked DataLoader worker makes its own)."""
    pid = os.getpid()
    if pid not in _pipes:
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
        os.set_inheritable(read_end, False)
        os.set_inheritable(write_end, False)
        for inherited in _pipes.values():  # the parent's, inherited through fork: not ours to use
            os.close(inherited[0])
            os.close(inherited[1])
        _pipes.clear()
        _pipes[pid] = (read_end, write_end)
    return _pipes[pid]


def _drain(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)
