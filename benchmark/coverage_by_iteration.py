"""Coverage by Goal GAN iteration, the paper's x axis for the U-Maze (Fig. 5, 11-13), from an experiment's result
files: the mean, smallest and largest over the seeds that reached each iteration.

    python benchmark/coverage_by_iteration.py fig11_goalgan_point --setting goalgan --iterations 0 5 10 30 60
"""

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro

sys.path.insert(0, str(Path(__file__).resolve().parent))
from result_file import read  # noqa: E402


@dataclass
class Args:
    experiment: tyro.conf.Positional[str]
    """a Goal GAN experiment's folder under --results-dir"""
    setting: str = "goalgan"
    """whose runs"""
    iterations: tuple[int, ...] = (0, 5, 10, 15, 20, 25, 30, 60)
    """Goal GAN iterations to report"""
    results_dir: Path = Path("results")
    """where the result files are"""


if __name__ == "__main__":
    args = tyro.cli(Args)
    paths = sorted((args.results_dir / args.experiment).glob(f"*__{args.setting}__*.csv.gz"))
    if not paths:
        sys.exit(f"error: no result files of {args.setting!r} in {args.results_dir / args.experiment}")
    runs = []
    for path in paths:
        series = read(path)[1]
        iteration, coverage = (dict(zip(*series[tag], strict=True)) for tag in ("charts/iteration", "charts/coverage"))
        runs.append({int(iteration[step]): coverage[step] for step in iteration if step in coverage})  # logged together
    print(f"{args.experiment}, {args.setting}: coverage by Goal GAN iteration over {len(runs)} seeds\n")
    print("| iteration | seeds | mean | smallest | largest |\n|-|-|-|-|-|")
    for k in args.iterations:
        values = [run[k] for run in runs if k in run]
        if values:
            print(f"| {k} | {len(values)} | {np.mean(values):.2f} | {min(values):.2f} | {max(values):.2f} |")
        else:
            print(f"| {k} | 0 | | | |")
