"""benchmark/: the runner on a local pool and on a local Ray, resuming, the result file, and the plot's intervals."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from helpers import ROOT

sys.path.insert(0, str(ROOT / "benchmark"))
from experiments import EXPERIMENTS  # noqa: E402
from plot import bootstrap_ci, diagnostics, final_values, prob_greater  # noqa: E402
from report import verdict  # noqa: E402
from result_file import MAX_POINTS, downsample, read, summarise, to_text, write  # noqa: E402

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
    result = benchmark("run.py", tmp_path, *TINY, "--results-dir", "res")
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
        assert not any(tag.startswith("losses/") for tag in series)
        assert all(len(steps) <= MAX_POINTS and steps[-1] <= 2048 for steps, _ in series.values())
        assert identity["summary"]["final"] == pytest.approx(series["charts/success_rate"][1][-1], rel=1e-5)
        assert any(tag.startswith("recall/") for tag in series) == (identity["setting"] != "ac")
    mtimes = [f.stat().st_mtime_ns for f in files]
    again = benchmark("run.py", tmp_path, *TINY, "--results-dir", "res")
    assert again.returncode == 0 and "4 done, 0 made by other experiments, 0 to run" in again.stdout
    assert [f.stat().st_mtime_ns for f in files] == mtimes
    # the same commands in another experiment (App. F reruns Fig. 2's settings) are copied, not run again
    other = [*TINY, "--results-dir", "res"]
    other[0] = "fig14_random_model"
    dry = benchmark("run.py", tmp_path, *other, "--dry-run")
    assert dry.stdout.count("copy  ") == 4 and "4 made by other experiments, 0 to run" in dry.stdout
    assert benchmark("run.py", tmp_path, *other).returncode == 0
    for path in files:
        (identity, series), (copied, copied_series) = read(path), read(tmp_path / "res" / "fig14_random_model" / path.name)
        assert copied["experiment"] == "fig14_random_model" and copied["reused_from"] == f"fig2_fourroom/{path.name}"
        assert copied["summary"] == identity["summary"] and copied["flags"] == identity["flags"]
        np.testing.assert_array_equal(copied_series["charts/success_rate"][1], series["charts/success_rate"][1])


def test_a_result_file_keeps_the_diagnostics_of_the_imitation_step(tmp_path):
    """One TRPO + recall iteration on Hopper through the runner: its file keeps which way the imitation step pulls
    (its cosine with TRPO's step, the surrogate gain it took back) and the eval's forward velocity."""
    flags = ["fig6_trpo", "--env-ids", "Hopper-v4", "--settings", "recall", "--seeds", "1", "--total-timesteps", "2048"]
    result = benchmark("run.py", tmp_path, *flags, "--workers", "1", "--results-dir", "res")
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


def test_an_argument_the_script_no_longer_has_does_not_act(tmp_path):
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
    message = "sac_imitation_coef's setting coef0.03 passes --imitation-coef 0.03, which sac_recall_mujoco.py no longer"
    assert check(RunArgs("sac_imitation_coef")).startswith(message)
    assert check(RunArgs("sac_imitation_coef", settings=("sac",))) is None


@pytest.mark.slow
def test_ray_runs_the_same_runs(tmp_path):
    """One Ray task per run on a local Ray of 2 CPUs: the same numbers as the local pool (the runs are deterministic)."""
    flags = ["--settings", "true-learned", "--seeds", "1", "--results-dir"]
    for name, backend in (("local", "local"), ("ray", "ray")):
        result = benchmark("run.py", tmp_path, *TINY, *flags, name, "--backend", backend)
        assert result.returncode == 0, result.stderr
    local, ray = (read(tmp_path / name / "fig2_fourroom" / "7__true-learned__1.csv.gz") for name in ("local", "ray"))
    for tag in ("charts/success_rate", "charts/episodic_return", "recall/imitation_loss"):
        np.testing.assert_array_equal(local[1][tag][1], ray[1][tag][1])


def test_dry_run_and_bad_input(tmp_path):
    dry = benchmark("run.py", tmp_path, *TINY, "--results-dir", "res", "--dry-run")
    assert dry.returncode == 0 and dry.stdout.count("todo") == 4 and not (tmp_path / "res").exists()
    assert "python ac_recall_fourroom.py --size 7 --seed 1 --total-timesteps 2048 --no-recall" in dry.stdout
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
    """Synthetic results with known effects give the three verdicts and 'pending', and the sign of a steps-to-threshold
    effect says that fewer steps is better."""
    rng, res = np.random.default_rng(0), tmp_path / "res"
    write_runs(res, "fig7_sac", "Hopper-v4", "sac", rng.normal(100, 5, 20))
    write_runs(res, "fig7_sac", "Hopper-v4", "recall", rng.normal(130, 5, 20))  # +30%: reproduced
    write_runs(res, "fig7_sac", "Walker2d-v4", "sac", rng.normal(100, 5, 20))
    write_runs(res, "fig7_sac", "Walker2d-v4", "recall", rng.normal(90, 5, 20))  # -10%: not reproduced
    write_runs(res, "fig7_sac", "Ant-v4", "sac", [100.0, 102.0])
    write_runs(res, "fig7_sac", "Ant-v4", "recall", [130.0, 131.0])  # 2 seeds: inconclusive, however clear
    steps = "charts/success_rate"
    write_runs(res, "fig2_fourroom", "11", "ac", rng.normal(50_000, 2000, 10), steps, 200_000)
    write_runs(res, "fig2_fourroom", "11", "true-learned", rng.normal(25_000, 2000, 10), steps, 200_000)  # half the steps
    out, readme = tmp_path / "docs" / "reproduction.md", tmp_path / "README.md"
    readme.write_text("# x\n<!-- verdicts:start -->\nold\n<!-- verdicts:end -->\nrest\n")
    result = benchmark("report.py", tmp_path, "--results-dir", "res", "--out", str(out), "--readme", str(readme))
    assert result.returncode == 0, result.stderr
    lines = out.read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if "[fig7_sac](figures/fig7_sac.md): `recall` vs `sac`" in line)
    verdicts = {line.split("|")[2].strip(): line.split("|")[-2].strip() for line in lines[first : first + 4]}
    assert verdicts == {
        "Hopper-v4": "**reproduced**",
        "Walker2d-v4": "**not reproduced**",
        "Ant-v4": "**inconclusive at 2 seeds**",
        "HalfCheetah-v4": "pending",
    }
    fourroom = next(line for line in lines if "`true-learned` vs `ac`" in line).split("|")
    assert fourroom[2].strip() == "11x11" and fourroom[-2].strip() == "**reproduced**"
    value, low, high = map(float, re.fullmatch(r"([-+\d]+)% \[([-+\d]+), ([-+\d]+)\]", fourroom[5].strip()).groups())
    assert low <= 50 <= high and value > 40  # (50k - 25k) / 50k of the env steps saved
    sac = next(line for line in readme.read_text().splitlines() if line.startswith("| Recall improves SAC"))
    assert "Hopper-v4: reproduced, +" in sac and "Walker2d-v4: not reproduced, -" in sac and "HalfCheetah-v4: pending" in sac
    assert "| `python benchmark/run.py fig7_sac`, 100,000 env steps |" in sac and "(20 vs 20)" in sac
    assert "old" not in readme.read_text() and readme.read_text().endswith("<!-- verdicts:end -->\nrest\n")
    assert (tmp_path / "docs" / "figures" / "reproduction.png").stat().st_size > 0
    assert (tmp_path / "docs" / "figures" / "fig7_sac.md").exists() and not (
        tmp_path / "docs" / "figures" / "fig6_trpo.md"
    ).exists()


def test_reruns_beside_the_removed_files(tmp_path):
    """eval_phase pairs each rerun with the removed file of the same run: 'as before' only where the 95k evals match,
    a copy (reused_from) counted where it was made, a run not rerun left out; the rule restores the removed files
    after 4 pairs each within a fifth of its rerun's final metric, and reruns them once one pair is not. A rerun moved
    to SUPERSEDED still pairs; a file made at another imitation weight than the removed one never does."""
    from report import BEFORE_FIX, SUPERSEDED, eval_phase, restore_rule

    assert f"No {BEFORE_FIX}" in eval_phase(tmp_path)
    before = ["experiment,env_id,setting,seed,imitation_coef,eval_95k,final,commit"]
    before += ["fig7_sac,Hopper-v4,recall,1,0.03,1000.0,400.0,a", "fig7_sac,Hopper-v4,recall,2,0.03,1850.0,2100.0,b"]
    before += ["fig7_sac,Hopper-v4,recall,3,0.03,1.0,1.0,c", "fig19_sac_ratio,Hopper-v4,imit5,1,0.03,950.0,400.0,a"]
    before += ["fig7_sac,Walker2d-v4,recall,1,0.03,900.0,300.0,d"]
    (tmp_path / BEFORE_FIX).write_text("\n".join(before) + "\n")
    assert "No run of" in eval_phase(tmp_path)
    write_runs(tmp_path, "fig7_sac", "Hopper-v4", "recall", [1000.0, 2000.0])  # evals at 95k: 1,000 and 2,000
    write_runs(tmp_path, "fig7_sac", "Walker2d-v4", "recall", [1000.0])
    rerun = read(tmp_path / "fig7_sac" / "Hopper-v4__recall__1.csv.gz")
    rerun[1]["eval/episodic_return"][1][-1] = 600.0  # last eval 200 above before, its final metric 900: a 22% gap
    write(tmp_path / "fig7_sac" / "Hopper-v4__recall__1.csv.gz", to_text(rerun[0] | {"summary": {"final": 600.0}}, rerun[1]))
    copy = {"experiment": "fig19_sac_ratio", "env_id": "Hopper-v4", "setting": "imit5", "seed": 1}
    copy |= {"summary": {"final": 1000.0}, "reused_from": "fig7_sac/Hopper-v4__recall__1.csv.gz"}
    curve = {"eval/episodic_return": (np.array([95_000.0, 100_000.0]), np.array([950.0, 1000.0]))}
    write(tmp_path / "fig19_sac_ratio" / "Hopper-v4__imit5__1.csv.gz", to_text(copy, curve))
    text = eval_phase(tmp_path)
    assert "| fig7_sac | Hopper-v4 | recall | 2 | 1 of 2 | 1,250 | 1,300 | +200 [+200, +200] |" in text
    assert "fig19" not in text and "Over the 1 reruns" in text and "is 200 on average, positive in 1 of them" in text
    assert "| fig7_sac | Walker2d-v4 | recall | 1 | 0 of 1 | 300 | 1,000 | no pair |  |" in text
    assert "| +200 [+200, +200] | 1: 400 → 600 |" in text  # each pair by seed, the unpaired seed 2 left out
    assert "**rerun** (1 pairs; the largest gap in the last eval is 22.2% of its" in text
    assert "**restore** (4 pairs; the largest gap in the last eval is 20.0%" in restore_rule([0.1, 0.2, 0.0, 0.05])
    assert "**pending**, 3 of the 4 pairs" in restore_rule([0.1, 0.2, 0.0])
    assert "**rerun** (5 pairs; the largest gap in the last eval is 21.0%" in restore_rule([0.1] * 4 + [0.21])
    assert "**rerun** (2 pairs" in restore_rule([0.1, 0.9])  # one pair over a fifth settles it
    assert "the 2 other reruns ran apart" in text
    rerun[1]["eval/episodic_return"][1][-1] = 404.93  # a gain near 0 is a return still: whole numbers, not 4.93
    write(tmp_path / "fig7_sac" / "Hopper-v4__recall__1.csv.gz", to_text(rerun[0] | {"summary": {"final": 404.93}}, rerun[1]))
    assert "is 5 on average, positive in 1 of them" in eval_phase(tmp_path)
    # the default weight changes: the reruns at 0.03 move to SUPERSEDED and still pair; a run at the new weight does not
    (tmp_path / SUPERSEDED).mkdir()
    (tmp_path / "fig7_sac").rename(tmp_path / SUPERSEDED / "fig7_sac")
    new_default = rerun[0] | {"args": {"imitation_coef": 0.3}, "summary": {"final": 5000.0}}  # its 95k eval as before
    curve = {"eval/episodic_return": (np.array([95_000.0, 100_000.0]), np.array([1000.0, 5000.0]))}
    write(tmp_path / "fig7_sac" / "Hopper-v4__recall__1.csv.gz", to_text(new_default, curve))
    assert "is 5 on average, positive in 1 of them" in eval_phase(tmp_path)


def test_claims_on_superseded_recall_runs(tmp_path):
    """Recall files moved to SUPERSEDED are compared with today's baseline runs in their own table, only for the envs
    they cover; the main table no longer counts them but keeps every claim, pending where it has no files."""
    from report import SUPERSEDED, rows

    write_runs(tmp_path, "fig7_sac", "Ant-v4", "sac", [600.0, 650.0, 700.0, 620.0, 680.0])
    write_runs(tmp_path / SUPERSEDED, "fig7_sac", "Ant-v4", "recall", [900.0, 950.0, 1000.0, 920.0, 980.0])
    (old,) = [r for r in rows(tmp_path, set(), tmp_path / SUPERSEDED) if r["claim"].experiment == "fig7_sac"]
    assert old["env_id"] == "Ant-v4" and old["n"] == (5, 5) and old["verdict"] == "reproduced"
    now = [r for r in rows(tmp_path, set()) if r["claim"].experiment == "fig7_sac" and r["env_id"] == "Ant-v4"]
    assert now[0]["n"] == (0, 5) and "verdict" not in now[0]
    # a claim with no result files at all still has its pending rows in the main table, and none in the other
    assert [r["n"] for r in rows(tmp_path, set()) if r["claim"].experiment == "fig5_goalgan_ant"] == [(0, 0)]


def test_the_rule_for_the_default_critic_rate(tmp_path):
    """1e-3 becomes the default when its area under the curve is higher on both envs and its final eval not lower by a
    tenth; a worse env keeps 3e-4; fewer than 5 seeds a side leaves it pending."""
    from report import qlr_rule

    for env_id in ("Hopper-v4", "Walker2d-v4"):
        write_runs(tmp_path, "sac_baseline", env_id, "qlr3e-4", [100.0, 110.0, 90.0, 100.0, 100.0])
        write_runs(tmp_path, "sac_baseline", env_id, "qlr1e-3", [130.0, 120.0, 140.0, 130.0, 130.0])
    assert qlr_rule(tmp_path).count(": holds") == 2 and "the default is **1e-3**" in qlr_rule(tmp_path)
    write_runs(tmp_path, "sac_baseline", "Walker2d-v4", "qlr1e-3", [85.0] * 5)
    assert "Walker2d-v4, 5 and 5 seeds" in qlr_rule(tmp_path) and "the default is **3e-4**" in qlr_rule(tmp_path)
    (tmp_path / "sac_baseline" / "Hopper-v4__qlr1e-3__5.csv.gz").unlink()
    assert "Hopper-v4: 4 and 5 seeds so far" in qlr_rule(tmp_path) and "**pending**" in qlr_rule(tmp_path)


def test_the_rule_for_the_default_imitation_weight(tmp_path):
    """The weight with the best share of plain SAC's final eval, averaged over both envs, becomes the default when it
    beats 0.1's share by more than a tenth; a smaller lead keeps 0.1; a missing seed leaves it pending. The rule reads
    the last eval; the same rule on the mean of the last 4 evals is printed beside it."""
    from report import imitation_rule

    for env_id, sac in (("Hopper-v4", 100.0), ("Walker2d-v4", 200.0)):
        write_runs(tmp_path, "sac_imitation_coef", env_id, "sac", [sac] * 3)
        for weight, share in (("0.03", 0.9), ("0.1", 0.7), ("0.3", 0.5)):
            write_runs(tmp_path, "sac_imitation_coef", env_id, f"coef{weight}", [share * sac] * 3)
    assert "Walker2d-v4, 3 seeds" in imitation_rule(tmp_path) and "the default is **0.03**" in imitation_rule(tmp_path)
    assert "(on the mean final metric, 4 evals a run, it would be 0.03)" in imitation_rule(tmp_path)
    write_runs(tmp_path, "sac_imitation_coef", "Hopper-v4", "coef0.03", [60.0] * 3)  # mean share 0.75 against 0.7
    assert "the default is **0.1** (on the mean final metric, 4 evals a run, it would be 0.1)" in imitation_rule(tmp_path)
    for env_id, sac in (("Hopper-v4", 100.0), ("Walker2d-v4", 200.0)):  # 0.3 jumps from 0 to twice plain SAC at the end
        for seed in (1, 2, 3):
            path = tmp_path / "sac_imitation_coef" / f"{env_id}__coef0.3__{seed}.csv.gz"
            identity, series = read(path)
            series["eval/episodic_return"][1][-4:] = [0.0, 0.0, 0.0, 2 * sac]
            write(path, to_text(identity | {"summary": {"final": 2 * sac}}, series))
    assert "the default is **0.3** (on the mean final metric, 4 evals a run, it would be 0.1)" in imitation_rule(tmp_path)
    (tmp_path / "sac_imitation_coef" / "Walker2d-v4__coef0.3__3.csv.gz").unlink()
    assert "coef0.3 2; the rule waits for 3" in imitation_rule(tmp_path) and "**pending**" in imitation_rule(tmp_path)


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
