"""Goal GAN with and without recall traces on the U-Maze (point mass or Ant).

Reproduces paper 6.3 (Fig. 5), App. A (Algorithm 2, the gen_state branch) and App. D (Fig. 11-13) of Goyal et al.,
"Recall Traces: Backtracking Models for Efficient Reinforcement Learning", ICLR 2019. The base algorithm is Goal GAN
(Florensa, Held, Geng & Abbeel, "Automatic Goal Generation for Reinforcement Learning Agents", ICML 2018): a
goal-conditioned policy trained by TRPO on goals of intermediate difficulty proposed by an LSGAN. With recall
traces, the generator's goals are decoded into robot states (Algorithm 2, lines 2-3) and the backtracking model,
trained on the trajectories that reached their goals, samples the traces that lead there.

    python goalgan_recall_umaze.py --env-id PointUMaze-v0
    python goalgan_recall_umaze.py --env-id PointUMaze-v0 --no-recall
    python goalgan_recall_umaze.py --env-id AntUMaze-v1 --checkpoint-every 1   # the same with --resume runs/<run> goes on
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
from PIL import Image  # installed with gymnasium[mujoco] (imageio), used by tensorboard's images
from torch.nn.utils import parameters_to_vector, vector_to_parameters
from torch.utils.tensorboard import SummaryWriter

import envs  # noqa: F401  (registers PointUMaze-v0 and AntUMaze-v1)
from envs.umaze import UMazeEnv, goal_success_rates, run_episodes


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
    """if toggled, record videos of the first env to `videos/` (top-down pictures; needs `pip install moviepy`)"""
    save_model: bool = False
    """if toggled, save the policy, value network, normaliser, goal GAN and backtracking model"""

    # environment
    env_id: str = "PointUMaze-v0"
    """PointUMaze-v0 or AntUMaze-v1 (envs/umaze.py; AntUMaze-v0 is the Ant with gymnasium's physics)"""
    num_envs: int = 100
    """environments stepped together; the episodes of an iteration run num_envs at a time"""

    # base algorithm: Goal GAN (Florensa et al. 2018), its policy trained by TRPO with GAE
    total_timesteps: int = 1_500_000
    """real env steps of training (coverage evaluations not counted); stops after the Goal GAN iteration past it"""
    num_new_goals: int = 200
    """goals drawn from the generator at each Goal GAN iteration"""
    num_old_goals: int = 100
    """goals replayed from earlier iterations' goals of intermediate difficulty"""
    episodes_per_goal: int = 2
    """training episodes on each goal per Goal GAN iteration; their success rate labels the goal"""
    inner_iters: int = 5
    """TRPO iterations per Goal GAN iteration; the iteration's episodes are split evenly between them"""
    r_min: float = 0.1
    """a goal is of intermediate difficulty when r_min <= its success rate <= r_max"""
    r_max: float = 0.9
    """see r_min"""
    add_visited_goals: bool = True
    """if toggled, visited positions also join the replay list (Goal GAN's code, not its paper; keeps the GAN going)"""
    old_goal_min_dist: float = 0.3
    """a good goal joins the replay list only if it is this far from every goal already there"""
    gan_noise_dim: int = 4
    """dimension of the generator's noise input z"""
    gan_steps: int = 200
    """generator steps per Goal GAN iteration (and for the initialisation)"""
    gan_d_steps: int = 5
    """discriminator steps before each generator step"""
    gan_batch_size: int = 128
    """minibatch size of the GAN"""
    gan_lr: float = 1e-3
    """Adam learning rate of generator and discriminator"""
    goal_noise_std: float = 0.5
    """Gaussian noise added to the generator's goals (Goal GAN adds it for exploration)"""
    init_episodes: int = 50
    """episodes of the initial policy whose visited positions initialise the GAN"""
    learn_std: bool = False
    """if toggled, TRPO also learns the policy's log-std; Goal GAN keeps it fixed at log(1)"""
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
    vf_minibatch_size: int = 256
    """minibatch size of the value network"""
    coverage_every: int = 1
    """Goal GAN iterations between coverage evaluations (and at the start and the end)"""
    coverage_spacing: float = 0.5
    """spacing of the grid of feasible goals the coverage is measured on"""
    coverage_episodes: int = 2
    """episodes of the policy (sampled as it acts) on each grid goal"""
    checkpoint_every: int = 0
    """Goal GAN iterations between checkpoints of the whole run (runs/<run>/checkpoint.pt, written atomically); 0: none"""
    resume: str | None = None
    """a run directory (runs/<run>) to continue from its checkpoint, given the flags it was started with"""

    # recall traces
    recall: bool = True
    """if toggled, improve the policy with recall traces from the generator's goals; --no-recall is plain Goal GAN"""
    trace_len: int | None = None
    """backward steps in each recall trace; by default App. D's: 20 for the point mass, 50 for the Ant"""
    num_traces: int = 16
    """recall traces in each imitation minibatch (N of Algorithm 1)"""
    bt_model: Literal["learned", "random"] = "learned"
    """a backtracking model trained by maximum likelihood, or left at its random initialisation (App. F)"""
    bt_buffer_size: int = 20_000
    """capacity of the buffer of transitions from episodes that reached their goal (first in, first out)"""
    bt_updates: int = 50
    """backtracking-model gradient steps after each TRPO iteration"""
    bt_batch_size: int = 256
    """minibatch size of the backtracking model"""
    bt_learning_rate: float = 1e-3
    """Adam learning rate of the backtracking model (beta of Algorithm 1)"""
    imitation_updates: int = 1
    """imitation steps on the policy after each TRPO iteration, each on num_traces fresh traces"""
    imitation_lr: float = 1.5e-5
    """Adam learning rate of the imitation step, an optimizer of its own (alpha of Algorithm 1, line 13); TRPO's, as
    tune_trpo chose it on seeds 101-103 (docs/reproduction.md, "Settings"); 0 runs every recall phase without moving
    the policy"""


def check_args(args: Args):
    """One clear line for each kind of bad input, before anything is built (the env is made once to look at it)."""
    inf = float("inf")
    bounds = [  # the flags, the test each value must pass, and what the test asks for
        ("seed num_old_goals gan_steps bt_updates imitation_updates checkpoint_every", lambda x: x >= 0, ">= 0"),
        ("total_timesteps trace_len num_traces num_envs num_new_goals episodes_per_goal", lambda x: x >= 1, ">= 1"),
        ("inner_iters gan_noise_dim gan_d_steps gan_batch_size init_episodes cg_iters", lambda x: x >= 1, ">= 1"),
        ("line_search_tries vf_epochs vf_minibatch_size coverage_every coverage_episodes", lambda x: x >= 1, ">= 1"),
        ("bt_buffer_size bt_batch_size", lambda x: x >= 1, ">= 1"),
        ("max_kl coverage_spacing gan_lr vf_lr bt_learning_rate", lambda x: 0 < x < inf, "finite and > 0"),
        ("imitation_lr cg_damping goal_noise_std old_goal_min_dist", lambda x: 0 <= x < inf, "finite and >= 0"),
        ("gamma", lambda x: 0 < x <= 1, "in (0, 1]"),
        ("gae_lambda", lambda x: 0 <= x <= 1, "in [0, 1]"),
        ("line_search_factor", lambda x: 0 < x < 1, "in (0, 1)"),
    ]
    for names, ok, need in bounds:
        for name in names.split():
            if not ok(getattr(args, name)):
                return f"--{name.replace('_', '-')} must be {need}, got {getattr(args, name)}"
    if not 0.0 <= args.r_min < args.r_max <= 1.0:
        return f"--r-min and --r-max need 0 <= r_min < r_max <= 1, got {args.r_min} and {args.r_max}"
    try:
        env = gym.make(args.env_id)
    except Exception as e:  # an unknown id, a missing module or package
        return f"--env-id {args.env_id!r} cannot be made: {e}"
    env.close()
    if not isinstance(env.unwrapped, UMazeEnv):
        return f"{args.env_id} is not a U-Maze env; this script needs PointUMaze-v0 or AntUMaze-v1"
    if len(env.unwrapped.feasible_goals(args.coverage_spacing)) == 0:
        return f"--coverage-spacing {args.coverage_spacing} puts no feasible goal of {args.env_id} on the grid"
    return None


def make_env(env_id, seed, idx, capture_video, run_name):
    """One env of the lockstep batch; reset once with its seed here, then by run_episodes with a goal each time."""
    if capture_video and idx == 0:
        env = gym.make(env_id, render_mode="rgb_array")
        env = gym.wrappers.RecordVideo(env, f"videos/{run_name}")
    else:
        env = gym.make(env_id)
    env.reset(seed=seed + idx)
    env.action_space.seed(seed + idx)
    return env


def mlp(n_in, n_out, hidden, activation):
    return nn.Sequential(
        nn.Linear(n_in, hidden), activation(), nn.Linear(hidden, hidden), activation(), nn.Linear(hidden, n_out)
    )


# Goal GAN (Florensa et al. 2018): goals of intermediate difficulty from an LSGAN
class GoalGAN(nn.Module):
    """Goal GAN's LSGAN: a generator G(z) of 2x256 ReLU units with a tanh output, and a discriminator D(g) of 2x128
    ReLU units giving one score. Goals are measured from the centre of the maze's box in units of its width, as in
    Goal GAN's code: the tanh spans twice the box, so the maze's edges sit at +-0.5, where the tanh still has a
    gradient (squashed onto the box itself, our generator collapsed onto the maze's edge and stalled the curriculum:
    docs/goalgan_recall_umaze.md)."""

    def __init__(self, low, high, noise_dim):
        super().__init__()
        self.noise_dim = noise_dim
        self.generator = mlp(noise_dim, len(low), 256, nn.ReLU)
        self.discriminator = mlp(len(low), 1, 128, nn.ReLU)
        self.register_buffer("center", torch.as_tensor((high + low) / 2, dtype=torch.float32))
        self.register_buffer("width", torch.as_tensor(high - low, dtype=torch.float32))

    def generate(self, n):
        """n goals, up to a box's width outside the box: the caller clips them into it after the noise."""
        z = torch.randn(n, self.noise_dim, device=self.center.device)
        return self.center + self.width * torch.tanh(self.generator(z))

    def score(self, goals):
        return self.discriminator((goals - self.center) / self.width).squeeze(-1)


def label_goals(successes, r_min, r_max):
    """Goal GAN's labels: 1 (intermediate difficulty) when r_min <= success rate <= r_max; successes: (goals, episodes)."""
    rate = np.asarray(successes, dtype=np.float64).mean(-1)
    return ((rate >= r_min) & (rate <= r_max)).astype(np.float32)


def discriminator_loss(gan, goals, labels, fake, a=-1.0, b=1.0):
    """Goal GAN's LSGAN objective of D (Florensa et al. 2018, Eq. 5, with its a = -1, b = 1):
    y (D(g) - b)^2 + (1 - y)(D(g) - a)^2 over the labelled goals + (D(G(z)) - a)^2 over the generated ones."""
    real_score = gan.score(goals)
    d_loss = (labels * (real_score - b) ** 2 + (1 - labels) * (real_score - a) ** 2).mean()
    return d_loss + ((gan.score(fake) - a) ** 2).mean()


def generator_loss(gan, fake, c=0.0):
    """Goal GAN's LSGAN objective of G (Eq. 6, with its c = 0): (D(G(z)) - c)^2."""
    return ((gan.score(fake) - c) ** 2).mean()


def train_gan(gan, d_optimizer, g_optimizer, goals, labels, steps, d_steps, batch_size):
    """`steps` generator steps, each after `d_steps` discriminator steps, on minibatches of the labelled goals.
    One discriminator step per generator step lets the generator collapse onto a few goals (see the tests)."""
    d_loss = g_loss = torch.zeros(())
    for _ in range(steps):
        for _ in range(d_steps):
            mb = torch.randint(len(goals), (batch_size,), device=goals.device)
            with torch.no_grad():
                fake = gan.generate(batch_size)
            d_loss = discriminator_loss(gan, goals[mb], labels[mb], fake)
            d_optimizer.zero_grad()
            d_loss.backward()
            d_optimizer.step()
        g_loss = generator_loss(gan, gan.generate(batch_size))
        g_optimizer.zero_grad()
        g_loss.backward()
        g_optimizer.step()
    return d_loss.item(), g_loss.item()


def add_distinct(old_goals, new_goals, min_dist):
    """The replay list of goals with each new goal appended when it is min_dist from every goal already there."""
    kept = list(old_goals)
    for g in new_goals:
        if not kept or np.min(np.linalg.norm(np.asarray(kept) - g, axis=1)) >= min_dist:
            kept.append(g)
    return np.asarray(kept).reshape(-1, 2)


# The goal-conditioned policy and its learner, TRPO with GAE (as in trpo_recall_mujoco.py)
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


# differs from trpo_recall_mujoco.py's copy: Goal GAN keeps the log-std fixed unless --learn-std
class GaussianPolicy(nn.Module):
    """pi(a|s, g) = N(mu(s, g), diag(sigma^2)): a 64x64 tanh MLP for the mean on the robot state and the goal; a
    state-independent log-std, fixed at 0 unless learn_std (Goal GAN fixes it: each goal would want its own)."""

    def __init__(self, obs_dim, act_dim, learn_std, hidden=64):
        super().__init__()
        self.mean_net = mlp(obs_dim, act_dim, hidden, nn.Tanh)
        self.log_std = nn.Parameter(torch.zeros(act_dim), requires_grad=learn_std)

    def forward(self, obs):
        return torch.distributions.Normal(self.mean_net(obs), self.log_std.exp())


def compute_gae(rewards, values, next_values, terminations, dones, gamma, gae_lambda):
    """Generalised advantage estimation over (num_steps, num_episodes) tensors.

    `next_values` is V of the observation each step returned, so a truncated (time-limit) step bootstraps from
    its real next state; `terminations` (reaching the goal) cut the bootstrap and `dones` cut the sum at the end of
    an episode, so the padding after it never leaks back.
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


# Recall traces: the backtracking model, the traces from decoded goals, the imitation step (Algorithm 1, 2)
def gaussian_nll(x, mean, log_std):
    """-log N(x; mean, exp(log_std)^2), summed over the last dimension."""
    return (0.5 * ((x - mean) / log_std.exp()) ** 2 + log_std + 0.5 * np.log(2 * np.pi)).sum(-1)


# differs from trpo_recall_mujoco.py's copy: conditioned on the goal, as the policy is
class BacktrackingModel(nn.Module):
    """B_phi = q(a_t|s_{t+1}, g) q(delta_s_t|a_t, s_{t+1}, g), delta_s_t = s_t - s_{t+1} (paper 3.1, App. C),
    conditioned on the goal g as the policy is.

    bt_action_net: 2x128 tanh units, the mean of a Gaussian of variance 1. bt_state_net: 2x128 ReLU units, the
    mean of a Gaussian with a learned variance per dimension. Both work on normalised (s_{t+1}, g), a_t and
    delta_s_t; the statistics are buffers of the module, so they are saved with it.
    """

    def __init__(self, state_dim, goal_dim, act_dim, hidden=128):
        super().__init__()
        self.bt_action_net = mlp(state_dim + goal_dim, act_dim, hidden, nn.Tanh)
        self.bt_state_net = mlp(state_dim + goal_dim + act_dim, state_dim, hidden, nn.ReLU)
        self.bt_state_log_std = nn.Parameter(torch.zeros(state_dim))
        for name, dim in (("obs", state_dim + goal_dim), ("action", act_dim), ("delta", state_dim)):
            self.register_buffer(f"{name}_mean", torch.zeros(dim))
            self.register_buffer(f"{name}_std", torch.ones(dim))

    def update_normaliser(self, next_obs, actions, deltas):
        """App. C, refit to the whole buffer at each phase (first in, first out, so its statistics drift slowly); a
        floor keeps constant dimensions finite."""
        for name, x in (("obs", next_obs), ("action", actions), ("delta", deltas)):
            getattr(self, f"{name}_mean").copy_(x.mean(0))
            getattr(self, f"{name}_std").copy_(x.std(0, correction=0).clamp(min=1e-3))

    def nll(self, states, goals, actions, next_states):
        """Eq. 2, negated and averaged, in normalised units: {"bt_action_nll": -log q(a_t|s_{t+1}, g),
        "bt_state_nll": -log q(delta_s_t|a_t, s_{t+1}, g)}."""
        x = (torch.cat([next_states, goals], -1) - self.obs_mean) / self.obs_std
        a = (actions - self.action_mean) / self.action_std
        delta = (states - next_states - self.delta_mean) / self.delta_std
        action_nll = gaussian_nll(a, self.bt_action_net(x), torch.zeros_like(a))
        state_nll = gaussian_nll(delta, self.bt_state_net(torch.cat([x, a], -1)), self.bt_state_log_std)
        return {"bt_action_nll": action_nll.mean(), "bt_state_nll": state_nll.mean()}


TRACE_GUARD_STD = 10.0


def hold_near_data(states, mean, std):
    """The trace guard: each trace state is held within TRACE_GUARD_STD standard deviations of the backtracking
    model's training states. A long trace (50 steps on Ant) can otherwise run off to infinity, and one infinite
    state turns the policy's parameters into NaN. Returns the held states and which of them the guard moved."""
    held = torch.clamp(states, mean - TRACE_GUARD_STD * std, mean + TRACE_GUARD_STD * std)
    return held, (held != states).any(-1)


# differs from the MuJoCo scripts' copies: each trace keeps its goal
def generate_recall_traces(bt_model, targets, goals, trace_len):
    """Sample recall traces backwards from the target states, with their goals, all at once (paper 2.1,
    Algorithm 1 line 11). From s_{t+1}: a_t ~ q(a_t|s_{t+1}, g), delta_s_t ~ q(delta_s_t|a_t, s_{t+1}, g),
    s_t = s_{t+1} + delta_s_t, sampled in normalised units and un-normalised before use (App. C). Returns states
    (trace_len, N, state_dim) and actions (trace_len, N, act_dim), step t holding the pair t steps before the
    target, and (trace_len, N) flags of the states the trace guard moved (the goal is not part of the state)."""
    states, actions, guarded = [], [], []
    next_states, state_dim = targets, targets.shape[-1]
    for _ in range(trace_len):
        x = (torch.cat([next_states, goals], -1) - bt_model.obs_mean) / bt_model.obs_std
        a = bt_model.bt_action_net(x)
        a = a + torch.randn_like(a)  # variance fixed to 1
        delta_mean = bt_model.bt_state_net(torch.cat([x, a], -1))
        delta = delta_mean + bt_model.bt_state_log_std.exp() * torch.randn_like(delta_mean)
        mean, std = bt_model.obs_mean[:state_dim], bt_model.obs_std[:state_dim]
        next_states, moved = hold_near_data(next_states + delta * bt_model.delta_std + bt_model.delta_mean, mean, std)
        states.append(next_states)
        actions.append(a * bt_model.action_std + bt_model.action_mean)
        guarded.append(moved)
    return torch.stack(states), torch.stack(actions), torch.stack(guarded)


class TransitionBuffer:
    """First in, first out: the real transitions a model learns from, one tensor per field, each field's shape
    given at construction (here states, goals, actions, next_states: the transitions (s, g, a, s') of episodes that
    reached their goal g)."""

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


def imitation_loss(policy, obs, actions):
    """Eq. 3, negated and averaged: -log pi_theta(a_t|s_t, g) over the (s_t, a_t) pairs of the recall traces."""
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


def trace_targets(maze, trace_goals, n, rng, device):
    """Algorithm 1, line 10 by Algorithm 2 (gen_state): n goals g drawn from the generator's, and the robot states
    s = D(g) the decoder puts there, where recall traces start (with goal g)."""
    pick = rng.integers(len(trace_goals), size=n)
    targets = torch.as_tensor(np.stack([maze.decode(g) for g in trace_goals[pick]]), dtype=torch.float32, device=device)
    return targets, torch.as_tensor(trace_goals[pick], dtype=torch.float32, device=device)


def bt_update(bt_model, bt_optimizer, *batch):
    """Algorithm 1, lines 8-9: one maximum-likelihood step of the backtracking model (Eq. 2) on a minibatch of its
    nll's arguments. Returns its NLLs."""
    nlls = bt_model.nll(*batch)
    bt_optimizer.zero_grad()
    (nlls["bt_action_nll"] + nlls["bt_state_nll"]).backward()
    bt_optimizer.step()
    return nlls


# differs from the other copies: traces start at the generator's decoded goals, with those goals
def recall_phase(learner, imitation_optimizer, bt_model, bt_optimizer, data, kl_obs, base_step, args):
    """Algorithm 1, lines 8-13: fit the backtracking model (Eq. 2) to the buffer of successful episodes, sample
    recall traces back from the targets, take imitation steps on them (Eq. 3). `learner`: the policy, the value
    network, the policy's observation of (state, goal) and the action bounds; `data`: the buffer's transitions
    (states, goals, actions, next_states) and the trace targets (targets, target_goals: Algorithm 2's decoded goals);
    `kl_obs`: real observations on which the imitation steps' KL is measured; `base_step`: TRPO's update of the
    policy's parameters since the last phase. Returns the diagnostics and the traces (states, actions)."""
    policy, value_net, policy_obs, low, high = learner
    fields = [data[key] for key in ("states", "goals", "actions", "next_states")]
    next_obs = torch.cat([data["next_states"], data["goals"]], -1)
    deltas = data["states"] - data["next_states"]
    bt_model.update_normaliser(next_obs, data["actions"], deltas)
    # lines 8-9: maximum likelihood of the backtracking model (Eq. 2); none for App. F's random one
    for _ in range(args.bt_updates if args.bt_model == "learned" else 0):
        batch = torch.randint(len(data["states"]), (args.bt_batch_size,), device=kl_obs.device)
        bt_update(bt_model, bt_optimizer, *(x[batch] for x in fields))
    # lines 10-11: traces backwards from the targets, with their goals, one batch for the phase
    targets, target_goals = data["targets"], data["target_goals"]
    with torch.no_grad():
        trace_states, trace_actions, guarded = generate_recall_traces(bt_model, targets, target_goals, args.trace_len)
        trace_obs = policy_obs(trace_states, target_goals)
        trace_actions = torch.clamp(trace_actions, low, high)  # what the env would have executed
        before, theta = policy(kl_obs), parameters_to_vector(policy.parameters())
        stats = bt_model.nll(*fields)
    stats["target_value"] = value_net(policy_obs(targets, target_goals)).mean()
    stats.update(trace_clamped_frac=guarded.float().mean(), buffer_size=torch.tensor(float(len(data["states"]))))
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


# Checkpoints: everything a run needs to go on as if it had never stopped
RUN_CONTROL = ("checkpoint_every", "resume")  # the flags that may differ between a run and its resumption


def save_checkpoint(run_dir, state):
    """Write runs/<run>/checkpoint.pt atomically: a run killed while writing keeps its last good checkpoint."""
    torch.save(state, f"{run_dir}/checkpoint.pt.tmp")
    os.replace(f"{run_dir}/checkpoint.pt.tmp", f"{run_dir}/checkpoint.pt")


def load_checkpoint(args):
    """The checkpoint of the run directory --resume names, and None; or None and one line saying why it cannot go on."""
    path = os.path.join(args.resume, "checkpoint.pt")
    if not os.path.isfile(path):
        return None, f"--resume {args.resume}: no checkpoint.pt there"
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)  # the run's own file, numpy states in it
        missing = {"args", "nets", "optimizers", "bt_buffer", "old_goals", "policy_mark", "counters", "rng"} - set(state)
    except Exception as e:  # a partial or corrupt file: torch names what it could not read
        return None, f"--resume {args.resume}: checkpoint.pt cannot be read ({type(e).__name__}: {e})".splitlines()[0]
    if missing:
        return None, f"--resume {args.resume}: checkpoint.pt lacks {', '.join(sorted(missing))}"
    given = {k: v for k, v in vars(args).items() if k not in RUN_CONTROL}
    changed = [
        f"--{k.replace('_', '-')} {state['args'].get(k)} (given {v})" for k, v in given.items() if state["args"].get(k) != v
    ]
    if changed:
        return None, f"--resume {args.resume} was started with " + ", ".join(changed)
    return state, None


if __name__ == "__main__":
    args = tyro.cli(Args)
    if args.trace_len is None:  # App. D: traces of 20 steps for the point mass, 50 for the Ant
        args.trace_len = 50 if args.env_id.startswith("Ant") else 20
    if (error := check_args(args)) is not None:
        sys.exit(f"error: {error}")
    if args.capture_video:
        try:
            import moviepy  # noqa: F401
        except ImportError:
            sys.exit("error: --capture-video needs moviepy: pip install -r requirements-extra.txt")
    checkpoint, error = load_checkpoint(args) if args.resume else (None, None)
    if error is not None:
        sys.exit(f"error: {error}")
    run_name = f"{args.env_id}__{args.exp_name}__{args.seed}__{int(time.time())}"
    run_dir = os.path.normpath(args.resume) if checkpoint else f"runs/{run_name}"  # a resumed run logs where it began
    try:  # the log directory, before anything is spent: a file in its way gives one line, not a traceback
        os.makedirs(run_dir, exist_ok=True)
    except OSError as e:
        sys.exit(f"error: cannot write the logs to {run_dir}: {e.strerror}")
    if args.track:
        try:
            import wandb
        except ImportError:
            sys.exit("error: --track needs wandb: pip install -r requirements-extra.txt")
        wandb.init(project=args.wandb_project_name, sync_tensorboard=True, config=vars(args), name=run_name, save_code=True)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    if "OMP_NUM_THREADS" not in os.environ:  # one CPU thread unless told otherwise: a thread per core is about as
        torch.set_num_threads(1)  # fast alone and 10x slower beside one other run (docs/benchmark.md, "Threads")
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")

    # the episodes of an iteration, one per goal, num_envs at a time (a goal-conditioned batch, not an autoreset
    # vector env: every episode starts with the goal it was given)
    env_list = [make_env(args.env_id, args.seed, i, args.capture_video, run_name) for i in range(args.num_envs)]
    maze = env_list[0].unwrapped
    max_steps = env_list[0].spec.max_episode_steps
    init_steps = args.init_episodes * max_steps
    iteration_steps = (args.num_new_goals + args.num_old_goals) * args.episodes_per_goal * max_steps
    if args.total_timesteps < init_steps + iteration_steps:  # whole iterations only: say how far past the budget
        print(f"note: the run stops after the Goal GAN iteration past --total-timesteps {args.total_timesteps:,}; the "
              f"initialisation takes up to {init_steps:,} env steps (no iteration runs if they pass the budget), "
              f"an iteration up to {iteration_steps:,}")  # fmt: skip
    state_dim = maze.observation_space["observation"].shape[0]
    act_dim = maze.action_space.shape[0]
    goal_low = maze.observation_space["desired_goal"].low
    goal_high = maze.observation_space["desired_goal"].high
    low = torch.as_tensor(maze.action_space.low, dtype=torch.float32, device=device)
    high = torch.as_tensor(maze.action_space.high, dtype=torch.float32, device=device)
    obs_normaliser = RunningNormaliser(state_dim).to(device)
    policy = GaussianPolicy(state_dim + 2, act_dim, args.learn_std).to(device)
    value_net = mlp(state_dim + 2, 1, 64, nn.Tanh).to(device)
    vf_optimizer = torch.optim.Adam(value_net.parameters(), lr=args.vf_lr)
    params = [p for p in policy.parameters() if p.requires_grad]  # what TRPO's and the imitation's steps move
    imitation_optimizer = torch.optim.Adam(params, lr=args.imitation_lr)  # recall's own
    gan = GoalGAN(goal_low, goal_high, args.gan_noise_dim).to(device)
    d_optimizer = torch.optim.Adam(gan.discriminator.parameters(), lr=args.gan_lr)
    g_optimizer = torch.optim.Adam(gan.generator.parameters(), lr=args.gan_lr)
    bt_model = BacktrackingModel(state_dim, 2, act_dim).to(device)
    bt_optimizer = torch.optim.Adam(bt_model.parameters(), lr=args.bt_learning_rate)
    shapes = dict(states=(state_dim,), goals=(2,), actions=(act_dim,), next_states=(state_dim,))
    bt_buffer = TransitionBuffer(args.bt_buffer_size, device, **shapes)
    grid_goals = maze.feasible_goals(args.coverage_spacing)

    def to_tensor(x):
        return torch.as_tensor(x, dtype=torch.float32, device=device)

    goal_half_width = gan.width / 2  # the GAN's box is the maze's

    def policy_obs(states, goals):
        """The robot state by running statistics, the goal by the maze's box into [-1, 1] (goals seen so far would not do)."""
        goals = (goals - gan.center) / goal_half_width
        return torch.cat([obs_normaliser(states), goals.expand(states.shape[:-1] + (2,))], -1)

    def act(states, goals):  # the policy as it acts; the env clips the action to its bounds
        with torch.no_grad():
            return policy(policy_obs(to_tensor(states), to_tensor(goals))).sample().cpu().numpy()

    def evaluate_coverage(iteration):
        success = goal_success_rates(env_list, act, grid_goals, args.coverage_episodes, max_steps)
        writer.add_scalar("charts/coverage", success.mean(), global_step)
        writer.add_scalar("charts/iteration", iteration, global_step)
        heatmap = maze.coverage_image(grid_goals, success, args.coverage_spacing)
        writer.add_image("charts/coverage_heatmap", heatmap, global_step, dataformats="HWC")
        print(f"iteration={iteration} global_step={global_step} coverage={success.mean():.2f}")
        return success, heatmap

    nets = dict(policy=policy, value_net=value_net, obs_normaliser=obs_normaliser, gan=gan, bt_model=bt_model)
    optimizers = dict(vf=vf_optimizer, imitation=imitation_optimizer, d=d_optimizer, g=g_optimizer, bt=bt_optimizer)
    if checkpoint:  # networks and optimizers first: another version's checkpoint is refused before a log is written
        try:
            for name, net in nets.items():
                net.load_state_dict(checkpoint["nets"][name])
            for name, optimizer in optimizers.items():
                optimizer.load_state_dict(checkpoint["optimizers"][name])
        except (KeyError, RuntimeError, ValueError) as e:
            sys.exit(
                f"error: --resume {args.resume}: checkpoint.pt does not fit this script's networks ({e!r})".splitlines()[0]
            )
    # a resumed run drops what was logged after its checkpoint's last step; that is logged again
    writer = SummaryWriter(run_dir, purge_step=checkpoint["counters"]["global_step"] + 1 if checkpoint else None)
    writer.add_text(
        "hyperparameters", "|param|value|\n|-|-|\n" + "\n".join(f"|{key}|{value}|" for key, value in vars(args).items())
    )

    def run_state():
        """Everything the run needs to go on (the RNG of each env too: it draws the Ant's start and decoded poses)."""
        rngs = dict(python=random.getstate(), numpy=np.random.get_state(), rng=rng.bit_generator.state)
        rngs.update(torch=torch.get_rng_state(), envs=[env.unwrapped.np_random.bit_generator.state for env in env_list])
        rngs.update(cuda=torch.cuda.get_rng_state_all() if device.type == "cuda" else [])
        return {
            "args": {k: v for k, v in vars(args).items() if k not in RUN_CONTROL},
            "nets": {name: net.state_dict() for name, net in nets.items()},
            "optimizers": {name: optimizer.state_dict() for name, optimizer in optimizers.items()},
            "bt_buffer": dict(
                data={k: x.clone() for k, x in bt_buffer.contents().items()}, pos=bt_buffer.pos, size=bt_buffer.size
            ),
            "old_goals": old_goals,
            "policy_mark": policy_mark,
            "counters": dict(global_step=global_step, iteration=iteration, elapsed=time.time() - start_time),
            "rng": rngs,
        }

    global_step, start_time, iteration = 0, time.time(), 0
    policy_mark = parameters_to_vector(policy.parameters()).detach()  # the policy after the last recall phase
    old_goals = np.zeros((0, 2))
    gan_schedule = (args.gan_steps, args.gan_d_steps, args.gan_batch_size)
    try:
        if checkpoint:  # go on from the end of the Goal GAN iteration the checkpoint was written at (networks above)
            for key, x in checkpoint["bt_buffer"]["data"].items():  # its filled part: a run without recall saves none
                bt_buffer.data[key][: len(x)] = x.to(device)
            bt_buffer.pos, bt_buffer.size = checkpoint["bt_buffer"]["pos"], checkpoint["bt_buffer"]["size"]
            old_goals, policy_mark = checkpoint["old_goals"], checkpoint["policy_mark"].to(device)
            global_step, iteration = checkpoint["counters"]["global_step"], checkpoint["counters"]["iteration"]
            start_time -= checkpoint["counters"]["elapsed"]
            rngs = checkpoint["rng"]
            random.setstate(rngs["python"])
            np.random.set_state(rngs["numpy"])
            rng.bit_generator.state = rngs["rng"]
            torch.set_rng_state(rngs["torch"])
            if device.type == "cuda" and rngs["cuda"]:
                torch.cuda.set_rng_state_all(rngs["cuda"])
            for env, state in zip(env_list, rngs["envs"], strict=True):
                env.unwrapped.np_random.bit_generator.state = state
            print(f"resumed {run_dir} at iteration={iteration} global_step={global_step}")
        else:  # Goal GAN's initialisation: the GAN learns the positions the initial policy visits, all labelled good
            goals = np.stack([maze.sample_goal() for _ in range(args.init_episodes)])
            init = run_episodes(env_list, act, goals, max_steps)
            global_step += int(init["valid"].sum())
            visited = to_tensor(init["next_states"][init["valid"] == 1][:, :2])
            train_gan(gan, d_optimizer, g_optimizer, visited, torch.ones(len(visited), device=device), *gan_schedule)
            initial = evaluate_coverage(0)

        while global_step < args.total_timesteps:
            iteration += 1
            # Goal GAN: new goals from the generator (with exploration noise), old good goals replayed
            with torch.no_grad():
                new_goals = gan.generate(args.num_new_goals).cpu().numpy()
            new_goals = np.clip(new_goals + args.goal_noise_std * rng.standard_normal(new_goals.shape), goal_low, goal_high)
            replay = old_goals[rng.integers(len(old_goals), size=args.num_old_goals)] if len(old_goals) else old_goals
            goals = np.concatenate([new_goals, replay])
            # Algorithm 2, lines 2-3: recall traces start at the generator's goals decoded into robot states (the
            # decoder needs a place the robot can be, so goals inside or against a wall are left out)
            trace_goals = new_goals[maze.is_free(new_goals, maze.robot_radius)]
            episode_goal_idx = rng.permutation(np.repeat(np.arange(len(goals)), args.episodes_per_goal))
            episode_goals = goals[episode_goal_idx]
            successes, visited = np.zeros(len(episode_goals)), []
            for chunk in np.array_split(np.arange(len(episode_goals)), args.inner_iters):
                # Algorithm 1, lines 4-5: execute the policy on this TRPO iteration's share of the episodes
                batch = run_episodes(env_list, act, episode_goals[chunk], max_steps)
                successes[chunk] = batch["success"]
                visited.append(batch["next_states"][batch["valid"] == 1][:, :2])
                global_step += int(batch["valid"].sum())
                b = {key: to_tensor(x) for key, x in batch.items()}
                b_goals = to_tensor(episode_goals[chunk]).expand(max_steps, -1, -1)
                with torch.no_grad():
                    obs, next_obs = policy_obs(b["states"], b_goals), policy_obs(b["next_states"], b_goals)
                    values, next_values = value_net(obs).squeeze(-1), value_net(next_obs).squeeze(-1)
                    ends = (b["terminations"], b["dones"])
                    advantages = compute_gae(b["rewards"], values, next_values, *ends, args.gamma, args.gae_lambda)
                    returns = advantages + values
                keep = b["valid"] == 1  # the padding after an episode ended is not a step
                b_obs, b_actions = obs[keep], b["actions"][keep]
                b_returns = returns[keep]
                b_advantages = (advantages[keep] - advantages[keep].mean()) / (advantages[keep].std() + 1e-8)

                # Algorithm 1, line 7: the TRPO step, then the value network
                surrogate = surrogate_objective(policy, b_obs, b_actions, b_advantages)  # pi_old: the policy now
                stats = trpo_step(policy, params, surrogate, b_obs, args)
                for _ in range(args.vf_epochs):
                    for mb in torch.randperm(len(b_obs), device=device).split(args.vf_minibatch_size):
                        value_loss = ((value_net(b_obs[mb]).squeeze(-1) - b_returns[mb]) ** 2).mean()
                        vf_optimizer.zero_grad()
                        value_loss.backward()
                        vf_optimizer.step()
                obs_normaliser.update(b["states"][keep])

                # App. D: the backtracking model learns from the trajectories that reached their goals, their last
                # (terminal) transition included: the U-Maze terminates only on reaching the goal, where traces start
                if args.recall:
                    reached = keep & (b["success"] == 1)
                    clipped = torch.clamp(b["actions"][reached], low, high)  # what the env executed
                    reached_steps = dict(states=b["states"][reached], goals=b_goals[reached], actions=clipped)
                    bt_buffer.add(**reached_steps, next_states=b["next_states"][reached])
                if args.recall and bt_buffer.size > 0 and len(trace_goals) > 0:
                    # Algorithm 1, lines 8-13 (Algorithm 2's targets): backtracking model, recall traces, imitation
                    learner = (policy, value_net, policy_obs, low, high)
                    n_targets = args.num_traces * max(args.imitation_updates, 1)
                    targets, target_goals = trace_targets(maze, trace_goals, n_targets, rng, device)
                    data = {**bt_buffer.contents(), "targets": targets, "target_goals": target_goals}
                    base_step = parameters_to_vector(policy.parameters()).detach() - policy_mark
                    recall_stats, (trace_states, _) = recall_phase(
                        learner, imitation_optimizer, bt_model, bt_optimizer, data, b_obs, base_step, args
                    )
                    off_walls = maze.is_free(trace_states[..., :2].cpu().numpy()).mean()
                    recall_stats["trace_validity"] = torch.as_tensor(off_walls)
                    policy_mark = parameters_to_vector(policy.parameters()).detach()
                    if stats["kl"] > 0:  # against TRPO's own step: how far recall moved the policy, and the share of
                        # TRPO's surrogate gain it took back (the surrogate is 0 at pi_old)
                        recall_stats["imitation_kl_ratio"] = recall_stats["imitation_kl"] / stats["kl"]
                        with torch.no_grad():
                            recall_stats["surrogate_undone"] = 1 - surrogate() / -stats["policy_loss"]
                    for name, stat in recall_stats.items():
                        writer.add_scalar(f"recall/{name}", stat.item(), global_step)
                    writer.add_scalar("recall/trace_len", args.trace_len, global_step)

                charts = {"episodic_return": b["rewards"].sum(0).mean(), "episodic_length": b["valid"].sum(0).mean()}
                charts.update(success_rate=b["success"].mean(), SPS=int(global_step / (time.time() - start_time)))
                for name, value in charts.items():
                    writer.add_scalar(f"charts/{name}", value, global_step)
                entropy = (policy.log_std + 0.5 * np.log(2 * np.pi * np.e)).sum()  # the same in every state
                for name, value in {**stats, "value_loss": value_loss.item(), "entropy": entropy.item()}.items():
                    writer.add_scalar(f"losses/{name}", value, global_step)

            # Goal GAN: label the goals by their success rate, train the GAN on them, keep the good ones for replay
            per_goal = successes[np.argsort(episode_goal_idx, kind="stable")].reshape(len(goals), args.episodes_per_goal)
            labels = label_goals(per_goal, args.r_min, args.r_max)
            d_loss, g_loss = train_gan(gan, d_optimizer, g_optimizer, to_tensor(goals), to_tensor(labels), *gan_schedule)
            old_goals = add_distinct(old_goals, goals[labels == 1], args.old_goal_min_dist)
            if args.add_visited_goals:  # as many as the new goals, drawn from all the positions visited
                visited = np.concatenate(visited)[rng.integers(sum(map(len, visited)), size=args.num_new_goals)]
                old_goals = add_distinct(old_goals, visited, args.old_goal_min_dist)
            gan_logs = {"losses/gan_d_loss": d_loss, "losses/gan_g_loss": g_loss, "charts/old_goals": len(old_goals)}
            for tag, value in {**gan_logs, "charts/good_goal_frac": labels[: args.num_new_goals].mean()}.items():
                writer.add_scalar(tag, value, global_step)
            if iteration % args.coverage_every == 0 and global_step < args.total_timesteps:  # the last one follows
                evaluate_coverage(iteration)
            if args.checkpoint_every and iteration % args.checkpoint_every == 0 and global_step < args.total_timesteps:
                save_checkpoint(run_dir, run_state())  # not after the last: a run killed in its end redoes that iteration

        # the end: coverage of the final policy, its return over the grid goals, the heatmap as a PNG
        success, heatmap = evaluate_coverage(iteration) if iteration else initial  # no iteration ran: no new policy
        writer.add_scalar("eval/episodic_return", success.mean(), global_step)  # reward 1 on reaching the goal
        Image.fromarray(heatmap).save(f"{run_dir}/coverage.png")
    except KeyboardInterrupt:
        print(f"interrupted at global_step={global_step}; the logs in {run_dir} are kept")
    finally:  # Ctrl-C included: keep the logs, and the checkpoint when asked for
        if args.save_model:
            model_path = f"{run_dir}/{args.exp_name}.pt"
            torch.save({**{name: net.state_dict() for name, net in nets.items()}, "args": vars(args)}, model_path)
            print(f"model saved to {model_path}")
        for env in env_list:
            env.close()
        writer.close()
        print(f"logs: {run_dir} (tensorboard --logdir {os.path.dirname(run_dir) or '.'})")
