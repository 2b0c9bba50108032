"""What this machine offers, read once where it is needed. No heavy imports here."""

from __future__ import annotations

import os


def available_cores() -> int:
    """Cores this process may run on (the affinity mask, e.g. under taskset or a container)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


# glibc hands every freed block above its mmap threshold (adaptive, at most 32 MB) back to the OS,
# so a CPU forward pass whose activations exceed it maps, faults in and unmaps them again at every
# layer: the kernel's page-fault time then dominates. Measured on 2 cores, Lite0 at 224 px,
# batch 60 (the stem's output alone is 96 MB): 26.7 ms per image, 10.9 ms with both thresholds
# raised; finetune's frozen-part cache ran at 100% system time before.
KEEP_BLOCKS_BYTES = 1 << 30
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers
_allocator_tuned = False


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed large blocks for reuse instead of unmapping them (once per
    process; a no-op, False, where the C library is not glibc). Peak memory is unchanged: the
    process keeps what it already used."""
    global _allocator_tuned
    if _allocator_tuned:
        return True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        _allocator_tuned = bool(libc.mallopt(_M_MMAP_THRESHOLD, KEEP_BLOCKS_BYTES)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, KEEP_BLOCKS_BYTES))
    except (OSError, AttributeError):  # not Linux/glibc (musl, macOS, Windows)
        return False
    return _allocator_tuned
