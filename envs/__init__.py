"""Custom environments of the project, registered with gymnasium on `import envs`."""

from gymnasium.envs.registration import register

from envs.fourroom import FourRoomEnv
from envs.umaze import AntUMazeEnv, PointUMazeEnv

register(id="FourRoom-v0", entry_point="envs.fourroom:FourRoomEnv")
register(id="PointUMaze-v0", entry_point="envs.umaze:PointUMazeEnv", max_episode_steps=200)
register(id="AntUMaze-v0", entry_point="envs.umaze:AntUMazeEnv", max_episode_steps=500)

__all__ = ["AntUMazeEnv", "FourRoomEnv", "PointUMazeEnv"]
