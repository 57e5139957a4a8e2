"""Rerun the four-room benchmarks of the README: actor-critic with and without recall traces, and with PER.

    python benchmark/fourroom.py                      # the README's table: sizes 11, 15, 19, seeds 1-5 (6.1, App. F)
    python benchmark/fourroom.py --sizes 11 15 --settings ac per true-learned learned-learned \
        --out-dir benchmark/out/fourroom_per        # recall traces against PER (6.2)
    python benchmark/fourroom.py --sizes 15 --settings true-learned ratio-2:1 ratio-4:1 ratio-1:2 ratio-1:4 ratio-1:4-len5 \
        --out-dir benchmark/out/fourroom_ratio      # App. H

Runs ac_recall_fourroom.py or per_fourroom.py once per (size, setting, seed), `workers` at a time with one
torch thread each, then reads each run's TensorBoard log: the first global_step where charts/success_rate
(last 100 episodes) reaches the threshold with at least 100 episodes done (a run that never does counts as
the whole budget), the final charts/SPS, and eval/visitation_coverage, the fraction of free cells the trained
policy visits in its 100 evaluation episodes.
Prints a Markdown table and writes it to `<out_dir>/results.md`, and puts the visitation heatmaps of the
first seed side by side in `<out_dir>/visitation.png` (a row per size, a column per setting: Fig. 3).
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

ROOT = Path(__file__).resolve().parents[1]
AC, PER = "ac_recall_fourroom.py", "per_fourroom.py"
SETTINGS = {  # short name: (what the table calls it, script, flags)
    "ac": ("actor-critic (`--no-recall`)", AC, ["--no-recall"]),
    "true-learned": ("recall, true state + learned action", AC, ["--bt-state", "true", "--bt-model", "learned"]),
    "learned-learned": ("recall, all learned", AC, ["--bt-state", "learned", "--bt-model", "learned"]),
    "true-random": ("recall, true state + random action (App. F)", AC, ["--bt-state", "true", "--bt-model", "random"]),
    # paper 6.2: prioritized experience replay, Table 3's batch size and alpha for the size
    "per": ("actor-critic + PER", PER, []),
    "per-critic": ("actor-critic + PER, critic only", PER, ["--no-per-actor"]),
    # App. H: the ratio of actor-critic updates to imitation updates, with the true state + learned action model
    "ratio-2:1": ("recall, 2 AC updates : 1 recall update", AC, ["--bt-state", "true", "--recall-every", "2"]),
    "ratio-4:1": ("recall, 4 AC updates : 1 recall update", AC, ["--bt-state", "true", "--recall-every", "4"]),
    "ratio-1:2": ("recall, 1 AC update : 2 recall updates", AC, ["--bt-state", "true", "--imitation-updates", "2"]),
    "ratio-1:4": ("recall, 1 AC update : 4 recall updates", AC, ["--bt-state", "true", "--imitation-updates", "4"]),
    "ratio-1:4-len5": (
        "recall, 1 AC update : 4 recall updates, traces of 5",
        AC,
        ["--bt-state", "true", "--imitation-updates", "4", "--trace-len", "5"],
    ),
}
MAIN_SETTINGS = ["ac", "true-learned", "learned-learned", "true-random"]
BUDGETS = {11: 200_000, 13: 250_000, 15: 300_000, 19: 500_000}  # env steps, the same for every setting of a size


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
    """env steps of every run; by default the README's budget of each size (11: 200k, 13: 250k, 15: 300k, 19: 500k)"""
    out_dir: str = "benchmark/out/fourroom"
    """where the runs and results.md go (emptied first)"""


def run(size, name, seed, budget, out_dir):
    cwd = out_dir / f"size{size}" / name / f"seed{seed}"
    cwd.mkdir(parents=True)
    _, script, setting_flags = SETTINGS[name]
    flags = ["--size", str(size), "--seed", str(seed), "--total-timesteps", str(budget), *setting_flags]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(ROOT / script), *flags], cwd=cwd, env=env, capture_output=True, text=True)
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
    coverage = events.Scalars("eval/visitation_coverage")[-1].value
    return (solved[0] if solved else budget), bool(solved), events.Scalars("charts/SPS")[-1].value, coverage


def side_by_side(rows, labels, pad=8, header=14):
    """One picture from rows of RGB arrays on white, each panel at the top left of its cell under its label."""
    from PIL import Image, ImageDraw  # installed with gymnasium[mujoco] and tensorboard

    height = max(p.shape[0] for row in rows for p in row) + pad + header
    width = max(p.shape[1] for row in rows for p in row) + pad
    canvas = np.full((pad + height * len(rows), pad + width * len(rows[0]), 3), 255, dtype=np.uint8)
    for r, row in enumerate(rows):
        for c, panel in enumerate(row):
            canvas[pad + header + r * height :][: panel.shape[0], pad + c * width :][:, : panel.shape[1]] = panel
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    for r, row in enumerate(labels):
        for c, label in enumerate(row):
            draw.text((pad + c * width, pad + r * height), label, fill=(0, 0, 0))
    return image


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
        f"| size | budget | setting | seeds solved | median steps to {args.threshold} | min - max | median SPS "
        "| median coverage (min - max) |",
        "|-|-|-|-|-|-|-|-|",
    ]
    for size in args.sizes:
        for name in args.settings:
            steps, solved, sps, cov = (np.array(x) for x in zip(*(results[(size, name, s)] for s in args.seeds), strict=True))
            lines.append(
                f"| {size} | {budgets[size]:,} | {SETTINGS[name][0]} | {solved.sum()}/{len(solved)} "
                f"| {int(np.median(steps)):,} | {steps.min():,} - {steps.max():,} | {int(np.median(sps)):,} "
                f"| {np.median(cov):.2f} ({cov.min():.2f} - {cov.max():.2f}) |"
            )
    table = "\n".join(lines)
    print(table)
    (out_dir / "results.md").write_text(table + "\n")

    from PIL import Image

    first = [[cwds[jobs.index((size, name, args.seeds[0]))] for name in args.settings] for size in args.sizes]
    rows = [[np.array(Image.open(next((cwd / "runs").glob("*/visitation.png")))) for cwd in row] for row in first]
    labels = [[f"{size}x{size} {name}" for name in args.settings] for size in args.sizes]
    side_by_side(rows, labels).save(out_dir / "visitation.png")
