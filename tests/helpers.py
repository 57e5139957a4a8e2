"""What the script tests share: run a script as a user would, read back its TensorBoard log."""

import copy
import os
import runpy
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.utils.tensorboard as tensorboard_module
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.optim.optimizer import register_optimizer_step_pre_hook

ROOT = Path(__file__).resolve().parents[1]


def run_script(script, cwd, *flags, timeout=600):
    """Run ROOT/script with flags in cwd, on one torch thread (the nets are small, and a busy machine stays fast);
    returns the finished process."""
    command = [sys.executable, str(ROOT / script), *flags]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def kill_after(script, cwd, path_glob, *flags):
    """Start ROOT/script as run_script does, kill it (SIGKILL: no handler runs) once a file matching path_glob exists
    under cwd, and return whether it was still running then."""
    command = [sys.executable, str(ROOT / script), *flags]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not list(Path(cwd).glob(path_glob)) and proc.poll() is None:
        time.sleep(0.02)
    running = proc.poll() is None
    proc.kill()
    proc.wait()
    return running


def run_in_process(script, cwd, *flags):
    """Run ROOT/script's main with flags in this process, in cwd (no new interpreter's imports: 3 s saved a run)."""
    argv, before = sys.argv, os.getcwd()
    try:
        sys.argv = [script, *flags]
        os.chdir(cwd)
        runpy.run_path(str(ROOT / script), run_name="__main__")
    finally:
        sys.argv = argv
        os.chdir(before)


def optimizers_by_phase(script, cwd, *flags):
    """Run the script in this process and record where each optimizer steps: the ids of the optimizers that stepped
    inside a recall phase (`recall_phase`, or `dyna_phase`, on the call stack) and of those that stepped outside one."""
    inside, outside, alive = set(), set(), []

    def record(optimizer, args, kwargs):
        frame = sys._getframe(1)
        while frame is not None and frame.f_code.co_name not in ("recall_phase", "dyna_phase"):
            frame = frame.f_back
        (inside if frame is not None else outside).add(id(optimizer))
        alive.append(optimizer)  # an id stays unique while its optimizer lives

    handle = register_optimizer_step_pre_hook(record)
    try:
        run_in_process(script, cwd, *flags)
    finally:
        handle.remove()
    return inside, outside


def assert_imitation_has_its_own_optimizer(script, cwd, *flags):
    """A short run of the script with recall: a recall phase ran, and no optimizer that steps in a recall phase (the
    backtracking model's, the imitation's) ever steps outside one, nor the other way round: recall never moves the
    base algorithm's optimizer state (an imitation step of the RL optimizer would mostly repeat the RL update)."""
    inside, outside = optimizers_by_phase(script, cwd, *flags, "--recall")
    assert inside, "no recall phase ran"
    assert not inside & outside, "an optimizer steps both in the recall phase and outside it"


def assert_recall_leaves_alone(policy, base_optimizer, phase):
    """`base_optimizer` (the base algorithm's) takes 20 steps on the policy, so that its moments hold gradients, then
    `phase(imitation_optimizer)` runs a recall phase: with an imitation optimizer of learning rate 0 it leaves the
    policy's parameters and the base optimizer's state bit-identical, and logs no change of the policy's entropy. As a
    check of the check, the same phase handed the base optimizer (recall's step before it had its own) moves the
    policy."""
    params = [p for p in policy.parameters() if p.requires_grad]
    for _ in range(20):
        base_optimizer.zero_grad()
        sum((p**2).sum() for p in params).backward()  # a loss whose gradient moves every parameter
        base_optimizer.step()
    before, state = [p.detach().clone() for p in params], copy.deepcopy(base_optimizer.state_dict()["state"])
    stats, _ = phase(torch.optim.Adam(params, lr=0.0))
    torch.testing.assert_close(params, before, rtol=0, atol=0)
    assert stats["entropy_change"] == 0
    torch.testing.assert_close(base_optimizer.state_dict()["state"], state, rtol=0, atol=0)
    phase(base_optimizer)
    assert any(not torch.equal(p, q) for p, q in zip(params, before, strict=True))


def scalars(cwd):
    """The one run directory under cwd/runs, its events, and {tag: [values]} of its scalars."""
    (run_dir,) = (cwd / "runs").iterdir()
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0}).Reload()
    return run_dir, events, {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def refusal(script, cwd, *flags):
    """ROOT/script with flags run in this process, in cwd, up to where it would start writing its logs: what a
    subprocess would give, without a new interpreter's imports. A script refuses bad input with
    `sys.exit("error: ...")`, which a real process prints as that one line on stderr with exit code 1; a script that
    does not refuse is stopped when it builds its SummaryWriter, with exit code 0 and nothing on stderr."""
    writer = tensorboard_module.SummaryWriter

    def not_refused(*args, **kwargs):
        raise SystemExit(0)

    tensorboard_module.SummaryWriter, code = not_refused, 0
    try:
        run_in_process(script, cwd, *flags)
    except SystemExit as e:
        code = e.code
    finally:
        tensorboard_module.SummaryWriter = writer
    if isinstance(code, str):
        return subprocess.CompletedProcess([script, *flags], 1, "", code + "\n")
    return subprocess.CompletedProcess([script, *flags], code or 0, "", "")


def assert_refused(result, message, cwd):
    """The script stopped with exactly one line, `error: <message>...`, before it wrote anything."""
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), result.stderr
    assert not (cwd / "runs").exists()


def assert_learns_smallest_grid(script, cwd):
    """The script's defaults on the 7x7 four-room grid, seed 1, 16384 steps: the trained policy reaches the goal
    reliably. Returns the run's scalars for the script's own checks."""
    result = run_script(script, cwd, "--size", "7", "--total-timesteps", "16384", "--num-envs", "8", "--seed", "1")
    assert result.returncode == 0, result.stderr
    assert f"logs: runs/{next((cwd / 'runs').iterdir()).name}" in result.stdout  # where the logs went, at the end
    logged = scalars(cwd)[2]
    assert logged["eval/success_rate"][-1] >= 0.9
    assert logged["charts/success_rate"][-1] >= 0.8
    return logged


def assert_fourroom_run_logged(cwd, own_tags):
    """A finished four-room run wrote the shared tags, its own `own_tags`, the visitation heatmap (TensorBoard
    image and PNG) and a checkpoint; returns its directory, scalars and checkpoint."""
    run_dir, events, logged = scalars(cwd)
    shared = ["charts/episodic_return", "charts/episodic_length", "charts/SPS", "charts/success_rate"]
    shared += ["losses/policy_loss", "losses/value_loss", "losses/entropy"]
    shared += ["eval/episodic_return", "eval/success_rate", "eval/visitation_coverage"]
    for tag in shared + own_tags:
        assert tag in logged, tag
    assert 0.0 < logged["eval/visitation_coverage"][-1] <= 1.0
    assert "eval/visitation" in events.Tags()["images"]
    assert (run_dir / "visitation.png").stat().st_size > 0
    return run_dir, logged, torch.load(next(run_dir.glob("*.pt")), weights_only=False)


def assert_mujoco_smoke(script, cwd, flags, recall, shared_tags, recall_tags, trace_len):
    """A tiny run of a MuJoCo script with `recall` ("--recall" or "--no-recall") and --save-model: every shared
    tag logged, the recall tags (finite, with the given trace length) exactly when recall is on, a checkpoint
    with the backtracking model and its normaliser. Returns the run's scalars and checkpoint."""
    result = run_script(script, cwd, *flags, recall, "--save-model")
    assert result.returncode == 0, result.stderr
    run_dir, _, logged = scalars(cwd)
    assert f"logs: runs/{run_dir.name}" in result.stdout and f"model saved to runs/{run_dir.name}/" in result.stdout
    for tag in shared_tags + (recall_tags if recall == "--recall" else []):
        assert tag in logged, tag
    if recall == "--recall":
        assert logged["recall/trace_len"][-1] == trace_len
        assert all(np.isfinite(logged[tag]).all() for tag in recall_tags)
    else:
        assert not any(tag.startswith("recall/") for tag in logged)
    checkpoint = torch.load(next(run_dir.glob("*.pt")), weights_only=False)
    assert {"bt_model", "args"} <= checkpoint.keys()
    assert "delta_std" in checkpoint["bt_model"]  # the normaliser's statistics travel with the model
    return logged, checkpoint


def assert_same_seed_same_numbers(script, cwd, flags, tags, second_flags=()):
    """Two runs with the same flags, seed included, log exactly the same values of `tags`; the second run adds
    `second_flags`, which must not change them (periodic evaluation, say). Returns the first run's scalars."""
    runs = []
    for name, extra in (("a", ()), ("b", second_flags)):
        (cwd / name).mkdir()
        assert run_script(script, cwd / name, *flags, *extra).returncode == 0
        runs.append(scalars(cwd / name)[2])
    for tag in tags:
        assert runs[0][tag] == runs[1][tag], tag
    return runs[0]


def assert_trace_guard_holds(model, generate):
    """The trace guard of the three continuous scripts. `model`: a fresh backtracking model whose state has 3
    numbers; `generate(model, targets)`: its script's traces, 50 steps back from the 16 `targets`. Every step back
    adding 1000 standard deviations (a diverging model on a long trace), the trace states are held 10 standard
    deviations from the training states' mean, stay finite, and are flagged."""
    torch.manual_seed(0)
    with torch.no_grad():
        model.bt_state_net[-1].bias.fill_(1000.0)
        model.obs_mean[:3] = torch.tensor([1.0, 2.0, 3.0])  # a goal-conditioned model's goal follows: left alone
        model.obs_std[:3] = torch.tensor([0.1, 1.0, 10.0])
        states, _, guarded = generate(model, torch.zeros(16, 3))
    assert torch.isfinite(states).all() and guarded.all()
    torch.testing.assert_close(states[-1], (model.obs_mean[:3] + 10 * model.obs_std[:3]).expand(16, 3))
