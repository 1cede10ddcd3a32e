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


# a process the measured one talks to without being its parent (the lake's build service):
# it burns about two seconds of CPU and holds some 300 MB while the measured process waits
BESIDE = """
import sys, time
held = bytearray(300 * 2**20)
for i in range(0, len(held), 4096):
    held[i] = 1
sys.stdout.write("ready\\n"); sys.stdout.flush()
sys.stdin.readline()
end = time.process_time() + 2.0
while time.process_time() < end: pass
time.sleep(60)
"""


def test_a_process_beside_counts_in_rss_and_cpu_only_for_what_it_did_meanwhile():
    import subprocess

    beside = subprocess.Popen([sys.executable, "-c", BESIDE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert beside.stdout.readline() == "ready\n"
        alone = _measured_process([sys.executable, "-c", "import time; time.sleep(3)"])
        beside.stdin.write("go\n")
        beside.stdin.flush()
        with_it = _measured_process([sys.executable, "-c", "import time; time.sleep(3)"], beside=[beside.pid])
    finally:
        beside.kill()
        beside.wait()
    assert with_it["peak_rss"] - alone["peak_rss"] >= 250 * 2**20, (alone["peak_rss"], with_it["peak_rss"])
    # what it burned while measured counts (about 2 s, less the time before the first sample); nothing before
    assert 0.5 <= with_it["cpu"] - alone["cpu"] <= 2.6, (alone["cpu"], with_it["cpu"])
