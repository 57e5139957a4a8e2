"""envs/umaze.py: the map, walls that hold both robots, success within goal_eps, the decoder, the env checker, seeding."""

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs  # noqa: F401  (registers the environments)
from envs.umaze import WALLS


def make_point():
    return gym.make("PointUMaze-v0").unwrapped


def test_the_map_is_goal_gans_u():
    np.testing.assert_array_equal(WALLS[1:4, 1:4], [[False, False, False], [True, True, False], [False, False, False]])
    assert WALLS[0].all() and WALLS[-1].all() and WALLS[:, 0].all() and WALLS[:, -1].all()
    env = make_point()
    s = env.scale
    assert env.is_free([(0, 0), (2 * s, 0), (2 * s, s), (0, 2 * s)]).all()  # start, corner, right arm, far end
    assert not env.is_free([(0, s), (s, s), (-s, 0), (0, 3 * s)]).any()  # the middle wall, the outer walls


def test_every_feasible_goal_is_free_and_reachable_from_the_start():
    env, spacing = make_point(), 0.5
    goals = env.feasible_goals(spacing)
    assert len(goals) > 50 and env.is_free(goals, env.robot_radius).all()
    # flood fill over the grid: neighbours one spacing apart, whose midpoint is free too
    start = int(np.argmin(np.linalg.norm(goals, axis=1)))
    reached, frontier = {start}, [start]
    while frontier:
        i = frontier.pop()
        near = np.flatnonzero(np.isclose(np.linalg.norm(goals - goals[i], axis=1), spacing))
        for j in near:
            if j not in reached and env.is_free((goals[i] + goals[j]) / 2, env.robot_radius):
                reached.add(j)
                frontier.append(j)
    assert len(reached) == len(goals)


@pytest.mark.parametrize("direction", [(0.0, 1.0), (-1.0, 0.0), (0.0, -1.0)])
def test_the_point_mass_cannot_cross_a_wall(direction):
    """From the start, pushed at full force for 400 steps into the middle wall (y), the outer wall (-x, -y)."""
    env = make_point()
    env.reset(seed=0, options={"start": (0.0, 0.0), "goal": (0.0, 4.0)})
    for _ in range(400):
        obs, *_ = env.step(np.array(direction, dtype=np.float32))
    limit = env.scale / 2 - env.robot_radius  # the wall's face, less the sphere's radius
    assert np.abs(obs["achieved_goal"] @ np.array(direction)) <= limit + 0.01
    assert env.is_free(obs["achieved_goal"])


@pytest.mark.parametrize("direction", [(0.0, 1.0), (-1.0, 0.0), (0.0, -1.0)])
def test_the_ant_cannot_cross_a_wall(direction):
    """From the start, thrown at 4 units/s into the middle wall (y), the outer wall (-x, -y): its torso stays in
    the free space at every step (the walls once inherited ant.xml's conaffinity 0, and it slid 1.3-1.5 into them)."""
    env = gym.make("AntUMaze-v1").unwrapped
    env.reset(seed=0, options={"start": (0.0, 0.0), "goal": (0.0, 4.0)})
    env.data.qvel[:2] = 4.0 * np.array(direction)
    for _ in range(100):
        obs, *_ = env.step(np.zeros(8, dtype=np.float32))
        assert env.is_free(obs["achieved_goal"])


def test_success_exactly_within_goal_eps():
    assert gym.make("AntUMaze-v1").unwrapped.goal_eps == 1.0
    env = make_point()
    assert env.goal_eps == 0.3
    np.testing.assert_array_equal(env.compute_reward(np.zeros((3, 2)), [[0.29, 0], [0, 0.31], [0.2, 0.2]], None), [1, 0, 1])
    for goal_x, success in ((0.29, True), (0.31, False)):
        env.reset(seed=0, options={"start": (0.0, 0.0), "goal": (goal_x, 0.0)})
        _, reward, terminated, truncated, info = env.step(np.zeros(2, dtype=np.float32))
        assert (reward, terminated, info["is_success"], truncated) == (float(success), success, success, False)


@pytest.mark.parametrize("env_id", ["PointUMaze-v0", "AntUMaze-v1"])
def test_the_decoder_puts_the_robot_where_asked(env_id):
    env = gym.make(env_id).unwrapped
    env.reset(seed=0)
    for xy in env.feasible_goals(1.0):
        state = env.decode(xy)
        obs, _ = env.reset(options={"start": xy})
        np.testing.assert_allclose(obs["achieved_goal"], xy)
        assert env.observation_space.contains(obs) and np.all(obs["observation"][env.model.nq :] == 0)  # at rest
    if env_id == "AntUMaze-v1":  # upright (a unit quaternion about z), each joint within its range, random
        np.testing.assert_allclose(np.linalg.norm(state[3:7]), 1.0)
        assert state[4] == state[5] == 0.0 and state[2] == env.init_qpos[2]
        angles = state[7 : env.model.nq]
        assert np.all((env.joint_range[:, 0] <= angles) & (angles <= env.joint_range[:, 1]))
        assert not np.allclose(env.decode(xy)[7 : env.model.nq], angles)
    else:
        np.testing.assert_array_equal(state, [*xy, 0.0, 0.0])


@pytest.mark.parametrize("env_id", ["PointUMaze-v0", "AntUMaze-v1"])
def test_the_env_checker_passes_and_renders_headless(env_id):
    env = gym.make(env_id).unwrapped
    check_env(env)
    env.reset(seed=0, options={"goal": (0.0, 4.0)})
    image = env.render()
    assert image.shape == env.maze_image().shape and image.dtype == np.uint8
    assert (image == (220, 50, 40)).all(-1).any() and (image == (60, 180, 75)).all(-1).any()  # robot and goal drawn


@pytest.mark.parametrize("env_id", ["PointUMaze-v0", "AntUMaze-v1"])
def test_seeding_reproduces_a_rollout(env_id):
    rollouts = []
    for _ in range(2):
        env = gym.make(env_id)
        env.action_space.seed(3)
        obs, _ = env.reset(seed=3)
        trajectory = [obs["desired_goal"], obs["observation"]]
        for _ in range(50):
            obs, *_ = env.step(env.action_space.sample())
            trajectory.append(obs["observation"])
        rollouts.append(np.concatenate(trajectory))
    np.testing.assert_array_equal(rollouts[0], rollouts[1])


def test_the_ant_steps_as_goal_gans_and_v0_as_gymnasiums():
    """AntUMaze-v1: one RK4 step of 0.02 s an action (Goal GAN's Ant, rllab's ant.xml); AntUMaze-v0: gymnasium's
    five of 0.01 s. The same 500-step limit, goal tolerance and maze."""
    v1, v0 = gym.make("AntUMaze-v1"), gym.make("AntUMaze-v0")
    for env, timestep, frame_skip in ((v1, 0.02, 1), (v0, 0.01, 5)):
        model = env.unwrapped.model
        assert (model.opt.timestep, env.unwrapped.frame_skip) == (timestep, frame_skip)
        assert model.opt.integrator == mujoco.mjtIntegrator.mjINT_RK4 and env.spec.max_episode_steps == 500
    for env in (v1, v0):
        env.reset(seed=0)
        env.unwrapped.data.qvel[0] = 1.0  # sliding along x at 1 unit/s: a step moves it about 0.02 (v1) or 0.05 (v0)
    x0 = [env.unwrapped.data.qpos[0] for env in (v1, v0)]
    moved = [env.step(np.zeros(8, dtype=np.float32))[0]["achieved_goal"][0] - x for env, x in zip((v1, v0), x0, strict=True)]
    assert 0.01 < moved[0] < 0.03 and 0.025 < moved[1] < 0.06
