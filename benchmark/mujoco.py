"""Rerun the MuJoCo benchmarks of the README: SAC (paper 6.5, Fig. 7) or TRPO (6.4, Fig. 6), each with and
without recall traces.

    python benchmark/mujoco.py --algo sac      # Hopper, Walker2d, Ant; seeds 1-3; 100k steps
    python benchmark/mujoco.py --algo trpo     # Hopper, HalfCheetah; seeds 1-3; 300k steps
    python benchmark/mujoco.py --algo sac --env-ids Hopper-v4 --out-dir benchmark/out/sac_hopper

Runs the algorithm's script once per (env, setting, seed), `workers` at a time with one torch thread each,
then reads each run's TensorBoard log: the final return (mean of the last 10 training episodes), the
deterministic evaluation's return (eval/episodic_return, 10 episodes) and the final charts/SPS.
Prints a Markdown table and writes it to `<out_dir>/results.md`.
"""

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import tyro
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = Path(__file__).resolve().parents[1]
ALGOS = {  # script, default envs, default steps, {setting: (what the table calls it, flags)}
    "sac": (
        "sac_recall_mujoco.py",
        ["Hopper-v4", "Walker2d-v4", "Ant-v4"],
        100_000,
        {
            "base": ("SAC (`--no-recall`)", ["--no-recall"]),
            "recall": ("SAC + recall traces", ["--recall"]),
            "random": ("SAC + recall, random backtracking model (App. F)", ["--recall", "--bt-model", "random"]),
        },
    ),
    "trpo": (
        "trpo_recall_mujoco.py",
        ["Hopper-v4", "HalfCheetah-v4"],
        300_000,
        {
            "base": ("TRPO (`--no-recall`)", ["--no-recall"]),
            "recall": ("TRPO + recall traces", ["--recall"]),
            "random": ("TRPO + recall, random backtracking model (App. F)", ["--recall", "--bt-model", "random"]),
        },
    ),
}


@dataclass
class Args:
    algo: Literal["sac", "trpo"] = "sac"
    """which script to benchmark"""
    env_ids: list[str] | None = None
    """environments to run (default: the algorithm's, see ALGOS)"""
    seeds: tuple[int, ...] = (1, 2, 3)
    """seeds to run for each environment and setting"""
    settings: tuple[str, ...] = ("base", "recall")
    """settings to run, by short name (see ALGOS)"""
    total_timesteps: int | None = None
    """env steps of every run (default: the algorithm's)"""
    workers: int = 2
    """runs at a time (one per CPU core)"""
    cuda: bool = False
    """if toggled, pass --cuda to every run"""
    out_dir: str | None = None
    """where the runs and results.md go, emptied first (default: benchmark/out/<algo>)"""


def run(script, flags, cwd, cuda):
    cwd.mkdir(parents=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(ROOT / script), *flags, *(["--cuda"] if cuda else [])]
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{flags} failed:\n{result.stderr}")
    (run_dir,) = (cwd / "runs").iterdir()
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0}).Reload()
    final = np.mean([e.value for e in events.Scalars("charts/episodic_return")[-10:]])
    return final, events.Scalars("eval/episodic_return")[-1].value, events.Scalars("charts/SPS")[-1].value


if __name__ == "__main__":
    args = tyro.cli(Args)
    script, default_envs, default_steps, settings = ALGOS[args.algo]
    if unknown := set(args.settings) - set(settings):
        sys.exit(f"error: unknown settings {sorted(unknown)} for {args.algo}; choose from {list(settings)}")
    env_ids, steps = args.env_ids or default_envs, args.total_timesteps or default_steps
    out_dir = Path(args.out_dir or f"benchmark/out/{args.algo}")
    shutil.rmtree(out_dir, ignore_errors=True)
    jobs = [(env_id, name, seed) for env_id in env_ids for name in args.settings for seed in args.seeds]

    def job(env_id, name, seed):
        flags = ["--env-id", env_id, "--seed", str(seed), "--total-timesteps", str(steps), *settings[name][1]]
        return run(script, flags, out_dir / env_id / name / f"seed{seed}", args.cuda)

    with ThreadPoolExecutor(args.workers) as pool:
        results = dict(zip(jobs, pool.map(lambda j: job(*j), jobs), strict=True))

    lines = [
        "| env | steps | setting | seeds | final return: median (min - max) | eval return: median (min - max) | median SPS |",
        "|-|-|-|-|-|-|-|",
    ]
    for env_id in env_ids:
        for name in args.settings:
            final, evals, sps = (np.array(x) for x in zip(*(results[(env_id, name, s)] for s in args.seeds), strict=True))
            lines.append(
                f"| {env_id} | {steps:,} | {settings[name][0]} | {len(args.seeds)} "
                f"| {np.median(final):.0f} ({final.min():.0f} - {final.max():.0f}) "
                f"| {np.median(evals):.0f} ({evals.min():.0f} - {evals.max():.0f}) | {int(np.median(sps))} |"
            )
    table = "\n".join(lines)
    print(table)
    (out_dir / "results.md").write_text(table + "\n")
