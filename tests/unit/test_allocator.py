"""Freed memory is kept for reuse: receiving one large response after another costs no fresh page faults."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import resource, sys
sys.path.insert(0, sys.argv[1])
from flux_async.targets.allocator import keep_freed_memory
applied = keep_freed_memory()
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(2):
    block = bytearray(50 * 2**20); del block  # a 50 MB response, received and dropped
before = faults()
for _ in range(5):
    block = bytearray(50 * 2**20); del block
print(applied, faults() - before)
"""


def faults_after(setting: str) -> tuple[bool, int]:
    env = {**os.environ, "FLUX_ASYNC_MALLOC": setting}
    out = subprocess.run([sys.executable, "-c", PROBE, str(ROOT)], capture_output=True, text=True, env=env,
                         check=True).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_large_blocks_are_reused_instead_of_faulted_in_again():
    applied, reused = faults_after("reuse")
    default_applied, fresh = faults_after("default")
    assert applied and not default_applied
    pages = 5 * 50 * 2**20 // os.sysconf("SC_PAGE_SIZE")
    assert fresh > pages // 2  # by default every block is new pages
    assert reused < pages // 20, (reused, fresh)
