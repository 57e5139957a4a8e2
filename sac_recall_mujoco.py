"""Soft actor-critic with and without recall traces on MuJoCo.

Reproduces paper 6.5 (Fig. 7), App. F (a random backtracking model) and App. H (Fig. 19: imitation updates per
SAC update) of Goyal et al., "Recall Traces: Backtracking Models for Efficient Reinforcement Learning",
ICLR 2019. The backtracking model is App. C's: q(a_t|s_{t+1}) q(delta_s_t|a_t, s_{t+1}), two Gaussian MLPs.

    python sac_recall_mujoco.py --env-id Ant-v4 --trace-len 50
    python sac_recall_mujoco.py --env-id Hopper-v4 --no-recall
"""

import itertools
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass
from typing import Literal

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro
from torch.nn.utils import parameters_to_vector
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
    """if toggled, save the actor, the critics, the backtracking model and its normaliser to the run directory"""
    compile: bool = False
    """if toggled, pass the SAC update, the backtracking model's update, trace generation and the imitation step
    through torch.compile (with CUDA graphs on CUDA); the same functions and random numbers as eager"""
    log_every: int = 1000
    """env steps between two logs of the losses and diagnostics (a log waits for the device; nothing else does)"""
    eval_every: int = 5000
    """env steps between two evaluations of the deterministic (mean-action) policy (0: only at the end)"""
    eval_episodes: int = 10
    """episodes of each evaluation, on an env of its own (not counted as env steps), logged as eval/episodic_return"""

    # environment
    env_id: str = "Hopper-v4"
    """any gymnasium env id with a flat Box observation space and a bounded Box action space"""
    num_envs: int = 1
    """the number of parallel environments (one gradient step per env step whatever their number)"""

    # base algorithm: soft actor-critic (Haarnoja et al. 2018)
    total_timesteps: int = 1_000_000
    """total real environment steps"""
    buffer_size: int = 1_000_000
    """the replay buffer's capacity"""
    gamma: float = 0.99
    """the discount factor"""
    tau: float = 0.005
    """the target networks' smoothing coefficient"""
    batch_size: int = 256
    """the SAC minibatch size"""
    learning_starts: int = 5000
    """env steps of uniformly random actions before learning starts"""
    policy_lr: float = 3e-4
    """Adam learning rate of the actor (alpha of Algorithm 1)"""
    q_lr: float = 1e-3
    """Adam learning rate of the Q-networks and of the entropy temperature (CleanRL's; the SAC paper's is 3e-4)"""
    alpha: float = 0.2
    """the entropy temperature, when not tuned"""
    autotune: bool = True
    """if toggled, tune the temperature towards an entropy of -dim(A)"""

    # recall traces
    recall: bool = True
    """if toggled, improve the policy with recall traces (Algorithm 1); --no-recall is plain SAC"""
    trace_len: int | None = None
    """backward steps in each recall trace; by default Table 2's for the env (Ant, Humanoid 50, the others 20)"""
    num_traces: int = 16
    """recall traces in each imitation minibatch (N of Algorithm 1)"""
    bt_model: Literal["learned", "random"] = "learned"
    """a backtracking model trained by maximum likelihood, or left at its random initialisation (App. F)"""
    bt_sample_size: int = 20_000
    """transitions sampled from the replay buffer to rank by value (App. E.2: 20k)"""
    top_k_frac: float = 0.25
    """fraction of the ranked sample, the most valuable by the critic, that trains the backtracking model"""
    bt_refresh: int = 1000
    """env steps between two rankings of a fresh sample (the high-value set follows the buffer; the model's
    normaliser follows the high-value sets by running statistics)"""
    recall_every: int = 5
    """SAC updates between two recall phases (the paper's unit: 5 SAC steps)"""
    bt_updates: int = 5
    """backtracking-model gradient steps in each recall phase (the paper: about 100)"""
    imitation_updates: int = 5
    """imitation gradient steps in each recall phase (Fig. 19 compares 5, 10 and 20)"""
    bt_batch_size: int = 256
    """minibatch size of the backtracking model"""
    bt_learning_rate: float = 1e-3
    """Adam learning rate of the backtracking model"""
    imitation_lr: float = 3e-4
    """Adam learning rate of the imitation step, an optimizer of its own (alpha of Algorithm 1, line 13: the paper's
    is the actor's); 0 runs every recall phase without moving the policy"""
    heldout_every: int = 10
    """every n-th replay-buffer slot is never trained on by the backtracking model: its held-out NLL is measured there"""


# App. E.2, Table 2: length of the recall traces of each agent
TABLE2_TRACE_LEN = {"Ant": 50, "Humanoid": 50, "HalfCheetah": 20, "Walker2d": 20, "Hopper": 20}
LOG_STD_MIN, LOG_STD_MAX = -5, 2


# differs from trpo_recall_mujoco.py's copy: Table 2 (SAC), not Table 1 (TRPO)
def default_trace_len(env_id):
    return next((n for name, n in TABLE2_TRACE_LEN.items() if env_id.startswith(name)), 20)


def cpp_compiler():
    """The C++ compiler torch.compile's CPU code generation would find, or None."""
    return next(
        (path for name in (os.environ.get("CXX"), "g++", "clang++", "c++") if name and (path := shutil.which(name))), None
    )


def check_args(args: Args):
    """One clear line for each kind of bad input, before anything is built (the env is made once to look at it)."""
    inf = float("inf")
    bounds = [  # the flags, the test each value must pass, and what the test asks for
        ("seed total_timesteps learning_starts", lambda x: x >= 0, ">= 0"),
        ("bt_updates imitation_updates eval_every eval_episodes", lambda x: x >= 0, ">= 0"),
        ("trace_len num_traces num_envs batch_size buffer_size bt_batch_size recall_every", lambda x: x >= 1, ">= 1"),
        ("log_every bt_sample_size bt_refresh", lambda x: x >= 1, ">= 1"),
        ("heldout_every", lambda x: x >= 2, ">= 2"),
        ("policy_lr q_lr bt_learning_rate alpha", lambda x: 0 < x < inf, "finite and > 0"),
        ("imitation_lr", lambda x: 0 <= x < inf, "finite and >= 0"),
        ("gamma tau top_k_frac", lambda x: 0 < x <= 1, "in (0, 1]"),
    ]
    for names, ok, need in bounds:
        for name in names.split():
            if not ok(getattr(args, name)):
                return f"--{name.replace('_', '-')} must be {need}, got {getattr(args, name)}"
    if args.compile and not (args.cuda and torch.cuda.is_available()) and not cpp_compiler():
        return "--compile on the CPU needs a C++ compiler (g++ or clang++, or $CXX) for torch.compile's generated code"
    if args.total_timesteps <= args.learning_starts:
        steps, starts = args.total_timesteps, args.learning_starts
        return f"--total-timesteps ({steps}) must exceed --learning-starts ({starts}): SAC would never update"
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


class ReplayBuffer:
    """A ring buffer of real transitions (s, a, r, s', terminated) in numpy arrays."""

    def __init__(self, capacity, obs_dim, act_dim):
        self.capacity, self.pos, self.size = capacity, 0, 0
        self.obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.actions = np.zeros((capacity, act_dim), dtype=np.float32)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.terminations = np.zeros(capacity, dtype=np.float32)

    def add(self, obs, next_obs, actions, rewards, terminations):
        idx = (self.pos + np.arange(len(obs))) % self.capacity
        self.obs[idx], self.next_obs[idx], self.actions[idx] = obs, next_obs, actions
        self.rewards[idx], self.terminations[idx] = rewards, terminations
        self.pos = (self.pos + len(obs)) % self.capacity
        self.size = min(self.size + len(obs), self.capacity)

    def sample(self, n, rng, device):
        return self.get(rng.integers(self.size, size=n), device)

    def get(self, idx, device):
        arrays = (self.obs, self.actions, self.rewards, self.next_obs, self.terminations)
        return tuple(torch.as_tensor(x[idx], device=device) for x in arrays)


def add_real_transitions(rb, obs, next_obs, actions, rewards, terminations, truncations, autoreset):
    """Store one vector step's real transitions; return which envs reset on their next step.

    gymnasium 1.x next-step autoreset: the step after an episode ends ignores its action, resets the env and
    returns the new episode's first observation. `autoreset` marks those envs: their (final obs -> reset obs)
    "transition" is not one of the MDP and never reaches the buffer. A truncated step is stored with
    terminated = 0, so the critic bootstraps from its real last observation; a terminated one with 1.
    """
    keep = ~autoreset
    rb.add(obs[keep], next_obs[keep], actions[keep], rewards[keep], terminations[keep])
    return terminations | truncations


def high_value_split(slots, values, top_k_frac, heldout_every):
    """Indices of the top `top_k_frac` by value among the sampled buffer slots the backtracking model trains on,
    and among the held-out ones (every `heldout_every`-th slot, never trained on; the last of each group, so the
    first slot of the buffer trains)."""
    is_heldout = torch.as_tensor(slots % heldout_every == heldout_every - 1, device=values.device)
    ranked = torch.argsort(values, descending=True)
    train, heldout = ranked[~is_heldout[ranked]], ranked[is_heldout[ranked]]
    return train[: max(1, int(top_k_frac * len(train)))], heldout[: int(top_k_frac * len(heldout))]


def mlp(n_in, n_out, hidden, activation):
    return nn.Sequential(
        nn.Linear(n_in, hidden), activation(), nn.Linear(hidden, hidden), activation(), nn.Linear(hidden, n_out)
    )


class SoftQNetwork(nn.Module):
    def __init__(self, obs_dim, act_dim):
        super().__init__()
        self.net = mlp(obs_dim + act_dim, 1, 256, nn.ReLU)

    def forward(self, obs, actions):
        return self.net(torch.cat([obs, actions], -1)).squeeze(-1)


def log_one_minus_tanh_sq(u):
    """log(1 - tanh(u)^2), stable for large |u|."""
    return 2.0 * (np.log(2.0) - u - F.softplus(-2.0 * u))


class Actor(nn.Module):
    """The squashed Gaussian policy: u ~ N(mu(s), sigma(s)), a = tanh(u) * scale + bias."""

    def __init__(self, obs_dim, act_dim, low, high):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(obs_dim, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU())
        self.mean_head, self.log_std_head = nn.Linear(256, act_dim), nn.Linear(256, act_dim)
        self.register_buffer("action_scale", torch.as_tensor((high - low) / 2.0, dtype=torch.float32))
        self.register_buffer("action_bias", torch.as_tensor((high + low) / 2.0, dtype=torch.float32))

    def forward(self, obs):
        h = self.trunk(obs)
        log_std = torch.tanh(self.log_std_head(h))  # squashed into [LOG_STD_MIN, LOG_STD_MAX], as CleanRL does
        return self.mean_head(h), LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (log_std + 1)

    def base_dist(self, obs):
        """The Gaussian of u, before the tanh. The KL between two policies is that of their base Gaussians (tanh is
        a bijection)."""
        mean, log_std = self(obs)
        return torch.distributions.Normal(mean, log_std.exp())

    def squash(self, u):
        return torch.tanh(u) * self.action_scale + self.action_bias

    def sample(self, obs):
        """A reparameterised action, its log-probability, and the deterministic (mean) action."""
        mean, log_std = self(obs)
        u = mean + log_std.exp() * torch.randn_like(mean)
        # change of variables: log pi(a|s) = log N(u) - sum log |da/du|, da/du = scale * (1 - tanh(u)^2)
        log_prob = torch.distributions.Normal(mean, log_std.exp()).log_prob(u)
        log_prob = (log_prob - torch.log(self.action_scale) - log_one_minus_tanh_sq(u)).sum(-1)
        return self.squash(u), log_prob, self.squash(mean)

    def log_prob(self, obs, actions, bound_eps=1e-3):
        """log pi(a|s) of given actions. An action on or past a bound has no finite u = atanh(y); it is moved
        a fraction `bound_eps` inside (the tanh correction depends on the action only, not on the policy)."""
        mean, log_std = self(obs)
        y = ((actions - self.action_bias) / self.action_scale).clamp(-1 + bound_eps, 1 - bound_eps)
        u = torch.atanh(y)
        log_prob = torch.distributions.Normal(mean, log_std.exp()).log_prob(u)
        return (log_prob - torch.log(self.action_scale) - log_one_minus_tanh_sq(u)).sum(-1)


def gaussian_nll(x, mean, log_std):
    """-log N(x; mean, exp(log_std)^2), summed over the last dimension."""
    return (0.5 * ((x - mean) / log_std.exp()) ** 2 + log_std + 0.5 * np.log(2 * np.pi)).sum(-1)


# differs from trpo_recall_mujoco.py's copy: running normaliser statistics (its high-value set is a fresh sample)
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
        for name, dim in (("obs", obs_dim), ("action", act_dim), ("delta", obs_dim)):
            self.register_buffer(f"{name}_mean", torch.zeros(dim))
            self.register_buffer(f"{name}_std", torch.ones(dim))
        self.register_buffer("count", torch.zeros(()))  # transitions the running statistics have seen

    def update_normaliser(self, next_obs, actions, deltas):
        """App. C: normalise with statistics of the training data, here running statistics over every high-value
        set so far (parallel-variance merge). Refit to each new set alone, the inputs would jump under weights
        trained on the last set, and the first traces after a refresh would come from a model fed shifted inputs.
        A floor keeps constant dimensions finite."""
        n, total = len(next_obs), self.count + len(next_obs)
        for name, x in (("obs", next_obs), ("action", actions), ("delta", deltas)):
            mean, std = getattr(self, f"{name}_mean"), getattr(self, f"{name}_std")
            shift = x.mean(0) - mean
            var = (std**2 * self.count + x.var(0, correction=0) * n + shift**2 * self.count * n / total) / total
            mean.add_(shift * n / total)
            std.copy_(var.sqrt().clamp(min=1e-3))
        self.count.fill_(total)

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


# differs from the other copies: the actor's log-likelihood of a tanh-squashed action
def imitation_loss(actor, states, actions):
    """Eq. 3, negated and averaged: -log pi_theta(a_t|s_t) over the (s_t, a_t) pairs of the recall traces."""
    return -actor.log_prob(states.flatten(0, -2), actions.flatten(0, -2)).mean()


def mean_kl(old_dist, new_dist):
    """Mean KL(old || new) over the states, summed over the action dimensions."""
    return torch.distributions.kl_divergence(old_dist, new_dist).sum(-1).mean()


def rank_replay_sample(rb, value, args, rng, device):
    """Algorithm 1, line 8: rank a large sample of the buffer (drawn without replacement) by the critic's V(s_{t+1})
    and keep the top. Terminal next-states (a fallen Hopper) are left out: their value is never trained, so they
    are neither trace targets nor model targets. Held-out slots are ranked like the rest but never trained on.
    Returns the training set, the held-out set and the trace targets as a dict of tensors."""
    slots = rng.choice(rb.size, size=min(args.bt_sample_size, rb.size), replace=False)
    slots = slots[rb.terminations[slots] == 0]
    obs, actions, _, next_obs, _ = rb.get(slots, device)
    with torch.no_grad():
        values = value(next_obs)
    train, heldout = high_value_split(slots, values, args.top_k_frac, args.heldout_every)
    targets = torch.argsort(values, descending=True)[: args.num_traces]
    data = {"targets": next_obs[targets], "target_value": values[targets].mean()}
    for prefix, idx in (("", train), ("heldout_", heldout)):
        data.update({f"{prefix}obs": obs[idx], f"{prefix}actions": actions[idx], f"{prefix}next_obs": next_obs[idx]})
    return data


def bt_update(bt_model, bt_optimizer, *batch):
    """Algorithm 1, lines 8-9: one maximum-likelihood step of the backtracking model (Eq. 2) on a minibatch of its
    nll's arguments. Returns its NLLs."""
    nlls = bt_model.nll(*batch)
    bt_optimizer.zero_grad()
    (nlls["bt_action_nll"] + nlls["bt_state_nll"]).backward()
    bt_optimizer.step()
    return nlls


def imitation_step(policy, imitation_optimizer, obs, actions):
    """Algorithm 1, line 13: one step on Eq. 3 over recall traces, by the imitation's own optimizer: the SAC actor's
    Adam holds the RL gradients' moments, and a step of it would mostly repeat the last RL update. Returns the loss."""
    loss = imitation_loss(policy, obs, actions)
    imitation_optimizer.zero_grad()
    loss.backward()
    imitation_optimizer.step()
    return loss.detach()


def step_cosine(step, base_step):
    """The cosine, in parameter space, between the imitation's update of the policy and the base algorithm's update
    since the last recall phase: above 0 recall pulls with the RL step, below 0 against it (0 if either is 0)."""
    return torch.cosine_similarity(step, base_step, dim=0, eps=1e-12)


# differs from the other copies: line 8's high-value set comes ranked by the critic (rank_replay_sample)
def recall_phase(learner, imitation_optimizer, bt_model, bt_optimizer, data, kl_obs, base_step, args):
    """Algorithm 1, lines 8-13: fit the backtracking model (Eq. 2) to the high-value set, sample recall traces back
    from the targets, take imitation steps on them (Eq. 3). `learner`: the actor, which reads trace states as they
    are (no observation normaliser; its tanh keeps actions within the bounds); `data`: line 8's high-value set
    (obs, actions, next_obs) and the trace targets, refreshed every bt_refresh env steps by rank_replay_sample, the
    model's running normaliser with it (not at every phase, as TRPO's and Goal GAN's are); `kl_obs`: real states on
    which the imitation steps' KL is measured; `base_step`: SAC's update of the actor's parameters since the last
    phase. Returns the diagnostics and the traces (states, actions)."""
    actor, stats = learner, {}
    # lines 8-9: maximum likelihood of the backtracking model (Eq. 2); none for App. F's random one
    for _ in range(args.bt_updates if args.bt_model == "learned" else 0):
        batch = torch.randint(len(data["obs"]), (args.bt_batch_size,), device=kl_obs.device)
        bt_update(bt_model, bt_optimizer, data["obs"][batch], data["actions"][batch], data["next_obs"][batch])
    # lines 10-11: traces backwards from the highest-value states, one batch for the phase
    with torch.no_grad():
        starts = data["targets"].repeat(max(args.imitation_updates, 1), 1)  # the diagnostics need some
        trace_states, trace_actions, guarded = generate_recall_traces(bt_model, starts, args.trace_len)
        before, theta = actor.base_dist(kl_obs), parameters_to_vector(actor.parameters())
    stats["trace_clamped_frac"] = guarded.float().mean()
    # lines 12-13: imitation steps on the policy (Eq. 3), each on its own targets' traces
    n = len(data["targets"])
    for k in range(args.imitation_updates):
        part = slice(k * n, (k + 1) * n)
        stats["imitation_loss"] = imitation_step(actor, imitation_optimizer, trace_states[:, part], trace_actions[:, part])
    with torch.no_grad():  # how far the imitation steps moved the policy (pre-tanh Gaussians: tanh keeps the KL)
        after = actor.base_dist(kl_obs)
        stats["imitation_kl"] = mean_kl(before, after)
        stats["entropy_change"] = (after.entropy() - before.entropy()).sum(-1).mean()  # below 0: it narrowed the policy
        stats["step_cosine"] = step_cosine(parameters_to_vector(actor.parameters()) - theta, base_step)
    return stats, (trace_states, trace_actions)


# differs from trpo_recall_mujoco.py's copy: SAC's squashed mean action, no observation normaliser
def evaluate(actor, env_id, episodes, seed, device):
    """The mean return of the deterministic policy (the squashed mean action) over `episodes` episodes of a fresh
    env, seeded apart from training, and its mean forward velocity (each episode's mean info["x_velocity"], None
    where the env gives none): a high return can be standing still. It draws no random numbers, so evaluating
    leaves training unchanged."""
    env, returns, velocities = gym.make(env_id), [], []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + 10_000 + episode)
        done, ep_return, ep_velocity = False, 0.0, []
        while not done:
            with torch.no_grad():
                mean, _ = actor(torch.as_tensor(obs, dtype=torch.float32, device=device)[None])
                obs, reward, terminated, truncated, info = env.step(actor.squash(mean)[0].cpu().numpy())
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


def soft_q_target(rewards, terminations, next_q, next_log_prob, alpha, gamma):
    """r + gamma * (1 - terminated) * (min_i Q'_i(s', a') - alpha log pi(a'|s')): truncation bootstraps."""
    return rewards + gamma * (1.0 - terminations) * (next_q - alpha * next_log_prob)


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
    rng = np.random.default_rng(args.seed)  # the replay buffer's sampling
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")

    # gymnasium 1.x default: next-step autoreset (see add_real_transitions)
    envs = gym.vector.SyncVectorEnv(
        [make_env(args.env_id, args.seed, i, args.capture_video, run_name) for i in range(args.num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP,
    )
    obs_dim = envs.single_observation_space.shape[0]
    act_dim = envs.single_action_space.shape[0]
    low, high = envs.single_action_space.low, envs.single_action_space.high
    actor = Actor(obs_dim, act_dim, low, high).to(device)
    qf1, qf2 = SoftQNetwork(obs_dim, act_dim).to(device), SoftQNetwork(obs_dim, act_dim).to(device)
    qf1_target = SoftQNetwork(obs_dim, act_dim).to(device)
    qf2_target = SoftQNetwork(obs_dim, act_dim).to(device)
    qf1_target.load_state_dict(qf1.state_dict())
    qf2_target.load_state_dict(qf2.state_dict())
    q_optimizer = torch.optim.Adam(list(qf1.parameters()) + list(qf2.parameters()), lr=args.q_lr)
    actor_optimizer = torch.optim.Adam(actor.parameters(), lr=args.policy_lr)
    imitation_optimizer = torch.optim.Adam(actor.parameters(), lr=args.imitation_lr)  # recall's own, never SAC's
    if args.autotune:
        target_entropy = -float(act_dim)
        log_alpha = torch.zeros(1, requires_grad=True, device=device)
        alpha_optimizer = torch.optim.Adam([log_alpha], lr=args.q_lr)
    alpha = log_alpha.exp().detach() if args.autotune else torch.tensor([args.alpha], device=device)  # on the device
    bt_model = BacktrackingModel(obs_dim, act_dim).to(device)
    bt_optimizer = torch.optim.Adam(bt_model.parameters(), lr=args.bt_learning_rate)
    rb = ReplayBuffer(args.buffer_size, obs_dim, act_dim)

    def value(obs):
        """V(s) ~ min_i Q_i(s, mean action): ranks states for the backtracking model (App. E.2)."""
        mean_action = actor.squash(actor(obs)[0])
        return torch.min(qf1(obs, mean_action), qf2(obs, mean_action))

    def sac_update(b_obs, b_actions, b_rewards, b_next_obs, b_terms, alpha):
        """Algorithm 1, lines 6-7: one SAC update of the critics, the actor and the temperature, then the target
        networks. Returns the new temperature and the losses, tensors left on the device."""
        with torch.no_grad():
            next_actions, next_log_prob, _ = actor.sample(b_next_obs)
            next_q = torch.min(qf1_target(b_next_obs, next_actions), qf2_target(b_next_obs, next_actions))
            target = soft_q_target(b_rewards, b_terms, next_q, next_log_prob, alpha, args.gamma)
        qf1_loss = F.mse_loss(qf1(b_obs, b_actions), target)
        qf2_loss = F.mse_loss(qf2(b_obs, b_actions), target)
        q_optimizer.zero_grad()
        (qf1_loss + qf2_loss).backward()
        q_optimizer.step()

        pi, log_pi, _ = actor.sample(b_obs)
        actor_loss = (alpha * log_pi - torch.min(qf1(b_obs, pi), qf2(b_obs, pi))).mean()
        actor_optimizer.zero_grad()
        actor_loss.backward()
        actor_optimizer.step()
        if args.autotune:
            alpha_loss = -(log_alpha.exp() * (log_pi.detach() + target_entropy)).mean()
            alpha_optimizer.zero_grad()
            alpha_loss.backward()
            alpha_optimizer.step()
            alpha = log_alpha.exp().detach()
        with torch.no_grad():
            for net, target_net in ((qf1, qf1_target), (qf2, qf2_target)):
                for p, tp in zip(net.parameters(), target_net.parameters(), strict=True):
                    tp.mul_(1 - args.tau).add_(args.tau * p)
        losses = {"qf1_loss": qf1_loss, "qf2_loss": qf2_loss, "actor_loss": actor_loss, "entropy": -log_pi.mean()}
        return alpha, {name: loss.detach() for name, loss in losses.items()}

    if args.compile:  # the same functions, compiled; recall_phase finds the compiled ones under the same names
        mode = "reduce-overhead" if device.type == "cuda" else None  # CUDA graphs on CUDA
        torch._inductor.config.fallback_random = True  # eager's random numbers: --compile changes only the speed
        sac_update = torch.compile(sac_update, mode=mode)
        bt_update = torch.compile(bt_update, mode=mode)
        generate_recall_traces = torch.compile(generate_recall_traces, mode=mode)
        imitation_step = torch.compile(imitation_step, mode=mode)

    global_step, sac_updates, start_time = 0, 0, time.time()
    last_return = float("nan")  # the latest training episode's return, for the progress line
    next_refresh, recall_stats = 0, {}  # when to rank a fresh sample; the last recall phase's diagnostics
    policy_mark = parameters_to_vector(actor.parameters()).detach()  # the actor after the last recall phase (a copy)
    autoreset = np.zeros(args.num_envs, dtype=bool)
    obs, _ = envs.reset(seed=args.seed)
    try:
        while global_step < args.total_timesteps:
            # Algorithm 1, line 4: execute the policy (uniformly random actions before learning starts)
            global_step += args.num_envs
            if global_step <= args.learning_starts:
                actions = np.array([envs.single_action_space.sample() for _ in range(args.num_envs)])
            else:
                with torch.no_grad():
                    actions = actor.sample(torch.as_tensor(obs, dtype=torch.float32, device=device))[0].cpu().numpy()
            next_obs, rewards, terminations, truncations, infos = envs.step(actions)
            if "episode" in infos:
                for i in np.flatnonzero(infos["_episode"]):
                    writer.add_scalar("charts/episodic_return", infos["episode"]["r"][i], global_step)
                    last_return = infos["episode"]["r"][i]
                    writer.add_scalar("charts/episodic_length", infos["episode"]["l"][i], global_step)
            # Algorithm 1, line 5 (the buffer B is the replay buffer)
            autoreset = add_real_transitions(rb, obs, next_obs, actions, rewards, terminations, truncations, autoreset)
            obs = next_obs
            if args.eval_every and global_step % args.eval_every < args.num_envs and global_step < args.total_timesteps:
                log_eval(writer, *evaluate(actor, args.env_id, args.eval_episodes, args.seed, device), global_step)
            if global_step <= args.learning_starts:
                continue

            if args.recall and global_step >= next_refresh:
                # Algorithm 1, line 8: the high-value set of the backtracking model, and the trace targets
                bt_data = rank_replay_sample(rb, value, args, rng, device)
                bt_model.update_normaliser(bt_data["next_obs"], bt_data["actions"], bt_data["obs"] - bt_data["next_obs"])
                next_refresh = global_step + args.bt_refresh
                if recall_stats and len(bt_data["heldout_obs"]):  # the model the next traces come from, on new data
                    with torch.no_grad():
                        held = bt_model.nll(bt_data["heldout_obs"], bt_data["heldout_actions"], bt_data["heldout_next_obs"])
                    writer.add_scalar("recall/refresh_heldout_bt_state_nll", held["bt_state_nll"].item(), global_step)

            for i in range(args.num_envs):  # one gradient step per env step
                # Algorithm 1, lines 6-7: the SAC update
                b_obs, b_actions, b_rewards, b_next_obs, b_terms = rb.sample(args.batch_size, rng, device)
                alpha, losses = sac_update(b_obs, b_actions, b_rewards, b_next_obs, b_terms, alpha)
                sac_updates += 1

                # no recall phase after the last SAC update: nothing would follow it, and the final eval would see
                # the policy straight after imitation, where every interim eval sees it a few SAC updates later
                last_update = global_step >= args.total_timesteps and i == args.num_envs - 1
                if args.recall and sac_updates % args.recall_every == 0 and not last_update:
                    # Algorithm 1, lines 8-13: backtracking model, recall traces, imitation
                    base_step = parameters_to_vector(actor.parameters()).detach() - policy_mark
                    recall_stats, _ = recall_phase(
                        actor, imitation_optimizer, bt_model, bt_optimizer, bt_data, b_obs, base_step, args
                    )
                    policy_mark = parameters_to_vector(actor.parameters()).detach()

            if global_step % args.log_every < args.num_envs:
                sps = int(global_step / (time.time() - start_time))
                for name, loss in losses.items():
                    writer.add_scalar(f"losses/{name}", loss.item(), global_step)
                writer.add_scalar("losses/alpha", alpha.item(), global_step)
                writer.add_scalar("charts/SPS", sps, global_step)
                if recall_stats:
                    with torch.no_grad():  # held out: real high-value transitions the model was never trained on
                        nlls = {"": bt_model.nll(bt_data["obs"], bt_data["actions"], bt_data["next_obs"])}
                        if len(bt_data["heldout_obs"]):
                            nlls["heldout_"] = bt_model.nll(
                                bt_data["heldout_obs"], bt_data["heldout_actions"], bt_data["heldout_next_obs"]
                            )
                    for prefix, name in itertools.product(nlls, ("bt_action_nll", "bt_state_nll")):
                        writer.add_scalar(f"recall/{prefix}{name}", nlls[prefix][name].item(), global_step)
                    for name, stat in recall_stats.items():
                        writer.add_scalar(f"recall/{name}", stat.item(), global_step)
                    writer.add_scalar("recall/trace_len", args.trace_len, global_step)
                    writer.add_scalar("recall/target_value", bt_data["target_value"].item(), global_step)
                if global_step % 5_000 < args.num_envs:  # the run is alive, and roughly when it ends
                    eta = (args.total_timesteps - global_step) / max(sps, 1) / 60
                    progress = f"global_step={global_step}/{args.total_timesteps} SPS={sps}"
                    print(f"{progress} episodic_return={last_return:.1f} ETA={eta:.0f} min", flush=True)

        if args.eval_episodes > 0:  # the deterministic policy at the end
            eval_return, velocity = evaluate(actor, args.env_id, args.eval_episodes, args.seed, device)
            log_eval(writer, eval_return, velocity, global_step)
            print(f"eval: episodic_return={eval_return:.1f} over {args.eval_episodes} episodes")
    except KeyboardInterrupt:
        print(f"interrupted at global_step={global_step}; the logs in runs/{run_name} are kept")
    finally:  # Ctrl-C included: keep the logs, and the checkpoint when asked for
        if args.save_model:
            model_path = f"runs/{run_name}/{args.exp_name}.pt"
            nets = {"actor": actor, "qf1": qf1, "qf2": qf2, "qf1_target": qf1_target, "qf2_target": qf2_target}
            checkpoint = {name: net.state_dict() for name, net in nets.items()}
            torch.save({**checkpoint, "bt_model": bt_model.state_dict(), "args": vars(args)}, model_path)
            print(f"model saved to {model_path}")
        envs.close()
        writer.close()
        print(f"logs: runs/{run_name} (tensorboard --logdir runs)")
