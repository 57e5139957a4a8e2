"""trpo_recall_mujoco.py: conjugate gradient, the Fisher-vector product, the line search, GAE, the command line."""

import copy
from functools import partial

import numpy as np
import pytest
import torch
from torch.func import functional_call
from torch.nn.utils import parameters_to_vector

from helpers import (
    assert_imitation_has_its_own_optimizer,
    assert_mujoco_smoke,
    assert_recall_leaves_alone,
    assert_refused,
    assert_same_seed_same_numbers,
    assert_trace_guard_holds,
    refusal,
    scalars,
)
from helpers import run_script as run_any_script
from trpo_recall_mujoco import (
    Args,
    BacktrackingModel,
    ForwardModel,
    GaussianPolicy,
    RunningNormaliser,
    TransitionBuffer,
    compute_gae,
    conjugate_gradient,
    default_trace_len,
    dyna_phase,
    fisher_vector_product,
    generate_imagined_rollouts,
    generate_recall_traces,
    high_reward_transitions,
    line_search,
    mean_kl,
    recall_phase,
)

SCRIPT = "trpo_recall_mujoco.py"
run_script = partial(run_any_script, SCRIPT)


def test_conjugate_gradient_matches_a_direct_solve():
    torch.manual_seed(0)
    M = torch.randn(8, 8, dtype=torch.float64)
    A, b = M @ M.T + 0.5 * torch.eye(8, dtype=torch.float64), torch.randn(8, dtype=torch.float64)
    torch.testing.assert_close(conjugate_gradient(lambda v: A @ v, b, iters=8), torch.linalg.solve(A, b))


def test_fisher_vector_product_is_the_hessian_of_the_kl():
    """On a tiny policy (31 parameters): F v = (d^2/dtheta^2 mean KL(pi_theta0 || pi_theta)) v at theta = theta0."""
    torch.manual_seed(0)
    policy = GaussianPolicy(2, 2, hidden=3).double()
    with torch.no_grad():
        policy.log_std.copy_(torch.tensor([-0.5, 0.3]))
    obs = torch.randn(32, 2, dtype=torch.float64)
    names = [name for name, _ in policy.named_parameters()]
    shapes = [p.shape for p in policy.parameters()]
    theta0 = parameters_to_vector(policy.parameters()).detach()
    with torch.no_grad():
        old_dist = policy(obs)

    def kl(theta):
        params = dict(zip(names, torch.split(theta, [s.numel() for s in shapes]), strict=True))
        params = {name: p.view(shape) for (name, p), shape in zip(params.items(), shapes, strict=True)}
        return mean_kl(old_dist, functional_call(policy, params, (obs,)))

    hessian = torch.autograd.functional.hessian(kl, theta0)
    fvp = fisher_vector_product(policy, list(policy.parameters()), obs, damping=0.1)
    for v in torch.randn(3, len(theta0), dtype=torch.float64):  # one KL graph, several products (conjugate gradient's)
        torch.testing.assert_close(fvp(v), hessian @ v + 0.1 * v)


def test_line_search_keeps_only_an_improving_step_within_the_trust_region():
    torch.manual_seed(0)
    policy = GaussianPolicy(3, 1, hidden=4)
    obs = torch.randn(64, 3)
    with torch.no_grad():
        old_dist = policy(obs)
    theta0 = parameters_to_vector(policy.parameters()).detach().clone()
    # a step of x along log_std alone: KL(N(m, 1) || N(m, e^x)) = x + (e^{-2x} - 1) / 2
    log_std_step = parameters_to_vector([(p is policy.log_std) * torch.ones_like(p) for p in policy.parameters()])

    def evaluate():  # a surrogate that grows with log_std
        dist = policy(obs)
        return dist.scale.mean(), mean_kl(old_dist, dist)

    # KL of a step of x = 2, 1.6, 1.28, ... breaks a bound of 0.01 for all three tries: rejected, the old policy kept
    accepted, shrinks, kl = line_search(list(policy.parameters()), evaluate, 2.0 * log_std_step, 0.01, tries=3, factor=0.8)
    assert (accepted, shrinks, kl) == (False, 3, 0.0)
    torch.testing.assert_close(parameters_to_vector(policy.parameters()), theta0)
    # with ten tries of factor 0.5, x = 2 / 2^k: KL ~ x^2, so the first within 1e-4 is x = 2^-7 (2^-6 gives 2.4e-4)
    accepted, shrinks, kl = line_search(list(policy.parameters()), evaluate, 2.0 * log_std_step, 1e-4, tries=10, factor=0.5)
    assert accepted and shrinks == 8 and kl <= 1e-4
    torch.testing.assert_close(parameters_to_vector(policy.parameters()), theta0 + 2.0**-7 * log_std_step)
    # a step within the bound that makes the surrogate worse is rejected too
    theta1 = parameters_to_vector(policy.parameters()).detach().clone()
    accepted, shrinks, _ = line_search(list(policy.parameters()), evaluate, -0.01 * log_std_step, 0.01, tries=10, factor=0.8)
    assert not accepted and shrinks == 10
    torch.testing.assert_close(parameters_to_vector(policy.parameters()), theta1)


def test_gae_by_hand_with_a_truncation_in_the_middle():
    """One env, five steps: 0 and 1 run, 2 is truncated by the time limit, 3 is the autoreset step (masked out of
    the update, its numbers never reach step 2), 4 is the first step of the next episode, the batch's last."""
    gamma, lam = 0.9, 0.5
    rewards = torch.tensor([1.0, 2.0, 3.0, 0.0, 5.0])[:, None]
    values = torch.tensor([10.0, 20.0, 30.0, 99.0, 50.0])[:, None]
    next_values = torch.tensor([20.0, 30.0, 40.0, 77.0, 60.0])[:, None]  # step 2's: V of its real final state
    terminations = torch.zeros(5, 1)
    dones = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0])[:, None]
    advantages = compute_gae(rewards, values, next_values, terminations, dones, gamma, lam)[:, 0]
    d4 = 5.0 + 0.9 * 60.0 - 50.0  # the last step bootstraps from V(s_5)
    d2 = 3.0 + 0.9 * 40.0 - 30.0  # truncated: bootstraps from V(final state), and the sum stops here
    d1 = 2.0 + 0.9 * 30.0 - 20.0
    d0 = 1.0 + 0.9 * 20.0 - 10.0
    expected = [d0 + 0.45 * (d1 + 0.45 * d2), d1 + 0.45 * d2, d2, None, d4]
    for t in (0, 1, 2, 4):
        assert advantages[t].item() == pytest.approx(expected[t])
    # terminated instead of truncated: no bootstrap from the final state
    terminations[2] = 1.0
    advantages = compute_gae(rewards, values, next_values, terminations, dones, gamma, lam)[:, 0]
    assert advantages[2].item() == pytest.approx(3.0 - 30.0)


def test_running_normaliser_matches_the_statistics_of_all_batches():
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(300, 4)).astype(np.float32)
    normaliser = RunningNormaliser(4)
    for batch in np.split(x, [50, 170]):
        normaliser.update(torch.as_tensor(batch))
    torch.testing.assert_close(normaliser.mean, torch.as_tensor(x.mean(0)), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(normaliser.var, torch.as_tensor(x.var(0)), rtol=1e-3, atol=1e-3)
    assert normaliser(torch.full((1, 4), 1e6)).max() == 10.0  # clipped


def test_trace_guard_holds_long_traces_near_the_training_states():
    assert_trace_guard_holds(BacktrackingModel(3, 2), lambda model, targets: generate_recall_traces(model, targets, 50))


DRIFT = torch.tensor([1.0, -0.5, 0.25])  # every real step adds this to the state


def recall_setup(**overrides):
    """A high-reward buffer of real steps s_{t+1} = s_t + DRIFT + noise under random actions, a fresh policy and
    backtracking model, and recall_phase as a function of the imitation's optimizer."""
    torch.manual_seed(0)
    flags = dict(trace_len=5, num_traces=64, bt_updates=1, imitation_updates=1, bt_learning_rate=3e-3)
    args = Args(**{**flags, **overrides})
    obs = torch.randn(4000, 3) * 3.0
    bt_buffer = TransitionBuffer(4000, "cpu", obs=(3,), actions=(2,), next_obs=(3,), rewards=())
    actions, next_obs = torch.rand(4000, 2) * 2 - 1, obs + DRIFT + 0.05 * torch.randn(4000, 3)
    bt_buffer.add(obs=obs, actions=actions, next_obs=next_obs, rewards=torch.ones(4000))
    normaliser = RunningNormaliser(3)
    normaliser.update(obs)
    policy, bt_model = GaussianPolicy(3, 2), BacktrackingModel(3, 2)
    bt = (bt_model, torch.optim.Adam(bt_model.parameters(), lr=args.bt_learning_rate))
    learner = (policy, normaliser, -torch.ones(2), torch.ones(2))
    kl_obs, base_step = normaliser(obs[:512]), torch.ones(sum(p.numel() for p in policy.parameters()))

    def phase(imitation_optimizer):
        return recall_phase(learner, imitation_optimizer, *bt, bt_buffer.contents(), kl_obs, base_step, args)

    return policy, normaliser, bt_buffer, kl_obs, phase


def test_recall_phase_learns_the_step_back_from_real_transitions():
    """Trained through recall_phase on the buffer's real consecutive (s_t, a_t, s_{t+1}), the backtracking model's
    traces walk backwards: each step subtracts DRIFT. Swapped pairs in training, or a flipped delta_s in the
    traces, walk forwards instead."""
    policy, _, bt_buffer, _, phase = recall_setup(bt_updates=400, imitation_updates=0)
    _, (states, _) = phase(torch.optim.Adam(policy.parameters(), lr=5e-4))
    # the targets are random buffer states: compare with the step back from each trace's own first state
    walked = (states[1:] - states[:-1]).mean(1)  # (trace_len - 1, 3)
    torch.testing.assert_close(walked, -DRIFT.expand(4, 3), rtol=0, atol=0.1)
    first_step = states[0] - bt_buffer.contents()["next_obs"].mean(0)
    assert first_step.mean(0) @ DRIFT < 0


def test_an_imitation_step_raises_the_log_likelihood_of_its_traces():
    """One recall phase with one imitation step: the policy gives its traces' actions a higher log-likelihood; the
    step's KL on the real states and its cosine with the base step are logged. With the imitation sign flipped it
    does not."""
    policy, normaliser, _, kl_obs, phase = recall_setup()
    before = copy.deepcopy(policy)
    stats, (states, actions) = phase(torch.optim.Adam(policy.parameters(), lr=2e-3))
    trace_obs, trace_actions = normaliser(states), actions.clamp(-1, 1)
    with torch.no_grad():
        gain = (
            policy(trace_obs).log_prob(trace_actions).sum(-1).mean() - before(trace_obs).log_prob(trace_actions).sum(-1).mean()
        )
        kl = mean_kl(before(kl_obs), policy(kl_obs))
        widened = (policy(kl_obs).entropy() - before(kl_obs).entropy()).sum(-1).mean()
    assert gain > 0.01
    assert kl > 0 and stats["imitation_kl"] == pytest.approx(kl.item())
    assert widened != 0 and stats["entropy_change"] == pytest.approx(widened.item())
    assert -1.0 <= stats["step_cosine"] <= 1.0 and stats["step_cosine"] != 0.0


def test_a_recall_phase_at_imitation_lr_0_leaves_the_policy_alone():
    policy, *_, phase = recall_setup()
    assert_recall_leaves_alone(policy, torch.optim.Adam(policy.parameters(), lr=5e-4), phase)


def test_terminal_transitions_never_join_the_backtracking_models_buffer():
    """A batch of 100 whose 20 highest rewards end in a fall (terminal): the top 10% by reward are the 10 best
    non-terminal ones; with 95 terminal transitions, only the 5 others."""
    rewards = torch.arange(100.0)
    terminations = (rewards >= 80).float()
    assert sorted(high_reward_transitions(rewards, terminations, 0.1).tolist()) == list(range(70, 80))
    terminations = (rewards >= 5).float()
    assert sorted(high_reward_transitions(rewards, terminations, 0.1).tolist()) == list(range(5))


ACTION_EFFECT = torch.tensor([[0.5, 0.0, 0.0], [0.0, 0.0, -0.5]])  # (act_dim, obs_dim): what an action adds


def dyna_setup(**overrides):
    """App. G: a buffer of real steps s_{t+1} = s_t + DRIFT + a_t @ ACTION_EFFECT + noise with reward r_t = a_t[0]
    (pushing the first action up pays), a fresh policy, value network and forward model, and dyna_phase as a
    function of the imitation's optimizer."""
    torch.manual_seed(0)
    flags = dict(model="forward", trace_len=5, num_traces=64, bt_updates=1, imitation_updates=1, bt_learning_rate=3e-3)
    args = Args(**{**flags, **overrides})
    obs, actions = torch.randn(4000, 3) * 3.0, torch.rand(4000, 2) * 2 - 1
    buffer = TransitionBuffer(4000, "cpu", obs=(3,), actions=(2,), next_obs=(3,), rewards=())
    next_obs = obs + DRIFT + actions @ ACTION_EFFECT + 0.05 * torch.randn(4000, 3)
    buffer.add(obs=obs, actions=actions, next_obs=next_obs, rewards=actions[:, 0])
    normaliser = RunningNormaliser(3)
    normaliser.update(obs)
    policy, value_net, fwd_model = GaussianPolicy(3, 2), torch.nn.Linear(3, 1), ForwardModel(3, 2)
    with torch.no_grad():
        value_net.weight.zero_(), value_net.bias.zero_()
    fwd = (fwd_model, torch.optim.Adam(fwd_model.parameters(), lr=args.bt_learning_rate), buffer)
    base_step = torch.ones(sum(p.numel() for p in policy.parameters()))

    def phase(imitation_optimizer):
        bounds = (-torch.ones(2), torch.ones(2))
        return dyna_phase(policy, imitation_optimizer, normaliser, value_net, fwd, obs[:512], base_step, *bounds, args)

    return policy, normaliser, fwd_model, obs[:512], phase


def test_forward_model_learns_a_known_linear_dynamics_and_rolls_forwards():
    """Trained through dyna_phase on the buffer's real transitions, the forward model predicts the known next state
    and reward of fresh (s, a) pairs, and its rollouts step forwards: each step adds DRIFT on average (the policy's
    actions average to about 0). Swapped pairs in training, or a flipped delta_s in the rollouts, step backwards."""
    policy, _, fwd_model, _, phase = dyna_setup(bt_updates=600, imitation_updates=0)
    _, (states, actions, rewards) = phase(torch.optim.Adam(policy.parameters(), lr=5e-4))
    obs, acts = torch.randn(1000, 3) * 3.0, torch.rand(1000, 2) * 2 - 1
    with torch.no_grad():
        predicted = fwd_model.predict(obs, acts) * fwd_model.out_std + fwd_model.out_mean
    torch.testing.assert_close(predicted[:, :-1], DRIFT + acts @ ACTION_EFFECT, rtol=0, atol=0.15)
    torch.testing.assert_close(predicted[:, -1], acts[:, 0], rtol=0, atol=0.15)
    clipped = actions.clamp(-1, 1)
    walked = (states[1:] - states[:-1] - clipped @ ACTION_EFFECT).mean((0, 1))
    torch.testing.assert_close(walked, DRIFT, rtol=0, atol=0.15)
    assert (states[1:] - states[:-1]).mean((0, 1)) @ DRIFT > 0


def test_an_imagined_step_moves_the_policy_towards_imagined_reward():
    """One dyna_phase with two imagined steps of the imitation's optimizer: the reward of the imagined rollouts is the
    first action, so the policy's mean first action goes up on the real states, and the steps' KL and entropy change
    are logged (two steps: Adam's first moves each log-std by +-lr, which can sum to no change)."""
    policy, normaliser, _, real_obs, phase = dyna_setup(bt_updates=300, imitation_updates=2)
    before = copy.deepcopy(policy)
    stats, _ = phase(torch.optim.Adam(policy.parameters(), lr=5e-3))
    with torch.no_grad():
        kl_obs = normaliser(real_obs)
        push = (policy(kl_obs).mean[:, 0] - before(kl_obs).mean[:, 0]).mean()
        kl = mean_kl(before(kl_obs), policy(kl_obs))
        widened = (policy(kl_obs).entropy() - before(kl_obs).entropy()).sum(-1).mean()
    assert push > 0.001
    assert kl > 0 and stats["imagined_kl"] == pytest.approx(kl.item())
    assert widened != 0 and stats["entropy_change"] == pytest.approx(widened.item())


def test_trace_guard_holds_imagined_rollouts_near_the_training_states():
    """A diverging forward model (each step adding 1000 standard deviations): 50 imagined steps stay finite, held
    10 standard deviations from the training states' mean, and are flagged."""
    torch.manual_seed(0)
    fwd_model, policy, normaliser = ForwardModel(3, 2), GaussianPolicy(3, 2), RunningNormaliser(3)
    with torch.no_grad():
        fwd_model.fwd_net[-1].bias.fill_(1000.0)
        fwd_model.obs_mean.copy_(torch.tensor([1.0, 2.0, 3.0]))
        fwd_model.obs_std.copy_(torch.tensor([0.1, 1.0, 10.0]))
        states, _, _, guarded = generate_imagined_rollouts(
            fwd_model, policy, normaliser, torch.zeros(16, 3), 50, -torch.ones(2), torch.ones(2)
        )
    assert torch.isfinite(states).all() and guarded.all()
    torch.testing.assert_close(states[-1], (fwd_model.obs_mean + 10 * fwd_model.obs_std).expand(16, 3))


def test_trace_len_defaults_follow_table_1():
    assert default_trace_len("Hopper-v4") == 10 and default_trace_len("Ant-v5") == 50
    assert default_trace_len("HalfCheetah-v4") == default_trace_len("Walker2d-v4") == 20


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--env-id", "CartPole-v1"], "CartPole-v1 has action space Discrete(2); this script needs a bounded Box"),
        (["--env-id", "NoSuchEnv-v0"], "--env-id 'NoSuchEnv-v0' cannot be made"),
        (["--trace-len", "0"], "--trace-len must be >= 1"),
        (["--max-kl", "0"], "--max-kl must be finite and > 0"),
        (["--imitation-lr", "-1"], "--imitation-lr must be finite and >= 0"),
        (["--seed", "-5"], "--seed must be >= 0"),
        (["--vf-lr", "-1"], "--vf-lr must be finite and > 0"),
        (["--model", "forward", "--bt-model", "random"], "--bt-model random is App. F's untrained backtracking model"),
    ],
)
def test_bad_arguments_get_one_line(tmp_path, flags, message):
    assert_refused(refusal(SCRIPT, tmp_path, *flags), message, tmp_path)


SMOKE = ["--env-id", "Hopper-v4", "--total-timesteps", "4096", "--eval-episodes", "1"]
SHARED_TAGS = ["charts/episodic_return", "charts/episodic_length", "charts/SPS", "eval/episodic_return"]
SHARED_TAGS += ["eval/forward_velocity"]
SHARED_TAGS += ["losses/policy_loss", "losses/value_loss", "losses/entropy", "losses/kl", "losses/line_search_accepted"]
RECALL_TAGS = ["recall/bt_action_nll", "recall/bt_state_nll", "recall/imitation_loss", "recall/imitation_kl"]
RECALL_TAGS += ["recall/imitation_kl_ratio", "recall/trace_len", "recall/target_value", "recall/trace_clamped_frac"]
RECALL_TAGS += ["recall/step_cosine", "recall/surrogate_undone", "recall/entropy_change"]


@pytest.mark.parametrize("recall", ["--recall", "--no-recall"])
def test_smoke_logs_every_tag(tmp_path, recall):  # traces of 10 steps: Table 1's for Hopper
    logged, checkpoint = assert_mujoco_smoke(
        SCRIPT, tmp_path, [*SMOKE, "--eval-every", "2048"], recall, SHARED_TAGS, RECALL_TAGS, trace_len=10
    )
    assert len(logged["eval/episodic_return"]) == 2  # on the way, and at the end
    assert all(0.0 <= kl <= 0.01 for kl in logged["losses/kl"])  # the trust region of the accepted steps
    assert {"policy", "value_net", "obs_normaliser"} <= checkpoint.keys()
    assert 3000 < checkpoint["obs_normaliser"]["count"] <= 4096  # the statistics of the real steps, saved


FORWARD_TAGS = ["recall/fwd_state_nll", "recall/fwd_reward_nll", "recall/heldout_fwd_state_nll"]
FORWARD_TAGS += ["recall/heldout_fwd_reward_nll", "recall/imagined_kl", "recall/imagined_kl_ratio"]
FORWARD_TAGS += ["recall/imagined_reward", "recall/trace_clamped_frac", "recall/trace_len", "recall/step_cosine"]
FORWARD_TAGS += ["recall/surrogate_undone"]


def test_smoke_forward_model_logs_its_tags(tmp_path):  # App. G: rollouts of 10 steps
    logged, checkpoint = assert_mujoco_smoke(
        SCRIPT, tmp_path, [*SMOKE, "--model", "forward"], "--recall", SHARED_TAGS, FORWARD_TAGS, trace_len=10
    )
    assert not any(tag in logged for tag in ("recall/bt_state_nll", "recall/imitation_kl"))
    assert "out_std" in checkpoint["fwd_model"]


def test_no_optimizer_steps_both_in_and_out_of_a_recall_phase(tmp_path):
    flags = ["--env-id", "Hopper-v4", "--total-timesteps", "1024", "--num-steps", "256", "--eval-episodes", "0"]
    assert_imitation_has_its_own_optimizer(SCRIPT, tmp_path, *flags)


def test_same_seed_same_numbers(tmp_path):
    tags = ["charts/episodic_return", "losses/kl", "recall/bt_state_nll", "eval/episodic_return"]
    # the second run evaluates the policy on the way, which must change nothing else
    assert_same_seed_same_numbers(
        SCRIPT, tmp_path, [*SMOKE, "--recall", "--eval-every", "0"], tags[:-1], ["--eval-every", "2048"]
    )


@pytest.mark.slow
@pytest.mark.parametrize("recall", ["--recall", "--no-recall"])
def test_learns_to_balance_the_inverted_pendulum(tmp_path, recall):
    """The smallest MuJoCo task: 40960 steps (20 iterations), seed 1; the balancing episodes last 1000 steps."""
    flags = ["--env-id", "InvertedPendulum-v4", "--total-timesteps", "40960", "--seed", "1", recall]
    result = run_script(tmp_path, *flags)
    assert result.returncode == 0, result.stderr
    logged = scalars(tmp_path)[2]
    assert logged["eval/episodic_return"][-1] >= 900
    assert np.mean(logged["charts/episodic_return"][-10:]) >= 500
