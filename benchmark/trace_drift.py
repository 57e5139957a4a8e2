"""How far recall traces stay near the backtracking model's data: a probe of a checkpoint of trpo_recall_mujoco.py or
sac_recall_mujoco.py saved with --save-model.

    python trpo_recall_mujoco.py --env-id HalfCheetah-v4 --total-timesteps 300000 --save-model --eval-every 0
    python benchmark/trace_drift.py runs/HalfCheetah-v4__trpo_recall_mujoco__1__<time>/trpo_recall_mujoco.pt

Targets are drawn from a Gaussian with the statistics of the states the model was last fitted on (its normaliser:
mean and standard deviation per dimension), then traces are sampled backwards from them as the script samples
them. It prints, for each backward step, the share of traces the trace guard holds (some dimension 10 standard
deviations or more from the mean), and for each state dimension the model's per-step noise and the share of trace
states held at the guard. A trace whose share reaches 1 early is, past that step, made of states the model has
not seen.
"""

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import tyro

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Args:
    checkpoint: tyro.conf.Positional[Path]
    """a .pt file written by trpo_recall_mujoco.py or sac_recall_mujoco.py with --save-model"""
    trace_len: int | None = None
    """backward steps of each trace (default: the run's)"""
    num_traces: int = 1000
    """traces sampled"""
    seed: int = 0
    """the seed of the targets and the traces"""


def main(args):
    if not args.checkpoint.is_file():
        sys.exit(f"error: no file {args.checkpoint}")
    checkpoint = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    if "bt_model" not in checkpoint:
        sys.exit(f"error: {args.checkpoint} holds no backtracking model (made with --model forward?)")
    script = ROOT / f"{checkpoint['args']['exp_name']}.py"
    if not script.is_file():
        sys.exit(f"error: {script.name}, the script of the checkpoint, is not in {ROOT}")
    spec = importlib.util.spec_from_file_location(script.stem, script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    state = checkpoint["bt_model"]
    obs_dim, act_dim = len(state["obs_mean"]), len(state["action_mean"])
    bt_model = module.BacktrackingModel(obs_dim, act_dim)
    bt_model.load_state_dict(state)
    trace_len = args.trace_len or checkpoint["args"]["trace_len"]
    torch.manual_seed(args.seed)
    with torch.no_grad():
        targets = bt_model.obs_mean + bt_model.obs_std * torch.randn(args.num_traces, obs_dim)
        states, _, guarded = module.generate_recall_traces(bt_model, targets, trace_len)
        at_guard = (states - bt_model.obs_mean).abs() >= 0.999 * module.TRACE_GUARD_STD * bt_model.obs_std
        noise = bt_model.bt_state_log_std.exp() * bt_model.delta_std / bt_model.obs_std

    print(f"{script.name}, {checkpoint['args']['env_id']}, {args.num_traces} traces of {trace_len} steps")
    print("\nbackward step | share of traces the guard holds")
    for step, share in enumerate(guarded.float().mean(1).tolist(), start=1):
        print(f"{step:13d} | {share:.2f}")
    print("\nstate dim | per-step noise / the dim's std | share of trace states at the guard")
    for dim, (n, share) in enumerate(zip(noise.tolist(), at_guard.float().mean((0, 1)).tolist(), strict=True)):
        print(f"{dim:9d} | {n:.3f} | {share:.2f}")
    print(f"\nall steps: {guarded.float().mean():.2f} of trace states held by the guard")
    return guarded


if __name__ == "__main__":
    main(tyro.cli(Args))
