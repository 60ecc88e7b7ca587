"""Peak resident memory of one stage: Linux's VmHWM, reset before the stage through /proc/self/clear_refs."""

from __future__ import annotations

import resource
from pathlib import Path


def reset_peak() -> bool:
    """Start a new high-water mark for this process (Linux); False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_mb() -> float:
    """This process's peak resident memory since the last reset (else since it started), in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
