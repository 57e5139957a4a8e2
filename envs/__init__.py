"""Custom environments of the project, registered with gymnasium on `import envs`."""

from gymnasium.envs.registration import register

from envs.fourroom import FourRoomEnv

register(id="FourRoom-v0", entry_point="envs.fourroom:FourRoomEnv")

__all__ = ["FourRoomEnv"]
