"""The two hashers ``lookalike bench hash`` compares, and their peak memory, measured alone.

``python -m benchmarks.peak_memory HASHER FILE...`` hashes the files one at a time and prints
``BEFORE_KB PEAK_KB``: resident memory once the hasher's libraries are loaded, and the
process's high-water mark after hashing. It runs as its own process, started with ``-m``
rather than through multiprocessing, whose spawned children re-import the parent's
``__main__``: for ``lookalike bench`` that is the whole CLI (click, psycopg, the store...),
which would be counted as the fingerprint path's memory. Each hasher imports its library
when first called, so the process holds only what that hasher needs.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from pathlib import Path


def dhash_with_imagehash(data: bytes) -> int:
    """The baseline: what a user of imagehash would write."""
    import imagehash
    from PIL import Image

    return int(str(imagehash.dhash(Image.open(io.BytesIO(data)))), 16)


def dhash_with_lookalike(data: bytes) -> int:
    """Lookalike's whole fingerprint path (sha256, dHash, pHash), keeping the dHash."""
    from lookalike.fingerprint import fingerprint

    return fingerprint(data).hashes["dhash"]


HASHERS: dict[str, Callable[[bytes], int]] = {
    "lookalike": dhash_with_lookalike,
    "imagehash": dhash_with_imagehash,
}


def _tiny_jpeg() -> bytes:
    """A 64×48 gray JPEG: hashing it loads every library a hasher uses (both use Pillow)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), "gray").save(buffer, "JPEG")
    return buffer.getvalue()


def measure(hasher: str, paths: list[Path]) -> tuple[int, int]:
    """(resident kB with the hasher's libraries loaded, high-water kB after hashing paths).

    Pillow allocates pixels outside Python's allocator, so tracemalloc cannot see them; the
    kernel's high-water mark (reset through /proc/self/clear_refs) can.
    """
    HASHERS[hasher](_tiny_jpeg())
    reset_peak()
    before = status_kb("VmRSS")
    for path in paths:  # one file in memory at a time, as a real caller would
        HASHERS[hasher](path.read_bytes())
    return before, status_kb("VmHWM")


def reset_peak(pid: int | str = "self") -> None:
    """Start a process's ``VmHWM`` again from its current RSS (Linux's clear_refs, value 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def status_kb(field: str, pid: int | str = "self") -> int:
    """A ``/proc/PID/status`` memory figure in kB: ``VmHWM`` (peak RSS) or ``VmRSS`` (now)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise LookupError(f"/proc/{pid}/status has no {field}: an exited process, or not Linux")


if __name__ == "__main__":
    before_kb, peak_kb = measure(sys.argv[1], [Path(arg) for arg in sys.argv[2:]])
    print(before_kb, peak_kb)
