"""The project as it was at a git ref, checked out beside the working tree, for the tools that compare before and
after (benchmark/same_numbers.py, benchmark/umaze_throughput.py)."""

import contextlib
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def checked_out(ref):
    """A temporary git worktree of `ref`: its folder, removed afterwards. A ref git cannot check out ends the tool
    with one line."""
    with tempfile.TemporaryDirectory() as tree:
        checkout = subprocess.run(["git", "worktree", "add", "--detach", tree, ref], cwd=ROOT, capture_output=True, text=True)
        if checkout.returncode != 0:
            sys.exit(f"error: cannot check out {ref}: {checkout.stderr.strip()}")
        try:
            yield tree
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", tree], cwd=ROOT, capture_output=True)
