"""Peak RSS of one child process alone, for the benchmarks.

A child forked from a large benchmark process and exec'ed starts its ``ru_maxrss`` at the
parent's RSS (Linux keeps the pre-exec high-water mark in the task's rusage), so
``os.wait4`` on a direct child over-reports. ``spawn`` starts the command through a small
launcher process instead, which reads the command's own rusage.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile

LAUNCHER = r"""
import os, subprocess, sys
p = subprocess.Popen(sys.argv[2:])
_, status, ru = os.wait4(p.pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(f"{ru.ru_maxrss} {ru.ru_utime + ru.ru_stime}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def spawn(cmd: list[str], env: dict | None = None, stdout=None) -> tuple[int, float, float]:
    """Run ``cmd``; (exit status, peak RSS MiB, CPU s) of that process alone."""
    with tempfile.NamedTemporaryFile("r", suffix=".rusage") as tf:
        rc = subprocess.call([sys.executable, "-c", LAUNCHER, tf.name, *cmd], env=env,
                             stdout=stdout, stderr=subprocess.STDOUT if stdout is not None else None)
        fields = tf.read().split()
    if len(fields) != 2:  # the launcher could not start the command
        return rc or 1, float("nan"), float("nan")
    return rc, float(fields[0]) / 1024, float(fields[1])
