"""The reproduction report, docs/reproduction.md, generated from the committed result files alone.

    python benchmark/report.py                     # results/ -> docs/reproduction.md and docs/figures/reproduction.png

One row per claim of the paper and env id, with up to two verdicts: the claim's setting against its comparison (the
base algorithm, most often), and, where the experiment runs App. F's control, against the same recall phase with an
untrained backtracking model. Each gives the effect (difference of the mean final metric, or of the mean env steps
to a threshold, signed so that positive is the paper's direction) relative to the other side's mean, with its 95%
bootstrap interval, and a verdict from that interval:
- reproduced: the whole interval is above 0 (the setting does better);
- not reproduced: the whole interval is below +10% (an improvement of 10% or more is ruled out, whichever the sign);
- inconclusive at n seeds: anything else (too few seeds to tell), and any row with fewer than MIN_SEEDS seeds a side,
  whatever its interval: a percentile bootstrap of 2 seeds has 3 possible means a side and an interval far too narrow.
A run that never reaches a threshold counts as its whole budget (so differences of steps are censored: they can
only understate a gap that ends beyond the budget). The tuning experiments' rule (TUNED) is read here too.
"""

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro

sys.path.insert(0, str(Path(__file__).resolve().parent))
from experiments import EXPERIMENTS, SAC_FINAL_EVALS  # noqa: E402
from plot import areas, bootstrap_ci, curves, final_values, fmt, load, make, prob_greater  # noqa: E402

TEMPLATE = Path(__file__).resolve().parent / "reproduction_template.md"
"""the report's prose; the tool fills in its {{PLACEHOLDERS}} (see the end of this file)"""
MARGIN = 0.10
"""the smallest relative improvement a claim is about: an interval entirely below it says 'not reproduced'"""
MIN_SEEDS = 3
"""fewer seeds a side than this and a row is inconclusive whatever its interval (the ablations run 3)"""


@dataclass(frozen=True)
class Claim:
    text: str
    """the paper's claim in a few words"""
    paper: str
    """where the paper makes it"""
    experiment: str
    setting: str
    """the setting the claim is about"""
    versus: str | None = None
    """the setting it is compared with (default: the experiment's baseline)"""
    control: str | None = None
    """App. F's control: the same recall phase with an untrained backtracking model, a setting of the experiment"""
    env_ids: tuple[str, ...] | None = None
    """the env ids of the claim (default: the experiment's)"""
    threshold: float | None = None
    """compare the env steps to this value of the metric instead of the final metric (None with an experiment that
    has a threshold: the experiment's, as run.py summarised it)"""
    no_gain: bool = False
    """the paper claims the setting does NOT do better: reproduced when a gain of MARGIN is ruled out"""
    metric: str | None = None
    """compare the last value of this scalar instead of the experiment's metric"""
    differs: str = ""
    """how our setting differs from the paper's, in a few words"""


FOURROOM_DIFFERS = "solved = a success rate over the last 100 episodes of 0.9 or more (the paper plots the reward)"
SAC_DIFFERS = f"gymnasium v4; 100k env steps; final = the mean of the last {SAC_FINAL_EVALS} evals, 5k env steps apart"
TRPO_DIFFERS = "gymnasium v4; our TRPO, not rllab's; final = mean-action eval over 10 episodes"
GOALGAN_DIFFERS = "our U-Maze (docs); env steps, not Goal GAN iterations"
CLAIMS = (
    Claim("Recall with the true backward state model solves the grid in fewer steps, more so in larger grids",
          "6.1, Fig. 2, 9; App. F, Fig. 14", "fig2_fourroom", "true-learned", control="true-random",
          differs=FOURROOM_DIFFERS),
    Claim("Recall with a learned state and action model solves the grid in fewer steps",
          "6 (bullets), not plotted for the grid", "fig2_fourroom", "learned", control="random",
          differs=FOURROOM_DIFFERS),
    Claim("Recall solves the grid in fewer steps than PER, the gap growing with the size",
          "6.2, Fig. 4, 10", "fig4_per", "true-learned", versus="per", env_ids=("13", "15"),
          differs="PER on the same actor-critic, App. E.3's batch sizes and alpha, beta"),
    Claim("Recall's policy visits more of the grid than PER's", "6.2, Fig. 3, 10", "fig4_per", "true-learned",
          versus="per", env_ids=("13", "15"), metric="eval/visitation_coverage",
          differs="the share of free cells the trained policy visits in 100 episodes (the paper: heatmaps)"),
    Claim("One actor-critic update per recall phase beats 2", "App. H, Fig. 17", "fig17_fourroom_ratio",
          "true-learned", versus="ratio-2:1", differs="15x15 only (the paper: 14x14 and 15x15)"),
    Claim("... and beats 4", "App. H, Fig. 17", "fig17_fourroom_ratio", "true-learned", versus="ratio-4:1",
          differs="as above"),
    Claim("Goal GAN reaches 60% coverage of the point-mass U-Maze in fewer steps with recall",
          "6.3, App. D Fig. 11, 13", "fig11_goalgan_point", "recall", control="random", differs=GOALGAN_DIFFERS),
    Claim("... and 90% coverage", "App. D Fig. 11", "fig11_goalgan_point", "recall", control="random",
          threshold=0.9, differs="as above"),
    Claim("Goal GAN reaches 60% coverage of the Ant U-Maze in fewer steps with recall", "6.3, Fig. 5, 12",
          "fig5_goalgan_ant", "recall", differs=GOALGAN_DIFFERS),
    Claim("Recall beats TRPO in final performance on every task", "6.4, Fig. 6; App. F", "fig6_trpo", "recall",
          control="random", differs=TRPO_DIFFERS),
    Claim("Not the paper's: on Ant, traces of 5 steps beat TRPO (a lead of the code before the imitation had its "
          "own optimizer)", "ours, from App. B, Fig. 8", "ant_trace_len", "len5", differs=TRPO_DIFFERS),
    Claim("... and beat Table 1's traces of 50", "as above", "ant_trace_len", "len5", versus="recall",
          differs="as above"),
    Claim("Recall improves SAC on every task, most on Ant", "6.5, Fig. 7; App. F, Fig. 15", "fig7_sac", "recall",
          control="random", differs=SAC_DIFFERS + "; the untrained model at Table 2's trace length"),
    Claim("A forward model's imagined rollouts (Dyna) do not beat TRPO", "App. G, Fig. 16", "appg_forward_model",
          "forward", no_gain=True, differs=TRPO_DIFFERS + "; the imagined step is ours (docs/trpo_recall_mujoco.md)"),
    Claim("Recall traces beat the forward model (why backwards)", "App. G (its argument)", "appg_forward_model",
          "recall", versus="forward", differs="as above"),
    Claim("10 imitation steps per 5 SAC updates beat 5", "App. H, Fig. 19", "fig19_sac_ratio", "imit10",
          versus="imit5", differs=SAC_DIFFERS),
    Claim("20 imitation steps per 5 SAC updates beat 5", "App. H, Fig. 19", "fig19_sac_ratio", "imit20",
          versus="imit5", differs=SAC_DIFFERS),
)  # fmt: skip
TUNED = {"tune_fourroom": "1e-3", "tune_trpo": "5e-4", "tune_sac": "3e-4"}
"""each tuning experiment and the --imitation-lr default of its script when its rule was written"""
TUNING_MARGIN = 0.05
"""the rule keeps the default of the time unless the best rate scores more than this above it"""


@dataclass
class Args:
    results_dir: Path = Path("results")
    """where run.py wrote the result files"""
    out: Path = Path("docs/reproduction.md")
    """the report; its figure goes to figures/reproduction.png beside it"""
    readme: Path = Path("README.md")
    """a file whose verdict summary, between the markers `<!-- verdicts:start -->` and `<!-- verdicts:end -->`,
    is replaced (left alone when it has no such markers)"""


def steps_to(series, metric, threshold, budget):
    """Env steps of the first logged value >= threshold, or the budget when none is."""
    steps, values = series[metric]
    reached = np.flatnonzero(values >= threshold)
    return float(steps[reached[0]]) if len(reached) else float(budget)


def outcomes(claim, exp, runs):
    """Each run's outcome, larger is better: the final metric, or minus the env steps to the threshold."""
    if claim.metric is not None:
        return np.array([s[claim.metric][1][-1] for _, s in runs])
    if claim.threshold is not None:
        return np.array([-steps_to(s, exp.metric, claim.threshold, i["total_timesteps"]) for i, s in runs])
    if exp.threshold is not None:
        return np.array([-(i["summary"].get("steps_to_threshold") or i["total_timesteps"]) for i, _ in runs])
    return final_values(exp, runs)


def relative(x, y):
    return (np.mean(x) - np.mean(y)) / abs(np.mean(y))


def verdict(low, high, n, no_gain=False):
    """From the relative effect's interval and n, the fewer seeds of the two sides; for a claim of no gain the two
    conclusive verdicts swap."""
    if not np.isfinite(low) or n < MIN_SEEDS:
        return f"inconclusive at {n} seeds"
    if low > 0:
        return "not reproduced" if no_gain else "reproduced"
    if high < MARGIN:
        return "reproduced" if no_gain else "not reproduced"
    return f"inconclusive at {n} seeds"


def compare(claim, exp, x, y):
    """The claim's setting's runs x against the runs y: seeds a side, and with 2 or more a side the relative effect,
    P(better), each with its interval, and the verdict."""
    out = {"n": (len(x), len(y))}
    if min(out["n"]) < 2:
        return out
    x, y = outcomes(claim, exp, x), outcomes(claim, exp, y)
    out["rel"] = (relative(x, y), *bootstrap_ci(relative, x, y))
    out["p"] = (prob_greater(x, y), *bootstrap_ci(prob_greater, x, y))
    out["verdict"] = verdict(*out["rel"][1:], min(out["n"]), claim.no_gain)
    return out


def rows(results_dir, plotted):
    """One dict a claim and env id: its comparison with the claim's `versus` and, where it has one, with its control."""
    out, cache = [], {}
    for claim in CLAIMS:
        exp = EXPERIMENTS[claim.experiment]
        runs_by_env = cache.setdefault(claim.experiment, load(results_dir, claim.experiment))
        for env_id in claim.env_ids or exp.env_ids:
            runs = runs_by_env.get(env_id, {})
            own = runs.get(claim.setting, [])
            row = {"claim": claim, "env_id": env_id, "exp": exp, "plotted": claim.experiment in plotted}
            row["versus"] = compare(claim, exp, own, runs.get(claim.versus or exp.baseline, []))
            row["control"] = claim.control and compare(claim, exp, own, runs.get(claim.control, []))
            out.append(row)
    return out


def credit(row):
    """Whether a gain over the comparison is the traces' doing: only if the untrained model's recall phase, every
    other step of the method, does not get it too."""
    if row["versus"].get("verdict") != "reproduced" or not row["control"] or "verdict" not in row["control"]:
        return ""
    return {"reproduced": "the gain is the traces'", "not reproduced": "the gain is not the traces' doing"}.get(
        row["control"]["verdict"], "not shown to be the traces'"
    )


def effect_name(claim, exp):
    if claim.metric is not None:
        return f"final {claim.metric}"
    threshold = claim.threshold if claim.threshold is not None else exp.threshold
    if threshold is not None:
        return f"env steps to {exp.metric} >= {threshold}"
    return "final " + exp.metric + (f" (mean of the last {exp.final_evals})" if exp.final_evals > 1 else "")


def env_name(exp, env_id):
    return env_id if exp.env_flag == "--env-id" else f"{env_id}x{env_id}"


def cells(comparison):
    """The relative effect [95% CI] and the verdict of one comparison; 'pending' below 2 seeds a side."""
    if comparison is None:
        return ["", ""]
    if "rel" not in comparison:
        return ["", "pending"]
    value, low, high = (100 * v for v in comparison["rel"])
    interval = f" [{low:+.0f}, {high:+.0f}]" if np.isfinite(low) else ""
    return [f"{value:+.0f}%{interval}", f"**{comparison['verdict']}**"]


def table(rows):
    head = ["claim (paper); runs; ours vs the paper", "env", "seeds", "vs the comparison", "verdict"]
    head += ["vs the untrained model", "verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + "-|" * len(head)]
    for i, r in enumerate(rows):
        claim, exp = r["claim"], r["exp"]
        what = ""
        if i == 0 or rows[i - 1]["claim"] is not claim:
            link = f"[{claim.experiment}](figures/{claim.experiment}.md)" if r["plotted"] else claim.experiment
            versus = f"`{claim.setting}` vs `{claim.versus or exp.baseline}`"
            control = f" (untrained: `{claim.control}`)" if claim.control else ""
            what = f"{claim.text} ({claim.paper}); {link}: {versus}{control}, {effect_name(claim, exp)}; ours: {claim.differs}"
        seeds = "{} vs {}".format(*r["versus"]["n"]) + (" / {}".format(r["control"]["n"][1]) if r["control"] else "")
        control = cells(r["control"] or None)
        if reading := credit(r):
            control[1] += f": {reading}"
        lines.append("| " + " | ".join([what, env_name(exp, r["env_id"]), seeds, *cells(r["versus"]), *control]) + " |")
    return "\n".join(lines) + "\n"


def summary(rows):
    """One line a claim for the README: its runs' command and budget, and on each env id its verdict against the
    comparison (relative effect, seeds a side) and, where run, against the untrained model."""
    head = (
        "| claim | paper | runs | verdict by env: against the comparison (effect, seeds a side); against the untrained model |"
    )
    lines = [head, "|-|-|-|-|"]
    for claim in CLAIMS:
        parts = []
        for r in (r for r in rows if r["claim"] is claim):
            v = r["versus"]
            text = f"{env_name(r['exp'], r['env_id'])}: {v.get('verdict', 'pending')}"
            text += f", {100 * v['rel'][0]:+.0f}% ({v['n'][0]} vs {v['n'][1]})" if "rel" in v else ""
            if r["control"]:
                text += f"; untrained: {r['control'].get('verdict', 'pending')}"
            parts.append(text)
        runs = f"`python benchmark/run.py {claim.experiment}`, {budget_text(EXPERIMENTS[claim.experiment])} env steps"
        lines.append(f"| {claim.text} | {claim.paper} | {runs} | {'; '.join(parts)} |")
    return "\n".join(lines) + "\n"


def replace_between(path, text, start="<!-- verdicts:start -->", end="<!-- verdicts:end -->"):
    """Put text between the two markers of the file, if it has them."""
    if not path.exists() or start not in (old := path.read_text()):
        return False
    head, rest = old.split(start, 1)
    path.write_text(head + start + "\n" + text + end + rest.split(end, 1)[1])
    return True


def figure(rows, path):
    """A forest plot: each measured row's relative effect with its 95% interval, against the comparison (dots) and
    against the untrained model (open squares, just below)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if "rel" in r["versus"] or (r["control"] and "rel" in r["control"])]
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(done) + 1.4))
    colours = {"reproduced": "tab:green", "not reproduced": "tab:red"}
    for i, r in enumerate(done):
        for comparison, offset, marker in ((r["versus"], 0.0, "o"), (r["control"] or {}, 0.3, "s")):
            if "rel" not in comparison:
                continue
            value, low, high = (100 * v for v in comparison["rel"])
            colour = colours.get(comparison["verdict"], "tab:gray")
            xerr = [[value - low], [high - value]] if np.isfinite(low) else None
            face = colour if marker == "o" else "none"
            ax.errorbar(value, i + offset, xerr=xerr, fmt=marker, color=colour, mfc=face)
    labels = []
    for r in done:
        claim = r["claim"]
        labels.append(f"{claim.experiment}: {claim.setting} vs {claim.versus or r['exp'].baseline}, "
                      f"{env_name(r['exp'], r['env_id'])}")  # fmt: skip
    ax.set_yticks(range(len(done)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0, color="black", lw=0.8)
    ax.axvline(100 * MARGIN, color="black", lw=0.8, ls=":")
    ax.set_xlabel("effect / the other side's mean, % (95% CI; > 0: as the paper claims); square: vs the untrained model")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# our plain baselines, to set beside the published numbers of the same algorithm at the same budget
OUR_BASELINES = (
    ("fig7_sac", "sac", None),
    ("fig6_trpo", "trpo", None),
    ("appg_forward_model", "trpo", ("Humanoid-v4",)),  # its Ant runs are fig6's
)
"""(experiment, setting, env ids or None for all of the experiment's) of our plain SAC and TRPO"""


def baselines(results_dir):
    head = [
        "ours",
        "env",
        "seeds",
        "env steps",
        f"final eval, mean-action policy (SAC: the mean of the last {SAC_FINAL_EVALS}) [95% CI]",
        "final training return",
        "final eval, worst and best seed",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "-|" * len(head)]
    for name, setting, env_ids in OUR_BASELINES:
        exp = EXPERIMENTS[name]
        runs_by_env = load(results_dir, name)
        for env_id in env_ids or exp.env_ids:
            runs = runs_by_env.get(env_id, {}).get(setting, [])
            label = f"[{name}](figures/{name}.md) `{setting}`" if runs_by_env else f"{name} `{setting}`"
            if not runs:
                lines.append(f"| {label} | {env_id} | 0 | {exp.steps(env_id):,} | not run yet | | |")
                continue
            final = final_values(exp, runs)
            train = np.array([i["summary"]["final_train_return"] for i, _ in runs])
            cells = [str(len(runs)), f"{exp.steps(env_id):,}", fmt(final.mean(), *bootstrap_ci(np.mean, final))]
            cells += [fmt(train.mean(), *bootstrap_ci(np.mean, train)), f"{final.min():,.0f}, {final.max():,.0f}"]
            lines.append("| " + " | ".join([label, env_id, *cells]) + " |")
    return "\n".join(lines) + "\n"


def tuning(results_dir):
    """Each tuning experiment's rule (docs/reproduction.md, "Settings"): a rate's score is the mean area under its
    recall runs' curves over the base algorithm's on the same env, averaged over the envs (and four-room's two recall
    settings); the best rate becomes the default unless the default of the time scores within TUNING_MARGIN of it."""
    lines = []
    for name, default in TUNED.items():
        exp = EXPERIMENTS[name]
        runs_by_env, ratios, missing = load(results_dir, name), {}, 0
        for env_id in exp.env_ids:
            settings = runs_by_env.get(env_id, {})
            missing += sum(len(exp.seeds) - len(settings.get(s, [])) for s in exp.settings)
            if missing:
                continue
            grid, _ = curves([run for runs in settings.values() for run in runs], exp.metric)
            base = areas(settings[exp.baseline], grid, exp.metric).mean()
            for setting in exp.settings:
                if setting != exp.baseline:
                    rate = setting.rsplit("lr", 1)[1]
                    ratios.setdefault(rate, []).append(areas(settings[setting], grid, exp.metric).mean() / base)
        if missing:
            lines.append(f"- `{name}`: **pending**, {missing} of its {len(exp.settings) * len(exp.seeds) * len(exp.env_ids)} "
                         f"runs to go")  # fmt: skip
            continue
        score = {rate: np.mean(r) for rate, r in ratios.items()}
        best = max(score, key=score.get)
        chosen = default if score[default] >= score[best] - TUNING_MARGIN else best
        scores = ", ".join(f"{rate} {value:.3f}" for rate, value in score.items())
        rates = sorted(map(float, score))
        edge = {rates[0]: ", the smallest rate tried", rates[-1]: ", the largest rate tried"}.get(float(chosen), "")
        below = f"; at it recall's area is {score[chosen]:.2f} of the base algorithm's" if score[chosen] < 1 else ""
        lines.append(f"- `{name}` (seeds {', '.join(map(str, exp.seeds))}; {', '.join(exp.env_ids)}): score by "
                     f"`--imitation-lr` {scores}; the default was {default}, the rule chooses "
                     f"**{chosen}**{edge}{below}")  # fmt: skip
        if exp.threshold is not None:  # beside the rule, not part of it: the measure of the claims it serves
            steps = {}
            for settings in runs_by_env.values():
                for setting, runs in settings.items():
                    rate = setting.rsplit("lr", 1)[1] if setting != exp.baseline else exp.baseline
                    steps.setdefault(rate, []).extend(
                        i["summary"].get("steps_to_threshold") or i["total_timesteps"] for i, _ in runs
                    )
            order = sorted(steps, key=lambda rate: -1 if rate == exp.baseline else float(rate))
            means = ", ".join(f"{rate} {np.mean(steps[rate]):,.0f}" for rate in order)
            lines.append(f"  - not the rule's measure: mean env steps to {exp.metric} >= {exp.threshold} by rate, {means}")
    return "\n".join(lines) + "\n"


def in_progress(results_dir):
    """One line for each run that checkpoints and is under way: its result file to be, and how far its last
    checkpoint got (benchmark/run.py keeps such a run in results/<experiment>/partial/<file name>/)."""
    import torch

    lines = []
    for path in sorted(results_dir.glob("*/partial/*/runs/*/checkpoint.pt")):
        counters = torch.load(path, map_location="cpu", weights_only=False)["counters"]
        name, exp = path.parents[4].name, EXPERIMENTS.get(path.parents[4].name)
        budget = f" of {exp.budget:,}" if exp and isinstance(exp.budget, int) else ""
        lines.append(f"- `{name}` {path.parents[2].name}: Goal GAN iteration {counters['iteration']}, "
                     f"{counters['global_step']:,}{budget} env steps")  # fmt: skip
    return "\n".join(lines) if lines else "- none"


def budget_text(exp):
    return f"{exp.budget:,}" if isinstance(exp.budget, int) else ", ".join(f"{e}: {exp.steps(e):,}" for e in exp.env_ids)


if __name__ == "__main__":
    args = tyro.cli(Args)
    figures = args.out.parent / "figures"
    # every experiment's own figure and table, so that the report's links follow the results
    plotted = {name for name in EXPERIMENTS if make(name, args.results_dir, figures) is not None}
    all_rows = rows(args.results_dir, plotted)
    figure(all_rows, figures / "reproduction.png")
    text = TEMPLATE.read_text().replace("{{TABLE}}", table(all_rows))
    text = text.replace("{{BASELINES}}", baselines(args.results_dir)).replace("{{TUNING}}", tuning(args.results_dir))
    text = text.replace("{{IN_PROGRESS}}", in_progress(args.results_dir))
    args.out.write_text(text)
    replace_between(args.readme, summary(all_rows))
    print(text)
