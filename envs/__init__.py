"""Custom environments of the project, registered with gymnasium on `import envs`."""

from gymnasium.envs.registration import register

from envs.fourroom import FourRoomEnv
from envs.umaze import PointUMazeEnv

register(id="FourRoom-v0", entry_point="envs.fourroom:FourRoomEnv")
register(id="PointUMaze-v0", entry_point="envs.umaze:PointUMazeEnv", max_episode_steps=200)

__all__ = ["FourRoomEnv", "PointUMazeEnv"]
