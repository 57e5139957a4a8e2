"""Env steps per second of a whole Goal GAN iteration on the Ant U-Maze, the working tree beside a git ref, the two
taking turns on one core (--repeats runs of each; the medians, each run's time and each pair's speed-up): the
first iteration of `goalgan_recall_umaze.py` with the paper's sizes (600 episodes of up to 500 steps in 5 TRPO
iterations, each with its recall phase; the GAN's training; the coverage evaluation).

    python benchmark/umaze_throughput.py                                   # today against the code before the speed-up
    python benchmark/umaze_throughput.py --before HEAD --before-env-id AntUMaze-v1 --no-recall

The rate is the env steps between the coverage evaluation before the first iteration and the one after it, over the
wall-clock time between the two logs, so the start (imports, the GAN's initialisation) is left out. Evaluation
episodes are not counted as env steps but their time is. Nothing else should run beside it.
"""

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import tyro
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from git_tree import checked_out  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = "goalgan_recall_umaze.py"
INIT_STEPS = 50 * 500  # the GAN's initialisation: 50 episodes of up to 500 steps; one step more is one iteration


@dataclass
class Args:
    before: str = "fef8add"
    """the git ref measured beside the working tree (default: the last commit before the Ant U-Maze's speed-up)"""
    before_env_id: str = "AntUMaze-v0"
    """the env id at that ref (before the speed-up the Ant U-Maze was AntUMaze-v0, gymnasium's physics)"""
    env_id: str = "AntUMaze-v1"
    """the env id in the working tree"""
    seed: int = 1
    """the seed of both runs"""
    recall: bool = True
    """if toggled, Goal GAN with recall traces; --no-recall, plain Goal GAN"""
    repeats: int = 3
    """runs of each code, the two taking turns; the table gives each one's median time"""


def iteration_rate(root, env_id, args):
    """(env steps / s of the first Goal GAN iteration, its env steps, its seconds) of the script in `root`."""
    flags = ["--env-id", env_id, "--seed", str(args.seed), "--total-timesteps", str(INIT_STEPS + 1)]
    flags += ["--recall" if args.recall else "--no-recall"]
    with tempfile.TemporaryDirectory() as cwd:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        result = subprocess.run(
            [sys.executable, str(Path(root) / SCRIPT), *flags], cwd=cwd, env=env, capture_output=True, text=True
        )
        if result.returncode != 0:
            sys.exit(f"error: {SCRIPT} {' '.join(flags)} failed in {root}:\n{result.stderr[-2000:]}")
        (run_dir,) = (Path(cwd) / "runs").iterdir()
        first, second = EventAccumulator(str(run_dir)).Reload().Scalars("charts/iteration")[:2]
    seconds = second.wall_time - first.wall_time
    return (second.step - first.step) / seconds, second.step - first.step, seconds


def median_run(runs):
    """The run of median time among (rate, env steps, seconds) runs of one code; the same seed takes the same steps."""
    if len({steps for _, steps, _ in runs}) > 1:
        sys.exit(f"error: runs of one code on one seed took different env steps: {[steps for _, steps, _ in runs]}")
    return sorted(runs, key=lambda run: run[2])[len(runs) // 2]


if __name__ == "__main__":
    args = tyro.cli(Args)
    if args.repeats < 1:
        sys.exit(f"error: --repeats must be >= 1 (given {args.repeats})")
    codes = ((args.before, args.before_env_id), ("working tree", args.env_id))
    runs = {code: [] for code, _ in codes}
    with checked_out(args.before) as tree:
        for _ in range(args.repeats):  # in turns, so a change in the machine's speed falls on both
            for (code, env_id), root in zip(codes, (tree, ROOT), strict=True):
                runs[code].append(iteration_rate(root, env_id, args))
    rows = [(code, env_id, *median_run(runs[code])) for code, env_id in codes]
    setting, switch = ("Goal GAN + recall traces", "--recall") if args.recall else ("Goal GAN", "--no-recall")
    print(f"python {SCRIPT} --env-id ENV_ID --seed {args.seed} --total-timesteps {INIT_STEPS + 1} {switch}")
    print(f"{setting}, the first iteration, one CPU thread, the median of {args.repeats} runs of each\n")
    print("| code | env id | env steps | seconds | env steps / s | speed-up | each run's seconds |\n|-|-|-|-|-|-|-|")
    for code, env_id, rate, steps, seconds in rows:
        each = ", ".join(f"{run[2]:.1f}" for run in runs[code])
        print(f"| {code} | {env_id} | {steps:,} | {seconds:.1f} | {rate:,.0f} | {rate / rows[0][2]:.2f}x | {each} |")
    pairs = [after[0] / before[0] for before, after in zip(*runs.values(), strict=True)]
    print(f"\nspeed-up of each pair run in turn: {', '.join(f'{x:.2f}x' for x in pairs)}")
