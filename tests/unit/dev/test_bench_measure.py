"""``pipelines.dev.bench._measured_process``: a benchmark's CPU seconds count
the children a process never waits for, as a ``govlake`` process leaves its
Spark JVM (``os._exit``)."""

from __future__ import annotations

import sys

from pipelines.dev.bench import _measured_process

# a child that burns about two seconds of CPU; the parent waits for it to end
# (polling, without wait()) and leaves with os._exit, reaping nothing
PARENT = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c",
    "import time\\nend = time.process_time() + 2.0\\nwhile time.process_time() < end: pass"])
while os.path.exists(f"/proc/{child.pid}") and open(f"/proc/{child.pid}/stat").read().split(")")[1].split()[0] != "Z":
    time.sleep(0.05)
os._exit(0)
"""


def test_cpu_counts_a_child_the_process_never_waited_for():
    measured = _measured_process([sys.executable, "-c", PARENT])
    assert measured["returncode"] == 0
    # wait4 alone reports the parent's own few hundredths of a second
    assert measured["cpu"] >= 1.4, measured["cpu"]
