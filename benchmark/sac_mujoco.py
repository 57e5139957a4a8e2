"""Rerun the SAC benchmark of the README: SAC with and without recall traces on MuJoCo (paper 6.5, Fig. 7).

    python benchmark/sac_mujoco.py                                  # Hopper, Walker2d, Ant; seeds 1-3; 100k steps
    python benchmark/sac_mujoco.py --env-ids Hopper-v4 --total-timesteps 100000 --out-dir benchmark/out/sac_hopper

Runs sac_recall_mujoco.py once per (env, setting, seed), `workers` at a time with one torch thread each, then
reads each run's TensorBoard log: the final return (mean of the last 10 training episodes), the deterministic
evaluation's return (eval/episodic_return, 10 episodes) and the final charts/SPS.
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

SCRIPT = Path(__file__).resolve().parents[1] / "sac_recall_mujoco.py"
SETTINGS = {  # short name: (what the table calls it, flags)
    "sac": ("SAC (`--no-recall`)", ["--no-recall"]),
    "recall": ("SAC + recall traces", ["--recall"]),
    "random": ("SAC + recall, random backtracking model (App. F)", ["--recall", "--bt-model", "random"]),
}


@dataclass
class Args:
    env_ids: list[str] = field(default_factory=lambda: ["Hopper-v4", "Walker2d-v4", "Ant-v4"])
    """environments to run"""
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    """seeds to run for each environment and setting"""
    settings: list[str] = field(default_factory=lambda: ["sac", "recall"])
    """settings to run, by short name (see SETTINGS)"""
    total_timesteps: int = 100_000
    """env steps of every run"""
    workers: int = 2
    """runs at a time (one per CPU core)"""
    cuda: bool = False
    """if toggled, pass --cuda to every run"""
    out_dir: str = "benchmark/out/sac"
    """where the runs and results.md go (emptied first)"""


def run(env_id, name, seed, args, out_dir):
    cwd = out_dir / env_id / name / f"seed{seed}"
    cwd.mkdir(parents=True)
    flags = ["--env-id", env_id, "--seed", str(seed), "--total-timesteps", str(args.total_timesteps), *SETTINGS[name][1]]
    flags += ["--cuda"] if args.cuda else []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(SCRIPT), *flags], cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{flags} failed:\n{result.stderr}")
    return cwd


def read(cwd):
    (run_dir,) = (cwd / "runs").iterdir()
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0}).Reload()
    final = np.mean([e.value for e in events.Scalars("charts/episodic_return")[-10:]])
    return final, events.Scalars("eval/episodic_return")[-1].value, events.Scalars("charts/SPS")[-1].value


if __name__ == "__main__":
    args = tyro.cli(Args)
    if unknown := set(args.settings) - set(SETTINGS):
        sys.exit(f"error: unknown settings {sorted(unknown)}; choose from {list(SETTINGS)}")
    out_dir = Path(args.out_dir)
    shutil.rmtree(out_dir, ignore_errors=True)
    jobs = [(env_id, name, seed) for env_id in args.env_ids for name in args.settings for seed in args.seeds]
    with ThreadPoolExecutor(args.workers) as pool:
        cwds = list(pool.map(lambda job: run(*job, args, out_dir), jobs))
    results = {job: read(cwd) for job, cwd in zip(jobs, cwds, strict=True)}

    lines = [
        "| env | steps | setting | seeds | final return: median (min - max) | eval return: median (min - max) | median SPS |",
        "|-|-|-|-|-|-|-|",
    ]
    for env_id in args.env_ids:
        for name in args.settings:
            final, evals, sps = (np.array(x) for x in zip(*(results[(env_id, name, s)] for s in args.seeds), strict=True))
            lines.append(
                f"| {env_id} | {args.total_timesteps:,} | {SETTINGS[name][0]} | {len(args.seeds)} "
                f"| {np.median(final):.0f} ({final.min():.0f} - {final.max():.0f}) "
                f"| {np.median(evals):.0f} ({evals.min():.0f} - {evals.max():.0f}) | {int(np.median(sps))} |"
            )
    table = "\n".join(lines)
    print(table)
    (out_dir / "results.md").write_text(table + "\n")
