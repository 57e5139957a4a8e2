"""Env steps per second of sac_recall_mujoco.py, eager against --compile, with and without recall, one run at a time.

    python benchmark/throughput.py                       # on the CPU, one torch thread
    python benchmark/throughput.py --cuda                # on the GPU
    python benchmark/throughput.py --cuda --env-id Ant-v4 --updates 3000

Each run learns for `--updates` SAC updates after 1000 random steps and logs its losses every 100 env steps. The
rate is measured from the wall-clock times TensorBoard stores with those logs, over the second half of the updates,
so that compilation (the first calls of a compiled function) is left out. The runs go one after another, so they
share the machine equally; nothing else should run beside them.
"""

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import tyro
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = Path(__file__).resolve().parents[1]
LEARNING_STARTS = 1000


@dataclass
class Args:
    env_id: str = "Hopper-v4"
    """the MuJoCo task"""
    updates: int = 2000
    """SAC updates of each run (one per env step after the random ones)"""
    cuda: bool = False
    """if toggled, run every configuration with --cuda"""
    seed: int = 1
    """the seed of every run"""


def steps_per_second(run_dir, first_step):
    """(env steps between the first log at or after first_step and the last log) / (the wall-clock time between)."""
    events = EventAccumulator(str(run_dir)).Reload().Scalars("losses/qf1_loss")
    start = next(e for e in events if e.step >= first_step)
    return (events[-1].step - start.step) / (events[-1].wall_time - start.wall_time)


def measure(args, recall, compile_):
    steps = LEARNING_STARTS + args.updates
    flags = ["--env-id", args.env_id, "--seed", str(args.seed), "--total-timesteps", str(steps)]
    flags += ["--learning-starts", str(LEARNING_STARTS), "--log-every", "100", "--eval-every", "0", "--eval-episodes", "0"]
    flags += ["--recall" if recall else "--no-recall", "--compile" if compile_ else "--no-compile"]
    flags += ["--cuda"] if args.cuda else []
    with tempfile.TemporaryDirectory() as cwd:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        result = subprocess.run([sys.executable, str(ROOT / "sac_recall_mujoco.py"), *flags], cwd=cwd, env=env,
                                capture_output=True, text=True)  # fmt: skip
        if result.returncode != 0:
            sys.exit(f"error: sac_recall_mujoco.py {' '.join(flags)} failed:\n{result.stderr[-2000:]}")
        (run_dir,) = (Path(cwd) / "runs").iterdir()
        return steps_per_second(run_dir, LEARNING_STARTS + args.updates // 2), flags


if __name__ == "__main__":
    args = tyro.cli(Args)
    if args.updates < 400:
        sys.exit(f"error: --updates must be >= 400 (the rate is measured over the second half), got {args.updates}")
    device = "CUDA" if args.cuda else "CPU, 1 thread"
    lines = [f"| setting | eager ({device}) | `--compile` ({device}) | speed-up |", "|-|-|-|-|"]
    for recall in (False, True):
        (eager, flags), (compiled, _) = measure(args, recall, False), measure(args, recall, True)
        name = "SAC + recall traces" if recall else "SAC"
        lines.append(f"| {args.env_id}, {name} | {eager:.1f} | {compiled:.1f} | {compiled / eager:.2f}x |")
    command = " ".join(f for f in flags if f not in ("--recall", "--no-compile"))
    print(f"python sac_recall_mujoco.py {command} [--no-recall] [--compile]\n")
    print("\n".join(lines))
