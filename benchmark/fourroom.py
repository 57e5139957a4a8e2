"""Rerun the four-room benchmark of the README: actor-critic with and without recall traces (paper 6.1, App. F).

    python benchmark/fourroom.py                      # the README's table: sizes 11, 15, 19, seeds 1-5
    python benchmark/fourroom.py --sizes 15 --settings true-learned ratio-2:1 ratio-4:1 ratio-1:2 ratio-1:4 ratio-1:4-len5 \
        --out-dir benchmark/out/fourroom_ratio      # App. H

Runs ac_recall_fourroom.py once per (size, setting, seed), `workers` at a time with one torch thread each,
then reads each run's TensorBoard log: the first global_step where charts/success_rate (last 100 episodes)
reaches the threshold with at least 100 episodes done (a run that never does counts as the whole budget),
and the final charts/SPS.
Prints a Markdown table and writes it to `<out_dir>/results.md`.
"""

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tyro
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

SCRIPT = Path(__file__).resolve().parents[1] / "ac_recall_fourroom.py"
SETTINGS = {  # short name: (what the table calls it, flags)
    "ac": ("actor-critic (`--no-recall`)", ["--no-recall"]),
    "true-learned": ("recall, true state + learned action", ["--bt-state", "true", "--bt-action", "learned"]),
    "learned-learned": ("recall, all learned", ["--bt-state", "learned", "--bt-action", "learned"]),
    "true-random": ("recall, true state + random action (App. F)", ["--bt-state", "true", "--bt-action", "random"]),
    # App. H: the ratio of actor-critic updates to imitation updates, with the true state + learned action model
    "ratio-2:1": ("recall, 2 AC updates : 1 recall update", ["--bt-state", "true", "--env-updates-per-recall", "2"]),
    "ratio-4:1": ("recall, 4 AC updates : 1 recall update", ["--bt-state", "true", "--env-updates-per-recall", "4"]),
    "ratio-1:2": ("recall, 1 AC update : 2 recall updates", ["--bt-state", "true", "--recall-updates", "2"]),
    "ratio-1:4": ("recall, 1 AC update : 4 recall updates", ["--bt-state", "true", "--recall-updates", "4"]),
    "ratio-1:4-len5": (
        "recall, 1 AC update : 4 recall updates, traces of 5",
        ["--bt-state", "true", "--recall-updates", "4", "--trace-len", "5"],
    ),
}
MAIN_SETTINGS = ["ac", "true-learned", "learned-learned", "true-random"]
BUDGETS = {11: 200_000, 15: 300_000, 19: 500_000}  # env steps, the same for every setting of a size


@dataclass
class Args:
    sizes: list[int] = field(default_factory=lambda: [11, 15, 19])
    """grid sizes to run"""
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    """seeds to run for each size and setting"""
    settings: list[str] = field(default_factory=lambda: list(MAIN_SETTINGS))
    """settings to run, by short name (see SETTINGS; the ratio-* ones are the App. H study)"""
    workers: int = 2
    """runs at a time (one per CPU core)"""
    threshold: float = 0.9
    """success rate over the last 100 episodes that counts as solved"""
    total_timesteps: int | None = None
    """env steps of every run; by default the README's budget of each size (11: 200k, 15: 300k, 19: 500k)"""
    out_dir: str = "benchmark/out/fourroom"
    """where the runs and results.md go (emptied first)"""


def run(size, name, seed, budget, out_dir):
    cwd = out_dir / f"size{size}" / name / f"seed{seed}"
    cwd.mkdir(parents=True)
    flags = ["--size", str(size), "--seed", str(seed), "--total-timesteps", str(budget), *SETTINGS[name][1]]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(SCRIPT), *flags], cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{flags} failed:\n{result.stderr}")
    return cwd


def read(cwd, threshold, budget):
    (run_dir,) = (cwd / "runs").iterdir()
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0}).Reload()
    episode_ends = np.array([e.step for e in events.Scalars("charts/episodic_return")])
    # the window must hold 100 episodes: one lucky first episode is not a success rate of 1
    solved = [
        e.step for e in events.Scalars("charts/success_rate") if e.value >= threshold and (episode_ends <= e.step).sum() >= 100
    ]
    return (solved[0] if solved else budget), bool(solved), events.Scalars("charts/SPS")[-1].value


if __name__ == "__main__":
    args = tyro.cli(Args)
    out_dir = Path(args.out_dir)
    shutil.rmtree(out_dir, ignore_errors=True)
    budgets = {size: args.total_timesteps or BUDGETS[size] for size in args.sizes}
    if unknown := set(args.settings) - set(SETTINGS):
        sys.exit(f"error: unknown settings {sorted(unknown)}; choose from {list(SETTINGS)}")
    jobs = [(size, name, seed) for size in args.sizes for name in args.settings for seed in args.seeds]
    with ThreadPoolExecutor(args.workers) as pool:
        cwds = list(pool.map(lambda job: run(*job, budgets[job[0]], out_dir), jobs))
    results = {job: read(cwd, args.threshold, budgets[job[0]]) for job, cwd in zip(jobs, cwds, strict=True)}

    lines = [
        f"| size | budget | setting | seeds solved | median steps to {args.threshold} | min - max | median SPS |",
        "|-|-|-|-|-|-|-|",
    ]
    for size in args.sizes:
        for name in args.settings:
            steps, solved, sps = (np.array(x) for x in zip(*(results[(size, name, s)] for s in args.seeds), strict=True))
            lines.append(
                f"| {size} | {budgets[size]:,} | {SETTINGS[name][0]} | {solved.sum()}/{len(solved)} "
                f"| {int(np.median(steps)):,} | {steps.min():,} - {steps.max():,} | {int(np.median(sps)):,} |"
            )
    table = "\n".join(lines)
    print(table)
    (out_dir / "results.md").write_text(table + "\n")
