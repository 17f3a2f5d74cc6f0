"""What this process holds in RAM: resident pages of mapped files, and the peak resident set of a step.

Linux only (``/proc/self``); elsewhere each function returns ``None``. Used for the
memory figures of ``index_info()`` and ``info()``: with vectors and indexes read through
memory maps, "how big is it" and "how much of it is in RAM" are different numbers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_STATUS = Path("/proc/self/status")


def mapped_resident(under: Path) -> dict[str, int] | None:
    """Bytes of files under ``under`` mapped into this process, and how many of them are resident.

    Summed over ``/proc/self/smaps`` mappings whose file lies under ``under``:
    ``{"mapped_bytes", "resident_bytes"}``.

    >>> import tempfile
    >>> mapped_resident(Path(tempfile.gettempdir()) / "nothing-mapped-here")
    {'mapped_bytes': 0, 'resident_bytes': 0}
    """
    prefix = str(Path(under).resolve())
    try:
        text = Path("/proc/self/smaps").read_text()
    except OSError:
        return None
    mapped = resident = 0
    inside = False
    for line in text.splitlines():
        head = line.split(maxsplit=5)
        if len(head) >= 5 and "-" in head[0] and not head[0].endswith(":"):  # a mapping's header line
            path = head[5].strip() if len(head) == 6 else ""
            if path.endswith(" (deleted)"):
                path = path[: -len(" (deleted)")]
            inside = path.startswith(prefix + "/") or path == prefix
        elif inside and head and head[0] == "Size:":
            mapped += int(head[1]) * 1024
        elif inside and head and head[0] == "Rss:":
            resident += int(head[1]) * 1024
    return {"mapped_bytes": mapped, "resident_bytes": resident}


def _status(key: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


@contextmanager
def peak_growth() -> Iterator[dict[str, int | None]]:
    """Measure how far the resident set rose above its starting size inside the ``with`` block.

    The kernel's peak (``VmHWM``) is reset first where permitted (``/proc/self/clear_refs``);
    the result's ``"bytes"`` is ``None`` where it cannot be measured.

    >>> with peak_growth() as peak:
    ...     block = b"x" * (100 << 20)  # written, so resident (a zeroed bytearray may be untouched fresh pages)
    >>> peak["bytes"] is None or peak["bytes"] >= 50 << 20
    True
    """
    out: dict[str, int | None] = {"bytes": None}
    try:
        Path("/proc/self/clear_refs").write_text("5\n")  # reset VmHWM to the current RSS
        reset = True
    except OSError:
        reset = False
    # the reset peak is the RSS at the reset: read before it, other threads' frees or reclaimed file pages in
    # between made the growth look smaller (the doctest failed at random in a long test process)
    start = _status("VmHWM") if reset else None
    try:
        yield out
    finally:
        peak = _status("VmHWM")
        if reset and start is not None and peak is not None:
            out["bytes"] = max(0, peak - start)


__all__ = ["mapped_resident", "peak_growth"]
