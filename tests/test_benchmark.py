"""benchmark/: the runner on a local pool and on a local Ray, resuming, the result file, and the plot's intervals."""

import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from helpers import ROOT, kill_after

sys.path.insert(0, str(ROOT / "benchmark"))
from experiments import EXPERIMENTS, Experiment, Setting  # noqa: E402
from plot import bootstrap_ci, diagnostics, final_values, prob_greater  # noqa: E402
from report import in_progress, verdict  # noqa: E402
from result_file import MAX_POINTS, downsample, read, summarise, to_text, write  # noqa: E402
from run import partial_dir, run_one  # noqa: E402

# two settings of the four-room experiment on the 7x7 grid, two seeds, 2048 steps: four runs of a few seconds
TINY = ["fig2_fourroom", "--env-ids", "7", "--settings", "ac", "true-learned", "--seeds", "1", "2"]
TINY += ["--total-timesteps", "2048", "--workers", "2"]


def benchmark(tool, cwd, *flags):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmark" / tool), *flags], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_a_tiny_experiment_runs_then_a_second_call_skips_it(tmp_path):
    result = benchmark("run.py", tmp_path, *TINY, "--results-dir", "res", "--new-results-dir")
    assert result.returncode == 0, result.stderr
    files = sorted((tmp_path / "res" / "fig2_fourroom").glob("*.csv.gz"))
    assert [f.name for f in files] == [f"7__{s}__{seed}.csv.gz" for s in ("ac", "true-learned") for seed in (1, 2)]
    for path in files:  # the schema: the run's identity, its summary, the kept scalars
        identity, series = read(path)
        assert identity["experiment"] == "fig2_fourroom" and identity["script"] == "ac_recall_fourroom.py"
        assert identity["env_id"] == "7" and identity["total_timesteps"] == 2048 and identity["seed"] in (1, 2)
        assert identity["args"]["size"] == 7 and identity["args"]["recall"] == (identity["setting"] != "ac")
        assert identity["flags"][:6] == ["--size", "7", "--seed", str(identity["seed"]), "--total-timesteps", "2048"]
        assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", identity["commit"])
        assert {"final", "final_train_return", "sps", "steps_to_threshold", "wall_time_s"} <= identity["summary"].keys()
        assert {"charts/success_rate", "charts/episodic_return", "eval/episodic_return"} <= series.keys()
        assert [tag for tag in series if tag.startswith("losses/")] == ["losses/entropy"]  # the spread, no loss
        assert all(len(steps) <= MAX_POINTS and steps[-1] <= 2048 for steps, _ in series.values())
        assert identity["summary"]["final"] == pytest.approx(series["charts/success_rate"][1][-1], rel=1e-5)
        assert any(tag.startswith("recall/") for tag in series) == (identity["setting"] != "ac")
    mtimes = [f.stat().st_mtime_ns for f in files]
    again = benchmark("run.py", tmp_path, *TINY, "--results-dir", "res")
    assert again.returncode == 0 and "4 done, 0 made by other experiments, 0 to run" in again.stdout
    assert [f.stat().st_mtime_ns for f in files] == mtimes
    # the same commands in another experiment (Fig. 4 sets Fig. 2's settings beside PER) are copied, not run again
    other = [*TINY, "--results-dir", "res"]
    other[0] = "fig4_per"
    dry = benchmark("run.py", tmp_path, *other, "--dry-run")
    assert dry.stdout.count("copy  ") == 4 and "4 made by other experiments, 0 to run" in dry.stdout
    assert benchmark("run.py", tmp_path, *other).returncode == 0
    for path in files:
        (identity, series), (copied, copied_series) = read(path), read(tmp_path / "res" / "fig4_per" / path.name)
        assert copied["experiment"] == "fig4_per" and copied["reused_from"] == f"fig2_fourroom/{path.name}"
        assert copied["summary"] == identity["summary"] and copied["flags"] == identity["flags"]
        np.testing.assert_array_equal(copied_series["charts/success_rate"][1], series["charts/success_rate"][1])


def test_a_result_file_keeps_the_diagnostics_of_the_imitation_step(tmp_path):
    """One TRPO + recall iteration on Hopper through the runner: its file keeps which way the imitation step pulls
    (its cosine with TRPO's step, the surrogate gain it took back) and the eval's forward velocity."""
    flags = ["fig6_trpo", "--env-ids", "Hopper-v4", "--settings", "recall", "--seeds", "1", "--total-timesteps", "2048"]
    result = benchmark("run.py", tmp_path, *flags, "--workers", "1", "--results-dir", "res", "--new-results-dir")
    assert result.returncode == 0, result.stderr
    _, series = read(tmp_path / "res" / "fig6_trpo" / "Hopper-v4__recall__1.csv.gz")
    for tag in ("recall/step_cosine", "recall/surrogate_undone", "eval/forward_velocity"):
        assert len(series[tag][1]) >= 1 and np.isfinite(series[tag][1]).all(), tag


def test_a_flag_at_its_default_value_is_the_same_run_and_a_changed_default_is_stale(tmp_path):
    from run import arguments, run_key, stale

    ac, base = "ac_recall_fourroom.py", ["--size", "7", "--no-recall"]
    gamma = arguments(ac, base)["gamma"]
    assert run_key({"script": ac, "flags": base}) == run_key({"script": ac, "flags": [*base, "--gamma", str(gamma)]})
    assert run_key({"script": ac, "flags": base}) != run_key({"script": ac, "flags": [*base, "--gamma", str(gamma / 2)]})
    assert run_key({"script": ac, "flags": base[:2]}) != run_key({"script": "per_fourroom.py", "flags": base[:2]})
    identity, path = {"script": ac, "flags": base, "args": arguments(ac, base)}, tmp_path / "run.csv.gz"
    write(path, "# " + json.dumps({"args": {**identity["args"], "gamma": gamma / 2}}) + "\n")
    assert list(stale([(identity, path)])) == [f"{path} was made with gamma={gamma / 2} (now {gamma})"]
    write(path, "# " + json.dumps({"args": identity["args"]}) + "\n")
    assert not list(stale([(identity, path)]))


def test_a_trace_len_at_the_envs_length_is_the_same_run():
    """--trace-len left out is the env's length from the script's own table (TRPO: Table 1, SAC: Table 2)."""
    from run import run_key

    base = ["--env-id", "Hopper-v4", "--seed", "1"]
    for script, table, other in (("trpo_recall_mujoco.py", "10", "20"), ("sac_recall_mujoco.py", "20", "10")):
        key = run_key({"script": script, "flags": base})
        assert key == run_key({"script": script, "flags": [*base, "--trace-len", table]}), script
        assert key != run_key({"script": script, "flags": [*base, "--trace-len", other]}), script


def test_a_method_default_changed_since_leaves_its_plain_runs_alone(tmp_path):
    """With --no-recall (--no-per) the method's own arguments do not act: a plain run made at another imitation weight
    is the same run and not stale; the recall run made at it is stale."""
    from run import arguments, run_key, stale

    for script, switch, method_arg in (
        ("ac_recall_fourroom.py", "recall", "imitation_lr"),
        ("per_fourroom.py", "per", "per_beta"),
    ):
        for on in (True, False):
            flags = ["--size", "7", *([] if on else [f"--no-{switch}"])]
            identity, path = {"script": script, "flags": flags, "args": arguments(script, flags)}, tmp_path / f"{on}.csv.gz"
            made = {**identity["args"], method_arg: identity["args"][method_arg] / 2}
            write(path, "# " + json.dumps({"args": made}) + "\n")
            assert bool(list(stale([(identity, path)]))) == on, (script, on)
            assert (run_key(identity) == run_key({**identity, "args": made})) == (not on), (script, on)


def test_an_argument_the_script_no_longer_has_does_not_act(tmp_path, monkeypatch):
    """A file recording a flag since removed (SAC's imitation weight, before the imitation had its own optimizer):
    its plain run is still the same run and not stale; its recall run, made without today's --imitation-lr, is
    stale. An experiment whose settings pass a removed flag is refused in one line, before anything runs."""
    from run import Args as RunArgs
    from run import arguments, check, run_key, stale

    sac = "sac_recall_mujoco.py"
    for on in (True, False):
        flags = ["--env-id", "Hopper-v4", *([] if on else ["--no-recall"])]
        identity, path = {"script": sac, "flags": flags, "args": arguments(sac, flags)}, tmp_path / f"{on}.csv.gz"
        made = {k: v for k, v in identity["args"].items() if k != "imitation_lr"} | {"imitation_coef": 0.3}
        write(path, "# " + json.dumps({"args": made}) + "\n")
        assert bool(list(stale([(identity, path)]))) == on, on
        assert (run_key(identity) == run_key({**identity, "args": made})) == (not on), on
    old = Setting("recall, imitation weight 0.3", ("--imitation-coef", "0.3"))
    exp = Experiment(sac, ("Hopper-v4",), {"sac": Setting("SAC", ("--no-recall",)), "coef0.3": old}, "sac", (1,), 1000)
    monkeypatch.setitem(EXPERIMENTS, "old_weights", exp)
    message = "old_weights's setting coef0.3 passes --imitation-coef 0.3, which sac_recall_mujoco.py no longer takes"
    assert check(RunArgs("old_weights")) == message
    assert check(RunArgs("old_weights", settings=("sac",))) is None


@pytest.mark.slow
def test_ray_runs_the_same_runs(tmp_path):
    """One Ray task per run on a local Ray of 2 CPUs: the same numbers as the local pool (the runs are deterministic)."""
    flags = ["--settings", "true-learned", "--seeds", "1", "--results-dir"]
    for name, backend in (("local", "local"), ("ray", "ray")):
        result = benchmark("run.py", tmp_path, *TINY, *flags, name, "--new-results-dir", "--backend", backend)
        assert result.returncode == 0, result.stderr
    local, ray = (read(tmp_path / name / "fig2_fourroom" / "7__true-learned__1.csv.gz") for name in ("local", "ray"))
    for tag in ("charts/success_rate", "charts/episodic_return", "recall/imitation_loss"):
        np.testing.assert_array_equal(local[1][tag][1], ray[1][tag][1])


def test_dry_run_and_bad_input(tmp_path):
    dry = benchmark("run.py", tmp_path, *TINY, "--results-dir", "res", "--dry-run")
    assert dry.returncode == 0 and dry.stdout.count("todo") == 4 and not (tmp_path / "res").exists()
    assert "python ac_recall_fourroom.py --size 7 --seed 1 --total-timesteps 2048 --no-recall" in dry.stdout
    (tmp_path / "afile").write_text("a file where the figures' folder should be")
    plot = benchmark("plot.py", tmp_path, "fig6_trpo", "--results-dir", str(ROOT / "results"), "--out-dir", "afile")
    assert plot.returncode != 0 and plot.stderr.strip() == "error: cannot write to --out-dir afile: File exists"
    for flags, message in (
        (["fig99"], "error: unknown experiment 'fig99'"),
        (["fig7_sac", "--settings", "nope"], "error: unknown settings ['nope'] for fig7_sac"),
        (["fig2_fourroom", "--env-ids", "7"], "error: no budget for env ids ['7'] in fig2_fourroom"),
    ):
        result = benchmark("run.py", tmp_path, *flags)
        assert result.returncode != 0 and result.stderr.strip().startswith(message), result.stderr


def test_downsample_keeps_the_ends_and_the_mean():
    steps, values = np.arange(1, 10_001), np.sin(np.arange(10_000) / 300.0)
    s, v = downsample(steps, values, 100)
    assert len(s) == 100 and s[-1] == 10_000 and np.all(np.diff(s) > 0)
    assert v.mean() == pytest.approx(values.mean(), abs=0.01)
    np.testing.assert_array_equal(downsample(steps[:50], values[:50], 100)[1], values[:50])  # short series as they are


def test_summary_counts_steps_to_the_threshold_after_enough_episodes():
    series = {
        "charts/success_rate": ([100, 200, 300, 400], [1.0, 0.5, 0.95, 0.97]),  # 1.0 after one episode does not count
        "charts/episodic_return": ([50, 150, 250, 350], [1.0, 0.0, 1.0, 1.0]),
    }
    assert summarise(series, "charts/success_rate", 0.9, threshold_episodes=3)["steps_to_threshold"] == 300
    assert summarise(series, "charts/success_rate", 0.99, threshold_episodes=3)["steps_to_threshold"] is None


def test_recall_diagnostics_are_the_mean_of_each_runs_second_half():
    """Two recall seeds whose guard share is 1.0 in the first half and 0.2 / 0.4 in the second: the table says 0.3;
    the plain setting, which logs no diagnostic, has no row."""
    from experiments import EXPERIMENTS

    steps = np.array([100, 200, 300, 400])
    recall = [({}, {"recall/trace_clamped_frac": (steps, np.array([1.0, 1.0, x, x]))}) for x in (0.2, 0.4)]
    table = diagnostics(EXPERIMENTS["fig6_trpo"], {"Hopper-v4": {"trpo": [({}, {})], "recall": recall}})
    rows = [line for line in table.splitlines() if line.startswith("| Hopper-v4")]
    assert len(rows) == 1 and rows[0].split(" | ")[2].startswith("0.3 [0.2, 0.4]"), table


def rise(steps, budget):
    """A learning curve's shape: linear up to 1 at 80% of the budget, flat after, so that SAC's final metric (the
    mean of its last 4 evals, 5% of the budget apart) is the final value."""
    return np.minimum(steps / (0.8 * budget), 1.0)


def test_sacs_final_metric_is_the_mean_of_its_last_evals_and_trpos_the_last_eval(tmp_path):
    """A run whose last eval collapses: SAC's final metric averages it with the three evals before (85k-100k env
    steps), TRPO's is the last eval alone (the summary's); the figure page's table and its header say which."""
    steps, values = np.arange(5_000, 100_001, 5_000), np.full(20, 1000.0)
    values[-1] = 200.0
    runs = [({"summary": {"final": 200.0}}, {"eval/episodic_return": (steps, values)})]
    assert final_values(EXPERIMENTS["fig7_sac"], runs) == pytest.approx([800.0])
    assert final_values(EXPERIMENTS["fig6_trpo"], runs) == pytest.approx([200.0])
    for seed in (1, 2):
        identity = {"experiment": "fig7_sac", "env_id": "Hopper-v4", "setting": "sac", "seed": seed}
        identity |= {"total_timesteps": 100_000, "summary": {"final": 200.0}}
        write(tmp_path / "fig7_sac" / f"Hopper-v4__sac__{seed}.csv.gz", to_text(identity, runs[0][1]))
    assert benchmark("plot.py", tmp_path, "fig7_sac", "--results-dir", ".", "--out-dir", "figs").returncode == 0
    table = (tmp_path / "figs" / "fig7_sac.md").read_text()
    assert "final eval/episodic_return (mean of the last 4)" in table and "| 800 [800, 800] |" in table, table


def test_plot_intervals_cover_the_true_values(tmp_path):
    """Synthetic results whose truth is known: 20 seeds a setting, final returns from N(100, 10) and N(120, 10),
    learning curves that rise to them (see rise). The table's 95% intervals cover the true means, 100 and 120, and
    the true P(X > Y) = Phi(20 / sqrt(200)) = 0.921."""
    rng = np.random.default_rng(3)
    for setting, mean in (("sac", 100.0), ("recall", 120.0)):
        for seed, final in enumerate(rng.normal(mean, 10.0, 20), start=1):
            steps = np.linspace(5000, 100_000, 20)
            series = {"eval/episodic_return": (steps, final * rise(steps, 100_000))}
            identity = {"experiment": "fig7_sac", "env_id": "Hopper-v4", "setting": setting, "seed": seed}
            identity |= {"total_timesteps": 100_000, "summary": {"final": final}}
            write(tmp_path / "fig7_sac" / f"Hopper-v4__{setting}__{seed}.csv.gz", to_text(identity, series))
    result = benchmark("plot.py", tmp_path, "fig7_sac", "--results-dir", ".", "--out-dir", "figs")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "figs" / "fig7_sac.png").stat().st_size > 0
    lines = (tmp_path / "figs" / "fig7_sac.md").read_text().splitlines()
    rows = {row.split("|")[2].strip(): row for row in lines if row.startswith("| Hopper-v4")}
    cells = [re.findall(r"\[([-\d.]+), ([-\d.]+)\]", rows[label]) for label in ("SAC (`--no-recall`)", "SAC + recall traces")]
    (base_final, _), (recall_final, _, p_final, _) = ([(float(a), float(b)) for a, b in c] for c in cells)
    assert base_final[0] <= 100 <= base_final[1] and recall_final[0] <= 120 <= recall_final[1]
    assert p_final[0] <= 0.921 <= p_final[1]


def test_probability_of_beating_and_its_interval():
    assert prob_greater([3, 4], [1, 2]) == 1.0 and prob_greater([1, 2], [1, 2]) == 0.5
    low, high = bootstrap_ci(prob_greater, np.arange(10.0), np.arange(10.0) + 0.5)
    assert low < prob_greater(np.arange(10.0), np.arange(10.0) + 0.5) < high


def write_runs(results, experiment, env_id, setting, outcomes, metric="eval/episodic_return", budget=100_000):
    """Result files whose final metric (or, for a four-room run, env steps to the threshold) is given; the curve rises
    to the final metric (see rise)."""
    for seed, outcome in enumerate(outcomes, start=1):
        steps = np.linspace(budget / 20, budget, 20)
        summary = {"final": outcome, "final_train_return": outcome}
        if experiment.startswith("fig2"):
            summary = {"final": 1.0, "final_train_return": 1.0, "steps_to_threshold": outcome}
        identity = {"experiment": experiment, "env_id": env_id, "setting": setting, "seed": seed}
        identity |= {"total_timesteps": budget, "summary": summary}
        curve = {metric: (steps, rise(steps, budget) * summary["final"])}
        write(results / experiment / f"{env_id}__{setting}__{seed}.csv.gz", to_text(identity, curve))


def test_report_verdicts_on_known_effects(tmp_path):
    """Synthetic results with known effects give the three verdicts and 'pending' against the comparison and against
    the untrained model; a gain the untrained model also gets is not the traces' doing; the sign of a steps-to-threshold
    effect says that fewer steps is better."""
    rng, res = np.random.default_rng(0), tmp_path / "res"
    write_runs(res, "fig7_sac", "Hopper-v4", "sac", rng.normal(100, 5, 20))
    write_runs(res, "fig7_sac", "Hopper-v4", "recall", recall := rng.normal(130, 5, 20))  # +30%: reproduced
    write_runs(res, "fig7_sac", "Hopper-v4", "random", recall + 1.3)  # ... and the untrained model gets it too
    write_runs(res, "fig7_sac", "Walker2d-v4", "sac", rng.normal(100, 5, 20))
    write_runs(res, "fig7_sac", "Walker2d-v4", "recall", rng.normal(90, 5, 20))  # -10%: not reproduced
    write_runs(res, "fig7_sac", "Ant-v4", "sac", [100.0, 102.0])
    write_runs(res, "fig7_sac", "Ant-v4", "recall", [130.0, 131.0])  # 2 seeds: inconclusive, however clear
    steps = "charts/success_rate"
    write_runs(res, "fig2_fourroom", "11", "ac", rng.normal(50_000, 2000, 10), steps, 200_000)
    write_runs(res, "fig2_fourroom", "11", "true-learned", rng.normal(25_000, 2000, 10), steps, 200_000)  # half the steps
    write_runs(res, "fig2_fourroom", "11", "true-random", rng.normal(50_000, 2000, 10), steps, 200_000)  # no gain
    out, readme = tmp_path / "docs" / "reproduction.md", tmp_path / "README.md"
    readme.write_text("# x\n<!-- verdicts:start -->\nold\n<!-- verdicts:end -->\nrest\n")
    result = benchmark("report.py", tmp_path, "--results-dir", "res", "--out", str(out), "--readme", str(readme))
    assert result.returncode == 0, result.stderr
    lines = out.read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if "[fig7_sac](figures/fig7_sac.md): `recall` vs `sac`" in line)
    cells = {line.split("|")[2].strip(): [c.strip() for c in line.split("|")[5:8]] for line in lines[first : first + 4]}
    assert cells == {
        "Hopper-v4": ["**reproduced**", cells["Hopper-v4"][1], "**not reproduced**: the gain is not the traces' doing"],
        "Walker2d-v4": ["**not reproduced**", "", "pending"],
        "Ant-v4": ["**inconclusive at 2 seeds**", "", "pending"],
        "HalfCheetah-v4": ["pending", "", "pending"],
    }
    assert cells["Hopper-v4"][1].startswith("-1%")  # recall against the untrained model, 1.3 above it
    fourroom = next(line for line in lines if "`true-learned` vs `ac`" in line).split("|")
    assert fourroom[2].strip() == "11x11" and fourroom[5].strip() == "**reproduced**"
    assert fourroom[7].strip() == "**reproduced**: the gain is the traces'"
    value, low, high = map(float, re.fullmatch(r"([-+\d]+)% \[([-+\d]+), ([-+\d]+)\]", fourroom[4].strip()).groups())
    assert low <= 50 <= high and value > 40  # (50k - 25k) / 50k of the env steps saved
    sac = next(line for line in readme.read_text().splitlines() if line.startswith("| Recall improves SAC"))
    assert "Hopper-v4: reproduced, +" in sac and "(20 vs 20); untrained: not reproduced" in sac
    assert "Walker2d-v4: not reproduced, -" in sac and "HalfCheetah-v4: pending; untrained: pending" in sac
    assert "| `python benchmark/run.py fig7_sac`, 100,000 env steps |" in sac
    assert "old" not in readme.read_text() and readme.read_text().endswith("<!-- verdicts:end -->\nrest\n")
    assert (tmp_path / "docs" / "figures" / "reproduction.png").stat().st_size > 0
    assert (tmp_path / "docs" / "figures" / "fig7_sac.md").exists() and not (
        tmp_path / "docs" / "figures" / "fig6_trpo.md"
    ).exists()


def test_the_tuning_rule_keeps_the_default_unless_another_rate_beats_it_by_the_margin(tmp_path):
    """A rate's score is its mean area over the base algorithm's, averaged over the envs; the default of the time stays
    unless the best rate scores more than TUNING_MARGIN above it; a choice at the edge of the rates tried, and one
    where recall's best is below the base algorithm, are said; a tuning experiment short of runs is pending."""
    from report import TUNED, TUNING_MARGIN, tuning

    exp, default, other = EXPERIMENTS["tune_trpo"], TUNED["tune_trpo"], "1.5e-3"
    rates = [setting.rsplit("lr", 1)[1] for setting in exp.settings if setting != exp.baseline]

    def rule(gains, rest=1.0):
        """Each rate's curve at (1 + its gain) of the base algorithm's on both envs (`rest` for the rates not in
        `gains`): tune_trpo's line."""
        for env_id in exp.env_ids:
            for setting in exp.settings:
                rate = setting.rsplit("lr", 1)[-1]
                outcome = 1000.0 * (1 + gains.get(rate, rest - 1)) if setting != exp.baseline else 1000.0
                write_runs(tmp_path, "tune_trpo", env_id, setting, [outcome] * 3, budget=exp.steps(env_id))
        return next(line for line in tuning(tmp_path).splitlines() if "`tune_trpo`" in line)

    line = rule({other: 2 * TUNING_MARGIN})
    assert f"the rule chooses **{other}**" in line and f"{other} {1 + 2 * TUNING_MARGIN:.3f}" in line
    assert "rate tried" not in line and "of the base algorithm's" not in line
    assert f"the rule chooses **{default}**" in rule({other: TUNING_MARGIN / 2})
    line = rule({rates[-1]: 2 * TUNING_MARGIN})
    assert f"**{rates[-1]}**, the largest rate tried" in line and "of the base algorithm's" not in line
    line = rule({rates[0]: -0.02}, rest=0.8)  # recall below the base algorithm at every rate, least at the smallest
    assert f"**{rates[0]}**, the smallest rate tried; at it recall's area is 0.98 of the base algorithm's" in line
    (tmp_path / "tune_trpo" / f"Walker2d-v4__lr{other}__3.csv.gz").unlink()
    assert f"`tune_trpo`: **pending**, 1 of its {len(exp.settings) * 6} runs to go" in tuning(tmp_path)


def test_verdicts_from_the_relative_interval_and_their_swap_for_a_claim_of_no_gain():
    assert verdict(0.05, 0.30, 5) == "reproduced" and verdict(-0.30, 0.05, 10) == "not reproduced"
    assert verdict(-0.10, 0.30, 3) == "inconclusive at 3 seeds" == verdict(-0.10, 0.30, 3, no_gain=True)
    assert verdict(0.05, 0.30, 2) == "inconclusive at 2 seeds" == verdict(-0.30, 0.05, 2, no_gain=True)
    assert verdict(0.05, 0.30, 5, no_gain=True) == "not reproduced" and verdict(-0.3, 0.05, 10, no_gain=True) == "reproduced"


@pytest.mark.parametrize("runaway", [False, True])
def test_trace_drift_sees_a_model_that_runs_off(tmp_path, runaway, capsys):
    """A backtracking model whose state net predicts no change and almost no noise keeps every trace at its target;
    one that predicts a change of 4 standard deviations a step is held by the guard from the third step on."""
    from trace_drift import Args, main

    import trpo_recall_mujoco

    bt_model = trpo_recall_mujoco.BacktrackingModel(3, 2)
    with torch.no_grad():
        last = bt_model.bt_state_net[-1]
        last.weight.zero_(), last.bias.fill_(4.0 if runaway else 0.0), bt_model.bt_state_log_std.fill_(-10.0)
    path = tmp_path / "trpo_recall_mujoco.pt"
    run_args = {"exp_name": "trpo_recall_mujoco", "env_id": "Test-v0", "trace_len": 5}
    torch.save({"bt_model": bt_model.state_dict(), "args": run_args}, path)
    guarded = main(Args(path, num_traces=200)).float().mean(1)  # the share of traces held, by backward step
    if runaway:  # targets lie within about 3 std of the mean: after 3 steps of 4 std, nearly every trace passes 10
        assert guarded[0] == 0 and guarded[2:].min() >= 0.95, guarded
    else:
        assert guarded.max() == 0, guarded
    assert "backward step" in capsys.readouterr().out


def test_same_numbers_names_every_tag_that_moved():
    """benchmark/same_numbers.py's comparison: nothing for the same scalars; a tag logged by one side only, a value
    changed and a series cut short are each named."""
    from same_numbers import differences

    before = {"recall/imitation_kl": [(10, 0.1), (20, 0.2)], "eval/episodic_return": [(20, 5.0)]}
    assert differences(before, before) == []
    after = {"recall/imitation_kl": [(10, 0.1), (20, 0.25)], "recall/step_cosine": [(10, -0.1)]}
    assert differences(before, after) == [
        "only before: eval/episodic_return",
        "only after: recall/step_cosine",
        "recall/imitation_kl: first differs at step 20, 0.2 before and 0.25 after",
    ]
    assert differences(before, {**before, "recall/imitation_kl": [(10, 0.1)]}) == [
        "recall/imitation_kl: 2 values before, 1 after"
    ]


def test_every_control_is_its_claims_recall_setting_with_the_untrained_model():
    """App. F's control differs from the claim's setting by the untrained model alone, so that a gain it shares is
    not the traces' doing; the main experiments of the issue (fig2, fig6, fig7, fig11) all have one."""
    from report import CLAIMS

    controlled = {claim.experiment for claim in CLAIMS if claim.control}
    assert {"fig2_fourroom", "fig6_trpo", "fig7_sac", "fig11_goalgan_point"} <= controlled
    for claim in (c for c in CLAIMS if c.control):
        settings = EXPERIMENTS[claim.experiment].settings
        own, control = settings[claim.setting], settings[claim.control]
        i = control.flags.index("--bt-model")
        assert control.flags[i + 1] == "random" and control.script == own.script, claim.text
        assert sorted(control.flags[:i] + control.flags[i + 2 :]) == sorted(own.flags), claim.text


def test_the_runner_refuses_what_its_scripts_would_before_any_compute(tmp_path):
    """Seeds, env ids and budgets the scripts would refuse, and a results directory that is missing (unless asked to
    create it) or cannot be written, are refused before a grid starts."""
    from run import Args as RunArgs
    from run import check, invalid_run

    assert check(RunArgs("fig2_fourroom", seeds=(-5,))) == "--seeds must be >= 0, got -5"
    assert invalid_run("trpo_recall_mujoco.py", ["--env-id", "Foo-v9"]).startswith("--env-id 'Foo-v9' cannot be made")
    too_short = invalid_run("ac_recall_fourroom.py", ["--size", "11", "--total-timesteps", "100"])
    assert too_short.startswith("--total-timesteps must be at least one batch")
    assert invalid_run("sac_recall_mujoco.py", ["--env-id", "Hopper-v4"]) is None  # --trace-len None: Table 2's
    missing = tmp_path / "nowhere"
    assert check(RunArgs("fig2_fourroom", results_dir=missing)).endswith("or --new-results-dir to create it")
    assert check(RunArgs("fig2_fourroom", results_dir=missing, new_results_dir=True)) is None
    assert check(RunArgs("fig2_fourroom", results_dir=missing, dry_run=True)) is None
    missing.mkdir()
    missing.chmod(0o500)
    try:
        expected = None if os.access(missing, os.W_OK) else f"--results-dir {missing} cannot be written"  # root writes
        assert check(RunArgs("fig2_fourroom", results_dir=missing)) == expected
    finally:
        missing.chmod(0o700)


def test_a_run_at_another_budget_is_not_done_and_never_overwrites_one(tmp_path):
    """The budget is part of a run: a file of another --total-timesteps is in the way, not done (the dry run lists
    it as to do), and a real run refuses to overwrite it."""
    from run import Args as RunArgs
    from run import other_budget, plan

    write_runs(tmp_path, "fig2_fourroom", "7", "ac", [5000.0], "charts/success_rate", budget=2048)
    args = RunArgs("fig2_fourroom", env_ids=("7",), settings=("ac",), seeds=(1,), results_dir=tmp_path)
    exp = EXPERIMENTS["fig2_fourroom"]
    path = tmp_path / "fig2_fourroom" / "7__ac__1.csv.gz"
    assert dict(other_budget(plan(RunArgs(**{**vars(args), "total_timesteps": 4096}), exp))) == {path: 2048}
    assert dict(other_budget(plan(RunArgs(**{**vars(args), "total_timesteps": 2048}), exp))) == {}
    refused = benchmark("run.py", tmp_path, "fig2_fourroom", "--env-ids", "7", "--settings", "ac", "--seeds", "1",
                        "--results-dir", ".", "--total-timesteps", "4096")  # fmt: skip
    assert refused.returncode != 0 and "holds a run of 2048 env steps, not 4096" in refused.stderr, refused.stderr


def test_the_committed_results_are_done_and_not_stale():
    """The plain TRPO runs in results/ match what their commands give today: done, none stale."""
    dry = benchmark("run.py", ROOT, "fig6_trpo", "--settings", "trpo", "--dry-run")
    assert dry.returncode == 0 and "40 runs, 40 done" in dry.stdout and "warning" not in dry.stdout, dry.stdout


def test_reordering_a_scripts_arguments_changes_no_run(monkeypatch):
    """Which arguments act with the method off is named (run.METHOD_ARGS), not read from the order of Args: reversed
    fields give every run the same key. Every named argument is one of the script's."""
    import dataclasses

    import run

    for script, (switch, method) in run.METHOD_ARGS.items():
        names = {f.name for f in dataclasses.fields(run.args_class(script))}
        assert switch in names and set(method.split()) <= names, script
    flags = ["--env-id", "Hopper-v4", "--no-recall"]
    key = run.run_key({"script": "trpo_recall_mujoco.py", "flags": flags})
    original = run.args_class("trpo_recall_mujoco.py")
    fields = [(f.name, f.type, f) for f in reversed(dataclasses.fields(original))]
    reversed_args = dataclasses.make_dataclass("Args", fields)
    monkeypatch.setattr(run, "args_class", lambda script: reversed_args)
    assert run.run_key({"script": "trpo_recall_mujoco.py", "flags": flags}) == key


def test_every_setting_of_every_experiment_passes_its_scripts_checks():
    """What run.py checks before a grid is what the scripts accept: no committed experiment is refused (PER's Table 3
    batch size and alpha, and the env's trace length, filled in as the scripts do before their checks)."""
    from run import invalid_run

    for name, exp in EXPERIMENTS.items():
        for env_id in exp.env_ids:
            for setting in exp.settings:
                script, flags = exp.command(env_id, setting, exp.seeds[0])
                assert invalid_run(script, flags) is None, (name, env_id, setting)


def test_a_goal_gan_run_killed_in_the_runner_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    """The runner keeps a Goal GAN run in results/<experiment>/partial/<file name>/ with a checkpoint every
    iteration; started again after the run was killed, it resumes it from there, and clears the folder once the run
    is read back. The flags of the result's identity are the run's own, never the checkpoint's."""
    from test_goalgan_recall_umaze import RESUMABLE

    script, flags = "goalgan_recall_umaze.py", RESUMABLE[: RESUMABLE.index("--checkpoint-every")]
    path = tmp_path / "res" / "fig11_goalgan_point" / "PointUMaze-v0__recall__1.csv.gz"
    workdir = partial_dir(script, path)
    assert workdir == path.parent / "partial" / "PointUMaze-v0__recall__1"
    workdir.mkdir(parents=True)
    assert kill_after(script, workdir, "runs/*/checkpoint.pt", *flags, "--checkpoint-every", "1")
    (killed,) = (workdir / "runs").iterdir()
    commands, popen = [], subprocess.Popen
    monkeypatch.setattr(subprocess, "Popen", lambda command, **kw: commands.append(command) or popen(command, **kw))
    identity = {"experiment": "fig11_goalgan_point", "script": script, "flags": flags, "seed": 1}
    elapsed = torch.load(killed / "checkpoint.pt", weights_only=False)["counters"]["elapsed"]
    start = time.time()
    text = run_one(identity, "charts/coverage", None, 0, ROOT, None, workdir)
    this_part = time.time() - start
    assert commands[0][-4:] == ["--checkpoint-every", "1", "--resume", f"runs/{killed.name}"]
    assert not workdir.parent.exists()  # the run's folder, and partial/ once empty, are gone
    write(path, text)
    identity, series = read(path)
    assert identity["flags"] == flags and series["charts/iteration"][0][-1] > 6000
    # the wall time is the whole run's: the killed part's (to its checkpoint) and the resumed one's
    assert elapsed + this_part - 0.5 < identity["summary"]["wall_time_s"] <= elapsed + this_part + 0.1, elapsed
    assert partial_dir("trpo_recall_mujoco.py", path) is None  # a script without checkpoints runs in a temporary folder


def test_coverage_by_iteration_pairs_each_coverage_with_its_iteration(tmp_path):
    """Two seeds: one reaches iteration 2, one only 1; the table has the mean over the seeds at each iteration."""
    for seed, coverage in ((1, [0.1, 0.3, 0.5]), (2, [0.2, 0.5])):
        steps = [1000 * (k + 1) for k in range(len(coverage))]
        series = {"charts/iteration": (steps, list(range(len(coverage)))), "charts/coverage": (steps, coverage)}
        write(tmp_path / "exp" / f"PointUMaze-v0__goalgan__{seed}.csv.gz", to_text({"seed": seed}, series))
    result = benchmark("coverage_by_iteration.py", tmp_path, "exp", "--results-dir", ".", "--iterations", "0", "1", "2", "3")
    assert result.returncode == 0, result.stderr
    assert "| 0 | 2 | 0.15 | 0.10 | 0.20 |" in result.stdout and "| 1 | 2 | 0.40 | 0.30 | 0.50 |" in result.stdout
    assert "| 2 | 1 | 0.50 | 0.50 | 0.50 |" in result.stdout and "| 3 | 0 | | | |" in result.stdout


def test_the_report_says_how_far_each_run_under_way_got(tmp_path):
    assert in_progress(tmp_path) == "- none"
    run_dir = tmp_path / "fig5_goalgan_ant" / "partial" / "AntUMaze-v1__recall__1" / "runs" / "AntUMaze-v1__x__1__0"
    run_dir.mkdir(parents=True)
    torch.save({"counters": {"iteration": 37, "global_step": 8_123_456, "elapsed": 1.0}}, run_dir / "checkpoint.pt")
    assert in_progress(tmp_path) == (
        "- `fig5_goalgan_ant` AntUMaze-v1__recall__1: Goal GAN iteration 37, 8,123,456 of 46,525,000 env steps"
    )


def test_moved_verdicts_pairs_each_comparison_across_report_formats():
    """An old report (one verdict a row) and a new one (beside the comparison, the untrained model): the comparison
    `a` vs `c` moved, `a` vs `b` did not, a pending verdict and the rows of other tables are no verdicts. Two claims on
    one pair (`a` vs `d`: env steps to a threshold, and a final value) are two comparisons: only the second moved.
    Inconclusive at 10 seeds and at 3 (`e` vs `b`) has not moved."""
    from moved_verdicts import moved

    old = """| claim | env | seeds | effect | relative | P | verdict |
|-|-|-|-|-|-|-|
| X (6.1); [e](f.md): `a` vs `b`, env steps | 11x11 | 10 vs 10 | 1 | +5% | 1 | **reproduced** |
|  | 13x13 | 10 vs 10 | 1 | +5% | 1 | **reproduced** |
| Y (App. F); [g](h.md): `a` vs `c`, env steps | 11x11 | 10 vs 10 | 1 | +30% | 1 | **reproduced** |
| Z; `a` vs `d`, env steps saved to charts/s >= 0.9 | 11x11 | 10 vs 10 | 1 | +40% | 1 | **reproduced** |
| W; `a` vs `d`, final eval/v | 11x11 | 10 vs 10 | 1 | -6% | 0 | **not reproduced** |
| V; `a` vs `r-2:1`, env steps | 15x15 | 10 vs 10 | 1 | +9% | 1 | **inconclusive at 10 seeds** |
| U; `e` vs `b`, final eval/v | 11x11 | 10 vs 10 | 1 | +2% | 0 | **inconclusive at 10 seeds** |
"""
    new = """| claim | env | seeds | vs the comparison | verdict | vs the untrained model | verdict |
|-|-|-|-|-|-|-|
| X; `a` vs `b` (untrained: `c`) | 11x11 | 8 vs 10 / 8 | +5% | **reproduced** | +9% | **inconclusive at 8 seeds** |
|  | 13x13 | 0 vs 10 / 0 |  | pending |  | pending |
| Z; `a` vs `d`, env steps to charts/s >= 0.9 | 11x11 | 10 vs 10 | +40% | **reproduced** |  |  |
| W; `a` vs `d`, final eval/v | 11x11 | 10 vs 10 | +6% | **reproduced** |  |  |
| V; `a` vs `r-2:1`, env steps | 15x15 | 10 vs 7 | +17% | **reproduced** |  |  |
| U; `e` vs `b`, final eval/v | 11x11 | 3 vs 10 | -4% | **inconclusive at 3 seeds** |  |  |

| ours | env | seeds |
|-|-|-|
| [e](f.md) `a` | 11x11 | 10 |
"""
    assert moved(old, new) == [
        "a vs c, 11x11: reproduced -> inconclusive at 8 seeds",
        "a vs d, 11x11, eval/v: not reproduced -> reproduced",
        "a vs r-2:1, 15x15: inconclusive at 10 seeds -> reproduced",
    ]


def test_no_run_starts_past_the_deadline_and_a_bad_deadline_is_refused(tmp_path):
    result = benchmark("run.py", tmp_path, *TINY, "--results-dir", "res", "--new-results-dir", "--no-new-runs-after", "0")
    assert result.returncode == 0, result.stderr
    assert "4 runs not started: --no-new-runs-after 0 minutes had passed" in result.stdout
    assert not list((tmp_path / "res").rglob("*.csv.gz"))
    refused = benchmark("run.py", tmp_path, *TINY, "--results-dir", "res", "--no-new-runs-after", "-1")
    assert refused.returncode == 1 and refused.stderr.startswith("error: --no-new-runs-after must be a finite number")
