"""Goal-conditioned U-Maze of Goal GAN (Florensa, Held, Geng & Abbeel 2018; the setting of paper 6.3), in MuJoCo.

The maze is Goal GAN's 5x5 block map (`#` wall, `.` free, `r` the start, `g` the far end of the U):

    #####      block (row, col) has its centre at x = (col - 1) * scale, y = (row - 1) * scale,
    #r..#      so the start is at (0, 0) and the far end at (0, 2 * scale); the free space is
    ###.#      [-scale/2, 5 scale/2]^2 minus the middle wall.
    #g..#
    #####

Observations follow gymnasium-robotics: a Dict of `observation` (the robot's state), `achieved_goal` (its x, y)
and `desired_goal` (the goal's x, y). Reward 1 when the robot is within `goal_eps` of the goal, which ends the
episode; 0 otherwise; episodes are truncated by the registered time limit. The goal is given at reset
(`options={"goal": (x, y)}`) or drawn uniformly from the free space.
"""

import math
import os
import xml.etree.ElementTree as ElementTree

import gymnasium as gym
import gymnasium.envs.mujoco
import mujoco
import numpy as np

MAZE_MAP = ("#####", "#r..#", "###.#", "#g..#", "#####")
WALLS = np.array([[c == "#" for c in row] for row in MAZE_MAP])


def wall_blocks(scale):
    """(x, y, half-side) of every wall block."""
    return [((c - 1) * scale, (r - 1) * scale, scale / 2) for r, c in zip(*np.nonzero(WALLS), strict=True)]


def walls_mjcf(scale, height):
    """The wall blocks as MJCF box geoms standing on the floor. They collide with every geom, whatever the robot's
    defaults (as in Goal GAN's maze): gymnasium's ant.xml gives its geoms conaffinity 0, which walls inheriting it
    would share, and two geoms of conaffinity 0 pass through each other."""
    return "\n".join(
        f'<geom type="box" pos="{x} {y} {height / 2}" size="{h} {h} {height / 2}" contype="1" conaffinity="1" '
        f'rgba=".4 .4 .45 1"/>'
        for x, y, h in wall_blocks(scale)
    )


class UMazeEnv(gym.Env):
    """What both robots share: the maze, goals, reward, the feasible-goal grid and the top-down picture."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}
    robot_radius = 0.0  # how close the robot's centre can come to a wall

    def __init__(self, xml, scale, goal_eps, frame_skip, render_mode=None):
        self.scale, self.goal_eps, self.frame_skip, self.render_mode = float(scale), float(goal_eps), frame_skip, render_mode
        self.model = mujoco.MjModel.from_xml_string(xml)
        self.data = mujoco.MjData(self.model)
        self.init_qpos, self.init_qvel = self.data.qpos.copy(), self.data.qvel.copy()
        low, high = self.model.actuator_ctrlrange.T.astype(np.float32)
        self.action_space = gym.spaces.Box(low, high, dtype=np.float32)
        robot = gym.spaces.Box(-np.inf, np.inf, (len(self._robot_state()),), np.float64)
        goal = gym.spaces.Box(-0.5 * self.scale, 2.5 * self.scale, (2,), np.float64)
        self.observation_space = gym.spaces.Dict({"observation": robot, "achieved_goal": goal, "desired_goal": goal})
        self.goal = np.zeros(2)

    # ---- the maze
    def is_free(self, xy, margin=0.0):
        """Whether the points (..., 2) lie in free blocks, at least `margin` away from every wall block."""
        xy = np.asarray(xy, dtype=np.float64)
        free = np.ones(xy.shape[:-1], dtype=bool)
        for x, y, half in wall_blocks(self.scale):
            dx = np.maximum(np.abs(xy[..., 0] - x) - half, 0.0)
            dy = np.maximum(np.abs(xy[..., 1] - y) - half, 0.0)
            free &= np.hypot(dx, dy) > margin
        return free

    def feasible_goals(self, spacing):
        """Goals on a grid of the given spacing over the free space, where the robot's centre can be (coverage)."""
        ticks = np.arange(-0.5 * self.scale, 2.5 * self.scale + 1e-9, spacing)
        grid = np.stack(np.meshgrid(ticks, ticks, indexing="xy"), -1).reshape(-1, 2)
        return grid[self.is_free(grid, self.robot_radius)]

    def sample_goal(self):
        while True:  # rejection sampling from the bounding square
            xy = self.np_random.uniform(-0.5 * self.scale, 2.5 * self.scale, size=2)
            if self.is_free(xy, self.robot_radius):
                return xy

    def maze_image(self, pixels_per_block=20):
        """A top-down RGB picture of the maze, row 0 at the top = the largest y (walls dark, free space white);
        pixel (i, j) covers x = (j / pixels_per_block - 1.5) * scale, y = (3.5 - i / pixels_per_block) * scale."""
        image = np.where(WALLS[::-1, :, None], 60, 255).astype(np.uint8).repeat(3, -1)
        return image.repeat(pixels_per_block, 0).repeat(pixels_per_block, 1)

    # ---- the goal-conditioned MDP
    def compute_reward(self, achieved_goal, desired_goal, info):
        distance = np.linalg.norm(np.asarray(achieved_goal) - np.asarray(desired_goal), axis=-1)
        return (distance <= self.goal_eps).astype(np.float32)

    def _obs(self):
        return {
            "observation": self._robot_state(),
            "achieved_goal": self.data.qpos[:2].copy(),
            "desired_goal": self.goal.copy(),
        }

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        options = options or {}
        self.goal = np.asarray(options["goal"], dtype=np.float64) if "goal" in options else self.sample_goal()
        mujoco.mj_resetData(self.model, self.data)
        self._set_robot(self.decode(options["start"]) if "start" in options else self._start_state())
        mujoco.mj_forward(self.model, self.data)
        return self._obs(), {}

    def step(self, action):
        self.data.ctrl[:] = np.clip(action, self.action_space.low, self.action_space.high)
        mujoco.mj_step(self.model, self.data, nstep=self.frame_skip)
        obs = self._obs()
        success = math.dist(obs["achieved_goal"], self.goal) <= self.goal_eps  # compute_reward's test, 10x as fast
        return obs, float(success), success, False, {"is_success": success}

    def to_pixel(self, xy, pixels_per_block=20):
        """(row, col) of the pixel of maze_image() where the points (..., 2) lie."""
        xy = np.asarray(xy, dtype=np.float64)
        col = (xy[..., 0] / self.scale + 1.5) * pixels_per_block
        row = (3.5 - xy[..., 1] / self.scale) * pixels_per_block
        return np.stack([row, col], -1).astype(int)

    def coverage_image(self, goals, success, spacing, pixels_per_block=20):
        """Goal GAN's coverage picture (paper Fig. 5): the maze from above with a square around each grid goal,
        from blue (never reached) to red (always reached)."""
        image = self.maze_image(pixels_per_block)
        half = max(1, int(spacing / self.scale * pixels_per_block / 2))
        blue, red = np.array([40, 70, 200]), np.array([215, 40, 40])
        for (row, col), s in zip(self.to_pixel(goals, pixels_per_block), success, strict=True):
            image[max(row - half, 0) : row + half, max(col - half, 0) : col + half] = (blue + s * (red - blue)).astype(
                np.uint8
            )
        return image

    def render(self):
        """The top-down picture with the goal (green) and the robot (red): drawn with numpy, no OpenGL needed."""
        image = self.maze_image()
        rows, cols = np.mgrid[: image.shape[0], : image.shape[1]]
        robot = (self.data.qpos[:2], self.robot_radius, (220, 50, 40))
        for xy, radius, colour in ((self.goal, self.goal_eps, (60, 180, 75)), robot):
            row, col = self.to_pixel(xy)
            image[(rows - row) ** 2 + (cols - col) ** 2 <= (radius / self.scale * 20) ** 2] = colour
        return image


def run_episodes(env_list, act, goals, max_steps):
    """One episode on each goal, len(env_list) at a time in lockstep, each env reset with its goal: the
    goal-conditioned counterpart of a vector env, for goalgan_recall_umaze.py.

    `act(states, goals)` maps (n, state_dim) and (n, 2) numpy arrays to (n, act_dim) actions. Returns a dict of
    numpy arrays of shape (max_steps, len(goals), ...): states, actions, next_states, rewards, terminations,
    dones (terminated or truncated) and valid (the steps each episode really took), and `success` (len(goals),).
    """
    n_envs, waves = len(env_list), []
    for begin in range(0, len(goals), n_envs):
        wave_goals = goals[begin : begin + n_envs]
        n = len(wave_goals)
        obs = [env_list[i].reset(options={"goal": wave_goals[i]})[0] for i in range(n)]
        state = np.stack([o["observation"] for o in obs])
        out = {
            "states": np.zeros((max_steps, n, state.shape[1])),
            "next_states": np.zeros((max_steps, n, state.shape[1])),
            "actions": np.zeros((max_steps, n) + env_list[0].action_space.shape),
            **{key: np.zeros((max_steps, n)) for key in ("rewards", "terminations", "dones", "valid")},
        }
        active = np.ones(n, dtype=bool)
        for t in range(max_steps):
            out["states"][t], out["valid"][t] = state, active
            out["actions"][t] = act(state, wave_goals)
            for i in np.flatnonzero(active):
                o, reward, terminated, truncated, _ = env_list[i].step(out["actions"][t, i])
                state[i] = o["observation"]
                out["rewards"][t, i], out["terminations"][t, i] = reward, terminated
                out["dones"][t, i] = terminated or truncated
            out["next_states"][t] = state
            active &= out["dones"][t] == 0
            if not active.any():
                break
        out["success"] = out["terminations"].any(0)  # the U-Maze terminates exactly on reaching the goal
        waves.append(out)
    return {key: np.concatenate([w[key] for w in waves], axis=-1 if key == "success" else 1) for key in waves[0]}


def goal_success_rates(env_list, act, goals, episodes, max_steps):
    """The success rate of the policy on each goal over `episodes` episodes from the start. On the grid of
    feasible goals, their mean is the paper's coverage (6.3, Fig. 5)."""
    batch = run_episodes(env_list, act, np.repeat(goals, episodes, 0), max_steps)
    return batch["success"].reshape(len(goals), episodes).mean(1)


class PointUMazeEnv(UMazeEnv):
    """A force-controlled sphere of radius 0.25 moving in x and y (slide joints, viscous damping); the walls stop
    it through MuJoCo contacts. Observation: x, y, vx, vy. Goal GAN's goal_eps of 0.3 for the point mass."""

    robot_radius = 0.25

    def __init__(self, scale=2.0, goal_eps=0.3, render_mode=None):
        xml = f"""
<mujoco model="point_umaze">
  <option timestep="0.01"/>
  <worldbody>
    <light pos="{scale} {scale} 20" dir="0 0 -1"/>
    <geom type="plane" pos="{scale} {scale} 0" size="{3 * scale} {3 * scale} 0.1" contype="0" conaffinity="0"/>
    {walls_mjcf(scale, 1.0)}
    <body name="point" pos="0 0 0.25">
      <joint name="x" type="slide" axis="1 0 0" damping="5"/>
      <joint name="y" type="slide" axis="0 1 0" damping="5"/>
      <geom type="sphere" size="0.25" mass="1" rgba=".8 .3 .2 1"/>
    </body>
  </worldbody>
  <actuator>
    <motor joint="x" gear="10" ctrlrange="-1 1" ctrllimited="true"/>
    <motor joint="y" gear="10" ctrlrange="-1 1" ctrllimited="true"/>
  </actuator>
</mujoco>"""
        super().__init__(xml, scale, goal_eps, frame_skip=5, render_mode=render_mode)

    def _robot_state(self):
        return np.concatenate([self.data.qpos[:2], self.data.qvel[:2]])

    def _start_state(self):
        return self.decode(self.np_random.uniform(-0.1, 0.1, size=2))  # at rest near (0, 0)

    def _set_robot(self, state):
        self.data.qpos[:2], self.data.qvel[:2] = state[:2], state[2:]

    def decode(self, xy):
        """The paper's decoder D: the robot state at a goal position (for the point mass, at rest there)."""
        return np.concatenate([np.asarray(xy, dtype=np.float64), np.zeros(2)])


class AntUMazeEnv(UMazeEnv):
    """gymnasium's Ant (its ant.xml, read from the installed package) in the same maze, with walls the Ant collides
    with. Observation: qpos (torso x, y, z, orientation quaternion, 8 joint angles) and qvel (29 numbers); the
    achieved goal is the torso's x, y. Goal GAN's goal_eps of 1.0 for the Ant. A step is one RK4 step of 0.02 s, as
    in Goal GAN's Ant (rllab's ant.xml, no frame skip); AntUMaze-v0 keeps gymnasium's five of 0.01 s."""

    robot_radius = 0.5  # the torso (0.25) and a margin for the legs

    def __init__(self, scale=2.0, goal_eps=1.0, timestep=0.02, frame_skip=1, render_mode=None):
        path = os.path.join(os.path.dirname(gymnasium.envs.mujoco.__file__), "assets", "ant.xml")
        root = ElementTree.parse(path).getroot()
        root.find("option").set("timestep", str(timestep))
        worldbody = root.find("worldbody")
        for geom in ElementTree.fromstring(f"<walls>{walls_mjcf(scale, 1.0)}</walls>"):
            worldbody.append(geom)
        xml = ElementTree.tostring(root, encoding="unicode")
        super().__init__(xml, scale, goal_eps, frame_skip=frame_skip, render_mode=render_mode)
        self.metadata = {**self.metadata, "render_fps": round(1 / (timestep * frame_skip))}
        hinges = self.model.jnt_type == mujoco.mjtJoint.mjJNT_HINGE
        self.joint_range = self.model.jnt_range[hinges]  # radians: the compiler converts degrees

    def _robot_state(self):
        return np.concatenate([self.data.qpos, self.data.qvel])

    def _start_state(self):  # gymnasium's Ant reset: small noise around the initial pose
        qpos = self.init_qpos + self.np_random.uniform(-0.1, 0.1, size=self.model.nq)
        return np.concatenate([qpos, 0.1 * self.np_random.standard_normal(self.model.nv)])

    def _set_robot(self, state):
        self.data.qpos[:], self.data.qvel[:] = state[: self.model.nq], state[self.model.nq :]

    def decode(self, xy):
        """The paper's decoder D for the Ant: the torso upright at xy with a random heading, every leg joint at a
        uniformly random angle within its range, at rest."""
        yaw = self.np_random.uniform(-np.pi, np.pi)
        angles = self.np_random.uniform(self.joint_range[:, 0], self.joint_range[:, 1])
        qpos = np.concatenate(
            [np.asarray(xy, dtype=np.float64), [self.init_qpos[2]], [np.cos(yaw / 2), 0, 0, np.sin(yaw / 2)], angles]
        )
        return np.concatenate([qpos, np.zeros(self.model.nv)])
