"""Learning curves and tables of one experiment, from its result files alone.

    python benchmark/plot.py fig7_sac                         # results/fig7_sac -> figures/fig7_sac.{png,md}
    python benchmark/plot.py fig2_fourroom --out-dir docs/figures   # the committed figure and table

The figure has one panel per env id: the experiment's metric against env steps, the mean over seeds of each
setting with a 95% bootstrap band. The table gives, per env id and setting, the final metric and its area under
the curve (the mean of the curve over the env steps all runs share) with 95% bootstrap intervals, the env steps to
the experiment's threshold where it has one, and the probability that a run of the setting beats a run of the
baseline, P(X > Y) over all pairs of seeds, with its 95% bootstrap interval (resampling both sets of seeds).
Intervals come from scipy.stats.bootstrap (percentile method, 2000 resamples, fixed random state).
"""

import os
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from experiments import EXPERIMENTS  # noqa: E402
from result_file import read  # noqa: E402

GRID_POINTS = 100
METRIC_LABELS = {
    "eval/episodic_return": "eval return (mean-action policy)",
    "charts/success_rate": "success rate (last 100 episodes)",
    "charts/coverage": "coverage (share of goals reached)",
}
"""the y-axis label of each metric"""


@dataclass
class Args:
    experiment: tyro.conf.Positional[str]
    """the experiment's name (see benchmark/experiments.py)"""
    results_dir: Path = Path("results")
    """where run.py wrote the result files"""
    out_dir: Path = Path("figures")
    """where the figure (<experiment>.png) and the table (<experiment>.md) go (the committed ones: docs/figures)"""


def load(results_dir, experiment):
    """{env_id: {setting: [(identity, series), ...]}} of every result file of the experiment, by seed."""
    runs = defaultdict(lambda: defaultdict(list))
    for path in sorted((results_dir / experiment).glob("*.csv.gz")):
        identity, series = read(path)
        runs[identity["env_id"]][identity["setting"]].append((identity, series))
    for settings in runs.values():
        for setting in settings:
            settings[setting].sort(key=lambda run: run[0]["seed"])
    return runs


def bootstrap_ci(statistic, *samples):
    """The 95% percentile-bootstrap interval of statistic(*samples); (nan, nan) with fewer than 2 values a sample."""
    if min(len(s) for s in samples) < 2:
        return np.nan, np.nan
    if all(np.ptp(s) == 0 for s in samples):  # no spread: the interval is the value itself
        value = statistic(*samples)
        return value, value
    res = stats.bootstrap(
        samples, statistic, paired=False, vectorized=False, confidence_level=0.95, n_resamples=2000,
        method="percentile", random_state=0,
    )  # fmt: skip
    return res.confidence_interval.low, res.confidence_interval.high


def prob_greater(x, y):
    """P(X > Y) over all pairs, ties counting one half."""
    x, y = np.asarray(x)[:, None], np.asarray(y)[None, :]
    return float(np.mean(x > y) + 0.5 * np.mean(x == y))


def curves(runs, metric):
    """The shared grid of env steps and each run's metric on it (linear interpolation), shape (runs, grid)."""
    first = max(series[metric][0][0] for _, series in runs)
    last = min(series[metric][0][-1] for _, series in runs)
    grid = np.linspace(first, last, GRID_POINTS) if last > first else np.array([last])
    return grid, np.stack([np.interp(grid, *series[metric]) for _, series in runs])


def final_values(exp, runs):
    """Each run's final metric: the last value of the experiment's metric (the summary's, from the full series), or
    the mean of its last exp.final_evals values in the result file (evals are few enough never to be downsampled)."""
    if exp.final_evals == 1:
        return np.array([identity["summary"]["final"] for identity, _ in runs])
    return np.array([series[exp.metric][1][-exp.final_evals :].mean() for _, series in runs])


def final_name(exp):
    return f"final {exp.metric}" + (f" (mean of the last {exp.final_evals})" if exp.final_evals > 1 else "")


def areas(runs, grid, metric):
    """Each run's area under the curve: the mean of its metric over the grid of env steps."""
    return np.array([np.mean(np.interp(grid, *series[metric])) for _, series in runs])


def fmt(value, low=np.nan, high=np.nan, digits=None):
    """A mean and its interval; `digits` defaults to 2 below 10 (a probability), else whole numbers (a return)."""
    if value is None or not np.isfinite(value):
        return "-"
    digits = (2 if abs(value) < 10 else 0) if digits is None else digits
    interval = f" [{low:,.{digits}f}, {high:,.{digits}f}]" if np.isfinite(low) else ""
    return f"{value:,.{digits}f}{interval}"


def table(exp, runs_by_env):
    metric = exp.metric
    head = ["env", "setting", "seeds", final_name(exp), "AUC", f"P(final > {exp.baseline})", "P(AUC > baseline)"]
    if exp.threshold is not None:
        head += [f"steps to {exp.threshold}: median (solved)", "P(fewer steps than baseline)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "-|" * len(head)]
    for env_id, settings in runs_by_env.items():
        grid, _ = curves([run for runs in settings.values() for run in runs], metric)
        per_setting = {}
        for setting, runs in settings.items():
            finals = final_values(exp, runs)
            aucs = areas(runs, grid, metric)
            # a run that never reaches the threshold counts as its whole budget
            steps = [identity["summary"].get("steps_to_threshold") or identity["total_timesteps"] for identity, _ in runs]
            solved = sum(identity["summary"].get("steps_to_threshold") is not None for identity, _ in runs)
            per_setting[setting] = (finals, aucs, -np.array(steps, dtype=float), solved)
        base = per_setting.get(exp.baseline)
        for setting in [s for s in exp.settings if s in settings]:
            finals, aucs, minus_steps, solved = per_setting[setting]
            row = [env_id, exp.settings[setting].label, str(len(finals))]
            row += [fmt(finals.mean(), *bootstrap_ci(np.mean, finals)), fmt(aucs.mean(), *bootstrap_ci(np.mean, aucs))]
            versus = [] if base is None or setting == exp.baseline else [(finals, base[0]), (aucs, base[1])]
            row += [fmt(prob_greater(x, y), *bootstrap_ci(prob_greater, x, y)) for x, y in versus] or ["", ""]
            if exp.threshold is not None:
                row += [f"{np.median(-minus_steps):,.0f} ({solved}/{len(finals)})"]
                row += (
                    [fmt(prob_greater(minus_steps, base[2]), *bootstrap_ci(prob_greater, minus_steps, base[2]))]
                    if versus
                    else [""]
                )
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def fmt_small(value, low, high):
    """Two significant digits (a KL of 0.002 is not 0.00), the interval when there is one."""
    return f"{value:.2g}" + (f" [{low:.2g}, {high:.2g}]" if np.isfinite(low) else "")


# whether recall acts: the share of trace states the trace guard moved, how far the imitation (or imagined) step
# moved the policy (its KL; with TRPO, over TRPO's own step's KL), whether it pulled with the RL step or against it
# (the cosine of the two updates; with TRPO, the share of TRPO's surrogate gain it took back), and what a return is
# made of (the forward velocity of the evaluated policy: walking, or standing still)
DIAGNOSTICS = ("recall/trace_clamped_frac", "recall/imitation_kl", "recall/imitation_kl_ratio", "recall/imagined_kl_ratio")
DIAGNOSTICS += ("recall/step_cosine", "recall/surrogate_undone", "recall/entropy_change", "losses/entropy")
DIAGNOSTICS += ("eval/forward_velocity",)


def diagnostics(exp, runs_by_env):
    """Each recall diagnostic the runs logged: its mean over the second half of a run, then over the seeds."""
    runs = [(env_id, setting, rs) for env_id, settings in runs_by_env.items() for setting, rs in settings.items()]
    tags = [t for t in DIAGNOSTICS if any(t in series for _, _, rs in runs for _, series in rs)]
    if not tags:
        return ""
    lines = ["| env | setting | " + " | ".join(f"`{t}`" for t in tags) + " |", "|" + "-|" * (len(tags) + 2)]
    for env_id, setting, rs in runs:
        if not any(t in series for t in tags for _, series in rs):
            continue
        cells = []
        for tag in tags:
            steps_values = [series[tag] for _, series in rs if tag in series]
            halves = np.array([v[s > s[-1] / 2].mean() for s, v in steps_values])
            cells.append(fmt_small(halves.mean(), *bootstrap_ci(np.mean, halves)) if len(halves) else "-")
        lines.append(f"| {env_id} | {exp.settings[setting].label} | " + " | ".join(cells) + " |")
    intro = "\nRecall diagnostics, each run's mean over its second half, then the mean over seeds [95% CI]:\n\n"
    return intro + "\n".join(lines) + "\n"


def figure(exp, runs_by_env, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    env_ids = list(runs_by_env)
    ncol = min(2, len(env_ids))  # the shared legend under the panels: settings a row
    legend_rows = -(-len(exp.settings) // ncol)
    height = 3.6 + 0.25 * legend_rows
    fig, axes = plt.subplots(1, len(env_ids), figsize=(max(4.5 * len(env_ids), 6.5), height), squeeze=False)
    for ax, env_id in zip(axes[0], env_ids, strict=True):
        settings = runs_by_env[env_id]
        for setting in [s for s in exp.settings if s in settings]:
            grid, values = curves(settings[setting], exp.metric)
            mean = values.mean(0)
            seeds = f"{len(values)} seed" + ("s" if len(values) > 1 else "")
            label = f"{exp.settings[setting].label.replace('`', '')} ({seeds})"
            (line,) = ax.plot(grid, mean, label=label if ax is axes[0][0] else None)
            if len(values) >= 2:
                ci = stats.bootstrap((values,), np.mean, axis=0, n_resamples=2000, method="percentile", random_state=0)
                low, high = ci.confidence_interval
                ax.fill_between(grid, np.where(np.isfinite(low), low, mean), np.where(np.isfinite(high), high, mean),
                                color=line.get_color(), alpha=0.2)  # fmt: skip
        ax.set_title(env_id if exp.env_flag == "--env-id" else f"{env_id}x{env_id}")
        ax.set_xlabel("env steps")
        ax.xaxis.set_major_formatter(matplotlib.ticker.EngFormatter(sep=""))  # 100k, 1M
        ax.set_ylabel(METRIC_LABELS.get(exp.metric, exp.metric))
        ax.grid(alpha=0.3)
    fig.legend(loc="lower center", ncol=ncol, fontsize=8, frameon=False, bbox_to_anchor=(0.5, 0.03))
    fig.text(0.01, 0.01, "line: mean over seeds; band: 95% bootstrap interval of the mean", fontsize=7, color="gray")
    fig.tight_layout(rect=(0, 0.25 * legend_rows / height + 0.06, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def make(experiment, results_dir, out_dir):
    """Write out_dir/<experiment>.md and .png from the experiment's result files; the markdown, or None without any."""
    exp = EXPERIMENTS[experiment]
    runs_by_env = load(results_dir, experiment)
    if not runs_by_env:
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    md = f"# {experiment}\n\n![{experiment}]({experiment}.png)\n\n" + table(exp, runs_by_env) + diagnostics(exp, runs_by_env)
    (out_dir / f"{experiment}.md").write_text(md)
    figure(exp, runs_by_env, out_dir / f"{experiment}.png")
    return md


if __name__ == "__main__":
    args = tyro.cli(Args)
    if args.experiment not in EXPERIMENTS:
        sys.exit(f"error: unknown experiment {args.experiment!r}; choose from {', '.join(EXPERIMENTS)}")
    try:  # before any work: a file in the way of the folder, or no permission, is one line
        args.out_dir.mkdir(parents=True, exist_ok=True)
        if not os.access(args.out_dir, os.W_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as e:
        sys.exit(f"error: cannot write to --out-dir {args.out_dir}: {e.strerror}")
    if (md := make(args.experiment, args.results_dir, args.out_dir)) is None:
        sys.exit(f"error: no result files in {args.results_dir / args.experiment}; run benchmark/run.py {args.experiment}")
    print(md)
    print(f"wrote {args.out_dir / args.experiment}.png and {args.out_dir / args.experiment}.md")
