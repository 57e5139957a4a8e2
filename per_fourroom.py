"""Advantage actor-critic (GAE) with prioritized experience replay on the four-room grid world.

The baseline of paper 6.2 (Fig. 3 and 4), App. D (Fig. 10) and App. E.3 (Table 3) of Goyal et al.,
"Recall Traces: Backtracking Models for Efficient Reinforcement Learning", ICLR 2019: the actor-critic of
ac_recall_fourroom.py, plus an update from a prioritized batch of past transitions (Schaul et al. 2016,
proportional variant) every few actor-critic updates.

    python per_fourroom.py --size 15
    python per_fourroom.py --size 11 --per-beta 0.4 --per-beta-end 1.0
"""

import os
import random
import sys
import time
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro
from PIL import Image  # installed with gymnasium[mujoco] (imageio), used by tensorboard's images
from torch.utils.tensorboard import SummaryWriter

import envs  # noqa: F401  (registers FourRoom-v0)


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
    """if toggled, save the actor-critic to the run directory"""
    eval_episodes: int = 100
    """episodes of the trained (stochastic) policy run at the end for eval/ and the visitation heatmap"""

    # environment
    env_id: str = "FourRoom-v0"
    """the environment id (only FourRoom-v0)"""
    size: int = 15
    """side of the square grid including the outer wall: odd and >= 7 (the paper uses 11, 13, 15)"""
    slip: float = 0.0
    """probability that a step takes a random action instead (stochastic variant)"""
    num_envs: int = 16
    """the number of parallel environments"""

    # base algorithm: synchronous advantage actor-critic with GAE, as in ac_recall_fourroom.py
    total_timesteps: int = 300_000
    """total real environment steps"""
    learning_rate: float = 1e-3
    """Adam learning rate of the actor and the critic"""
    num_steps: int = 16
    """steps per environment in each rollout"""
    gamma: float = 0.99
    """the discount factor"""
    gae_lambda: float = 0.95
    """lambda of generalized advantage estimation"""
    ent_coef: float = 0.01
    """coefficient of the entropy bonus of the on-policy update (the prioritized update has none, App. E.3)"""
    vf_coef: float = 0.5
    """coefficient of the value loss"""
    max_grad_norm: float = 0.5
    """the maximum norm of the gradient"""
    hidden_size: int = 64
    """hidden units of the two layers of the actor and of the critic"""

    # prioritized experience replay (App. E.3, Table 3)
    per: bool = True
    """if toggled, add the prioritized updates; --no-per is plain actor-critic"""
    buffer_size: int = 100_000
    """capacity of the replay buffer (App. E.3: 100k)"""
    batch_size: int | None = None
    """transitions in each prioritized batch; by default Table 3's for the size (11: 200, 13: 2000, 15: 1000)"""
    learning_starts: int = 1000
    """env steps before the first prioritized update (and never before the buffer holds one batch)"""
    ac_steps_per_per_step: int = 3
    """actor-critic updates per prioritized update (Table 3: 3)"""
    per_alpha: float | None = None
    """priority exponent alpha, 0 is uniform replay; by default Table 3's for the size (11, 13: 0.8, 15: 0.95)"""
    per_beta: float = 0.1
    """importance-sampling exponent beta (Table 3: 0.1); 1 corrects the sampling bias fully"""
    per_beta_end: float | None = None
    """if set, anneal beta linearly from --per-beta to this value over the run (Schaul et al. anneal to 1)"""
    per_eps: float = 1e-6
    """added to |TD error| so that no transition has priority zero"""
    per_actor: bool = True
    """if toggled, the prioritized batch updates the actor too (one-step TD advantage), not only the critic"""


# App. E.3, Table 3: (batch size, alpha) of each grid size; a size not in the table takes the nearest row
TABLE3 = {11: (200, 0.8), 13: (2000, 0.8), 15: (1000, 0.95)}


def table3(size):
    return TABLE3[min(TABLE3, key=lambda row: (abs(row - size), row))]


def check_args(args: Args):
    """One clear line for each kind of bad input, before anything is built."""
    if args.env_id != "FourRoom-v0":
        return f"--env-id must be FourRoom-v0, got {args.env_id!r}"
    if args.size < 7 or args.size % 2 == 0:
        return f"--size must be an odd integer >= 7 (the four-room grid needs a centre wall), got {args.size}"
    inf = float("inf")
    bounds = [  # the flags, the test each value must pass, and what the test asks for
        ("seed total_timesteps learning_starts eval_episodes", lambda x: x >= 0, ">= 0"),
        ("num_envs num_steps buffer_size batch_size ac_steps_per_per_step", lambda x: x >= 1, ">= 1"),
        ("learning_rate max_grad_norm per_eps", lambda x: 0 < x < inf, "finite and > 0"),
        ("ent_coef vf_coef per_alpha", lambda x: 0 <= x < inf, "finite and >= 0"),
        ("gamma", lambda x: 0 < x <= 1, "in (0, 1]"),
        ("gae_lambda slip", lambda x: 0 <= x <= 1, "in [0, 1]"),
        ("per_beta per_beta_end", lambda x: x is None or 0 <= x <= 1, "in [0, 1]"),  # None: Table 3's
    ]
    for names, ok, need in bounds:
        for name in names.split():
            if not ok(getattr(args, name)):
                return f"--{name.replace('_', '-')} must be {need}, got {getattr(args, name)}"
    if args.batch_size > args.buffer_size:
        return f"--batch-size ({args.batch_size}) cannot be larger than --buffer-size ({args.buffer_size})"
    if args.total_timesteps < args.num_envs * args.num_steps:
        batch = args.num_envs * args.num_steps
        return f"--total-timesteps must be at least one batch (--num-envs x --num-steps = {batch}), got {args.total_timesteps}"
    return None


def make_env(env_id, idx, capture_video, run_name, size, slip):
    def thunk():
        env = gym.make(env_id, size=size, slip=slip, render_mode="rgb_array" if capture_video and idx == 0 else None)
        if capture_video and idx == 0:
            env = gym.wrappers.RecordVideo(env, f"videos/{run_name}")
        return env

    return thunk


def mlp(n_in, n_out, hidden, activation, out_std=1.0):
    """Orthogonal weights (gain sqrt 2, the last layer's own) and zero biases, the init of CleanRL's discrete
    actor-critics; the continuous scripts' mlp keeps PyTorch's default init."""

    def layer(i, o, std=np.sqrt(2)):
        lin = nn.Linear(i, o)
        nn.init.orthogonal_(lin.weight, std)
        nn.init.zeros_(lin.bias)
        return lin

    return nn.Sequential(layer(n_in, hidden), activation(), layer(hidden, hidden), activation(), layer(hidden, n_out, out_std))


class ActorCritic(nn.Module):
    """Two networks on the one-hot cell: the policy pi(a|s) and the critic V(s)."""

    def __init__(self, n_cells, n_actions, hidden):
        super().__init__()
        self.n_cells = n_cells
        self.actor = mlp(n_cells, n_actions, hidden, nn.Tanh, out_std=0.01)
        self.critic = mlp(n_cells, 1, hidden, nn.Tanh, out_std=1.0)

    def value(self, cells):
        return self.critic(F.one_hot(cells, self.n_cells).float()).squeeze(-1)

    def dist(self, cells):
        return torch.distributions.Categorical(logits=self.actor(F.one_hot(cells, self.n_cells).float()))


class SumTree:
    """A binary tree whose every node holds the sum of its two children (Schaul et al. 2016, App. B.2.1).

    Leaf i holds the priority of slot i; the leaves are padded with zeros to a power of two, so every leaf has
    the same depth. Updating k leaves and sampling k values both cost O(k log capacity), vectorised over k.
    """

    def __init__(self, capacity):
        self.n_leaves = 1 << max(0, (capacity - 1).bit_length())
        self.nodes = np.zeros(2 * self.n_leaves)  # nodes[1] is the root, leaf i is nodes[n_leaves + i]

    @property
    def total(self):
        return self.nodes[1]

    @property
    def leaves(self):
        return self.nodes[self.n_leaves :]

    def update(self, idx, priorities):
        nodes = np.asarray(idx) + self.n_leaves
        self.nodes[nodes] = priorities
        while nodes[0] > 1:  # rebuild each parent from its children: sums never drift, whatever the order of updates
            nodes = np.unique(nodes // 2)
            self.nodes[nodes] = self.nodes[2 * nodes] + self.nodes[2 * nodes + 1]

    def find(self, values):
        """For each value in [0, total): the leaf i with sum(leaves[:i]) <= value < sum(leaves[:i + 1])."""
        values = np.array(values, dtype=np.float64)
        nodes = np.ones(len(values), dtype=np.int64)
        while nodes[0] < self.n_leaves:
            left = 2 * nodes
            # never step into an empty subtree, which rounding could otherwise do near the total
            right = (values >= self.nodes[left]) & (self.nodes[left + 1] > 0)
            values -= np.where(right, self.nodes[left], 0.0)
            nodes = left + right
        return nodes - self.n_leaves


class PrioritizedReplayBuffer:
    """Proportional prioritized replay (Schaul et al. 2016, Algorithm 1) of (s, a, r, s', terminated) transitions.

    P(i) = p_i^alpha / sum_k p_k^alpha with p_i = |delta_i| + eps; new transitions get the largest priority
    seen so far, so each is replayed at least once soon. When full, the oldest slots are overwritten.
    """

    def __init__(self, capacity, alpha, eps=1e-6):
        self.capacity, self.alpha, self.eps = capacity, alpha, eps
        self.cells = np.zeros(capacity, dtype=np.int64)
        self.actions = np.zeros(capacity, dtype=np.int64)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.next_cells = np.zeros(capacity, dtype=np.int64)
        self.terminations = np.zeros(capacity, dtype=np.float32)
        self.tree = SumTree(capacity)
        self.pos, self.size, self.max_priority = 0, 0, 1.0

    def add(self, cells, actions, rewards, next_cells, terminations):
        idx = (self.pos + np.arange(len(cells))) % self.capacity
        for array, values in zip(
            (self.cells, self.actions, self.rewards, self.next_cells, self.terminations),
            (cells, actions, rewards, next_cells, terminations),
            strict=True,
        ):
            array[idx] = values
        self.tree.update(idx, self.max_priority**self.alpha)
        self.pos = (self.pos + len(cells)) % self.capacity
        self.size = min(self.size + len(cells), self.capacity)

    def sample(self, batch_size, beta, rng):
        """Stratified: one index from each of batch_size equal slices of the total priority. Returns the indices,
        the IS weights w_i = (N P(i))^-beta / max_k w_k (normalised by the buffer's largest weight, so they only
        scale updates down), and the largest unnormalised weight of the batch."""
        values = (np.arange(batch_size) + rng.random(batch_size)) * self.tree.total / batch_size
        idx = self.tree.find(values)
        probs = self.tree.leaves[idx] / self.tree.total
        min_prob = self.tree.leaves[: self.size].min() / self.tree.total
        raw_weights = (self.size * probs) ** -beta
        return idx, raw_weights / (self.size * min_prob) ** -beta, raw_weights.max()

    def update_priorities(self, idx, td_errors):
        priorities = np.abs(td_errors) + self.eps
        self.max_priority = max(self.max_priority, priorities.max())
        self.tree.update(idx, priorities**self.alpha)


def compute_gae(rewards, values, next_values, terminations, dones, gamma, gae_lambda):
    """Generalized advantage estimation over a rollout of shape (num_steps, num_envs).

    `next_values[t]` is V(s_{t+1}) of the transition's own next state, which is the final observation when
    the episode ended at t; `terminations` cut the bootstrap, `dones` (terminated or truncated) cut the trace.
    """
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[0])
    for t in reversed(range(len(rewards))):
        delta = rewards[t] + gamma * (1.0 - terminations[t]) * next_values[t] - values[t]
        last = delta + gamma * gae_lambda * (1.0 - dones[t]) * last
        advantages[t] = last
    return advantages


def per_update(agent, optimizer, replay, beta, rng, args, device):
    """App. E.3: one update of the actor-critic from a prioritized batch of past transitions (importance-weighted by
    beta), then the sampled transitions' priorities set to |TD error| + eps. Returns its diagnostics."""
    idx, weights, max_raw_weight = replay.sample(args.batch_size, beta, rng)
    fields = (replay.cells, replay.actions, replay.next_cells, replay.rewards, replay.terminations)
    cells, actions, nexts, rewards, terms = (torch.as_tensor(x[idx], device=device) for x in fields)
    weights = torch.as_tensor(weights, dtype=torch.float32, device=device)
    # the one-step TD error, bootstrapped unless the env terminated (truncation bootstraps)
    with torch.no_grad():
        target = rewards + args.gamma * agent.value(nexts) * (1 - terms)
    td_error = target - agent.value(cells)
    value_loss = 0.5 * (weights * td_error**2).mean()
    # the actor, when asked, takes the TD error as the advantage of the replayed action (no entropy bonus)
    policy_loss = -(weights * td_error.detach() * agent.dist(cells).log_prob(actions)).mean()
    optimizer.zero_grad()
    (args.vf_coef * value_loss + (policy_loss if args.per_actor else 0.0)).backward()
    nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
    optimizer.step()
    replay.update_priorities(idx, td_error.detach().cpu().numpy())
    stats = {"value_loss": value_loss.item(), "policy_loss": policy_loss.item(), "td_error": td_error.abs().mean().item()}
    return stats | {"mean_priority": replay.tree.total / replay.size, "max_is_weight": max_raw_weight}


def visitation_heatmap(counts, walls, cell_px=16):
    """An RGB picture of visit counts: walls black, never visited white, then light yellow to dark red (log scale)."""
    low, high = np.array([255, 237, 160]), np.array([189, 0, 38])
    frac = np.log1p(counts) / max(np.log1p(counts).max(), 1e-8)
    img = (low + frac[..., None] * (high - low)).astype(np.uint8)
    img[counts == 0] = 255
    img[walls] = 0
    return img.repeat(cell_px, axis=0).repeat(cell_px, axis=1)


if __name__ == "__main__":
    args = tyro.cli(Args)
    table3_batch_size, table3_alpha = table3(args.size)  # the defaults, logged and saved as used
    args.batch_size = table3_batch_size if args.batch_size is None else args.batch_size
    args.per_alpha = table3_alpha if args.per_alpha is None else args.per_alpha
    if (error := check_args(args)) is not None:
        sys.exit(f"error: {error}")
    if args.capture_video:
        try:
            import moviepy  # noqa: F401
        except ImportError:
            sys.exit("error: --capture-video needs moviepy: pip install -r requirements-extra.txt")
    run_name = f"{args.env_id}-{args.size}__{args.exp_name}__{args.seed}__{int(time.time())}"
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

    # gymnasium 1.x: same-step autoreset puts the real last observation of an episode in infos["final_obs"]
    # and returns the next episode's first observation, so every stored transition is a real one.
    vec_env = gym.vector.SyncVectorEnv(
        [make_env(args.env_id, i, args.capture_video, run_name, args.size, args.slip) for i in range(args.num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    grid = vec_env.envs[0].unwrapped
    n_cells, n_actions = vec_env.single_observation_space.n, vec_env.single_action_space.n
    agent = ActorCritic(n_cells, n_actions, args.hidden_size).to(device)
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)
    replay = PrioritizedReplayBuffer(args.buffer_size, args.per_alpha, args.per_eps)

    obs_buf = torch.zeros((args.num_steps, args.num_envs), dtype=torch.long, device=device)
    next_obs_buf = torch.zeros_like(obs_buf)
    actions_buf = torch.zeros_like(obs_buf)
    rewards_buf = torch.zeros((args.num_steps, args.num_envs), device=device)
    terms_buf, dones_buf = torch.zeros_like(rewards_buf), torch.zeros_like(rewards_buf)
    ep_returns, ep_lengths = np.zeros(args.num_envs), np.zeros(args.num_envs, dtype=np.int64)
    recent_success, recent_return = [], []

    global_step, iteration, start_time = 0, 0, time.time()
    num_iterations = args.total_timesteps // (args.num_steps * args.num_envs)
    next_obs, _ = vec_env.reset(seed=args.seed)
    try:
        for iteration in range(1, num_iterations + 1):
            for step in range(args.num_steps):
                global_step += args.num_envs
                obs = next_obs
                with torch.no_grad():
                    action = agent.dist(torch.as_tensor(obs, device=device)).sample().cpu().numpy()
                next_obs, reward, terminations, truncations, infos = vec_env.step(action)
                real_next_obs = next_obs.copy()
                for i in np.flatnonzero(terminations | truncations):
                    real_next_obs[i] = infos["final_obs"][i]
                obs_buf[step] = torch.as_tensor(obs, device=device)
                actions_buf[step] = torch.as_tensor(action, device=device)
                next_obs_buf[step] = torch.as_tensor(real_next_obs, device=device)
                rewards_buf[step] = torch.as_tensor(reward, device=device)
                terms_buf[step] = torch.as_tensor(terminations, device=device)
                dones_buf[step] = torch.as_tensor(terminations | truncations, device=device)
                ep_returns += reward
                ep_lengths += 1
                for i in np.flatnonzero(terminations | truncations):
                    recent_success = (recent_success + [float(terminations[i])])[-100:]
                    recent_return = (recent_return + [ep_returns[i]])[-100:]
                    writer.add_scalar("charts/episodic_return", ep_returns[i], global_step)
                    writer.add_scalar("charts/episodic_length", ep_lengths[i], global_step)
                    ep_returns[i], ep_lengths[i] = 0.0, 0

            if args.per:  # every real transition of the rollout, at the largest priority so far
                rollout = (obs_buf, actions_buf, rewards_buf, next_obs_buf, terms_buf)
                replay.add(*(x.flatten().cpu().numpy() for x in rollout))

            # the on-policy actor-critic update with GAE, line for line the one of ac_recall_fourroom.py
            with torch.no_grad():
                values = agent.value(obs_buf)
                next_values = agent.value(next_obs_buf)
            advantages = compute_gae(rewards_buf, values, next_values, terms_buf, dones_buf, args.gamma, args.gae_lambda)
            returns = advantages + values
            dist = agent.dist(obs_buf.flatten())
            policy_loss = -(dist.log_prob(actions_buf.flatten()) * advantages.flatten()).mean()
            value_loss = 0.5 * ((agent.value(obs_buf.flatten()) - returns.flatten()) ** 2).mean()
            entropy = dist.entropy().mean()
            loss = policy_loss + args.vf_coef * value_loss - args.ent_coef * entropy
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
            optimizer.step()

            # App. E.3: one prioritized update every ac_steps_per_per_step actor-critic updates
            per_due = iteration % args.ac_steps_per_per_step == 0
            if args.per and per_due and replay.size >= max(args.batch_size, args.learning_starts):
                beta = args.per_beta
                if args.per_beta_end is not None:
                    beta += (args.per_beta_end - args.per_beta) * global_step / max(args.total_timesteps, 1)
                per_stats = per_update(agent, optimizer, replay, beta, rng, args, device)
                for name, value in {**per_stats, "beta": beta}.items():
                    writer.add_scalar(f"per/{name}", value, global_step)

            if recent_success:  # over the last 100 episodes, every iteration: the benchmark reads its first 0.9
                writer.add_scalar("charts/success_rate", np.mean(recent_success), global_step)
            if iteration % 10 == 0 or iteration == num_iterations:
                writer.add_scalar("losses/policy_loss", policy_loss.item(), global_step)
                writer.add_scalar("losses/value_loss", value_loss.item(), global_step)
                writer.add_scalar("losses/entropy", entropy.item(), global_step)
                writer.add_scalar("charts/SPS", int(global_step / (time.time() - start_time)), global_step)
            if iteration % 100 == 0:
                print(
                    f"global_step={global_step} success_rate(last 100)={np.mean(recent_success or [0]):.2f} "
                    f"return={np.mean(recent_return or [0]):.2f} SPS={int(global_step / (time.time() - start_time))}"
                )

        # the trained policy, sampled as it acts: eval/ scalars, the state-visitation heatmap (Fig. 3) and coverage
        eval_env = gym.make(args.env_id, size=args.size, slip=args.slip)
        counts = np.zeros(n_cells)
        eval_returns = []
        for episode in range(args.eval_episodes):
            cell, _ = eval_env.reset(seed=args.seed + 10_000 + episode)
            counts[cell] += 1
            done, ep_return = False, 0.0
            while not done:
                with torch.no_grad():
                    action = agent.dist(torch.tensor([cell], device=device)).sample().item()
                cell, reward, terminated, truncated, _ = eval_env.step(action)
                counts[cell] += 1
                ep_return += reward
                done = terminated or truncated
            eval_returns.append(ep_return)
        if eval_returns:
            coverage = (counts[grid.free_cells] > 0).mean()  # the fraction of free cells the policy visits
            writer.add_scalar("eval/episodic_return", np.mean(eval_returns), global_step)
            writer.add_scalar("eval/success_rate", np.mean(np.array(eval_returns) > 0), global_step)
            writer.add_scalar("eval/visitation_coverage", coverage, global_step)
            heatmap = visitation_heatmap(counts.reshape(args.size, args.size), grid.walls)
            writer.add_image("eval/visitation", heatmap, global_step, dataformats="HWC")
            Image.fromarray(heatmap).save(f"runs/{run_name}/visitation.png")
            print(
                f"eval: success_rate={np.mean(np.array(eval_returns) > 0):.2f} visitation_coverage={coverage:.2f} "
                f"over {len(eval_returns)} episodes"
            )
    except KeyboardInterrupt:
        print(f"interrupted at global_step={global_step}; the logs in runs/{run_name} are kept")
    finally:  # Ctrl-C included: keep the logs, and the checkpoint when asked for
        if args.save_model:
            model_path = f"runs/{run_name}/{args.exp_name}.pt"
            torch.save({"agent": agent.state_dict(), "args": vars(args)}, model_path)
            print(f"model saved to {model_path}")
        vec_env.close()
        writer.close()
        print(f"logs: runs/{run_name} (tensorboard --logdir runs)")
