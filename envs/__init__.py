"""Custom environments of the project, registered with gymnasium on `import envs`."""

from gymnasium.envs.registration import register

from envs.fourroom import FourRoomEnv
from envs.umaze import AntUMazeEnv, PointUMazeEnv

register(id="FourRoom-v0", entry_point="envs.fourroom:FourRoomEnv")
register(id="PointUMaze-v0", entry_point="envs.umaze:PointUMazeEnv", max_episode_steps=200)
register(id="AntUMaze-v1", entry_point="envs.umaze:AntUMazeEnv", max_episode_steps=500)  # Goal GAN's 0.02 s a step
# gymnasium's Ant physics, 0.05 s a step (five RK4 steps of 0.01 s): 4x the compute of a v1 step
register(
    id="AntUMaze-v0", entry_point="envs.umaze:AntUMazeEnv", max_episode_steps=500, kwargs={"timestep": 0.01, "frame_skip": 5}
)

__all__ = ["AntUMazeEnv", "FourRoomEnv", "PointUMazeEnv"]
