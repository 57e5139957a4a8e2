"""How many torch threads a run should use: one script's wall time with one thread and with torch's default (a thread
per core), alone and two at a time, on a machine with nothing else running.

    python benchmark/threads.py -- ac_recall_fourroom.py
    python benchmark/threads.py -- sac_recall_mujoco.py --env-id Hopper-v4 --total-timesteps 3000 --learning-starts 1000

Each run is the script as a user starts it, in a temporary directory, seed 1; "one thread" sets OMP_NUM_THREADS=1
(what benchmark/run.py does), "default" leaves it unset.
"""

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import tyro

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Args:
    command: tyro.conf.Positional[list[str]] = field(default_factory=lambda: ["ac_recall_fourroom.py"])
    """the script and its flags (after --)"""


def start(command, threads):
    env = {key: value for key, value in os.environ.items() if key not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env |= {"OMP_NUM_THREADS": "1"} if threads == "one thread" else {}
    cwd = tempfile.mkdtemp()
    script, *flags = command
    return subprocess.Popen([sys.executable, str(ROOT / script), "--seed", "1", *flags], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip


def wall_times(command, threads, at_once):
    """The wall time of each of `at_once` runs started together."""
    begin, procs = time.time(), [start(command, threads) for _ in range(at_once)]
    times = []
    for proc in procs:
        _, stderr = proc.communicate()
        if proc.returncode != 0:
            sys.exit(f"error: {' '.join(command)} failed:\n{stderr[-2000:]}")
        times.append(time.time() - begin)
    return times


if __name__ == "__main__":
    args = tyro.cli(Args)
    if not (ROOT / args.command[0]).is_file():
        sys.exit(f"error: no script {args.command[0]} in {ROOT}")
    print(f"{' '.join(args.command)} on {os.cpu_count()} cores")
    for threads in ("one thread", "default"):
        for at_once in (1, 2):
            times = wall_times(args.command, threads, at_once)
            print(f"{threads:>10}, {at_once} at a time: " + ", ".join(f"{t:.1f} s" for t in times), flush=True)
