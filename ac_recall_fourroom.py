"""Advantage actor-critic (GAE) with and without recall traces on the four-room grid world.

Reproduces paper 6.1 (Fig. 2 and 9), App. F (Fig. 14: learned vs random backward action model) and
App. H (Fig. 17 and 18: ratio of real-environment updates to recall updates) of Goyal et al.,
"Recall Traces: Backtracking Models for Efficient Reinforcement Learning", ICLR 2019.

    python ac_recall_fourroom.py --size 15 --bt-state true --bt-model learned
    python ac_recall_fourroom.py --size 15 --no-recall
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
import torch.nn.functional as F
import tyro
from PIL import Image  # installed with gymnasium[mujoco] (imageio), used by tensorboard's images
from torch.nn.utils import parameters_to_vector
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
    """if toggled, save the actor-critic and the backtracking model to the run directory"""
    eval_episodes: int = 100
    """episodes of the trained (stochastic) policy run at the end for eval/ and the visitation heatmap"""

    # environment
    env_id: str = "FourRoom-v0"
    """the environment id (only FourRoom-v0: the script uses its true backward dynamics)"""
    size: int = 15
    """side of the square grid including the outer wall: odd and >= 7 (the paper uses 11, 13, 15, 19)"""
    slip: float = 0.0
    """probability that a step takes a random action instead (stochastic variant)"""
    num_envs: int = 16
    """the number of parallel environments"""

    # base algorithm: synchronous advantage actor-critic with GAE
    total_timesteps: int = 300_000
    """total real environment steps"""
    learning_rate: float = 1e-3
    """Adam learning rate of the actor and the critic (alpha of Algorithm 1)"""
    num_steps: int = 16
    """steps per environment in each rollout"""
    gamma: float = 0.99
    """the discount factor"""
    gae_lambda: float = 0.95
    """lambda of generalized advantage estimation"""
    ent_coef: float = 0.01
    """coefficient of the entropy bonus"""
    vf_coef: float = 0.5
    """coefficient of the value loss"""
    max_grad_norm: float = 0.5
    """the maximum norm of the gradient"""
    hidden_size: int = 64
    """hidden units of the two layers of the actor and of the critic"""

    # recall traces
    recall: bool = True
    """if toggled, improve the policy with recall traces (Algorithm 1); --no-recall is plain actor-critic"""
    trace_len: int = 10
    """backward steps in each recall trace"""
    num_traces: int = 32
    """recall traces generated per recall update (N of Algorithm 1)"""
    k_traj: int = 32
    """the buffer keeps the top k_traj trajectories by discounted return"""
    top_k_frac: float = 0.5
    """fraction of the buffer's transitions, the most valuable by the critic, that train the backtracking model"""
    target: Literal["value", "goal"] = "value"
    """where traces start: the highest-value states of the buffer, or the known goal cell"""
    bt_state: Literal["learned", "true"] = "learned"
    """q(s_t|a_t, s_{t+1}): a learned categorical model, or the environment's true backward dynamics"""
    bt_model: Literal["learned", "random"] = "learned"
    """a backtracking model trained by maximum likelihood, or never trained (App. F): q(a_t|s_{t+1}) uniform over
    the actions, q(s_t|a_t, s_{t+1}) the true one (--bt-state true) or left at its random initialisation"""
    bt_learning_rate: float = 1e-3
    """Adam learning rate of the backtracking model (beta of Algorithm 1)"""
    bt_updates: int = 5
    """gradient steps of the backtracking model in each recall phase"""
    bt_batch_size: int = 256
    """minibatch size of the backtracking model"""
    imitation_lr: float = 1e-3
    """Adam learning rate of the imitation step, an optimizer of its own (alpha of Algorithm 1, line 13: the paper's
    is the actor-critic's); 0 runs every recall phase without moving the policy"""
    recall_every: int = 1
    """actor-critic updates between two recall phases (App. H, Fig. 17)"""
    imitation_updates: int = 1
    """imitation steps in each recall phase, each on fresh traces (App. H, Fig. 18)"""


def check_args(args: Args):
    """One clear line for each kind of bad input, before anything is built."""
    if args.env_id != "FourRoom-v0":
        return f"--env-id must be FourRoom-v0 (this script needs its true backward dynamics), got {args.env_id!r}"
    inf = float("inf")
    bounds = [  # the flags, the test each value must pass, and what the test asks for
        ("seed total_timesteps bt_updates imitation_updates eval_episodes", lambda x: x >= 0, ">= 0"),
        ("trace_len num_traces k_traj num_envs num_steps bt_batch_size recall_every", lambda x: x >= 1, ">= 1"),
        ("learning_rate bt_learning_rate max_grad_norm", lambda x: 0 < x < inf, "finite and > 0"),
        ("imitation_lr ent_coef vf_coef", lambda x: 0 <= x < inf, "finite and >= 0"),
        ("gamma top_k_frac", lambda x: 0 < x <= 1, "in (0, 1]"),
        ("gae_lambda slip", lambda x: 0 <= x <= 1, "in [0, 1]"),
    ]
    for names, ok, need in bounds:
        for name in names.split():
            if not ok(getattr(args, name)):
                return f"--{name.replace('_', '-')} must be {need}, got {getattr(args, name)}"
    if args.size < 7 or args.size % 2 == 0:
        return f"--size must be an odd integer >= 7 (the four-room grid needs a centre wall), got {args.size}"
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


# differs from the MuJoCo scripts' copies: CleanRL's orthogonal initialisation (per_fourroom.py's too)
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


# differs from the MuJoCo scripts' copies: cells and actions are discrete, so two categoricals and no normaliser
class BacktrackingModel(nn.Module):
    """B_phi = q(a_t|s_{t+1}) q(s_t|a_t, s_{t+1}) for discrete cells (paper 2.1, 3.1; App. C: 2x128 units).

    bt_action_net gives categorical logits over actions (tanh units), bt_state_net categorical logits over
    the previous cell (ReLU units). For discrete states the paper models s_t directly, not delta_s_t.
    """

    def __init__(self, n_cells, n_actions, hidden=128):
        super().__init__()
        self.n_cells, self.n_actions = n_cells, n_actions
        self.bt_action_net = mlp(n_cells, n_actions, hidden, nn.Tanh)
        self.bt_state_net = mlp(n_cells + n_actions, n_cells, hidden, nn.ReLU)

    def action_logits(self, next_cells):
        return self.bt_action_net(F.one_hot(next_cells, self.n_cells).float())

    def state_logits(self, actions, next_cells):
        x = torch.cat([F.one_hot(next_cells, self.n_cells), F.one_hot(actions, self.n_actions)], -1).float()
        return self.bt_state_net(x)

    def nll(self, cells, actions, next_cells, action=True, state=True):
        """Eq. 2, negated: {"bt_action_nll": -log q(a_t|s_{t+1}), "bt_state_nll": -log q(s_t|a_t, s_{t+1})},
        each averaged over the batch; `action` or `state` False leaves that term out (it is not computed)."""
        nlls = {}
        if action:
            nlls["bt_action_nll"] = F.cross_entropy(self.action_logits(next_cells), actions)
        if state:
            nlls["bt_state_nll"] = F.cross_entropy(self.state_logits(actions, next_cells), cells)
        return nlls


def true_predecessor_table(env):
    """pred[s', a, s] = True where the true dynamics take (s, a) to s' (the env's backward method)."""
    n = env.observation_space.n
    pred = torch.zeros(n, env.action_space.n, n, dtype=torch.bool)
    for cell in env.free_cells:
        for prev, action in env.predecessors(cell):
            pred[cell, action, prev] = True
    return pred


# differs from the MuJoCo scripts' copies: discrete cells, the true backward state model and App. F's uniform actions
def generate_recall_traces(bt_model, targets, trace_len, pred, state_model="learned", action_model="learned"):
    """Sample recall traces backwards from `targets`, all traces at once (paper 2.1, Algorithm 1 line 11).

    From s_{t+1}: a_t ~ q(a_t|s_{t+1}), then s_t ~ q(s_t|a_t, s_{t+1}); repeat from s_t for `trace_len` steps.
    With state_model "true", s_t is uniform over the true predecessors and a_t is restricted to actions that have
    one; with action_model "random" (App. F), a_t is uniform. Returns the (s_t, a_t) pairs as tensors of shape
    (trace_len, num_traces), and the fraction of backward steps the true dynamics allow (`pred[s_{t+1}, a_t, s_t]`).
    """
    cells, actions, valid = [], [], []
    next_cells = targets
    for _ in range(trace_len):
        if action_model == "learned":
            logits = bt_model.action_logits(next_cells)
        else:  # App. F: a random (untrained) backward action model
            logits = torch.zeros(len(next_cells), bt_model.n_actions, device=next_cells.device)
        if state_model == "true":
            # an action no predecessor can have taken into s_{t+1} is not a backward step of the true model
            logits = logits.masked_fill(~pred[next_cells].any(-1), -torch.inf)
        a = torch.distributions.Categorical(logits=logits).sample()
        if state_model == "true":
            s = torch.multinomial(pred[next_cells, a].float(), 1).squeeze(-1)
        else:
            s = torch.distributions.Categorical(logits=bt_model.state_logits(a, next_cells)).sample()
        valid.append(pred[next_cells, a, s])
        cells.append(s)
        actions.append(a)
        next_cells = s
    validity = torch.stack(valid).float().mean().item()
    return torch.stack(cells), torch.stack(actions), validity


# differs from the other copies: the agent's categorical policy over cells
def imitation_loss(agent, cells, actions):
    """Eq. 3, negated and averaged: -log pi_theta(a_t|s_t) over the (s_t, a_t) pairs of the recall traces."""
    return -agent.dist(cells.flatten()).log_prob(actions.flatten()).mean()


# differs from the other copies: the gradient is clipped, as the actor-critic's own is
def imitation_step(agent, imitation_optimizer, cells, actions, max_grad_norm):
    """Algorithm 1, line 13: one step on Eq. 3 over recall traces, by the imitation's own optimizer (over the actor
    alone): the actor-critic's Adam holds the RL gradients' moments, and a step of it would mostly repeat the last RL
    update. The gradient is clipped as the actor-critic's is. Returns the loss."""
    loss = imitation_loss(agent, cells, actions)
    imitation_optimizer.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(agent.actor.parameters(), max_grad_norm)
    imitation_optimizer.step()
    return loss.detach()


def step_cosine(step, base_step):
    """The cosine, in parameter space, between the imitation's update of the policy and the base algorithm's update
    since the last recall phase: above 0 recall pulls with the RL step, below 0 against it (0 if either is 0)."""
    return torch.cosine_similarity(step, base_step, dim=0, eps=1e-12)


# differs from the other copies: line 8 ranks the top-k_traj buffer here, and the goal can be the target
def recall_phase(learner, imitation_optimizer, bt_model, bt_optimizer, data, kl_obs, base_step, args):
    """Algorithm 1, lines 8-13: fit the learned parts of the backtracking model (Eq. 2) to the most valuable
    transitions of the top-k_traj buffer, sample recall traces back from the target states, take imitation steps
    on them (Eq. 3). `learner`: the actor-critic (its critic ranks the transitions); `data`: the buffer's transitions
    (cells, actions, next_cells, rewards), its best return, the true predecessor table and the goal cell; `kl_obs`:
    real cells on which the imitation steps' KL is measured; `base_step`: the actor-critic's update of the actor's
    parameters since the last phase. Returns the diagnostics and the last traces (None when there is no target
    yet: no trajectory with a positive return). Cells are discrete: no normaliser, no trace guard; the true
    predecessor table says how many backward steps are valid instead."""
    agent, pred, goal = learner, data["true_model"], data["goal"]
    cells, acts, nexts, rews = data["cells"], data["actions"], data["next_cells"], data["rewards"]
    # line 8: the top top_k_frac of the buffer's transitions by the value of arriving in s_{t+1}: r_t + gamma V(s_{t+1}),
    # and just r_t at the goal (V of every cell at once: far cheaper than V of every transition)
    with torch.no_grad():
        cell_values = agent.value(torch.arange(agent.n_cells, device=kl_obs.device))
    arrival_value = rews.float() + args.gamma * cell_values[nexts] * (nexts != goal)
    top = torch.argsort(arrival_value, descending=True)[: max(1, int(args.top_k_frac * len(cells)))]
    # lines 8-9: maximum likelihood (Eq. 2) of the learned parts; the true state model and App. F's random model have none
    learn_action = args.bt_model == "learned"
    learn_state = learn_action and args.bt_state == "learned"
    stats = {}
    for _ in range(args.bt_updates if learn_action else 0):
        batch = top[torch.randint(len(top), (args.bt_batch_size,), device=kl_obs.device)]
        stats = bt_model.nll(cells[batch], acts[batch], nexts[batch], action=learn_action, state=learn_state)
        bt_optimizer.zero_grad()
        sum(stats.values()).backward()
        bt_optimizer.step()
    # a value target needs a state of positive return in the buffer; the goal is known from the start
    if args.imitation_updates == 0 or (args.target == "value" and data["best_return"] <= 0):
        return stats, None
    with torch.no_grad():
        before, theta = agent.dist(kl_obs), parameters_to_vector(agent.actor.parameters())
    for _ in range(args.imitation_updates):
        # line 10: target states, the highest-value buffer states or the goal
        if args.target == "goal":
            targets = torch.full((args.num_traces,), goal, device=kl_obs.device)
            stats["target_value"] = torch.ones(())
        else:
            best = top[: args.num_traces]
            targets = nexts[best[torch.arange(args.num_traces, device=kl_obs.device) % len(best)]]
            stats["target_value"] = arrival_value[best].mean()
        # line 11: N recall traces backwards from the targets
        with torch.no_grad():
            trace_cells, trace_actions, validity = generate_recall_traces(
                bt_model, targets, args.trace_len, pred, state_model=args.bt_state, action_model=args.bt_model
            )
        # lines 12-13: imitation step on the policy (Eq. 3)
        stats["imitation_loss"] = imitation_step(agent, imitation_optimizer, trace_cells, trace_actions, args.max_grad_norm)
    with torch.no_grad():
        after = agent.dist(kl_obs)
        stats["imitation_kl"] = torch.distributions.kl_divergence(before, after).mean()
        stats["entropy_change"] = (after.entropy() - before.entropy()).mean()  # below 0: the phase narrowed the policy
        stats["step_cosine"] = step_cosine(parameters_to_vector(agent.actor.parameters()) - theta, base_step)
    stats["trace_validity"] = torch.tensor(validity)
    return stats, (trace_cells, trace_actions)


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


class TopTrajectoryBuffer:
    """The top k_traj trajectories by discounted return (paper 2.1); a newer one wins a tie."""

    def __init__(self, k_traj):
        self.k_traj = k_traj
        self.trajectories = []  # (discounted return, cells, actions, next cells, rewards)

    def add(self, discounted_return, cells, actions, next_cells, rewards):
        self.trajectories.append((discounted_return, cells, actions, next_cells, rewards))
        self.trajectories.sort(key=lambda tr: -tr[0])  # stable: among equal returns the newest comes last...
        if len(self.trajectories) > self.k_traj:
            worst = self.trajectories[-1][0]
            # ...so drop the oldest of the worst instead
            oldest_worst = next(i for i, tr in enumerate(self.trajectories) if tr[0] == worst)
            self.trajectories.pop(oldest_worst)

    def best_return(self):
        return self.trajectories[0][0] if self.trajectories else 0.0

    def transitions(self):
        return tuple(np.concatenate([tr[i] for tr in self.trajectories]) for i in range(1, 5))


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
    imitation_optimizer = torch.optim.Adam(agent.actor.parameters(), lr=args.imitation_lr, eps=1e-5)  # recall's own
    bt_model = BacktrackingModel(n_cells, n_actions).to(device)
    bt_optimizer = torch.optim.Adam(bt_model.parameters(), lr=args.bt_learning_rate)
    pred = true_predecessor_table(grid).to(device)
    buffer = TopTrajectoryBuffer(args.k_traj)

    obs_buf = torch.zeros((args.num_steps, args.num_envs), dtype=torch.long, device=device)
    next_obs_buf = torch.zeros_like(obs_buf)
    actions_buf = torch.zeros_like(obs_buf)
    rewards_buf = torch.zeros((args.num_steps, args.num_envs), device=device)
    terms_buf, dones_buf = torch.zeros_like(rewards_buf), torch.zeros_like(rewards_buf)
    episodes = [[] for _ in range(args.num_envs)]  # the current episode of each env: (s, a, s', r) tuples
    recent_success, recent_return = [], []

    global_step, iteration, start_time = 0, 0, time.time()
    policy_mark = parameters_to_vector(agent.actor.parameters()).detach()  # the actor after the last recall phase
    num_iterations = args.total_timesteps // (args.num_steps * args.num_envs)
    next_obs, _ = vec_env.reset(seed=args.seed)
    try:
        for iteration in range(1, num_iterations + 1):
            # Algorithm 1, lines 4-5: execute the policy; finished trajectories go to the top-k_traj buffer
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
                for i in range(args.num_envs):
                    episodes[i].append((obs[i], action[i], real_next_obs[i], reward[i]))
                    if terminations[i] or truncations[i]:
                        cells, acts, nexts, rews = (np.array(x) for x in zip(*episodes[i], strict=True))
                        ep_return = rews.sum()
                        if args.recall:  # only recall reads the buffer
                            buffer.add((args.gamma ** np.arange(len(rews)) * rews).sum(), cells, acts, nexts, rews)
                        recent_success = (recent_success + [float(terminations[i])])[-100:]
                        recent_return = (recent_return + [ep_return])[-100:]
                        writer.add_scalar("charts/episodic_return", ep_return, global_step)
                        writer.add_scalar("charts/episodic_length", len(rews), global_step)
                        episodes[i] = []

            # Algorithm 1, lines 6-7: the actor-critic update with GAE
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

            if args.recall and buffer.trajectories and iteration % args.recall_every == 0:
                # Algorithm 1, lines 8-13: backtracking model, recall traces, imitation
                base_step = parameters_to_vector(agent.actor.parameters()).detach() - policy_mark
                cells, acts, nexts, rews = (torch.as_tensor(x, device=device) for x in buffer.transitions())
                data = dict(cells=cells, actions=acts, next_cells=nexts, rewards=rews, best_return=buffer.best_return())
                data |= dict(true_model=pred, goal=grid.goal)
                recall_stats, traces = recall_phase(
                    agent, imitation_optimizer, bt_model, bt_optimizer, data, obs_buf.flatten(), base_step, args
                )
                policy_mark = parameters_to_vector(agent.actor.parameters()).detach()
                for name, stat in recall_stats.items():
                    writer.add_scalar(f"recall/{name}", stat.item(), global_step)
                if traces is not None:
                    writer.add_scalar("recall/trace_len", args.trace_len, global_step)

            if recent_success:  # over the last 100 episodes, every iteration: the benchmark reads its first 0.9
                writer.add_scalar("charts/success_rate", np.mean(recent_success), global_step)
            if iteration % 10 == 0 or iteration == num_iterations:
                writer.add_scalar("losses/policy_loss", policy_loss.item(), global_step)
                writer.add_scalar("losses/value_loss", value_loss.item(), global_step)
                writer.add_scalar("losses/entropy", entropy.item(), global_step)
                writer.add_scalar("charts/SPS", int(global_step / (time.time() - start_time)), global_step)
                if args.recall:
                    writer.add_scalar("recall/buffer_best_return", buffer.best_return(), global_step)
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
            coverage = (counts[grid.free_cells] > 0).mean()  # the fraction of free cells the policy visits (6.2)
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
            torch.save({"agent": agent.state_dict(), "bt_model": bt_model.state_dict(), "args": vars(args)}, model_path)
            print(f"model saved to {model_path}")
        vec_env.close()
        writer.close()
        print(f"logs: runs/{run_name} (tensorboard --logdir runs)")
