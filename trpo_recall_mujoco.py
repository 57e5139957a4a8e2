"""Trust region policy optimisation with and without recall traces on MuJoCo.

Reproduces paper 6.4 (Fig. 6) and App. B (Fig. 8: the length of the traces) of Goyal et al., "Recall Traces:
Backtracking Models for Efficient Reinforcement Learning", ICLR 2019. On-policy, there is no critic to rank
states: the backtracking model (App. C) learns from an explicit buffer of high-reward transitions (App. E.1).
`--model forward` is App. G's alternative (Fig. 16): a forward model whose imagined rollouts of the policy, from
real states, feed the policy instead of recall traces (Dyna).

    python trpo_recall_mujoco.py --env-id Hopper-v4
    python trpo_recall_mujoco.py --env-id HalfCheetah-v4 --no-recall
    python trpo_recall_mujoco.py --env-id Ant-v4 --model forward
"""

import os
import random
import sys
import time
from dataclasses import dataclass
from typing import Literal

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import tyro
from torch.nn.utils import parameters_to_vector, vector_to_parameters
from torch.utils.tensorboard import SummaryWriter


@dataclass
class Args:
    # experiment
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment"""
    seed: int = 1
    """seed of the experiment"""
    torch_deterministic: bool = True
    """if toggled, `torch.backends.cudnn.deterministic=True`"""
    cuda: bool = False
    """if toggled, run the networks on CUDA when it is available"""
    track: bool = False
    """if toggled, also log to Weights and Biases (needs `pip install wandb`)"""
    wandb_project_name: str = "recall-traces"
    """the wandb project name"""
    capture_video: bool = False
    """if toggled, record videos of the first env to `videos/` (needs `pip install moviepy`)"""
    save_model: bool = False
    """if toggled, save the policy, the value network, the observation normaliser and the model (backward or forward)"""
    eval_every: int = 50_000
    """env steps between two evaluations of the deterministic (mean-action) policy (0: only at the end)"""
    eval_episodes: int = 10
    """episodes of each evaluation, on an env of its own (not counted as env steps), logged as eval/episodic_return"""

    # environment
    env_id: str = "Hopper-v4"
    """any gymnasium env id with a flat Box observation space and a bounded Box action space"""
    num_envs: int = 4
    """the number of parallel environments"""

    # base algorithm: TRPO (Schulman et al. 2015) with GAE
    total_timesteps: int = 1_000_000
    """total real environment steps"""
    num_steps: int = 512
    """steps of each env per policy iteration (a batch of num_envs * num_steps)"""
    gamma: float = 0.99
    """the discount factor"""
    gae_lambda: float = 0.97
    """the lambda of generalised advantage estimation"""
    max_kl: float = 0.01
    """the trust region: the largest mean KL(old || new) of an accepted step"""
    cg_iters: int = 10
    """conjugate-gradient iterations for the natural-gradient direction"""
    cg_damping: float = 0.1
    """damping added to the Fisher-vector products"""
    line_search_tries: int = 10
    """step sizes tried by the backtracking line search before keeping the old policy"""
    line_search_factor: float = 0.8
    """each try shrinks the step by this factor"""
    vf_lr: float = 1e-3
    """Adam learning rate of the value network"""
    vf_epochs: int = 5
    """passes of the value network over each batch"""
    vf_minibatch_size: int = 64
    """minibatch size of the value network"""

    # recall traces
    recall: bool = True
    """if toggled, improve the policy with a model's experience (Algorithm 1); --no-recall is plain TRPO"""
    model: Literal["backward", "forward"] = "backward"
    """the backtracking model's recall traces (the paper's method), or a forward model's imagined rollouts of the
    policy from real states (App. G: Dyna); the bt_ flags below set the forward model's buffer and training too"""
    trace_len: int | None = None
    """steps in each recall trace (or imagined rollout); by default Table 1's for the env (Hopper 10, Ant 50,
    the others 20)"""
    num_traces: int = 16
    """recall traces in each imitation minibatch (N of Algorithm 1)"""
    bt_model: Literal["learned", "random"] = "learned"
    """a backtracking model trained by maximum likelihood, or left at its random initialisation (App. F)"""
    top_k_frac: float = 0.1
    """fraction of each batch's transitions, the highest-reward ones, added to the backtracking model's buffer"""
    bt_buffer_size: int = 10_000
    """capacity of the buffer of high-reward transitions (first in, first out: it follows the policy); of all
    recent real transitions with --model forward"""
    bt_updates: int = 50
    """backtracking-model gradient steps after each policy iteration"""
    bt_batch_size: int = 256
    """minibatch size of the backtracking model"""
    bt_learning_rate: float = 1e-3
    """Adam learning rate of the backtracking model (beta of Algorithm 1)"""
    imitation_updates: int = 1
    """imitation steps (or imagined steps) on the policy after each policy iteration, each on num_traces fresh traces"""
    imitation_lr: float = 1.5e-5
    """Adam learning rate of the imitation (or imagined) steps, an optimizer of their own (alpha of Algorithm 1, line
    13); tune_trpo's choice on seeds 101-103 (docs/reproduction.md, "Settings"; the authors' prototype: Adam at 5e-4,
    but 4 steps in 1M env steps, ours 488); 0 runs every recall phase without moving the policy"""


# App. E.1, Table 1: length of the recall traces of each agent
TABLE1_TRACE_LEN = {"HalfCheetah": 20, "Walker2d": 20, "Hopper": 10, "Ant": 50}


# differs from sac_recall_mujoco.py's copy: Table 1 (TRPO), not Table 2 (SAC)
def default_trace_len(env_id):
    return next((n for name, n in TABLE1_TRACE_LEN.items() if env_id.startswith(name)), 20)


def check_args(args: Args):
    """One clear line for each kind of bad input, before anything is built (the env is made once to look at it)."""
    inf = float("inf")
    bounds = [  # the flags, the test each value must pass, and what the test asks for
        ("seed total_timesteps bt_updates imitation_updates eval_every eval_episodes", lambda x: x >= 0, ">= 0"),
        ("trace_len num_traces num_envs num_steps", lambda x: x >= 1, ">= 1"),
        ("cg_iters line_search_tries vf_epochs vf_minibatch_size bt_buffer_size bt_batch_size", lambda x: x >= 1, ">= 1"),
        ("max_kl vf_lr bt_learning_rate", lambda x: 0 < x < inf, "finite and > 0"),
        ("imitation_lr cg_damping", lambda x: 0 <= x < inf, "finite and >= 0"),
        ("gamma top_k_frac", lambda x: 0 < x <= 1, "in (0, 1]"),
        ("gae_lambda", lambda x: 0 <= x <= 1, "in [0, 1]"),
        ("line_search_factor", lambda x: 0 < x < 1, "in (0, 1)"),
    ]
    for names, ok, need in bounds:
        for name in names.split():
            if not ok(getattr(args, name)):
                return f"--{name.replace('_', '-')} must be {need}, got {getattr(args, name)}"
    if args.total_timesteps < args.num_envs * args.num_steps:
        batch = args.num_envs * args.num_steps
        return f"--total-timesteps must be at least one batch (--num-envs x --num-steps = {batch}), got {args.total_timesteps}"
    if args.model == "forward" and args.bt_model == "random":
        return "--bt-model random is App. F's untrained backtracking model; it does not apply to --model forward"
    try:
        env = gym.make(args.env_id)
    except Exception as e:  # an unknown id, a missing module or package
        return f"--env-id {args.env_id!r} cannot be made: {e}"
    obs_space, act_space = env.observation_space, env.action_space
    env.close()
    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
        return f"{args.env_id} has observation space {obs_space}; this script needs a flat Box"
    if not isinstance(act_space, gym.spaces.Box) or not np.all(np.isfinite(act_space.low) & np.isfinite(act_space.high)):
        return f"{args.env_id} has action space {act_space}; this script needs a bounded Box"
    return None


def make_env(env_id, seed, idx, capture_video, run_name):
    def thunk():
        if capture_video and idx == 0:
            env = gym.make(env_id, render_mode="rgb_array")
            env = gym.wrappers.RecordVideo(env, f"videos/{run_name}")
        else:
            env = gym.make(env_id)
        env = gym.wrappers.RecordEpisodeStatistics(env)
        env.action_space.seed(seed + idx)
        return env

    return thunk


def mlp(n_in, n_out, hidden, activation):
    return nn.Sequential(
        nn.Linear(n_in, hidden), activation(), nn.Linear(hidden, hidden), activation(), nn.Linear(hidden, n_out)
    )


class RunningNormaliser(nn.Module):
    """Running mean and variance of the observations (parallel-variance update); normalises and clips to +-10.
    Its statistics are buffers, so they are saved with the model."""

    def __init__(self, dim):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("var", torch.ones(dim))
        self.register_buffer("count", torch.tensor(1e-4))

    def update(self, x):
        batch_mean, batch_var, n = x.mean(0), x.var(0, correction=0), len(x)
        delta, total = batch_mean - self.mean, self.count + n
        self.var.copy_((self.var * self.count + batch_var * n + delta**2 * self.count * n / total) / total)
        self.mean.add_(delta * n / total)
        self.count.fill_(total)

    def forward(self, x):
        return ((x - self.mean) / torch.sqrt(self.var + 1e-8)).clamp(-10.0, 10.0)


# differs from goalgan_recall_umaze.py's copy: the log-std is always learned
class GaussianPolicy(nn.Module):
    """pi(a|s) = N(mu(s), diag(sigma^2)): a 64x64 tanh MLP for the mean, a state-independent log-std."""

    def __init__(self, obs_dim, act_dim, hidden=64):
        super().__init__()
        self.mean_net = mlp(obs_dim, act_dim, hidden, nn.Tanh)
        self.log_std = nn.Parameter(torch.zeros(act_dim))

    def forward(self, obs):
        return torch.distributions.Normal(self.mean_net(obs), self.log_std.exp())


def gaussian_nll(x, mean, log_std):
    """-log N(x; mean, exp(log_std)^2), summed over the last dimension."""
    return (0.5 * ((x - mean) / log_std.exp()) ** 2 + log_std + 0.5 * np.log(2 * np.pi)).sum(-1)


def add_normaliser(module, **dims):
    """App. C's normaliser: a mean and a standard deviation for each named input or output, buffers of the module
    (so they are saved with it)."""
    for name, dim in dims.items():
        module.register_buffer(f"{name}_mean", torch.zeros(dim))
        module.register_buffer(f"{name}_std", torch.ones(dim))


def fit_normaliser(module, **data):
    """App. C: normalise with statistics of the training data (a floor keeps constant dimensions finite)."""
    for name, x in data.items():
        getattr(module, f"{name}_mean").copy_(x.mean(0))
        getattr(module, f"{name}_std").copy_(x.std(0, correction=0).clamp(min=1e-3))


# differs from sac_recall_mujoco.py's copy: the normaliser is refit to the whole buffer at each phase
class BacktrackingModel(nn.Module):
    """B_phi = q(a_t|s_{t+1}) q(delta_s_t|a_t, s_{t+1}), delta_s_t = s_t - s_{t+1} (paper 3.1, App. C).

    bt_action_net: 2x128 tanh units, the mean of a Gaussian of variance 1. bt_state_net: 2x128 ReLU units, the
    mean of a Gaussian with a learned variance per dimension. Both work on normalised s_{t+1}, a_t and
    delta_s_t; the statistics are buffers of the module, so they are saved with it.
    """

    def __init__(self, obs_dim, act_dim, hidden=128):
        super().__init__()
        self.bt_action_net = mlp(obs_dim, act_dim, hidden, nn.Tanh)
        self.bt_state_net = mlp(obs_dim + act_dim, obs_dim, hidden, nn.ReLU)
        self.bt_state_log_std = nn.Parameter(torch.zeros(obs_dim))
        add_normaliser(self, obs=obs_dim, action=act_dim, delta=obs_dim)  # of s_{t+1}, a_t and delta_s_t

    def update_normaliser(self, next_obs, actions, deltas):
        """App. C, refit to the whole buffer at each phase: the buffer is first in, first out, so its statistics
        drift slowly (SAC's model, whose training set is a fresh sample each phase, keeps running statistics)."""
        fit_normaliser(self, obs=next_obs, action=actions, delta=deltas)

    def nll(self, obs, actions, next_obs):
        """Eq. 2, negated and averaged, in normalised units: {"bt_action_nll": -log q(a_t|s_{t+1}),
        "bt_state_nll": -log q(delta_s_t|a_t, s_{t+1})}."""
        s_next = (next_obs - self.obs_mean) / self.obs_std
        a = (actions - self.action_mean) / self.action_std
        delta = (obs - next_obs - self.delta_mean) / self.delta_std
        action_nll = gaussian_nll(a, self.bt_action_net(s_next), torch.zeros_like(a))
        state_nll = gaussian_nll(delta, self.bt_state_net(torch.cat([s_next, a], -1)), self.bt_state_log_std)
        return {"bt_action_nll": action_nll.mean(), "bt_state_nll": state_nll.mean()}


TRACE_GUARD_STD = 10.0


def hold_near_data(states, mean, std):
    """The trace guard: each trace state is held within TRACE_GUARD_STD standard deviations of the backtracking
    model's training states. A long trace (50 steps on Ant) can otherwise run off to infinity, and one infinite
    state turns the policy's parameters into NaN. Returns the held states and which of them the guard moved."""
    held = torch.clamp(states, mean - TRACE_GUARD_STD * std, mean + TRACE_GUARD_STD * std)
    return held, (held != states).any(-1)


def generate_recall_traces(bt_model, targets, trace_len):
    """Sample recall traces backwards from the target states, all at once (paper 2.1, Algorithm 1 line 11).

    From s_{t+1}: a_t ~ q(a_t|s_{t+1}), delta_s_t ~ q(delta_s_t|a_t, s_{t+1}), s_t = s_{t+1} + delta_s_t, each
    sampled in normalised units and un-normalised before use (App. C). Returns states (trace_len, N, obs_dim)
    and actions (trace_len, N, act_dim) in the env's units, step t holding the pair t steps before the target,
    and (trace_len, N) flags of the states the trace guard moved.
    """
    states, actions, guarded = [], [], []
    next_obs = targets
    for _ in range(trace_len):
        s_next = (next_obs - bt_model.obs_mean) / bt_model.obs_std
        a = bt_model.bt_action_net(s_next)
        a = a + torch.randn_like(a)  # variance fixed to 1
        delta_mean = bt_model.bt_state_net(torch.cat([s_next, a], -1))
        delta = delta_mean + bt_model.bt_state_log_std.exp() * torch.randn_like(delta_mean)
        obs, moved = hold_near_data(
            next_obs + delta * bt_model.delta_std + bt_model.delta_mean, bt_model.obs_mean, bt_model.obs_std
        )
        states.append(obs)
        actions.append(a * bt_model.action_std + bt_model.action_mean)
        guarded.append(moved)
        next_obs = obs
    return torch.stack(states), torch.stack(actions), torch.stack(guarded)


class ForwardModel(nn.Module):
    """App. G's forward model for Dyna: p(delta_s_t, r_t|s_t, a_t), delta_s_t = s_{t+1} - s_t, with the shapes of
    the backtracking model's state net (App. C): 2x128 ReLU units, the mean of a Gaussian with a learned variance
    per dimension, on inputs and outputs normalised by statistics of the training data."""

    def __init__(self, obs_dim, act_dim, hidden=128):
        super().__init__()
        self.fwd_net = mlp(obs_dim + act_dim, obs_dim + 1, hidden, nn.ReLU)
        self.fwd_log_std = nn.Parameter(torch.zeros(obs_dim + 1))
        add_normaliser(self, obs=obs_dim, action=act_dim, out=obs_dim + 1)  # of s_t, a_t and (delta_s_t, r_t)

    def predict(self, obs, actions):
        """The mean of the normalised (delta_s_t, r_t) given s_t and a_t."""
        s, a = (obs - self.obs_mean) / self.obs_std, (actions - self.action_mean) / self.action_std
        return self.fwd_net(torch.cat([s, a], -1))

    def nll(self, obs, actions, next_obs, rewards):
        """The negated, averaged log-likelihood in normalised units: {"fwd_state_nll": -log p(delta_s_t|s_t, a_t),
        "fwd_reward_nll": -log p(r_t|s_t, a_t)}."""
        out = (torch.cat([next_obs - obs, rewards[:, None]], -1) - self.out_mean) / self.out_std
        mean = self.predict(obs, actions)
        state_nll = gaussian_nll(out[:, :-1], mean[:, :-1], self.fwd_log_std[:-1])
        reward_nll = gaussian_nll(out[:, -1:], mean[:, -1:], self.fwd_log_std[-1:])
        return {"fwd_state_nll": state_nll.mean(), "fwd_reward_nll": reward_nll.mean()}


def generate_imagined_rollouts(fwd_model, policy, obs_normaliser, starts, length, low, high):
    """Roll the policy forwards in the forward model from real states (App. G, Dyna), all at once.

    From s_t: a_t ~ pi(a_t|s_t), (delta_s_t, r_t) ~ p(.|s_t, a_t) given the action clipped to the bounds (what the
    env would execute), s_{t+1} = s_t + delta_s_t, sampled in normalised units and un-normalised, each state held
    near the model's training states by the trace guard. Returns states (length + 1, N, obs_dim) from the starts
    on, the policy's actions (length, N, act_dim), the rewards (length, N) and the guard's flags (length, N).
    """
    states, actions, rewards, guarded = [starts], [], [], []
    for _ in range(length):
        obs = states[-1]
        a = policy(obs_normaliser(obs)).sample()
        mean = fwd_model.predict(obs, torch.clamp(a, low, high))
        out = (mean + fwd_model.fwd_log_std.exp() * torch.randn_like(mean)) * fwd_model.out_std + fwd_model.out_mean
        next_obs, moved = hold_near_data(obs + out[:, :-1], fwd_model.obs_mean, fwd_model.obs_std)
        states.append(next_obs)
        actions.append(a)
        rewards.append(out[:, -1])
        guarded.append(moved)
    return torch.stack(states), torch.stack(actions), torch.stack(rewards), torch.stack(guarded)


class TransitionBuffer:
    """First in, first out: the real transitions a model learns from, one tensor per field, each field's shape
    given at construction (here obs, actions, next_obs and rewards; for the backtracking model, the high-reward
    transitions)."""

    def __init__(self, capacity, device, **shapes):
        self.capacity, self.pos, self.size, self.device = capacity, 0, 0, device
        self.data = {key: torch.zeros((capacity, *shape), device=device) for key, shape in shapes.items()}

    def add(self, **fields):
        n = len(next(iter(fields.values())))
        idx = (self.pos + torch.arange(n, device=self.device)) % self.capacity
        for key, x in fields.items():
            self.data[key][idx] = x
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def contents(self):
        """The stored transitions, oldest slots first once the buffer has wrapped (a dict of views)."""
        return {key: x[: self.size] for key, x in self.data.items()}


# differs from sac_recall_mujoco.py's copy: the normalised observation and the clipped mean action
def evaluate(policy, obs_normaliser, env_id, episodes, seed, low, high):
    """The mean return of the deterministic policy (the mean action, clipped) over `episodes` episodes of a fresh
    env, seeded apart from training, and its mean forward velocity (each episode's mean info["x_velocity"], None
    where the env gives none): a high return can be standing still. It draws no random numbers, so evaluating
    leaves training unchanged."""
    env, returns, velocities = gym.make(env_id), [], []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + 10_000 + episode)
        done, ep_return, ep_velocity = False, 0.0, []
        while not done:
            with torch.no_grad():
                obs_t = obs_normaliser(torch.as_tensor(obs, dtype=torch.float32, device=low.device))
                obs, reward, terminated, truncated, info = env.step(torch.clamp(policy(obs_t).mean, low, high).cpu().numpy())
            ep_return += reward
            ep_velocity += [info["x_velocity"]] if "x_velocity" in info else []
            done = terminated or truncated
        returns.append(ep_return)
        velocities += [np.mean(ep_velocity)] if ep_velocity else []
    env.close()
    return float(np.mean(returns)), float(np.mean(velocities)) if velocities else None


def log_eval(writer, eval_return, velocity, global_step):
    writer.add_scalar("eval/episodic_return", eval_return, global_step)
    if velocity is not None:
        writer.add_scalar("eval/forward_velocity", velocity, global_step)


def compute_gae(rewards, values, next_values, terminations, dones, gamma, gae_lambda):
    """Generalised advantage estimation over (num_steps, num_envs) tensors.

    `next_values` is V of the observation each step returned, so the last step of the batch and a truncated
    (time-limit) step bootstrap from their real next state; `terminations` cut the bootstrap and `dones`
    (terminated or truncated) cut the sum at the end of an episode.
    """
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[0])
    for t in reversed(range(len(rewards))):
        delta = rewards[t] + gamma * (1.0 - terminations[t]) * next_values[t] - values[t]
        last = delta + gamma * gae_lambda * (1.0 - dones[t]) * last
        advantages[t] = last
    return advantages


def conjugate_gradient(Avp, b, iters, residual_tol=1e-10):
    """Solve A x = b for a symmetric positive-definite A given only x -> A x."""
    x = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    rr = r @ r
    for _ in range(iters):
        Ap = Avp(p)
        alpha = rr / (p @ Ap)
        x += alpha * p
        r -= alpha * Ap
        rr_new = r @ r
        if rr_new < residual_tol:
            break
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def mean_kl(old_dist, new_dist):
    """Mean KL(old || new) over the states, summed over the action dimensions."""
    return torch.distributions.kl_divergence(old_dist, new_dist).sum(-1).mean()


def fisher_vector_product(policy, params, obs, damping):
    """v -> F v + damping v, where F is the Hessian in `params` of the mean KL(pi_old || pi) at pi = pi_old, the
    policy now. The KL's gradient and its graph are built once, for all the products of a TRPO step."""
    with torch.no_grad():
        old_dist = policy(obs)
    grads = parameters_to_vector(torch.autograd.grad(mean_kl(old_dist, policy(obs)), params, create_graph=True))

    def fvp(v):
        return parameters_to_vector(torch.autograd.grad(grads @ v, params, retain_graph=True)) + damping * v

    return fvp


def line_search(params, evaluate, full_step, max_kl, tries, factor):
    """Try theta + factor^k * full_step for k = 0, 1, ...; keep the first that improves the objective and stays
    within the trust region. `evaluate()` gives (objective, KL to the old policy) at the current parameters.
    Returns (accepted, shrinks tried before it, KL of the accepted step); a rejected search keeps the old policy."""
    old_params = parameters_to_vector(params).detach().clone()
    with torch.no_grad():
        old_objective, _ = evaluate()
        for k in range(tries):
            vector_to_parameters(old_params + factor**k * full_step, params)
            objective, kl = evaluate()
            if kl <= max_kl and objective > old_objective:
                return True, k, kl.item()
        vector_to_parameters(old_params, params)
    return False, tries, 0.0


def surrogate_objective(policy, obs, actions, advantages):
    """TRPO's surrogate E[pi(a|s) / pi_old(a|s) * A] as a function of the current policy, pi_old the policy now."""
    with torch.no_grad():
        old_log_prob = policy(obs).log_prob(actions).sum(-1)

    def surrogate():
        return (torch.exp(policy(obs).log_prob(actions).sum(-1) - old_log_prob) * advantages).mean()

    return surrogate


def trpo_step(policy, params, surrogate, obs, args):
    """Algorithm 1, line 7: one step up the surrogate E[pi/pi_old * A] along the natural gradient, within mean
    KL(pi_old || pi) <= max_kl on the states `obs` (Schulman et al. 2015): conjugate gradient on Fisher-vector
    products, then the line search."""
    with torch.no_grad():
        old_dist = policy(obs)
    g = parameters_to_vector(torch.autograd.grad(surrogate(), params))
    fvp = fisher_vector_product(policy, params, obs, args.cg_damping)
    step_dir = conjugate_gradient(fvp, g, args.cg_iters)
    # the largest step along step_dir with 0.5 s^T F s = max_kl (the quadratic model of the KL)
    shs = 0.5 * step_dir @ fvp(step_dir)
    full_step = step_dir * torch.sqrt(args.max_kl / shs.clamp(min=1e-12))

    def evaluate():
        return surrogate(), mean_kl(old_dist, policy(obs))

    search = (args.max_kl, args.line_search_tries, args.line_search_factor)
    accepted, shrinks, kl = line_search(params, evaluate, full_step, *search)
    with torch.no_grad():
        new_surrogate = surrogate().item()  # the surrogate starts at mean(A) = 0, so a step taken makes it > 0
    return {"policy_loss": -new_surrogate, "kl": kl, "line_search_accepted": float(accepted), "line_search_shrinks": shrinks}


def high_reward_transitions(rewards, terminations, top_k_frac):
    """Algorithm 1, line 8 (App. E.1): the indices of the top_k_frac of a batch's transitions by reward (no critic
    here), which join the backtracking model's buffer. A terminal transition never does: on MuJoCo it is a fall, and
    traces that start from falls teach the policy to fall."""
    ranked = torch.argsort(rewards.masked_fill(terminations.bool(), -torch.inf), descending=True)
    return ranked[: min(max(1, int(top_k_frac * len(rewards))), int((terminations == 0).sum()))]


def imitation_loss(policy, obs, actions):
    """Eq. 3, negated and averaged: -log pi_theta(a_t|s_t) over the (s_t, a_t) pairs of the recall traces."""
    return -policy(obs).log_prob(actions).sum(-1).mean()


def imitation_step(policy, imitation_optimizer, obs, actions):
    """Algorithm 1, line 13: one gradient step on Eq. 3 over recall traces, by the imitation's own Adam (as the
    authors' prototype does); TRPO's step is no gradient step, and a trust-region step here would spend its whole
    KL budget whatever the traces are worth. Returns the loss before the step."""
    loss = imitation_loss(policy, obs, actions)
    imitation_optimizer.zero_grad()
    loss.backward()
    imitation_optimizer.step()
    return loss.detach()


def step_cosine(step, base_step):
    """The cosine, in parameter space, between the imitation's update of the policy and the base algorithm's update
    since the last recall phase: above 0 recall pulls with the RL step, below 0 against it (0 if either is 0)."""
    return torch.cosine_similarity(step, base_step, dim=0, eps=1e-12)


def bt_update(bt_model, bt_optimizer, *batch):
    """Algorithm 1, lines 8-9: one maximum-likelihood step of the backtracking model (Eq. 2) on a minibatch of its
    nll's arguments. Returns its NLLs."""
    nlls = bt_model.nll(*batch)
    bt_optimizer.zero_grad()
    (nlls["bt_action_nll"] + nlls["bt_state_nll"]).backward()
    bt_optimizer.step()
    return nlls


# differs from the other copies: traces start at random buffer states, read through the observation normaliser
def recall_phase(learner, imitation_optimizer, bt_model, bt_optimizer, data, kl_obs, base_step, args):
    """Algorithm 1, lines 8-13: fit the backtracking model (Eq. 2) to the high-reward buffer, sample recall traces
    back from its states, and take imitation steps on them (Eq. 3). `learner`: the policy, its observation
    normaliser and the action bounds; `data`: the buffer's transitions (obs, actions, next_obs, rewards); `kl_obs`:
    the real states (normalised) on which the imitation steps' KL is measured; `base_step`: TRPO's update of the
    policy's parameters since the last phase. Returns the diagnostics and the traces (states, actions)."""
    policy, obs_normaliser, low, high = learner
    n = len(data["obs"])
    bt_model.update_normaliser(data["next_obs"], data["actions"], data["obs"] - data["next_obs"])
    # lines 8-9: maximum likelihood of the backtracking model (Eq. 2); none for App. F's random one
    for _ in range(args.bt_updates if args.bt_model == "learned" else 0):
        batch = torch.randint(n, (args.bt_batch_size,), device=kl_obs.device)
        bt_update(bt_model, bt_optimizer, data["obs"][batch], data["actions"][batch], data["next_obs"][batch])
    # lines 10-11: traces backwards from high-reward states of the buffer, one batch for the phase
    with torch.no_grad():
        targets = torch.randint(n, (args.num_traces * max(args.imitation_updates, 1),), device=kl_obs.device)
        trace_states, trace_actions, guarded = generate_recall_traces(bt_model, data["next_obs"][targets], args.trace_len)
        trace_obs = obs_normaliser(trace_states)  # the policy sees normalised observations
        trace_actions = torch.clamp(trace_actions, low, high)  # what the env would have executed
        before, theta = policy(kl_obs), parameters_to_vector(policy.parameters())
        stats = bt_model.nll(data["obs"], data["actions"], data["next_obs"])
    stats.update(target_value=data["rewards"][targets].mean(), trace_clamped_frac=guarded.float().mean())
    # lines 12-13: imitation steps on the policy (Eq. 3), each on its own targets' traces
    for k in range(args.imitation_updates):
        part = slice(k * args.num_traces, (k + 1) * args.num_traces)
        stats["imitation_loss"] = imitation_step(policy, imitation_optimizer, trace_obs[:, part], trace_actions[:, part])
    with torch.no_grad():
        after = policy(kl_obs)
        stats["imitation_kl"] = mean_kl(before, after)
        stats["entropy_change"] = (after.entropy() - before.entropy()).sum(-1).mean()  # below 0: the phase narrowed the policy
        stats["step_cosine"] = step_cosine(parameters_to_vector(policy.parameters()) - theta, base_step)
    return stats, (trace_states, trace_actions)


def dyna_phase(policy, imitation_optimizer, obs_normaliser, value_net, fwd, real_obs, base_step, low, high, args):
    """App. G, Dyna with an on-policy learner, in place of lines 8-13: fit the forward model to the recent real
    transitions by maximum likelihood, roll the policy forwards in it from the batch's real states `real_obs`, and
    take steps of the imitation's optimizer up TRPO's surrogate over the imagined transitions (GAE with the value
    network, bootstrapped at the rollout's end): recall's optimizer and number of steps, only the experience differs.
    Returns the diagnostics and the rollouts (states, actions, rewards)."""
    fwd_model, fwd_optimizer, fwd_buffer = fwd
    kl_obs = obs_normaliser(real_obs)  # the batch's states as the policy now sees them
    d = fwd_buffer.contents()
    obs, acts, nxt, rew, n = d["obs"], d["actions"], d["next_obs"], d["rewards"], fwd_buffer.size
    fit_normaliser(fwd_model, obs=obs, action=acts, out=torch.cat([nxt - obs, rew[:, None]], -1))
    for _ in range(args.bt_updates):
        mb = torch.randint(n, (args.bt_batch_size,), device=kl_obs.device)
        nlls = fwd_model.nll(obs[mb], acts[mb], nxt[mb], rew[mb])
        fwd_optimizer.zero_grad()
        (nlls["fwd_state_nll"] + nlls["fwd_reward_nll"]).backward()
        fwd_optimizer.step()
    with torch.no_grad():
        starts = torch.randint(len(real_obs), (args.num_traces * max(args.imitation_updates, 1),), device=kl_obs.device)
        states, actions, rewards, guarded = generate_imagined_rollouts(
            fwd_model, policy, obs_normaliser, real_obs[starts], args.trace_len, low, high
        )
        obs_n = obs_normaliser(states)
        values = value_net(obs_n).squeeze(-1)
        no_end = torch.zeros_like(rewards)  # no termination is modelled; the last step bootstraps from V(s_T)
        advantages = compute_gae(rewards, values[:-1], values[1:], no_end, no_end, args.gamma, args.gae_lambda)
        before, theta = policy(kl_obs), parameters_to_vector(policy.parameters())
        nlls = fwd_model.nll(obs, acts, nxt, rew)
    stats = {**nlls, "imagined_reward": rewards.mean(), "trace_clamped_frac": guarded.float().mean()}
    for k in range(args.imitation_updates):
        part = slice(k * args.num_traces, (k + 1) * args.num_traces)
        adv = advantages[:, part].flatten()
        surrogate = surrogate_objective(
            policy, obs_n[:-1, part].flatten(0, 1), actions[:, part].flatten(0, 1), (adv - adv.mean()) / (adv.std() + 1e-8)
        )
        imitation_optimizer.zero_grad()
        (-surrogate()).backward()
        imitation_optimizer.step()
    with torch.no_grad():
        after = policy(kl_obs)
        stats["imagined_kl"] = mean_kl(before, after)
        stats["entropy_change"] = (after.entropy() - before.entropy()).sum(-1).mean()  # below 0: the phase narrowed the policy
        stats["step_cosine"] = step_cosine(parameters_to_vector(policy.parameters()) - theta, base_step)
    return stats, (states, actions, rewards)


if __name__ == "__main__":
    args = tyro.cli(Args)
    args.trace_len = default_trace_len(args.env_id) if args.trace_len is None else args.trace_len
    if args.capture_video:  # MuJoCo renders off-screen with EGL unless told otherwise (MUJOCO_GL=glfw, osmesa)
        os.environ.setdefault("MUJOCO_GL", "egl")
    if (error := check_args(args)) is not None:
        sys.exit(f"error: {error}")
    if args.capture_video:
        try:
            import moviepy  # noqa: F401
        except ImportError:
            sys.exit("error: --capture-video needs moviepy: pip install -r requirements-extra.txt")
    run_name = f"{args.env_id}__{args.exp_name}__{args.seed}__{int(time.time())}"
    try:  # the log directory, before anything is spent: a file in its way gives one line, not a traceback
        os.makedirs(f"runs/{run_name}", exist_ok=True)
    except OSError as e:
        sys.exit(f"error: cannot write the logs to runs/{run_name}: {e.strerror}")
    if args.track:
        try:
            import wandb
        except ImportError:
            sys.exit("error: --track needs wandb: pip install -r requirements-extra.txt")
        wandb.init(project=args.wandb_project_name, sync_tensorboard=True, config=vars(args), name=run_name, save_code=True)
    writer = SummaryWriter(f"runs/{run_name}")
    writer.add_text(
        "hyperparameters", "|param|value|\n|-|-|\n" + "\n".join(f"|{key}|{value}|" for key, value in vars(args).items())
    )

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    if "OMP_NUM_THREADS" not in os.environ:  # one CPU thread unless told otherwise: a thread per core is about as
        torch.set_num_threads(1)  # fast alone and 10x slower beside one other run (docs/benchmark.md, "Threads")
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")

    # gymnasium 1.x default: next-step autoreset. The step after an episode ends ignores its action and returns
    # the reset observation; such steps are marked invalid and never enter an update or a buffer.
    envs = gym.vector.SyncVectorEnv(
        [make_env(args.env_id, args.seed, i, args.capture_video, run_name) for i in range(args.num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP,
    )
    obs_dim = envs.single_observation_space.shape[0]
    act_dim = envs.single_action_space.shape[0]
    low = torch.as_tensor(envs.single_action_space.low, dtype=torch.float32, device=device)
    high = torch.as_tensor(envs.single_action_space.high, dtype=torch.float32, device=device)
    obs_normaliser = RunningNormaliser(obs_dim).to(device)
    policy = GaussianPolicy(obs_dim, act_dim).to(device)
    value_net = mlp(obs_dim, 1, 64, nn.Tanh).to(device)
    vf_optimizer = torch.optim.Adam(value_net.parameters(), lr=args.vf_lr)
    params = list(policy.parameters())  # what TRPO's natural-gradient step moves
    imitation_optimizer = torch.optim.Adam(params, lr=args.imitation_lr)  # recall's (or Dyna's) own
    bt_model = BacktrackingModel(obs_dim, act_dim).to(device)
    bt_optimizer = torch.optim.Adam(bt_model.parameters(), lr=args.bt_learning_rate)
    bt_buffer = TransitionBuffer(
        args.bt_buffer_size, device, obs=(obs_dim,), actions=(act_dim,), next_obs=(obs_dim,), rewards=()
    )
    if args.model == "forward":  # built after the rest, so that the other settings draw the same random numbers
        fwd_model = ForwardModel(obs_dim, act_dim).to(device)
        fwd_optimizer = torch.optim.Adam(fwd_model.parameters(), lr=args.bt_learning_rate)

    shape = (args.num_steps, args.num_envs)
    raw_obs = torch.zeros(shape + (obs_dim,), device=device)
    raw_next_obs = torch.zeros(shape + (obs_dim,), device=device)
    actions = torch.zeros(shape + (act_dim,), device=device)
    rewards, terminations, dones, valid = (torch.zeros(shape, device=device) for _ in range(4))

    global_step, start_time = 0, time.time()
    last_return = float("nan")  # the latest training episode's return, for the progress line
    num_iterations = args.total_timesteps // (args.num_envs * args.num_steps)
    policy_mark = parameters_to_vector(params).detach()  # the policy after the last recall phase
    autoreset = np.zeros(args.num_envs, dtype=bool)
    next_obs, _ = envs.reset(seed=args.seed)
    try:
        for iteration in range(1, num_iterations + 1):
            # Algorithm 1, lines 4-5: execute the policy (its observation normaliser is fixed during a batch)
            for step in range(args.num_steps):
                global_step += args.num_envs
                raw_obs[step] = torch.as_tensor(next_obs, dtype=torch.float32, device=device)
                valid[step] = torch.as_tensor(~autoreset, dtype=torch.float32, device=device)
                with torch.no_grad():
                    actions[step] = policy(obs_normaliser(raw_obs[step])).sample()
                # the env gets the action clipped to its bounds (MuJoCo's control cost uses what it is given)
                next_obs, reward, terminated, truncated, infos = envs.step(torch.clamp(actions[step], low, high).cpu().numpy())
                if "episode" in infos:
                    for i in np.flatnonzero(infos["_episode"]):
                        writer.add_scalar("charts/episodic_return", infos["episode"]["r"][i], global_step)
                        last_return = infos["episode"]["r"][i]
                        writer.add_scalar("charts/episodic_length", infos["episode"]["l"][i], global_step)
                # in next-step mode the observation a step returns is its real next state, the final one included
                raw_next_obs[step] = torch.as_tensor(next_obs, dtype=torch.float32, device=device)
                rewards[step] = torch.as_tensor(reward, dtype=torch.float32, device=device)
                terminations[step] = torch.as_tensor(terminated, dtype=torch.float32, device=device)
                autoreset = terminated | truncated
                dones[step] = torch.as_tensor(autoreset, dtype=torch.float32, device=device)

            # Algorithm 1, line 6: advantages by GAE; a truncated step and the batch's last step bootstrap
            with torch.no_grad():
                obs, next_obs_n = obs_normaliser(raw_obs), obs_normaliser(raw_next_obs)
                values, next_values = value_net(obs).squeeze(-1), value_net(next_obs_n).squeeze(-1)
                advantages = compute_gae(rewards, values, next_values, terminations, dones, args.gamma, args.gae_lambda)
                returns = advantages + values
            keep = valid.flatten().bool()  # the autoreset steps are not transitions of the MDP
            b_obs, b_actions = obs.flatten(0, 1)[keep], actions.flatten(0, 1)[keep]
            b_raw_obs = raw_obs.flatten(0, 1)[keep]
            b_raw_next_obs = raw_next_obs.flatten(0, 1)[keep]
            b_advantages, b_returns = advantages.flatten()[keep], returns.flatten()[keep]
            b_advantages = (b_advantages - b_advantages.mean()) / (b_advantages.std() + 1e-8)

            # Algorithm 1, line 7: the TRPO step, then the value network
            surrogate = surrogate_objective(policy, b_obs, b_actions, b_advantages)  # pi_old: the policy now
            stats = trpo_step(policy, params, surrogate, b_obs, args)
            for _ in range(args.vf_epochs):
                for mb in torch.randperm(len(b_obs), device=device).split(args.vf_minibatch_size):
                    value_loss = ((value_net(b_obs[mb]).squeeze(-1) - b_returns[mb]) ** 2).mean()
                    vf_optimizer.zero_grad()
                    value_loss.backward()
                    vf_optimizer.step()
            obs_normaliser.update(b_raw_obs)

            if args.recall:
                b_rewards = rewards.flatten()[keep]
                base_step = parameters_to_vector(params).detach() - policy_mark
                if args.model == "backward":
                    top = high_reward_transitions(b_rewards, terminations.flatten()[keep], args.top_k_frac)
                    b_clipped = torch.clamp(b_actions[top], low, high)
                    bt_buffer.add(obs=b_raw_obs[top], actions=b_clipped, next_obs=b_raw_next_obs[top], rewards=b_rewards[top])
                    kl_obs = obs_normaliser(b_raw_obs)  # the batch's states as the policy now sees them
                    learner, data = (policy, obs_normaliser, low, high), bt_buffer.contents()
                    # Algorithm 1, lines 8-13: backtracking model, recall traces, imitation
                    recall_stats, _ = recall_phase(
                        learner, imitation_optimizer, bt_model, bt_optimizer, data, kl_obs, base_step, args
                    )
                else:
                    # App. G: every real transition of the batch joins the forward model's buffer; before it does,
                    # the model (trained on earlier batches only) is measured on it: a held-out NLL
                    b_clipped = torch.clamp(b_actions, low, high)
                    if bt_buffer.size:
                        with torch.no_grad():
                            held = fwd_model.nll(b_raw_obs, b_clipped, b_raw_next_obs, b_rewards)
                        for name, stat in held.items():
                            writer.add_scalar(f"recall/heldout_{name}", stat.item(), global_step)
                    bt_buffer.add(obs=b_raw_obs, actions=b_clipped, next_obs=b_raw_next_obs, rewards=b_rewards)
                    fwd = (fwd_model, fwd_optimizer, bt_buffer)
                    recall_stats, _ = dyna_phase(
                        policy, imitation_optimizer, obs_normaliser, value_net, fwd, b_raw_obs, base_step, low, high, args
                    )
                policy_mark = parameters_to_vector(params).detach()
                if stats["kl"] > 0:  # against TRPO's own step: how far the model's experience moved the policy, and
                    # the share of TRPO's surrogate gain it took back (the surrogate is 0 at pi_old)
                    moved = "imitation_kl" if args.model == "backward" else "imagined_kl"
                    recall_stats[f"{moved}_ratio"] = recall_stats[moved] / stats["kl"]
                    with torch.no_grad():
                        recall_stats["surrogate_undone"] = 1 - surrogate() / -stats["policy_loss"]
                for name, stat in recall_stats.items():
                    writer.add_scalar(f"recall/{name}", stat.item(), global_step)
                writer.add_scalar("recall/trace_len", args.trace_len, global_step)

            sps = int(global_step / (time.time() - start_time))
            writer.add_scalar("losses/value_loss", value_loss.item(), global_step)
            entropy = (policy.log_std + 0.5 * np.log(2 * np.pi * np.e)).sum()  # the same in every state
            writer.add_scalar("losses/entropy", entropy.item(), global_step)
            for name, value in stats.items():
                writer.add_scalar(f"losses/{name}", value, global_step)
            writer.add_scalar("charts/SPS", sps, global_step)
            if iteration % 10 == 0:  # the run is alive, and roughly when it ends
                eta = (args.total_timesteps - global_step) / max(sps, 1) / 60
                progress = f"global_step={global_step}/{args.total_timesteps} SPS={sps}"
                print(f"{progress} episodic_return={last_return:.1f} ETA={eta:.0f} min", flush=True)
            batch_steps = args.num_envs * args.num_steps  # an evaluation when global_step passes a multiple of eval_every
            if args.eval_every and global_step // args.eval_every > (global_step - batch_steps) // args.eval_every:
                if iteration < num_iterations:  # the last one follows
                    evaluation = evaluate(policy, obs_normaliser, args.env_id, args.eval_episodes, args.seed, low, high)
                    log_eval(writer, *evaluation, global_step)

        if args.eval_episodes > 0:  # the deterministic policy at the end
            eval_return, velocity = evaluate(policy, obs_normaliser, args.env_id, args.eval_episodes, args.seed, low, high)
            log_eval(writer, eval_return, velocity, global_step)
            print(f"eval: episodic_return={eval_return:.1f} over {args.eval_episodes} episodes")
    except KeyboardInterrupt:
        print(f"interrupted at global_step={global_step}; the logs in runs/{run_name} are kept")
    finally:  # Ctrl-C included: keep the logs, and the checkpoint when asked for
        if args.save_model:
            model_path = f"runs/{run_name}/{args.exp_name}.pt"
            nets = {"policy": policy, "value_net": value_net, "obs_normaliser": obs_normaliser, "bt_model": bt_model}
            nets |= {"fwd_model": fwd_model} if args.model == "forward" else {}
            torch.save({**{name: net.state_dict() for name, net in nets.items()}, "args": vars(args)}, model_path)
            print(f"model saved to {model_path}")
        envs.close()
        writer.close()
        print(f"logs: runs/{run_name} (tensorboard --logdir runs)")
