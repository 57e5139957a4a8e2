"""Rerun the Goal GAN benchmark of the README: Goal GAN with and without recall traces on the point-mass U-Maze
(paper 6.3, App. D Fig. 11 and 13).

    python benchmark/goalgan_umaze.py                      # PointUMaze-v0, seeds 1-3, the script's default budget
    python benchmark/goalgan_umaze.py --seeds 1 2 3 4 5 --total-timesteps 3000000

Runs goalgan_recall_umaze.py once per (setting, seed), `workers` at a time with one torch thread each, then
reads each run's coverage (charts/coverage against charts/iteration and the env steps): the Goal GAN iterations
and env steps each run needs to reach 60% and 90% coverage, the coverage after given iterations, the final
coverage and SPS. Prints Markdown tables and writes them to `<out_dir>/results.md`.
"""

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"base": ("Goal GAN (`--no-recall`)", ["--no-recall"]), "recall": ("Goal GAN + recall traces", ["--recall"])}


@dataclass
class Args:
    env_id: str = "PointUMaze-v0"
    """the U-Maze to run"""
    seeds: tuple[int, ...] = (1, 2, 3)
    """seeds to run for each setting"""
    total_timesteps: int | None = None
    """env steps of every run (default: the script's)"""
    thresholds: tuple[float, ...] = (0.6, 0.9)
    """coverages whose first iteration and env step are reported"""
    at_iterations: tuple[int, ...] = (5, 10, 15, 20)
    """iterations at which the coverage is reported"""
    workers: int = 2
    """runs at a time (one per CPU core)"""
    out_dir: str = "benchmark/out/goalgan"
    """where the runs and results.md go, emptied first"""
    report_only: bool = False
    """if toggled, only read the runs already in out_dir and print their tables"""


def run(flags, cwd, report_only):
    """One run of the script in cwd (unless report_only); returns its coverage curve [(iteration, env step,
    coverage)] and final SPS."""
    if not report_only:
        cwd.mkdir(parents=True)
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        command = [sys.executable, str(ROOT / "goalgan_recall_umaze.py"), *flags]
        result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{flags} failed:\n{result.stderr}")
    (run_dir,) = (cwd / "runs").iterdir()
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0}).Reload()
    curve = [
        (int(i.value), c.step, c.value)
        for i, c in zip(events.Scalars("charts/iteration"), events.Scalars("charts/coverage"), strict=True)
    ]
    return curve, events.Scalars("charts/SPS")[-1].value


def first_reaching(curve, threshold):
    """(iteration, env step) of the first evaluation at or above the threshold, or None."""
    return next(((it, step) for it, step, c in curve if c >= threshold), None)


def summary(values, fmt="{:.0f}", missing_word="not reached"):
    """median (min - max) of the runs; a run without a value (None) counts as infinitely late and is counted."""
    values = np.array([np.inf if v is None else v for v in values], dtype=float)
    missing = int(np.isinf(values).sum())
    if missing == len(values):
        return f"{missing_word} ({missing} of {missing})"
    text = f"{fmt.format(np.median(values))} ({fmt.format(values.min())} - {fmt.format(values.max())})"
    return text.replace("inf", missing_word) + (f"; {missing} {missing_word}" if missing else "")


if __name__ == "__main__":
    args = tyro.cli(Args)
    out_dir = Path(args.out_dir)
    if not args.report_only:
        shutil.rmtree(out_dir, ignore_errors=True)
    budget = ["--total-timesteps", str(args.total_timesteps)] if args.total_timesteps else []
    jobs = [(name, seed) for name in SETTINGS for seed in args.seeds]

    def job(name, seed):
        flags = ["--env-id", args.env_id, "--seed", str(seed), *budget, *SETTINGS[name][1]]
        return run(flags, out_dir / name / f"seed{seed}", args.report_only)

    with ThreadPoolExecutor(args.workers) as pool:
        results = dict(zip(jobs, pool.map(lambda j: job(*j), jobs), strict=True))

    head = [f"iterations to {t:.0%}" for t in args.thresholds] + [f"env steps to {t:.0%}" for t in args.thresholds]
    lines = [
        f"| setting | seeds | {' | '.join(head)} | final coverage | iterations | median SPS |",
        "|-" * (len(head) + 5) + "|",
    ]
    curves = [f"| setting | {' | '.join(f'coverage at iteration {i}' for i in args.at_iterations)} |"]
    curves.append("|-" * (len(args.at_iterations) + 1) + "|")
    for name, (label, _) in SETTINGS.items():
        runs = [results[(name, seed)] for seed in args.seeds]
        reach = [[first_reaching(curve, t) for curve, _ in runs] for t in args.thresholds]
        cells = [summary([r and r[0] for r in rs]) for rs in reach] + [summary([r and r[1] for r in rs]) for rs in reach]
        final = summary([curve[-1][2] for curve, _ in runs], "{:.2f}")
        iterations, sps = summary([curve[-1][0] for curve, _ in runs]), int(np.median([s for _, s in runs]))
        lines.append(f"| {label} | {len(args.seeds)} | {' | '.join(cells)} | {final} | {iterations} | {sps} |")
        at = [
            summary([dict((it, c) for it, _, c in curve).get(i) for curve, _ in runs], "{:.2f}", "not run")
            for i in args.at_iterations
        ]
        curves.append(f"| {label} | {' | '.join(at)} |")
    table = "\n".join(lines) + "\n\n" + "\n".join(curves)
    print(table)
    (out_dir / "results.md").write_text(table + "\n")
