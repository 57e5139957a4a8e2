"""Does a change move any number? Every script on a short budget, seed 1, in the working tree and at a git ref; every
logged scalar compared to the digit.

    python benchmark/same_numbers.py                       # the working tree against HEAD
    python benchmark/same_numbers.py --before 1cefa2e --runs trpo goalgan

A refactor should print "the same to the digit" (on the same machine: float rounding differs between CPUs). The runs
cover each recall script's recall phase (App. F's untrained model included), PER's update and TRPO's Dyna phase.
`charts/SPS` is left out: it is a speed, not a result.
"""

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import tyro

sys.path.insert(0, str(Path(__file__).resolve().parent))
from git_tree import checked_out  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RUNS = {
    "ac": ["ac_recall_fourroom.py", "--size", "7", "--total-timesteps", "4096", "--num-envs", "4", "--target", "goal"],
    "ac_true": ["ac_recall_fourroom.py", "--size", "9", "--total-timesteps", "8192", "--bt-state", "true"],
    "ac_random": ["ac_recall_fourroom.py", "--size", "7", "--total-timesteps", "4096", "--bt-model", "random"],
    "per": ["per_fourroom.py", "--size", "7", "--total-timesteps", "4096", "--num-envs", "4", "--eval-episodes", "3"],
    "sac": ["sac_recall_mujoco.py", "--env-id", "Hopper-v4", "--total-timesteps", "1200", "--learning-starts", "500"],
    "trpo": ["trpo_recall_mujoco.py", "--env-id", "Hopper-v4", "--total-timesteps", "4096", "--imitation-updates", "2"],
    "trpo_forward": ["trpo_recall_mujoco.py", "--env-id", "Hopper-v4", "--total-timesteps", "4096", "--model", "forward"],
    "goalgan": ["goalgan_recall_umaze.py", "--total-timesteps", "2001", "--num-new-goals", "20", "--init-episodes", "10"],
}
# the short runs' own flags beside those above: evaluations kept short, SAC's diagnostics logged
EXTRA = {"sac": ["--batch-size", "64", "--eval-every", "600", "--eval-episodes", "1", "--log-every", "100"]}
EXTRA |= {"trpo": ["--eval-episodes", "1"], "trpo_forward": ["--eval-episodes", "1"], "goalgan": ["--num-old-goals", "10"]}


@dataclass
class Args:
    before: str = "HEAD"
    """the git ref the working tree is compared with"""
    runs: tuple[str, ...] = tuple(RUNS)
    """which short runs"""


def scalars(root, name):
    """{tag: [(step, value), ...]} of one short run of the script in `root`."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    script, *flags = RUNS[name]
    with tempfile.TemporaryDirectory() as cwd:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        command = [sys.executable, str(Path(root) / script), "--seed", "1", *flags, *EXTRA.get(name, [])]
        result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(f"error: {name} failed in {root}:\n{result.stderr[-2000:]}")
        (run_dir,) = (Path(cwd) / "runs").iterdir()
        events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0}).Reload()
        tags = [t for t in events.Tags()["scalars"] if t != "charts/SPS"]
        return {t: [(e.step, e.value) for e in events.Scalars(t)] for t in tags}


def differences(before, after):
    """One line for each tag that only one run logged, or that the two logged with other values."""
    lines = [f"only before: {t}" for t in sorted(before.keys() - after.keys())]
    lines += [f"only after: {t}" for t in sorted(after.keys() - before.keys())]
    for tag in sorted(before.keys() & after.keys()):
        pairs = [(b, a) for b, a in zip(before[tag], after[tag], strict=False) if b != a]
        if pairs:
            (step, old), (_, new) = pairs[0]
            lines.append(f"{tag}: first differs at step {step}, {old} before and {new} after")
        elif len(before[tag]) != len(after[tag]):
            lines.append(f"{tag}: {len(before[tag])} values before, {len(after[tag])} after")
    return lines


if __name__ == "__main__":
    args = tyro.cli(Args)
    if unknown := set(args.runs) - set(RUNS):
        sys.exit(f"error: unknown runs {sorted(unknown)}; choose from {', '.join(RUNS)}")
    with checked_out(args.before) as tree:
        changed = 0
        for name in args.runs:
            lines = differences(scalars(tree, name), scalars(ROOT, name))
            changed += bool(lines)
            print(f"{name}: " + ("the same to the digit" if not lines else "\n  ".join(["DIFFERENT", *lines])))
    sys.exit(1 if changed else 0)
