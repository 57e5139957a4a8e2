"""Nonsense values, budgets at which nothing would be learned, and a log directory that cannot be written: each
script refuses them with one line naming the flag, before it builds anything or steps an env (run in this process up
to where the logs would start: see helpers.refusal)."""

import pytest

from helpers import assert_refused, refusal

AC, PER, SAC = "ac_recall_fourroom.py", "per_fourroom.py", "sac_recall_mujoco.py"
TRPO, GOALGAN = "trpo_recall_mujoco.py", "goalgan_recall_umaze.py"
CASES = [
    # discount factors outside (0, 1]
    *(
        (script, ["--gamma", g], "--gamma must be in (0, 1]")
        for script in (AC, PER, SAC, TRPO, GOALGAN)
        for g in ("1.5", "-1")
    ),
    (AC, ["--gamma", "nan"], "--gamma must be in (0, 1]"),
    (GOALGAN, ["--gamma", "0"], "--gamma must be in (0, 1]"),
    # learning rates: finite and > 0 (the imitation's may be 0: the phase runs, the policy stays)
    (AC, ["--learning-rate", "nan"], "--learning-rate must be finite and > 0"),
    (AC, ["--imitation-lr", "nan"], "--imitation-lr must be finite and >= 0"),
    (PER, ["--learning-rate", "inf"], "--learning-rate must be finite and > 0"),
    (SAC, ["--policy-lr", "nan"], "--policy-lr must be finite and > 0"),
    (SAC, ["--q-lr", "inf"], "--q-lr must be finite and > 0"),
    (SAC, ["--imitation-lr", "inf"], "--imitation-lr must be finite and >= 0"),
    (TRPO, ["--vf-lr", "nan"], "--vf-lr must be finite and > 0"),
    (TRPO, ["--imitation-lr", "nan"], "--imitation-lr must be finite and >= 0"),
    (GOALGAN, ["--gan-lr", "nan"], "--gan-lr must be finite and > 0"),
    # GAE's lambda, the loss weights and the clipping of the actor-critic, TRPO's damping, Goal GAN's goal noise
    *((script, ["--gae-lambda", "1.5"], "--gae-lambda must be in [0, 1]") for script in (AC, PER, TRPO, GOALGAN)),
    (AC, ["--ent-coef", "-0.1"], "--ent-coef must be finite and >= 0"),
    (PER, ["--vf-coef", "nan"], "--vf-coef must be finite and >= 0"),
    (AC, ["--max-grad-norm", "0"], "--max-grad-norm must be finite and > 0"),
    (PER, ["--per-eps", "nan"], "--per-eps must be finite and > 0"),
    (PER, ["--per-alpha", "nan"], "--per-alpha must be finite and >= 0"),
    (TRPO, ["--cg-damping", "-1"], "--cg-damping must be finite and >= 0"),
    (GOALGAN, ["--goal-noise-std", "-0.5"], "--goal-noise-std must be finite and >= 0"),
    # SAC's soft update and temperature
    (SAC, ["--tau", "2"], "--tau must be in (0, 1]"),
    (SAC, ["--tau", "0"], "--tau must be in (0, 1]"),
    (SAC, ["--no-autotune", "--alpha", "-1"], "--alpha must be finite and > 0"),
    # budgets at which no update would be made
    (AC, ["--total-timesteps", "0"], "--total-timesteps must be at least one batch"),
    (AC, ["--total-timesteps", "100"], "--total-timesteps must be at least one batch (--num-envs x --num-steps = 256)"),
    (PER, ["--total-timesteps", "0"], "--total-timesteps must be at least one batch"),
    (TRPO, ["--total-timesteps", "2000"], "--total-timesteps must be at least one batch (--num-envs x --num-steps = 2048)"),
    (SAC, ["--total-timesteps", "3000"], "--total-timesteps (3000) must exceed --learning-starts (5000)"),
    (GOALGAN, ["--total-timesteps", "0"], "--total-timesteps must be >= 1"),
]


@pytest.mark.parametrize("script, flags, message", CASES, ids=lambda x: " ".join(x) if isinstance(x, list) else None)
def test_a_bad_value_gets_one_line_naming_its_flag(tmp_path, script, flags, message):
    assert_refused(refusal(script, tmp_path, *flags), message, tmp_path)


@pytest.mark.parametrize("script", [AC, PER, SAC, TRPO, GOALGAN])
def test_a_log_directory_that_cannot_be_written_gets_one_line(tmp_path, script):
    (tmp_path / "runs").write_text("a file where the log folder should be")
    result = refusal(script, tmp_path, "--total-timesteps", "6000")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot write the logs to runs/"), result.stderr
