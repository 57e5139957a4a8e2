"""Start the runs of one experiment (benchmark/experiments.py) on a local process pool or a Ray cluster.

    python benchmark/run.py fig2_fourroom --env-ids 11 15 --seeds 1 2 3
    python benchmark/run.py fig7_sac --settings recall --workers 2
    python benchmark/run.py fig6_trpo --backend ray --ray-address auto     # a running cluster (docs/benchmark.md)
    python benchmark/run.py fig6_trpo --dry-run                            # what is done, what would run

Every run is the script started as a user would start it: a subprocess with one torch thread, in a temporary
directory. Its TensorBoard scalars are read back, summarised and downsampled into one small file,
results/<experiment>/<env id>__<setting>__<seed>.csv.gz (benchmark/result_file.py), written by this process. A run
whose file exists at the same budget is skipped, so an experiment fills up piece by piece across sessions and
machines (a file of another budget is never overwritten); Ctrl-C loses only the runs in flight, and of a script that
checkpoints (Goal GAN) not even those: such a run works in results/<experiment>/partial/<file name>/, checkpoints
after each Goal GAN iteration and resumes there on the next start (locally; a Ray task starts again). A run that
another experiment already made (the same script and arguments, defaults filled in, and the same metric and threshold, so
the same summary) is copied from that experiment's folder instead of run again, its identity naming this experiment
and the file it came from (`reused_from`). With Ray, each run is one task with num_cpus=1 that returns its file's
text to this driver: the nodes of a cluster need the project's requirements, not a shared file system.
"""

import contextlib
import functools
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

import tyro

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]  # the scripts' envs/
from experiments import EXPERIMENTS  # noqa: E402
from result_file import read_identity, result_path, write, write_copy  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Args:
    experiment: tyro.conf.Positional[str]
    """the experiment's name (see benchmark/experiments.py)"""
    env_ids: tuple[str, ...] | None = None
    """env ids to run (default: the experiment's)"""
    settings: tuple[str, ...] | None = None
    """settings to run, by name (default: all of the experiment's)"""
    seeds: tuple[int, ...] | None = None
    """seeds to run (default: the experiment's)"""
    total_timesteps: int | None = None
    """env steps of every run (default: the experiment's budget)"""
    workers: int = os.cpu_count() or 1
    """runs at a time with the local backend, or the CPUs of a local Ray"""
    backend: Literal["local", "ray"] = "local"
    """a local process pool, or Ray (one task with num_cpus=1 per run)"""
    ray_address: str | None = None
    """the address of a running Ray cluster (`auto` on one of its nodes); without it, a local Ray"""
    results_dir: Path = Path("results")
    """where the result files go, one folder per experiment; it must exist (see --new-results-dir)"""
    new_results_dir: bool = False
    """if toggled, create --results-dir when it does not exist (a mistyped one would otherwise run a grid anew)"""
    dry_run: bool = False
    """if toggled, list the runs, done or to do, with their commands, and run nothing"""
    no_new_runs_after: float | None = None
    """minutes from now after which no run starts; those in flight finish (for a session's or a batch job's end: give
    it the time left less a run's length)"""


class Running:
    """The local backend's subprocesses in flight, killed on Ctrl-C."""

    def __init__(self):
        self.procs, self.lock = set(), threading.Lock()

    def add(self, proc):
        with self.lock:
            self.procs.add(proc)

    def discard(self, proc):
        with self.lock:
            self.procs.discard(proc)

    def kill_all(self):
        with self.lock:
            for proc in self.procs:
                proc.kill()


def git_commit(root):
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True
        )
        return (commit or "unknown") + ("-dirty" if dirty.stdout.strip() else "")
    except OSError:
        return "unknown"


def run_one(identity, metric, threshold, threshold_episodes, root=None, running=None, workdir=None, deadline=None):
    """Run one script to the end in a temporary directory and return its result file's text, or raise with the
    end of its stderr. `root`: the project's folder (None: the working directory, as on a Ray node); `running`:
    where the subprocess is registered while it runs; `workdir`: a folder kept until the run ends instead, where it
    writes a checkpoint after each Goal GAN iteration (but the last) and from whose checkpoint it resumes when one is
    there. Imports here: on a Ray node this is all that travels. Past `deadline` (a time.time()) it starts nothing and
    returns None."""
    if deadline is not None and time.time() > deadline:
        return None
    root = Path(root) if root else Path.cwd()
    sys.path.insert(0, str(root / "benchmark"))
    from experiments import KEPT_TAGS
    from result_file import summarise, to_text
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    command = [sys.executable, str(root / identity["script"]), *identity["flags"]]
    start = time.time()
    with contextlib.nullcontext(str(workdir)) if workdir else tempfile.TemporaryDirectory() as cwd:
        if workdir:
            command += ["--checkpoint-every", "1"]
            if checkpoints := sorted(Path(cwd).glob("runs/*/checkpoint.pt")):
                command += ["--resume", str(checkpoints[-1].parent.relative_to(cwd))]
                import torch  # the wall time of the run so far, which its result file counts with this part's

                start -= torch.load(checkpoints[-1], map_location="cpu", weights_only=False)["counters"]["elapsed"]
            else:  # killed before its first checkpoint: start again
                shutil.rmtree(Path(cwd) / "runs", ignore_errors=True)
                Path(cwd).mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        proc = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        if running is not None:
            running.add(proc)
        stdout, stderr = proc.communicate()
        if running is not None:
            running.discard(proc)
        if proc.returncode != 0 or "interrupted at global_step" in stdout:
            kept = f"\n(its folder {workdir} is kept: the next start resumes it; delete it to start again)" if workdir else ""
            raise RuntimeError(f"{' '.join(command[1:])} failed ({proc.returncode}):\n{stderr[-2000:]}{kept}")
        (run_dir,) = (Path(cwd) / "runs").iterdir()
        events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0}).Reload()
        series = {}
        for tag in events.Tags()["scalars"]:
            if tag.startswith(KEPT_TAGS):
                scalars = events.Scalars(tag)
                series[tag] = ([e.step for e in scalars], [e.value for e in scalars])
    if workdir:  # read back: the run is in memory, its checkpoint no longer needed
        shutil.rmtree(workdir)
        if not any(workdir.parent.iterdir()):
            workdir.parent.rmdir()
    summary = {**summarise(series, metric, threshold, threshold_episodes), "wall_time_s": round(time.time() - start, 1)}
    return to_text({**identity, "summary": summary}, series)


def plan(args, exp):
    """Every (env id, setting, seed) asked for, with its identity and result path."""
    env_ids, settings, seeds = args.env_ids or exp.env_ids, args.settings or tuple(exp.settings), args.seeds or exp.seeds
    commit = git_commit(ROOT)
    runs = []
    for env_id in env_ids:  # seed by seed across the settings, so that a grid cut short stays balanced
        for seed in seeds:
            for setting in settings:
                script, flags = exp.command(env_id, setting, seed, args.total_timesteps)
                identity = {"experiment": args.experiment, "script": script, "env_id": env_id, "setting": setting}
                identity |= {"seed": seed, "total_timesteps": int(flags[flags.index("--total-timesteps") + 1])}
                identity |= {"flags": flags, "args": arguments(script, flags), "commit": commit}
                identity |= {"metric": exp.metric, "baseline": exp.baseline}
                runs.append((identity, result_path(args.results_dir, args.experiment, env_id, setting, seed)))
    return runs


@functools.cache
def script_module(script):
    spec = importlib.util.spec_from_file_location(Path(script).stem, ROOT / script)
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def args_class(script):
    return script_module(script).Args


def arguments(script, flags):
    """Every argument the script runs with for these flags, its defaults filled in by its own Args."""
    return json.loads(json.dumps(vars(tyro.cli(args_class(script), args=list(flags))), default=str))


# each script's switch of its method and the arguments that act only when it is on, by name (not by where Args
# declares them: reordering a script's fields changes no run); tests/test_benchmark.py keeps these in step with Args
METHOD_ARGS = {
    "ac_recall_fourroom.py": ("recall", "trace_len num_traces k_traj top_k_frac target bt_state bt_model "
                             "bt_learning_rate bt_updates bt_batch_size imitation_lr recall_every imitation_updates"),
    "per_fourroom.py": ("per", "buffer_size batch_size learning_starts ac_steps_per_per_step per_alpha per_beta "
                        "per_beta_end per_eps per_actor"),
    "sac_recall_mujoco.py": ("recall", "trace_len num_traces bt_model bt_sample_size top_k_frac bt_refresh "
                             "recall_every bt_updates imitation_updates bt_batch_size bt_learning_rate imitation_lr "
                             "heldout_every"),
    "trpo_recall_mujoco.py": ("recall", "model trace_len num_traces bt_model top_k_frac bt_buffer_size bt_updates "
                              "bt_batch_size bt_learning_rate imitation_updates imitation_lr"),
    "goalgan_recall_umaze.py": ("recall", "trace_len num_traces bt_model bt_buffer_size bt_updates bt_batch_size "
                                "bt_learning_rate imitation_updates imitation_lr"),
}  # fmt: skip


def acting(script, args):
    """The arguments that act: with the method's switch off (--no-recall, --no-per), its own arguments are dropped,
    so that a plain run does not go stale when a default of the method changes; so is an argument the script no
    longer has (a file's record of a flag since removed), and one that changes no number (its RUN_CONTROL)."""
    names = {field.name for field in fields(args_class(script))} - set(getattr(script_module(script), "RUN_CONTROL", ()))
    switch, method = METHOD_ARGS[script]
    off = set(method.split()) if args.get(switch) is False else set()
    return {k: v for k, v in args.items() if k in names and k not in off}


def run_key(identity):
    """Two runs are the same when their script and acting arguments are: a flag given at its default value is the
    flag left out, and so is --trace-len at the env's length that the script fills in for None (its
    default_trace_len). A file from before `args` was recorded is read with today's defaults."""
    script = identity["script"]
    args, module = identity.get("args") or arguments(script, identity["flags"]), script_module(script)
    if "trace_len" in args and args["trace_len"] is None and hasattr(module, "default_trace_len"):
        args = args | {"trace_len": module.default_trace_len(args["env_id"])}
    return script, json.dumps(acting(script, args), sort_keys=True)


def made_elsewhere(todo, results_dir, name, exp):
    """{path: the file of another experiment that holds the same run} for the runs of `todo` that have one."""
    summary_of = (exp.metric, exp.threshold, exp.threshold_episodes)
    wanted = {(i["script"], i["env_id"], i["seed"], i["total_timesteps"]) for i, _ in todo}
    made = {}
    for other_name, other in EXPERIMENTS.items():
        if other_name != name and (other.metric, other.threshold, other.threshold_episodes) == summary_of:
            for path in sorted((results_dir / other_name).glob("*.csv.gz")):
                i = read_identity(path)
                if (i["script"], i["env_id"], i["seed"], i["total_timesteps"]) in wanted:
                    made.setdefault(run_key(i), path)
    return {path: made[key] for i, path in todo if (key := run_key(i)) in made}


def stale(runs):
    """The done runs whose file records other arguments than their flags give today (a default changed since)."""
    for identity, path in runs:
        now = acting(identity["script"], identity["args"])
        if path.exists() and (made := read_identity(path).get("args")) and acting(identity["script"], made) != now:
            changed = ", ".join(f"{k}={made.get(k)} (now {v})" for k, v in now.items() if made.get(k) != v)
            yield f"{path} was made with {changed}"


def unknown_flags(script, flags):
    """The flags the script's Args do not take (a flag it no longer has)."""
    return tyro.cli(args_class(script), args=list(flags), return_unknown_args=True, console_outputs=False)[1]


def invalid_run(script, flags):
    """The script's own one-line refusal of these flags (its check_args), or None: an env id, a seed or a budget it
    would refuse is refused here, before a grid is started."""
    module = script_module(script)
    run_args = tyro.cli(module.Args, args=list(flags))
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # gymnasium's on v4 envs, made to be looked at
    # what a script fills in before its checks: the env's trace length, PER's Table 3 batch size and alpha
    if getattr(run_args, "trace_len", 0) is None:
        run_args.trace_len = module.default_trace_len(run_args.env_id) if hasattr(module, "default_trace_len") else 1
    if hasattr(module, "table3"):
        batch_size, alpha = module.table3(run_args.size)
        run_args.batch_size = batch_size if run_args.batch_size is None else run_args.batch_size
        run_args.per_alpha = alpha if run_args.per_alpha is None else run_args.per_alpha
    return module.check_args(run_args)


def other_budget(runs):
    """The planned runs whose file holds a run of another budget: (path, its env steps)."""
    for identity, path in runs:
        if path.exists() and (steps := read_identity(path).get("total_timesteps")) != identity["total_timesteps"]:
            yield path, steps


def check(args):
    if args.experiment not in EXPERIMENTS:
        return f"unknown experiment {args.experiment!r}; choose from {', '.join(EXPERIMENTS)}"
    exp = EXPERIMENTS[args.experiment]
    if unknown := set(args.settings or ()) - set(exp.settings):
        return f"unknown settings {sorted(unknown)} for {args.experiment}; choose from {', '.join(exp.settings)}"
    for setting in args.settings or exp.settings:
        script, flags = exp.command(exp.env_ids[0], setting, exp.seeds[0])
        if gone := unknown_flags(script, flags):
            return f"{args.experiment}'s setting {setting} passes {' '.join(gone)}, which {script} no longer takes"
    if args.env_ids and args.total_timesteps is None and isinstance(exp.budget, dict):
        if missing := [e for e in args.env_ids if e not in exp.budget]:
            return f"no budget for env ids {missing} in {args.experiment}: give --total-timesteps"
    if args.no_new_runs_after is not None and not 0 <= args.no_new_runs_after < float("inf"):
        return f"--no-new-runs-after must be a finite number of minutes >= 0, got {args.no_new_runs_after}"
    if args.workers < 1:
        return f"--workers must be >= 1, got {args.workers}"
    if args.seeds and min(args.seeds) < 0:
        return f"--seeds must be >= 0, got {min(args.seeds)}"
    if not args.dry_run:
        if not args.results_dir.is_dir() and not args.new_results_dir:
            return f"--results-dir {args.results_dir} does not exist: give an existing one, or --new-results-dir to create it"
        if args.results_dir.is_dir() and not os.access(args.results_dir, os.W_OK):
            return f"--results-dir {args.results_dir} cannot be written"
    return None


def partial_dir(script, path):
    """Where a run of a script that checkpoints keeps its run directory (committed with results/, so that another
    machine resumes it) until its result file is written; None for the other scripts."""
    if "checkpoint_every" in {field.name for field in fields(args_class(script))}:
        return path.parent / "partial" / path.name.removesuffix(".csv.gz")
    return None


def run_local(todo, exp, workers, done_callback, deadline):
    pool, running = ThreadPoolExecutor(workers), Running()
    summary = (exp.metric, exp.threshold, exp.threshold_episodes)
    futures = {
        pool.submit(run_one, identity, *summary, ROOT, running, partial_dir(identity["script"], path), deadline): path
        for identity, path in todo
    }
    try:
        for future in as_completed(futures):
            done_callback(futures[future], future)
    except KeyboardInterrupt:
        pool.shutdown(wait=False, cancel_futures=True)
        running.kill_all()
        raise
    pool.shutdown()


def run_ray(todo, exp, workers, address, done_callback, deadline):
    import ray

    if address:  # the project travels to the cluster's nodes with the tasks
        runtime_env = {"working_dir": str(ROOT), "excludes": [".git", ".venv", ".ci-venv", "runs", "results", "videos"]}
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
        root = None
    else:
        ray.init(num_cpus=workers, log_to_driver=False, include_dashboard=False)
        root = str(ROOT)
    task = ray.remote(num_cpus=1, max_retries=0)(run_one)
    summary = (exp.metric, exp.threshold, exp.threshold_episodes)
    pending = {task.remote(identity, *summary, root, None, None, deadline): path for identity, path in todo}
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            path = pending.pop(ready[0])
            done_callback(path, RayResult(ray, ready[0]))
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        ray.shutdown()


class RayResult:
    """A finished Ray task with the interface of a finished future."""

    def __init__(self, ray, ref):
        self.ray, self.ref = ray, ref

    def result(self):
        try:
            return self.ray.get(self.ref)
        except self.ray.exceptions.RayTaskError as e:
            raise e.as_instanceof_cause() from None


def interrupt(signum, frame):
    raise KeyboardInterrupt  # a batch system's SIGTERM (a time limit) ends the runs in flight as Ctrl-C does


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, interrupt)
    args = tyro.cli(Args)
    if (error := check(args)) is not None:
        sys.exit(f"error: {error}")
    exp = EXPERIMENTS[args.experiment]
    runs = plan(args, exp)
    checked = {}  # one check a setting and env id: the seed is checked above
    for identity, _ in runs:
        key = (identity["script"], identity["env_id"], identity["setting"])
        if key not in checked and (error := checked.setdefault(key, invalid_run(identity["script"], identity["flags"]))):
            sys.exit(f"error: {identity['env_id']} {identity['setting']}: {error}")
    in_the_way = dict(other_budget(runs))
    if in_the_way and not args.dry_run:
        path, steps = next(iter(in_the_way.items()))
        sys.exit(f"error: {path} holds a run of {steps} env steps, not {args.total_timesteps}: give another --results-dir")
    for line in stale([(identity, path) for identity, path in runs if path not in in_the_way]):
        print(f"warning: {line}; delete it to run it again")
    todo = [(identity, path) for identity, path in runs if not path.exists() or path in in_the_way]
    elsewhere = made_elsewhere(todo, args.results_dir, args.experiment, exp)
    counts = f"{len(runs) - len(todo)} done, {len(elsewhere)} made by other experiments, {len(todo) - len(elsewhere)} to run"
    print(f"{args.experiment}: {len(runs)} runs, {counts}")
    if args.dry_run:
        for identity, path in runs:
            status = "copy" if path in elsewhere else "todo" if path in in_the_way or not path.exists() else "done"
            way = f"  (in the way: a run of {in_the_way[path]} env steps)" if path in in_the_way else ""
            print(f"{status}  {path}  python {identity['script']} {' '.join(identity['flags'])}{way}")
        sys.exit(0)
    for identity, path in todo:
        if path in elsewhere:
            write_copy(elsewhere[path], path, identity)
    todo = [(identity, path) for identity, path in todo if path not in elsewhere]
    if not todo:
        sys.exit(0)

    from tqdm import tqdm

    failures, not_started = [], []
    progress = tqdm(total=len(todo), unit="run", dynamic_ncols=True)
    deadline = time.time() + 60 * args.no_new_runs_after if args.no_new_runs_after is not None else None

    def done(path, future):
        try:
            if (text := future.result()) is None:
                not_started.append(path.name)
            else:
                write(path, text)
        except Exception as e:  # a failed run: say why, keep going with the others
            failures.append(path.name)
            tqdm.write(f"FAILED {path.name}: {e}")
        progress.update(1)

    try:
        if args.backend == "local":
            run_local(todo, exp, args.workers, done, deadline)
        else:
            run_ray(todo, exp, args.workers, args.ray_address, done, deadline)
    except KeyboardInterrupt:
        progress.close()
        kept = " (Goal GAN's resume from their checkpoints in partial/)" if args.backend == "local" else ""
        sys.exit(f"interrupted: {progress.n} of {len(todo)} runs written; the runs in flight are lost{kept}")
    progress.close()
    if not_started:
        print(f"{len(not_started)} runs not started: --no-new-runs-after {args.no_new_runs_after:g} minutes had passed")
    if failures:
        sys.exit(f"error: {len(failures)} runs failed: {', '.join(failures)}")
