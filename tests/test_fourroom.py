"""The four-room environment: layout, reachability, true backward dynamics, rewards and seeding."""

from collections import deque

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401
from envs.fourroom import FourRoomEnv, default_max_steps

PAPER_SIZES = [11, 13, 15, 19]


def grid(size, **kwargs):
    return gym.make("FourRoom-v0", size=size, **kwargs).unwrapped


def cell(env, row, col):
    return row * env.size + col


@pytest.mark.parametrize("size", PAPER_SIZES + [7, 9, 21])
def test_layout(size):
    env = grid(size)
    c, room = size // 2, (size - 3) // 2
    door = 1 + room // 2
    walls = env.walls
    assert walls[0].all() and walls[-1].all() and walls[:, 0].all() and walls[:, -1].all()
    # the centre row and column are wall except for exactly one doorway in each of the four segments
    assert np.flatnonzero(~walls[c]).tolist() == [door, c + door]
    assert np.flatnonzero(~walls[:, c]).tolist() == [door, c + door]
    # four open square rooms of side `room`
    for r0 in (1, c + 1):
        for c0 in (1, c + 1):
            assert not walls[r0 : r0 + room, c0 : c0 + room].any()
    assert env.free_cells.size == 4 * room * room + 4
    assert env.start == cell(env, 1, 1) and env.goal == cell(env, size - 2, size - 2)
    assert env.observation_space.n == size * size and env.action_space.n == 4
    assert env.max_steps == default_max_steps(size) > 2 * (size - 3)


@pytest.mark.parametrize("size", PAPER_SIZES)
def test_every_free_cell_reachable_from_start(size):
    env = grid(size)
    seen, queue = {env.start}, deque([env.start])
    while queue:
        current = queue.popleft()
        for action in range(4):
            nxt = env.move(current, action)
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    assert seen == set(env.free_cells.tolist())


@pytest.mark.parametrize("size", [7, 11, 19])
def test_predecessors_invert_step_exactly(size):
    """Brute force over every free cell and action through env.step: predecessors(s') == {(s, a): step(s, a) = s'}."""
    env = grid(size, goal=(1, 2))  # a goal off the path of most moves, so steps do not end the episode early
    forward = {int(s): set() for s in env.free_cells}
    for s in env.free_cells:
        for a in range(4):
            env.reset(seed=0)
            env.agent = int(s)
            s_next, *_ = env.step(a)
            forward[s_next].add((int(s), a))
    for s_next in env.free_cells:
        pairs = env.predecessors(s_next)
        assert len(pairs) == len(set(pairs))
        assert set(pairs) == forward[int(s_next)]
    assert env.predecessors(0) == []  # a wall cell has none


@pytest.mark.parametrize("size", [8, 5, 6, 0, -3, 12])
def test_bad_size_refused(size):
    with pytest.raises(ValueError, match="odd integer >= 7"):
        FourRoomEnv(size=size)


def test_bad_start_goal_and_slip_refused():
    with pytest.raises(ValueError, match="not a free cell"):
        FourRoomEnv(size=11, goal=(5, 5))  # the centre, a wall
    with pytest.raises(ValueError, match="probability"):
        FourRoomEnv(size=11, slip=1.5)


def test_reward_termination_and_truncation():
    env = grid(7, start=(1, 1), goal=(1, 2))
    assert env.reset(seed=0)[0] == env.start
    obs, reward, terminated, truncated, info = env.step(1)  # right, into the goal
    assert (obs, reward, terminated, truncated, info["is_success"]) == (env.goal, 1.0, True, False, True)
    env = grid(7, max_steps=5)
    env.reset(seed=0)
    for t in range(5):
        obs, reward, terminated, truncated, _ = env.step(0)  # up, into the wall: stays in the start corner
        assert obs == env.start and reward == 0.0 and not terminated
        assert truncated == (t == 4)


def test_slip_is_seeded_and_random():
    def rollout(seed):
        env = grid(11, slip=0.5)
        env.reset(seed=seed)
        return [env.step(1)[0] for _ in range(30)]

    assert rollout(3) == rollout(3)
    assert rollout(3) != rollout(4)
    env = grid(11)  # no slip: always the same deterministic move
    env.reset(seed=0)
    assert env.step(1)[0] == env.move(env.start, 1)


def test_render_shape():
    env = grid(7, render_mode="rgb_array")
    env.reset(seed=0)
    assert env.render().shape == (7 * 16, 7 * 16, 3)
