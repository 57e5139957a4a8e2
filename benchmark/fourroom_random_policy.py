"""How often a uniformly random policy reaches the goal of FourRoom-v0 within its default step limit.

    python -m benchmark.fourroom_random_policy

docs/envs.md quotes these numbers to justify the default step limit, 16 * (size - 3).
"""

import numpy as np

from envs.fourroom import FourRoomEnv

EPISODES = 4000

if __name__ == "__main__":
    rng = np.random.default_rng(0)
    for size in (11, 15, 19):
        env = FourRoomEnv(size=size)
        move = np.arange(size * size)[:, None].repeat(4, axis=1)  # wall cells never occur; they map to themselves
        for cell in env.free_cells:
            move[cell] = [env.move(cell, action) for action in range(4)]
        cells, reached = np.full(EPISODES, env.start), np.zeros(EPISODES, dtype=bool)
        for _ in range(env.max_steps):  # the goal is terminal: once reached, the episode counts as a success
            cells = move[cells, rng.integers(4, size=EPISODES)]
            reached |= cells == env.goal
        print(f"size {size}: step limit {env.max_steps}, random policy reaches the goal in {reached.mean():.1%} of episodes")
