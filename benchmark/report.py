"""The reproduction report, docs/reproduction.md, generated from the committed result files alone.

    python benchmark/report.py                     # results/ -> docs/reproduction.md and docs/figures/reproduction.png

One row per claim of the paper and env id: the effect of the claim's setting against its comparison (difference of
the mean final metric, or of the mean env steps to a threshold, signed so that positive is the paper's direction),
its 95% bootstrap interval, the same effect relative to the comparison's mean, P(the setting does better) with its
interval, and a verdict from the relative interval:
- reproduced: the whole interval is above 0 (the setting does better);
- not reproduced: the whole interval is below +10% (an improvement of 10% or more is ruled out, whichever the sign);
- inconclusive at n seeds: anything else (too few seeds to tell), and any row with fewer than MIN_SEEDS seeds a side,
  whatever its interval: a percentile bootstrap of 2 seeds has 3 possible means a side and an interval far too narrow.
A run that never reaches a threshold counts as its whole budget (so differences of steps are censored: they can
only understate a gap that ends beyond the budget).
"""

import csv
import sys
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import tyro

sys.path.insert(0, str(Path(__file__).resolve().parent))
from experiments import EXPERIMENTS, SAC_FINAL_EVALS  # noqa: E402
from plot import areas, bootstrap_ci, curves, final_name, final_values, fmt, load, make, prob_greater  # noqa: E402
from result_file import read, result_path  # noqa: E402

TEMPLATE = Path(__file__).resolve().parent / "reproduction_template.md"
"""the report's prose; the tool fills in its {{PLACEHOLDERS}} (see the end of this file)"""
MARGIN = 0.10
"""the smallest relative improvement a claim is about: an interval entirely below it says 'not reproduced'"""
MIN_SEEDS = 3
"""fewer seeds a side than this and a row is inconclusive whatever its interval (the issue's ablations run 3)"""
BEFORE_FIX = "sac_recall_evals_before_f8ab44f.csv"
"""in the results directory: the imitation weight, the eval at 95k env steps, the final eval and the commit of each
SAC + recall result file removed at f8ab44f (final eval straight after a recall phase), read from the files at 022e248"""
SUPERSEDED = "superseded"
"""in the results directory: result files made at a default that has changed since, kept in their experiment's folder"""


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
    """one line: how our setting differs from the paper's"""


FOURROOM_DIFFERS = "solved = a success rate over the last 100 episodes of 0.9 or more (the paper plots the reward)"
SAC_DIFFERS = (
    "gymnasium v4 envs (the paper: gym v1); 100k env steps; final = the mean of the last "
    f"{SAC_FINAL_EVALS} mean-action evals of 10 episodes, 5k env steps apart"
)
TRPO_DIFFERS = "gymnasium v4 envs; our TRPO, not rllab's; final = mean-action eval over 10 episodes"
CLAIMS = (
    Claim("Recall with the true backward state model solves the grid in fewer steps, more so in larger grids",
          "6.1, Fig. 2, 9", "fig2_fourroom", "true-learned", differs=FOURROOM_DIFFERS),
    Claim("Recall with a learned state and action model solves the grid in fewer steps",
          "6 (bullets), not plotted for the grid", "fig2_fourroom", "learned", differs=FOURROOM_DIFFERS),
    Claim("Recall solves the grid in fewer steps than PER, the gap growing with the size",
          "6.2, Fig. 4, 10", "fig4_per", "true-learned", versus="per", env_ids=("13", "15"),
          differs="PER on the same actor-critic, App. E.3's batch sizes and alpha, beta"),
    Claim("Recall's policy visits more of the grid than PER's", "6.2, Fig. 3, 10", "fig4_per", "true-learned",
          versus="per", env_ids=("13", "15"), metric="eval/visitation_coverage",
          differs="the fraction of free cells the trained policy visits in 100 episodes (the paper: heatmaps)"),
    Claim("A learned backward action model beats a random one (not random search)",
          "App. F, Fig. 14", "fig14_random_model", "true-learned", versus="true-random", differs=FOURROOM_DIFFERS),
    Claim("One actor-critic update per recall phase beats 2", "App. H, Fig. 17", "fig17_fourroom_ratio",
          "true-learned", versus="ratio-2:1", differs="15x15 only (the paper: 14x14 and 15x15)"),
    Claim("... and beats 4", "App. H, Fig. 17", "fig17_fourroom_ratio", "true-learned", versus="ratio-4:1",
          differs="as above"),
    Claim("Goal GAN reaches 60% coverage of the point-mass U-Maze in fewer steps with recall",
          "6.3, App. D Fig. 11, 13", "fig11_goalgan_point", "recall",
          differs="our point-mass U-Maze (docs); env steps, not Goal GAN iterations"),
    Claim("... and 90% coverage", "App. D Fig. 11", "fig11_goalgan_point", "recall", threshold=0.9,
          differs="as above"),
    Claim("Goal GAN reaches 60% coverage of the Ant U-Maze in fewer steps with recall", "6.3, Fig. 5, 12",
          "fig5_goalgan_ant", "recall", differs="our Ant U-Maze (docs); env steps, not Goal GAN iterations"),
    Claim("Recall beats TRPO in final performance on every task", "6.4, Fig. 6", "fig6_trpo", "recall",
          differs=TRPO_DIFFERS),
    Claim("Not the paper's: on Ant, traces of 5 steps beat TRPO (Table 1's 50 do not, above); 3 of the 10 seeds made "
          "this lead, and the report gives the 7 others alone", "ours, from App. B, Fig. 8", "ant_trace_len", "len5",
          differs=TRPO_DIFFERS),
    Claim("... and beat Table 1's traces of 50", "as above", "ant_trace_len", "len5", versus="recall",
          differs="as above"),
    Claim("Recall improves SAC on every task, most on Ant", "6.5, Fig. 7", "fig7_sac", "recall", differs=SAC_DIFFERS),
    Claim("A forward model's imagined rollouts (Dyna) do not beat TRPO", "App. G, Fig. 16", "appg_forward_model",
          "forward", no_gain=True, differs=TRPO_DIFFERS + "; the imagined step is ours (docs/trpo_recall_mujoco.md)"),
    Claim("Recall traces beat the forward model (why backwards)", "App. G (its argument)", "appg_forward_model",
          "recall", versus="forward", differs="as above"),
    Claim("A learned backtracking model beats an untrained one (SAC)", "App. F, Fig. 15", "fig15_random_model_sac",
          "recall", versus="random", differs="the untrained model at Table 2's trace length (the paper: best of 1-10)"),
    Claim("A learned backtracking model beats an untrained one (TRPO)", "App. F (shown for the grid and SAC)",
          "appf_random_model_trpo", "recall", versus="random", differs=TRPO_DIFFERS),
    Claim("10 imitation steps per 5 SAC updates beat 5", "App. H, Fig. 19", "fig19_sac_ratio", "imit10",
          versus="imit5", differs=SAC_DIFFERS),
    Claim("20 imitation steps per 5 SAC updates beat 5", "App. H, Fig. 19", "fig19_sac_ratio", "imit20",
          versus="imit5", differs=SAC_DIFFERS),
)  # fmt: skip


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


def difference(x, y):
    return np.mean(x) - np.mean(y)


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


def rows(results_dir, plotted, recall_dir=None):
    """One dict a claim and env id: the row of the table, and the relative effect for the figure. With recall_dir,
    each claim's own setting is read from there (SUPERSEDED) and only claims with files there are kept."""
    out, cache = [], {}
    for claim in CLAIMS:
        exp = EXPERIMENTS[claim.experiment]
        versus = claim.versus or exp.baseline
        runs_by_env = cache.setdefault(claim.experiment, load(results_dir, claim.experiment))
        own_by_env = runs_by_env if recall_dir is None else load(recall_dir, claim.experiment)
        for env_id in claim.env_ids or exp.env_ids:
            runs = runs_by_env.get(env_id, {})
            x, y = own_by_env.get(env_id, {}).get(claim.setting, []), runs.get(versus, [])
            if recall_dir is not None and not x:
                continue
            row = {"claim": claim, "env_id": env_id, "versus": versus, "n": (len(x), len(y)), "exp": exp}
            row["plotted"] = claim.experiment in plotted
            if min(len(x), len(y)) < 2:
                out.append(row)
                continue
            x, y = outcomes(claim, exp, x), outcomes(claim, exp, y)
            rel = (relative(x, y), *bootstrap_ci(relative, x, y))
            row |= {"diff": (difference(x, y), *bootstrap_ci(difference, x, y)), "rel": rel}
            row |= {
                "p": (prob_greater(x, y), *bootstrap_ci(prob_greater, x, y)),
                "verdict": verdict(*rel[1:], min(row["n"]), claim.no_gain),
            }
            out.append(row)
    return out


def effect_name(claim, exp):
    if claim.metric is not None:
        return f"difference of the final {claim.metric}"
    threshold = claim.threshold if claim.threshold is not None else exp.threshold
    if threshold is not None:
        return f"env steps saved to {exp.metric} >= {threshold}"
    return f"difference of the {final_name(exp)}"


def env_name(exp, env_id):
    return env_id if exp.env_flag == "--env-id" else f"{env_id}x{env_id}"


def table(rows):
    head = ["claim", "env", "seeds", "effect [95% CI]", "relative [95% CI]", "P(better) [95% CI]", "verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + "-|" * len(head)]
    for i, r in enumerate(rows):
        claim, exp = r["claim"], r["exp"]
        what = ""
        if i == 0 or rows[i - 1]["claim"] is not claim:
            link = f"[{claim.experiment}](figures/{claim.experiment}.md)" if r["plotted"] else claim.experiment
            what = f"{claim.text} ({claim.paper}); {link}: `{claim.setting}` vs `{r['versus']}`, {effect_name(claim, exp)}"
        seeds = f"{r['n'][0]} vs {r['n'][1]}"
        if "diff" not in r:
            cells = ["", "", "", "pending"]
        else:
            rel = r["rel"]
            cells = [
                fmt(*r["diff"]),
                f"{100 * rel[0]:+.0f}% [{100 * rel[1]:+.0f}, {100 * rel[2]:+.0f}]" if np.isfinite(rel[1]) else "-",
                fmt(*r["p"]),
                f"**{r['verdict']}**",
            ]
        lines.append("| " + " | ".join([what, env_name(exp, r["env_id"]), seeds, *cells]) + " |")
    return "\n".join(lines) + "\n"


def summary(rows):
    """One line a claim for the README: its runs' command and budget, its verdict on each env id, with the relative
    effect and the seeds where measured."""
    head = "| claim | paper | runs | verdict by env (effect relative to the comparison; seeds a side) |"
    lines = [head, "|-|-|-|-|"]
    for claim in CLAIMS:
        cells = []
        for r in (r for r in rows if r["claim"] is claim):
            effect = f", {100 * r['rel'][0]:+.0f}% ({r['n'][0]} vs {r['n'][1]})" if "rel" in r else ""
            cells.append(f"{env_name(r['exp'], r['env_id'])}: {r.get('verdict', 'pending')}{effect}")
        runs = f"`python benchmark/run.py {claim.experiment}`, {budget_text(EXPERIMENTS[claim.experiment])} env steps"
        lines.append(f"| {claim.text} | {claim.paper} | {runs} | {'; '.join(cells)} |")
    return "\n".join(lines) + "\n"


def replace_between(path, text, start="<!-- verdicts:start -->", end="<!-- verdicts:end -->"):
    """Put text between the two markers of the file, if it has them."""
    if not path.exists() or start not in (old := path.read_text()):
        return False
    head, rest = old.split(start, 1)
    path.write_text(head + start + "\n" + text + end + rest.split(end, 1)[1])
    return True


def differences():
    """One line a claim: how our setting differs from the paper's."""
    return "\n".join(f"- {claim.text} ({claim.paper}): {claim.differs}" for claim in CLAIMS if claim.differs) + "\n"


def figure(rows, path):
    """A forest plot: each measured row's relative effect with its 95% interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if "rel" in r]
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(done) + 1.2))
    colours = {"reproduced": "tab:green", "not reproduced": "tab:red"}
    for i, r in enumerate(done):
        value, low, high = (100 * v for v in r["rel"])
        colour = colours.get(r["verdict"], "tab:gray")
        ax.errorbar(value, i, xerr=[[value - low], [high - value]] if np.isfinite(low) else None, fmt="o", color=colour)
    labels = [
        f"{r['claim'].experiment}: {r['claim'].setting} vs {r['versus']}, {env_name(r['exp'], r['env_id'])}" for r in done
    ]
    ax.set_yticks(range(len(done)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0, color="black", lw=0.8)
    ax.axvline(100 * MARGIN, color="black", lw=0.8, ls=":")
    ax.set_xlabel("effect / the comparison's mean, % (95% CI; > 0: as the paper claims)")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# our plain baselines, to set beside the published numbers of the same algorithm at the same budget
OUR_BASELINES = (
    ("sac_baseline", "qlr3e-4", None),
    ("sac_baseline", "qlr1e-3", None),
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


def qlr_rule(results_dir, seeds=5):
    """The rule that sets --q-lr's default (see the template), evaluated on sac_baseline's result files."""
    exp, lines, holds = EXPERIMENTS["sac_baseline"], [], []
    runs_by_env = load(results_dir, "sac_baseline")
    for env_id in exp.env_ids:
        old, new = (runs_by_env.get(env_id, {}).get(s, []) for s in ("qlr3e-4", "qlr1e-3"))
        if min(len(old), len(new)) < seeds:
            lines.append(f"- {env_id}: {len(new)} and {len(old)} seeds so far, the rule waits for {seeds}")
            holds.append(None)
            continue
        grid, _ = curves(old + new, exp.metric)
        auc_old, auc_new = (areas(runs, grid, exp.metric).mean() for runs in (old, new))
        final_old, final_new = (np.mean([i["summary"]["final"] for i, _ in runs]) for runs in (old, new))
        holds.append(bool(auc_new > auc_old and final_new >= 0.9 * final_old))
        lines.append(f"- {env_id}, {len(new)} and {len(old)} seeds: area under the eval curve {auc_new:,.0f} (1e-3) "
                     f"against {auc_old:,.0f} (3e-4), last eval {final_new:,.0f} against {final_old:,.0f}: "
                     f"{'holds' if holds[-1] else 'fails'}")  # fmt: skip
    outcome = "pending" if None in holds else "1e-3" if all(holds) else "3e-4"
    return "\n".join(lines) + f"\n\nBy this rule the default is **{outcome}**.\n"


def imitation_rule(results_dir, seeds=3, margin=0.1):
    """The rule that sets --imitation-coef's default (see the template), evaluated on sac_imitation_coef's files: on
    each run's last eval, as written; beside it, on SAC's final metric (the mean of the last evals), as a check."""
    exp, lines = EXPERIMENTS["sac_imitation_coef"], []
    weights = [s for s in exp.settings if s != exp.baseline]
    ratios = {measure: defaultdict(list) for measure in ("last", "final")}
    runs_by_env = load(results_dir, "sac_imitation_coef")
    for env_id in exp.env_ids:
        runs = {s: runs_by_env.get(env_id, {}).get(s, []) for s in exp.settings}
        if min(map(len, runs.values())) < seeds:
            counts = ", ".join(f"{s} {len(v)}" for s, v in runs.items())
            lines.append(f"- {env_id}: seeds so far {counts}; the rule waits for {seeds} of each")
            continue
        parts = []
        for measure, name, evals in (("last", "last eval", 1), ("final", "final metric", exp.final_evals)):
            as_measured = replace(exp, final_evals=evals)  # the final metric over the last `evals` evals
            sac = np.mean(final_values(as_measured, runs[exp.baseline]))
            for s in weights:
                ratios[measure][s].append(np.mean(final_values(as_measured, runs[s])) / sac)
            shares = ", ".join(f"{s.removeprefix('coef')} {ratios[measure][s][-1]:.2f}" for s in weights)
            parts.append(f"mean {name} as a share of plain SAC's ({sac:,.0f}): {shares}")
        lines.append(f"- {env_id}, {seeds} seeds: " + "; ".join(parts))
    outcome = {}
    for measure, by_weight in ratios.items():
        outcome[measure] = "pending"
        if by_weight and all(len(r) == len(exp.env_ids) for r in by_weight.values()):
            mean = {s: np.mean(r) for s, r in by_weight.items()}
            best = max(mean, key=mean.get)
            outcome[measure] = best.removeprefix("coef") if mean[best] > mean["coef0.1"] + margin else "0.1"
    check = f" (on the mean final metric, {exp.final_evals} evals a run, it would be {outcome['final']})"
    return "\n".join(lines) + f"\n\nBy this rule the default is **{outcome['last']}**{check}.\n"


def eval_phase(results_dir):
    """Each SAC + recall run rerun since f8ab44f beside the removed file of the same run (see the template): the
    eval at 95k env steps, the same policy in both, and the final eval, straight after a recall phase before the fix
    and 5 SAC updates after one now. The rerun is the file at the removed file's imitation weight, in its experiment's
    folder or, once that weight is no longer the default, in SUPERSEDED."""
    if not (results_dir / BEFORE_FIX).exists():
        return f"No {BEFORE_FIX} in the results directory.\n"
    with open(results_dir / BEFORE_FIX) as f:
        before = {(r["experiment"], r["env_id"], r["setting"], int(r["seed"])): r for r in csv.DictReader(f)}
    groups = defaultdict(list)
    for (name, env_id, setting, seed), old in before.items():
        weight = float(old["imitation_coef"])  # a rerun runs at its removed file's weight, wherever it is kept now
        paths = [result_path(root, name, env_id, setting, seed) for root in (results_dir, results_dir / SUPERSEDED)]
        runs = [read(path) for path in paths if path.exists()]
        runs = [(i, s) for i, s in runs if i.get("args", {}).get("imitation_coef", weight) == weight]
        if not runs:
            continue
        identity, series = runs[0]
        if "reused_from" in identity:  # a copy: its run is counted where it was made
            continue
        steps, values = series["eval/episodic_return"]
        same = steps[-2] == 95_000 and abs(values[-2] - float(old["eval_95k"])) < 0.05  # CSV: 6 significant digits
        final_metric = final_values(EXPERIMENTS[name], [(identity, series)])[0]
        groups[(name, env_id, setting)].append((seed, same, float(old["final"]), identity["summary"]["final"], final_metric))
    if not groups:
        return f"No run of {BEFORE_FIX} rerun yet ({len(before)} files removed, copies included).\n"
    lines = ["| experiment | env | setting | reruns | 95k eval as before | final eval before (mean) | final eval now "
             "(mean) | now minus before where the 95k eval is, mean [lowest, highest] | "
             "each pair: seed, final eval before → now |",
             "|" + "---|" * 9]  # fmt: skip
    all_gains, shares = [], []  # of the reruns that are the same run up to their last recall phase: the final eval
    # now minus before, and that as a share of the rerun's final metric (the rule of the template)
    for (name, env_id, setting), runs in sorted(groups.items()):
        seeds, same, old, new, final_metric = (np.array(column) for column in zip(*runs, strict=True))
        same = same.astype(bool)
        gain = (new - old)[same]
        all_gains += list(gain)
        shares += list(np.abs(gain) / np.abs(final_metric[same]))
        paired = f"{gain.mean():+,.0f} [{gain.min():+,.0f}, {gain.max():+,.0f}]" if len(gain) else "no pair"
        each = "; ".join(f"{s}: {o:,.0f} → {n:,.0f}" for s, o, n in zip(seeds[same], old[same], new[same], strict=True))
        lines.append(f"| {name} | {env_id} | {setting} | {len(runs)} | {same.sum()} of {len(runs)} | {old.mean():,.0f} "
                     f"| {new.mean():,.0f} | {paired} | {each} |")  # fmt: skip
    gains, n_runs = np.array(all_gains), sum(map(len, groups.values()))
    text = f"None of the {n_runs} reruns so far repeats its removed file's 95k eval"
    if len(gains):
        mean = fmt(gains.mean(), *bootstrap_ci(np.mean, gains), digits=0)  # returns: whole numbers, even near 0
        text = (f"Over the {len(gains)} reruns that repeat their removed file's 95k eval, the final eval now minus "
                f"before is {mean} on average, positive in {int((gains > 0).sum())} of them")  # fmt: skip
    others = n_runs - len(gains)
    if others and len(gains):
        text += f"; the {others} other reruns ran apart from their removed file before 95k env steps"
    return "\n".join(lines) + f"\n\n{text}.\n\n{restore_rule(shares)}\n"


def restore_rule(shares, pairs=4, most=0.2):
    """The template's rule: restore the removed files when at least `pairs` pairs each differ in their last eval by
    no more than `most` of the rerun's final metric; rerun them once one pair differs by more."""
    if not shares:
        return f"By the rule above: **pending**, none of the {pairs} pairs it waits for."
    worst = f"the largest gap in the last eval is {max(shares):.1%} of its rerun's final metric"
    if max(shares) > most:
        return f"By the rule above: **rerun** ({len(shares)} pairs; {worst}, over {most:.0%})."
    if len(shares) < pairs:
        return f"By the rule above: **pending**, {len(shares)} of the {pairs} pairs it waits for ({worst})."
    return f"By the rule above: **restore** ({len(shares)} pairs; {worst})."


def budget_text(exp):
    return f"{exp.budget:,}" if isinstance(exp.budget, int) else ", ".join(f"{e}: {exp.steps(e):,}" for e in exp.env_ids)


def commands(rows):
    """The runner's command of every experiment in the table, with its seeds and budget."""
    lines, seen = [], set()
    for r in rows:
        name, exp = r["claim"].experiment, r["exp"]
        if name in seen:
            continue
        seen.add(name)
        seeds = f"{exp.seeds[0]}-{exp.seeds[-1]}" if len(exp.seeds) > 1 else str(exp.seeds[0])
        lines.append(f"- `python benchmark/run.py {name}` then `python benchmark/plot.py {name}`: seeds {seeds}, "
                     f"env steps {budget_text(exp)}, settings {', '.join(f'`{s}`' for s in exp.settings)}")  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    args = tyro.cli(Args)
    figures = args.out.parent / "figures"
    # every experiment's own figure and table, so that the report's links follow the results
    plotted = {name for name in EXPERIMENTS if make(name, args.results_dir, figures) is not None}
    all_rows = rows(args.results_dir, plotted)
    figure(all_rows, figures / "reproduction.png")
    text = TEMPLATE.read_text().replace("{{TABLE}}", table(all_rows)).replace("{{COMMANDS}}", commands(all_rows))
    text = text.replace("{{BASELINES}}", baselines(args.results_dir)).replace("{{DIFFERS}}", differences())
    text = text.replace("{{QLR_RULE}}", qlr_rule(args.results_dir))
    text = text.replace("{{IMITATION_RULE}}", imitation_rule(args.results_dir))
    text = text.replace("{{EVAL_PHASE}}", eval_phase(args.results_dir))
    text = text.replace("{{SUPERSEDED}}", table(rows(args.results_dir, plotted, args.results_dir / SUPERSEDED)))
    args.out.write_text(text)
    replace_between(args.readme, summary(all_rows))
    print(text)
