"""Four-room grid world (Sutton, Precup & Singh 1999; the setting of paper 6.1) with its true backward dynamics.

The grid is `size` x `size` cells including the outer wall. One wall row and one wall column cross at the
centre and split the inside into four square rooms of side (size - 3) / 2; each of the four wall segments
has one doorway, in the middle of the segment. The agent starts in the top-left corner cell of the top-left
room and must reach the goal, the bottom-right corner cell of the bottom-right room.

Observation: the agent's cell index `row * size + col` (Discrete(size * size); wall cells are never observed).
Actions: 0 up, 1 right, 2 down, 3 left; moving into a wall leaves the agent where it is.
Reward: +1 on reaching the goal, which terminates the episode; 0 otherwise.
Truncation: after `max_steps` steps, by default 16 * (size - 3): eight times the shortest path from
the default start to the default goal, 2 * (size - 3). See `default_max_steps`.
With `slip > 0`, each step takes a uniformly random action instead of the chosen one with that probability.
"""

import gymnasium as gym
import numpy as np

MOVES = np.array([(-1, 0), (0, 1), (1, 0), (0, -1)])  # (d_row, d_col) for up, right, down, left


def default_max_steps(size: int) -> int:
    return 16 * (size - 3)


class FourRoomEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 8}

    def __init__(self, size=11, start=None, goal=None, slip=0.0, max_steps=None, render_mode=None):
        if not isinstance(size, (int, np.integer)) or size < 7 or size % 2 == 0:
            raise ValueError(f"four-room size must be an odd integer >= 7, got {size!r}")
        if not 0.0 <= slip <= 1.0:
            raise ValueError(f"slip must be a probability in [0, 1], got {slip!r}")
        self.size = int(size)
        self.walls = self._layout(self.size)
        self.start = self._free_cell(start, (1, 1), "start")
        self.goal = self._free_cell(goal, (self.size - 2, self.size - 2), "goal")
        self.slip = float(slip)
        self.max_steps = default_max_steps(self.size) if max_steps is None else int(max_steps)
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Discrete(self.size * self.size)
        self.action_space = gym.spaces.Discrete(4)
        self.free_cells = np.flatnonzero(~self.walls.ravel())

    @staticmethod
    def _layout(size):
        walls = np.zeros((size, size), dtype=bool)
        walls[[0, -1], :] = walls[:, [0, -1]] = True
        c, room = size // 2, (size - 3) // 2
        walls[c, :] = walls[:, c] = True
        door = room // 2  # offset of each doorway inside its wall segment of length `room`
        for first in (1, c + 1):  # the two segments of the centre row and of the centre column
            walls[c, first + door] = walls[first + door, c] = False
        return walls

    def _free_cell(self, cell, default, name):
        cell = default if cell is None else cell
        row, col = divmod(int(cell), self.size) if np.isscalar(cell) else (int(cell[0]), int(cell[1]))
        if not (0 <= row < self.size and 0 <= col < self.size) or self.walls[row, col]:
            raise ValueError(f"{name} {cell!r} is not a free cell of the {self.size}x{self.size} four-room grid")
        return row * self.size + col

    def move(self, cell, action):
        """Deterministic dynamics: the cell reached from the free cell `cell` by `action` (no slip)."""
        row, col = divmod(int(cell), self.size)
        nrow, ncol = row + MOVES[action][0], col + MOVES[action][1]
        return int(cell) if self.walls[nrow, ncol] else int(nrow * self.size + ncol)

    def predecessors(self, cell):
        """True backward dynamics: every (prev_cell, action) with move(prev_cell, action) == cell, bumps included."""
        row, col = divmod(int(cell), self.size)
        if self.walls[row, col]:
            return []
        pairs = []
        for action, (dr, dc) in enumerate(MOVES):
            if not self.walls[row - dr, col - dc]:  # stepped in from the neighbour opposite the move
                pairs.append(((row - dr) * self.size + col - dc, action))
            if self.walls[row + dr, col + dc]:  # bumped into the wall ahead and stayed
                pairs.append((int(cell), action))
        return pairs

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.agent, self.steps = self.start, 0
        return self.agent, {}

    def step(self, action):
        if self.slip > 0 and self.np_random.random() < self.slip:
            action = int(self.np_random.integers(4))
        self.agent = self.move(self.agent, action)
        self.steps += 1
        terminated = self.agent == self.goal
        truncated = not terminated and self.steps >= self.max_steps
        return self.agent, float(terminated), terminated, truncated, {"is_success": terminated}

    def render(self, cell_px=16):
        """An RGB picture of the grid: walls dark, goal green, agent blue."""
        img = np.where(self.walls[..., None], 40, 255).astype(np.uint8).repeat(3, axis=2)
        img[divmod(self.goal, self.size)] = (40, 170, 60)
        img[divmod(self.agent, self.size)] = (40, 90, 220)
        return img.repeat(cell_px, axis=0).repeat(cell_px, axis=1)
