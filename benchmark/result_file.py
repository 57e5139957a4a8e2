"""The result file of one run, what run.py writes and plot.py reads: results/<experiment>/<env>__<setting>__<seed>.csv.gz.

Its first line is `# ` and a JSON object: the run's identity (experiment, script, env id, setting, seed, budget,
command, git commit) and its summary, computed from the full TensorBoard series (the final value of the metric,
the mean of the last 10 training episodes, the env steps to the threshold, SPS). The rest is CSV, `tag,step,value`:
every kept scalar, downsampled to at most MAX_POINTS points by averaging within equal spans of env steps.
"""

import csv
import gzip
import io
import json

import numpy as np

MAX_POINTS = 200


def result_path(results_dir, experiment, env_id, setting, seed):
    return results_dir / experiment / f"{env_id}__{setting}__{seed}.csv.gz"


def downsample(steps, values, max_points=MAX_POINTS):
    """At most max_points (step, value) pairs: the mean value and the last step of each of max_points equal spans."""
    steps, values = np.asarray(steps, dtype=np.float64), np.asarray(values, dtype=np.float64)
    if len(steps) <= max_points:
        return steps, values
    edges = np.linspace(steps[0], steps[-1], max_points + 1)
    span = np.clip(np.searchsorted(edges, steps, side="right") - 1, 0, max_points - 1)
    keep = np.unique(span)
    return (
        np.array([steps[span == k].max() for k in keep]),
        np.array([values[span == k].mean() for k in keep]),
    )


def summarise(series, metric, threshold=None, threshold_episodes=0):
    """What the tables need, from the full series {tag: (steps, values)}."""
    series = {tag: (np.asarray(steps), np.asarray(values)) for tag, (steps, values) in series.items()}
    summary = {}
    if metric in series:
        summary["final"] = float(series[metric][1][-1])
    if "charts/episodic_return" in series:
        summary["final_train_return"] = float(np.mean(series["charts/episodic_return"][1][-10:]))
    if "charts/SPS" in series:
        summary["sps"] = float(series["charts/SPS"][1][-1])
    if threshold is not None and metric in series:
        steps, values = series[metric]
        episodes_done = np.searchsorted(series.get("charts/episodic_return", (np.zeros(0),))[0], steps, side="right")
        reached = np.flatnonzero((values >= threshold) & (episodes_done >= threshold_episodes))
        summary["steps_to_threshold"] = float(steps[reached[0]]) if len(reached) else None  # None: never within budget
    return summary


def to_text(identity, series):
    out = io.StringIO()
    out.write(header(identity))
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["tag", "step", "value"])
    for tag in sorted(series):
        for step, value in zip(*downsample(*series[tag]), strict=True):
            writer.writerow([tag, int(step), f"{value:.6g}"])
    return out.getvalue()


def write(path, text):
    """Write atomically: a run's file exists only once it is whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with gzip.open(tmp, "wt", compresslevel=9) as f:
        f.write(text)
    tmp.replace(path)


def header(identity):
    return "# " + json.dumps(identity, sort_keys=True) + "\n"


def read_header(f):
    """The identity on the first line of an open result file, as `header` wrote it."""
    return json.loads(f.readline()[2:])


def read_identity(path):
    """The identity and summary of one result file, its first line."""
    with gzip.open(path, "rt") as f:
        return read_header(f)


def write_copy(source, path, identity):
    """Write the series of the result file `source` under another identity (the run of another experiment), keeping
    the commit it ran at and its summary, and saying where it came from."""
    with gzip.open(source, "rt") as f:
        made, rest = read_header(f), f.read()
    reused_from = f"{source.parent.name}/{source.name}"
    write(path, header({**identity, "commit": made["commit"], "summary": made["summary"], "reused_from": reused_from}) + rest)


def read(path):
    """(identity, {tag: (steps, values)}) of one result file."""
    with gzip.open(path, "rt") as f:
        identity, rows = read_header(f), list(csv.DictReader(f))
    series = {}
    for row in rows:
        steps, values = series.setdefault(row["tag"], ([], []))
        steps.append(int(row["step"]))
        values.append(float(row["value"]))
    return identity, {tag: (np.array(s), np.array(v)) for tag, (s, v) in series.items()}
