"""goalgan_recall_umaze.py: goal labels, the LSGAN, coverage, the episode batch, the backtracking model's goal, the
command line."""

import copy
from functools import partial

import gymnasium as gym
import numpy as np
import pytest
import torch

from envs.umaze import goal_success_rates, run_episodes
from goalgan_recall_umaze import (
    Args,
    BacktrackingModel,
    GaussianPolicy,
    GoalGAN,
    TransitionBuffer,
    add_distinct,
    generate_recall_traces,
    label_goals,
    mean_kl,
    mlp,
    recall_phase,
    trace_targets,
    train_gan,
)
from helpers import (
    assert_imitation_has_its_own_optimizer,
    assert_recall_leaves_alone,
    assert_refused,
    assert_same_seed_same_numbers,
    assert_trace_guard_holds,
    kill_after,
    refusal,
    run_script,
    scalars,
)

SCRIPT = "goalgan_recall_umaze.py"
run_goalgan = partial(run_script, SCRIPT)


def test_goals_of_intermediate_difficulty_are_labelled_one():
    successes = [[0, 0, 0, 0, 0], [1, 0, 0, 0, 0], [1, 1, 0, 1, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]
    np.testing.assert_array_equal(label_goals(successes, 0.1, 0.9), [0, 1, 1, 1, 0])
    np.testing.assert_array_equal(label_goals(successes, 0.3, 0.7), [0, 0, 1, 0, 0])
    np.testing.assert_array_equal(label_goals([[1, 0], [1, 1], [0, 0]], 0.1, 0.9), [1, 0, 0])  # two episodes a goal


def test_lsgan_learns_a_two_dimensional_target_set():
    """Goals spread uniformly over the maze's box, labelled good inside a disc of radius 1 at (3, 3) (9% of the
    box): after training, the generator's goals lie in (or just around) the disc and spread over it. With one
    discriminator step per generator step instead of five, the generator collapses onto a small patch."""
    low, high = np.array([-1.0, -1.0]), np.array([5.0, 5.0])

    def train(d_steps):
        torch.manual_seed(0)
        goals = torch.rand(2000, 2) * 6.0 - 1.0
        labels = ((goals - 3.0).norm(dim=1) <= 1.0).float()
        gan = GoalGAN(low, high, noise_dim=4)
        d_optimizer = torch.optim.Adam(gan.discriminator.parameters(), lr=1e-3)
        g_optimizer = torch.optim.Adam(gan.generator.parameters(), lr=1e-3)
        train_gan(gan, d_optimizer, g_optimizer, goals, labels, steps=300, d_steps=d_steps, batch_size=128)
        with torch.no_grad():
            return gan.generate(1000)

    generated = train(d_steps=5)
    assert ((generated - 3.0).norm(dim=1) <= 1.25).float().mean() >= 0.8
    assert generated.std(0).min() >= 0.25  # a uniform disc has std 0.5
    assert train(d_steps=1).std(0).min() < 0.15


def test_goals_are_measured_in_widths_of_the_box_so_its_edges_are_far_from_the_tanh_saturation():
    """Goal GAN's code: the generator's tanh spans twice the maze's box, so the box's corners are tanh = +-0.5, and the
    discriminator reads goals in the same units. (Squashed onto the box itself, a generator collapsed onto the maze's
    bottom edge, y = -1 for every goal, and its runs' coverage stalled at 0.41-0.51: docs/goalgan_recall_umaze.md.)"""
    low, high = np.array([-1.0, -1.0]), np.array([5.0, 7.0])
    gan = GoalGAN(low, high, noise_dim=4)
    last = gan.generator[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.atanh(torch.tensor([0.5, -0.5])))  # the tanh at +0.5 in x, -0.5 in y
        corner = gan.generate(3)
        np.testing.assert_allclose(corner.numpy(), [[5.0, -1.0]] * 3, atol=1e-5)  # (high x, low y)
        last.bias.fill_(20.0)  # saturated: a box's width past the centre, outside the box
        np.testing.assert_allclose(gan.generate(1).numpy(), [[8.0, 11.0]], atol=1e-4)
    corners = torch.tensor([[5.0, -1.0], [-1.0, 7.0], [2.0, 3.0]])  # two corners of the box, its centre
    torch.testing.assert_close(
        gan.score(corners), gan.discriminator(torch.tensor([[0.5, -0.5], [-0.5, 0.5], [0, 0]])).squeeze(-1)
    )


def test_add_distinct_keeps_goals_apart():
    kept = add_distinct(np.zeros((0, 2)), np.array([[0.0, 0.0], [0.1, 0.0], [1.0, 0.0], [1.0, 0.25]]), 0.3)
    np.testing.assert_array_equal(kept, [[0.0, 0.0], [1.0, 0.0]])
    np.testing.assert_array_equal(add_distinct(kept, np.array([[0.0, 0.29], [2.0, 2.0]]), 0.3)[2:], [[2.0, 2.0]])


def point_envs(n):
    env_list = [gym.make("PointUMaze-v0") for _ in range(n)]
    for i, env in enumerate(env_list):
        env.reset(seed=i)
    return env_list


def stay_put(states, goals):
    return np.zeros((len(states), 2))


def follow_the_u(states, goals):
    """A hand-written controller for the point mass: straight to the goal when robot and goal are in the same arm
    of the U (bottom, right, top), else to the corner of the U on the way."""
    pos, vel, goals = states[:, :2], states[:, 2:], np.asarray(goals)

    def arms(xy):  # (n, 3): in the bottom arm, the right arm, the top arm (the corners are in two)
        return np.stack([xy[:, 1] <= 0.8, xy[:, 0] >= 3.2, xy[:, 1] >= 3.2], 1)

    shared = (arms(pos) & arms(goals)).any(1)
    # in the right arm: to the corner on the goal's side; in the bottom or top arm: to that arm's corner
    corner = np.where((goals[:, 1] <= 0.8)[:, None], [4.0, 0.0], [4.0, 4.0])
    corner = np.where((pos[:, 0] < 3.2)[:, None], np.where((pos[:, 1] <= 0.8)[:, None], [4.0, 0.0], [4.0, 4.0]), corner)
    target = np.where(shared[:, None], goals, corner)
    return np.clip(2.0 * (target - pos) - 0.2 * vel, -1.0, 1.0)


def test_coverage_of_a_policy_that_always_succeeds_and_of_one_that_never_moves():
    env_list = point_envs(20)
    maze = env_list[0].unwrapped
    grid = maze.feasible_goals(0.5)
    assert goal_success_rates(env_list, follow_the_u, grid, 2, 200).mean() == 1.0  # every feasible goal in time
    # from the start, within 0.1 of (0, 0), only the grid goal at (0, 0) lies within goal_eps = 0.3
    rates = goal_success_rates(env_list, stay_put, grid, 2, 200)
    np.testing.assert_array_equal(rates, np.all(grid == 0.0, axis=1))


def test_episode_batch_pads_after_the_end_and_marks_success_and_truncation():
    env_list = point_envs(2)
    goals = np.array([[0.0, 0.0], [4.0, 4.0], [0.0, 4.0]])  # reached at once, never reached, never reached
    batch = run_episodes(env_list, stay_put, goals, 200)  # three episodes on two envs: two waves
    assert batch["states"].shape == (200, 3, 4) and batch["actions"].shape == (200, 3, 2)
    np.testing.assert_array_equal(batch["valid"].sum(0), [1, 200, 200])
    np.testing.assert_array_equal(batch["success"], [True, False, False])
    np.testing.assert_array_equal(batch["terminations"].sum(0), [1, 0, 0])  # reaching the goal terminates
    assert batch["dones"][0, 0] == 1 and batch["dones"][199, 1] == batch["dones"][199, 2] == 1  # time limit
    assert batch["dones"][:199, 1:].sum() == 0
    for key in ("rewards", "terminations", "dones", "valid"):  # nothing after an episode's end
        assert batch[key][1:, 0].sum() == 0, key
    np.testing.assert_array_equal(batch["rewards"].sum(0), [1, 0, 0])
    # each step's next state is the following step's state within an episode
    np.testing.assert_array_equal(batch["next_states"][:-1, 1:], batch["states"][1:, 1:])


def test_the_backtracking_model_listens_to_the_goal():
    """Transitions whose action is the goal (a_t = g + noise) and whose step back is -0.1 a_t: trained on them, the
    traces from one state for two goals take each its own goal's actions and walk back along it."""
    torch.manual_seed(0)
    goals = torch.rand(20_000, 2) * 2.0 - 1.0
    actions = goals + 0.1 * torch.randn(20_000, 2)
    next_states = torch.randn(20_000, 2)
    states = next_states - 0.1 * actions + 0.01 * torch.randn(20_000, 2)
    model = BacktrackingModel(2, 2, 2)
    model.update_normaliser(torch.cat([next_states, goals], -1), actions, states - next_states)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(600):
        idx = torch.randint(len(goals), (256,))
        nlls = model.nll(states[idx], goals[idx], actions[idx], next_states[idx])
        optimizer.zero_grad()
        (nlls["bt_action_nll"] + nlls["bt_state_nll"]).backward()
        optimizer.step()
    with torch.no_grad():
        two_goals = torch.tensor([[0.8, -0.8], [-0.8, 0.8]]).repeat_interleave(500, 0)
        trace_states, trace_actions, _ = generate_recall_traces(model, torch.zeros(1000, 2), two_goals, 5)
    assert trace_states.shape == (5, 1000, 2) and trace_actions.shape == (5, 1000, 2)
    for half, goal in ((slice(0, 500), [0.8, -0.8]), (slice(500, 1000), [-0.8, 0.8])):
        # actions are sampled with variance 1 in normalised units: their mean follows the goal
        torch.testing.assert_close(trace_actions[:, half].mean((0, 1)), torch.tensor(goal), rtol=0, atol=0.1)
        torch.testing.assert_close(trace_states[-1, half].mean(0), -0.5 * torch.tensor(goal), rtol=0, atol=0.1)


def test_trace_guard_holds_long_traces_near_the_training_states():
    assert_trace_guard_holds(
        BacktrackingModel(3, 2, 2), lambda model, targets: generate_recall_traces(model, targets, torch.zeros(16, 2), 50)
    )


def recall_setup(env_id, drift, **overrides):
    """The maze's decoder, a buffer of real steps s_{t+1} = s_t + drift + noise under random actions and goals, a
    fresh goal-conditioned policy and backtracking model, and recall_phase as a function of the imitation's
    optimizer."""
    torch.manual_seed(0)
    maze = gym.make(env_id).unwrapped
    maze.reset(seed=0)
    state_dim, act_dim = maze.observation_space["observation"].shape[0], maze.action_space.shape[0]
    args = Args(**{**dict(trace_len=5, num_traces=64, bt_updates=1, bt_learning_rate=3e-3), **overrides})
    states = torch.randn(4000, state_dim)
    bt_buffer = TransitionBuffer(4000, "cpu", states=(state_dim,), goals=(2,), actions=(act_dim,), next_states=(state_dim,))
    goals, actions = torch.rand(4000, 2) * 4.0, torch.rand(4000, act_dim) * 2 - 1
    bt_buffer.add(
        states=states, goals=goals, actions=actions, next_states=states + drift + 0.02 * torch.randn(4000, state_dim)
    )
    policy = GaussianPolicy(state_dim + 2, act_dim, args.learn_std)

    def policy_obs(s, g):
        return torch.cat([s, g.expand(s.shape[:-1] + (2,)) / 4.0], -1)

    low, high = torch.as_tensor(maze.action_space.low), torch.as_tensor(maze.action_space.high)
    learner = (policy, mlp(state_dim + 2, 1, 8, torch.nn.Tanh), policy_obs, low, high)
    bt_model = BacktrackingModel(state_dim, 2, act_dim)
    bt = (bt_model, torch.optim.Adam(bt_model.parameters(), lr=args.bt_learning_rate))
    trace_goals = np.stack([maze.sample_goal() for _ in range(32)])
    kl_obs, base_step = policy_obs(states[:512], goals[:512]), torch.ones(sum(p.numel() for p in policy.parameters()))

    def phase(imitation_optimizer):
        """The phase's diagnostics and its traces (states, actions, goals)."""
        n = args.num_traces * max(args.imitation_updates, 1)
        targets, target_goals = trace_targets(maze, trace_goals, n, np.random.default_rng(0), "cpu")
        data = {**bt_buffer.contents(), "targets": targets, "target_goals": target_goals}
        stats, traces = recall_phase(learner, imitation_optimizer, *bt, data, kl_obs, base_step, args)
        return stats, (*traces, target_goals)

    return learner, kl_obs, phase


def policy_optimizer(learner, lr=5e-4):
    return torch.optim.Adam([p for p in learner[0].parameters() if p.requires_grad], lr=lr)


def test_recall_phase_learns_the_step_back_from_real_transitions():
    """Trained through recall_phase on the buffer's real consecutive (s_t, g, a_t, s_{t+1}), the backtracking
    model's traces from the decoded goals walk backwards: each step subtracts the drift. Swapped pairs in training,
    or a flipped delta_s in the traces, walk forwards instead."""
    drift = torch.tensor([0.5, -0.25, 0.0, 0.1])
    learner, _, phase = recall_setup("PointUMaze-v0", drift, bt_updates=400, imitation_updates=0)
    _, (states, _, _) = phase(policy_optimizer(learner))
    torch.testing.assert_close((states[1:] - states[:-1]).mean(1), -drift.expand(4, 4), rtol=0, atol=0.1)


def test_an_imitation_step_raises_the_log_likelihood_of_its_traces():
    """One recall phase with two imitation steps and a learned log-std: the policy gives its traces' actions a higher
    log-likelihood; the steps' KL on the real states, their entropy change (two steps: Adam's first moves each
    log-std by +-lr, which can sum to no change) and their cosine with the base step are logged. With the imitation
    sign flipped it does not."""
    drift = torch.tensor([0.5, -0.25, 0.0, 0.1])
    learner, kl_obs, phase = recall_setup("PointUMaze-v0", drift, learn_std=True, imitation_updates=2)
    policy, _, policy_obs, low, high = learner
    before = copy.deepcopy(policy)
    stats, (states, actions, goals) = phase(policy_optimizer(learner, lr=2e-3))
    trace_obs, trace_actions = policy_obs(states, goals), actions.clamp(low, high)
    with torch.no_grad():
        new, old = policy(trace_obs).log_prob(trace_actions), before(trace_obs).log_prob(trace_actions)
        kl = mean_kl(before(kl_obs), policy(kl_obs))
        widened = (policy(kl_obs).entropy() - before(kl_obs).entropy()).sum(-1).mean()
    assert (new - old).sum(-1).mean() > 0.01
    assert kl > 0 and stats["imitation_kl"] == pytest.approx(kl.item())
    assert widened != 0 and stats["entropy_change"] == pytest.approx(widened.item())
    assert -1.0 <= stats["step_cosine"] <= 1.0 and stats["step_cosine"] != 0.0


def test_a_recall_phase_at_imitation_lr_0_leaves_the_policy_alone():
    learner, _, phase = recall_setup("PointUMaze-v0", torch.tensor([0.5, -0.25, 0.0, 0.1]))
    assert_recall_leaves_alone(learner[0], policy_optimizer(learner), phase)


def test_one_recall_phase_on_the_ant_decoder():
    """The Ant's goals decode into full Ant states (29 numbers, the robot at the goal); one recall phase with App.
    D's traces of 50 runs on them, stays finite, and moves the policy."""
    learner, _, phase = recall_setup("AntUMaze-v1", 0.01 * torch.ones(29), trace_len=50, num_traces=8, bt_updates=5)
    stats, (states, actions, goals) = phase(policy_optimizer(learner))
    assert states.shape == (50, 8, 29) and actions.shape == (50, 8, 8) and goals.shape == (8, 2)
    assert all(torch.isfinite(v).all() for v in stats.values())
    assert stats["imitation_kl"] > 0 and 0 <= stats["trace_clamped_frac"] <= 1


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--env-id", "Pendulum-v1"], "Pendulum-v1 is not a U-Maze env"),
        (["--env-id", "NoSuchEnv-v0"], "--env-id 'NoSuchEnv-v0' cannot be made"),
        (["--trace-len", "0"], "--trace-len must be >= 1"),
        (["--r-min", "0.9", "--r-max", "0.1"], "--r-min and --r-max need 0 <= r_min < r_max <= 1"),
        (["--env-id", "AntUMaze-v1", "--coverage-spacing", "2"], "--coverage-spacing 2.0 puts no feasible goal"),
        (["--seed", "-5"], "--seed must be >= 0"),
        (["--imitation-lr", "-1"], "--imitation-lr must be finite and >= 0"),
        (["--gan-lr", "0"], "--gan-lr must be finite and > 0"),
    ],
)
def test_bad_arguments_get_one_line(tmp_path, flags, message):
    assert_refused(refusal(SCRIPT, tmp_path, *flags), message, tmp_path)


SMOKE = ["--total-timesteps", "2001", "--num-new-goals", "20", "--num-old-goals", "10", "--init-episodes", "10"]
SMOKE += ["--gan-steps", "100", "--coverage-spacing", "1.0", "--coverage-episodes", "1", "--num-envs", "30"]
SHARED_TAGS = ["charts/episodic_return", "charts/episodic_length", "charts/SPS", "charts/success_rate"]
SHARED_TAGS += ["charts/coverage", "charts/iteration", "charts/good_goal_frac", "eval/episodic_return"]
SHARED_TAGS += ["losses/policy_loss", "losses/value_loss", "losses/entropy", "losses/kl", "losses/gan_d_loss"]
RECALL_TAGS = ["recall/bt_action_nll", "recall/bt_state_nll", "recall/imitation_loss", "recall/imitation_kl"]
RECALL_TAGS += ["recall/imitation_kl_ratio", "recall/trace_len", "recall/target_value", "recall/trace_validity"]
RECALL_TAGS += ["recall/trace_clamped_frac", "recall/buffer_size", "recall/step_cosine", "recall/surrogate_undone"]
RECALL_TAGS += ["recall/entropy_change"]


@pytest.mark.parametrize(
    "env_id, trace_len, recall",
    [("PointUMaze-v0", 20, "--recall"), ("PointUMaze-v0", 20, "--no-recall"), ("AntUMaze-v1", 50, "--recall")],
)
def test_smoke_logs_every_tag(tmp_path, env_id, trace_len, recall):
    """One Goal GAN iteration of both variants on the point mass, and the Ant script end to end. The point mass
    reaches a few goals in one iteration, so its recall phase runs; the Ant in this short run reaches none, so its
    recall phase is tested on its own (test_one_recall_phase_on_the_ant_decoder)."""
    flags = [*SMOKE, "--env-id", env_id, recall, "--save-model"]
    if env_id.startswith("Ant"):  # an Ant step costs 20 point-mass steps: fewer, shorter-lived goals
        flags += ["--num-new-goals", "4", "--num-old-goals", "0", "--init-episodes", "2", "--inner-iters", "2"]
        flags += ["--total-timesteps", "1001"]  # the Ant's short episodes: one iteration after the initialisation
    result = run_goalgan(tmp_path, *flags)
    assert result.returncode == 0, result.stderr
    init_steps = "1,000" if env_id.startswith("Ant") else "2,000"  # the initialisation's episodes of 500 or 200 steps
    assert (
        f"the initialisation takes up to {init_steps} env steps (no iteration runs if they pass the budget)" in result.stdout
    )
    run_dir, events, logged = scalars(tmp_path)
    for tag in SHARED_TAGS:
        assert tag in logged, tag
    assert logged["charts/iteration"] == [0, 1]  # the coverage before training and after the one iteration
    assert all(0.0 <= c <= 1.0 for c in logged["charts/coverage"])
    assert "charts/coverage_heatmap" in events.Tags()["images"] and (run_dir / "coverage.png").stat().st_size > 0
    recall_logged = [tag for tag in logged if tag.startswith("recall/")]
    if recall == "--recall" and env_id.startswith("Point"):
        assert set(RECALL_TAGS) <= set(recall_logged)
        assert logged["recall/trace_len"][-1] == trace_len
    if recall == "--no-recall":
        assert not recall_logged
    checkpoint = torch.load(next(run_dir.glob("*.pt")), weights_only=False)
    assert {"policy", "value_net", "obs_normaliser", "gan", "bt_model", "args"} <= checkpoint.keys()


def test_no_optimizer_steps_both_in_and_out_of_a_recall_phase(tmp_path):
    assert_imitation_has_its_own_optimizer(SCRIPT, tmp_path, *SMOKE)


def test_same_seed_same_numbers(tmp_path):
    tags = ["charts/episodic_return", "charts/coverage", "losses/kl", "losses/gan_d_loss", "recall/bt_state_nll"]
    assert_same_seed_same_numbers(SCRIPT, tmp_path, [*SMOKE, "--recall"], tags)


@pytest.mark.slow
def test_goal_gan_widens_the_coverage(tmp_path):
    """Seed 1, plain Goal GAN with its defaults, three iterations (about 190k steps): the noisy initial policy reaches
    a tenth of the grid goals, the trained one at least 0.3 (0.42 with the generator measured in box widths,
    2026-12-07)."""
    result = run_goalgan(tmp_path, "--total-timesteps", "150000", "--seed", "1", "--no-recall")
    assert result.returncode == 0, result.stderr
    logged = scalars(tmp_path)[2]
    assert logged["charts/iteration"][-1] == 3
    assert logged["charts/coverage"][0] <= 0.2 and logged["charts/coverage"][-1] >= 0.3


RESUMABLE = [*SMOKE, "--total-timesteps", "6000", "--num-new-goals", "10", "--num-old-goals", "5"]
RESUMABLE += ["--recall", "--checkpoint-every", "1"]


def logged_by_step(cwd):
    """{tag: [(step, value)]} of every scalar but the wall-clock SPS."""
    events = scalars(cwd)[1]
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"] if tag != "charts/SPS"}


def test_a_killed_run_resumes_to_the_same_numbers(tmp_path):
    """Killed after its first checkpoint and resumed with --resume, a run takes the same env steps and logs the same
    values at the same steps as the run that was never stopped (what the killed run logged after its checkpoint is
    dropped and logged again)."""
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    whole.mkdir(), killed.mkdir()
    assert kill_after(SCRIPT, killed, "runs/*/checkpoint.pt", *RESUMABLE), "it ended, or failed, before its first checkpoint"
    (run_dir,) = (killed / "runs").iterdir()
    resumed = run_goalgan(killed, *RESUMABLE, "--resume", f"runs/{run_dir.name}")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed runs/" in resumed.stdout
    assert run_goalgan(whole, *RESUMABLE).returncode == 0
    after, before = logged_by_step(killed), logged_by_step(whole)
    assert after.keys() == before.keys()
    for tag in before:
        assert after[tag] == before[tag], tag
    assert after["charts/iteration"][-1][0] == before["charts/iteration"][-1][0] > 6000


def started_with(**changes):
    """The arguments a checkpoint records for a default run (the trace length filled in), changed as asked."""
    recorded = {k: v for k, v in vars(Args()).items() if k not in ("checkpoint_every", "resume")}
    return {**recorded, "trace_len": 20, **changes}


WHOLE = dict(nets={}, optimizers={}, bt_buffer={}, old_goals=None, policy_mark=None, counters={}, rng={})


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "--resume old: no checkpoint.pt there"),
        (b"not a checkpoint", "--resume old: checkpoint.pt cannot be read"),
        ("cut", "--resume old: checkpoint.pt cannot be read"),  # a partial write: the first half of a real file
        ({"args": started_with(), "nets": {}}, "--resume old: checkpoint.pt lacks bt_buffer, counters, old_goals"),
        ({**WHOLE, "args": started_with(seed=2)}, "--resume old was started with --seed 2 (given 1)"),
        ({**WHOLE, "args": started_with()}, "--resume old: checkpoint.pt does not fit this script's networks (KeyError"),
    ],
    ids=["missing", "garbage", "partial", "incomplete", "other flags", "other networks"],
)
def test_a_checkpoint_that_cannot_go_on_is_refused_with_one_line(tmp_path, content, message):
    (tmp_path / "old").mkdir()
    path = tmp_path / "old" / "checkpoint.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content == "cut":
        torch.save({**WHOLE, "args": started_with(), "policy": torch.zeros(10_000)}, path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif content is not None:
        torch.save(content, path)
    result = refusal(SCRIPT, tmp_path, "--resume", "old")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), result.stderr
