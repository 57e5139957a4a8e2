"""per_fourroom.py: the sum-tree, the prioritized buffer, its command line and its logs."""

from functools import partial

import numpy as np
import pytest

from helpers import assert_fourroom_run_logged, assert_learns_smallest_grid, assert_refused, refusal, scalars
from helpers import run_script as run_any_script
from per_fourroom import PrioritizedReplayBuffer, SumTree, table3

run_script = partial(run_any_script, "per_fourroom.py")


def assert_tree_consistent(tree):
    """Every inner node is exactly the sum of its two children, so the root is the sum of the leaves."""
    inner = np.arange(1, tree.n_leaves)
    np.testing.assert_array_equal(tree.nodes[inner], tree.nodes[2 * inner] + tree.nodes[2 * inner + 1])
    np.testing.assert_allclose(tree.total, tree.leaves.sum(), rtol=1e-12)


def test_sum_tree_totals_stay_exact_after_updates():
    rng = np.random.default_rng(0)
    tree = SumTree(10)  # padded to 16 leaves
    assert tree.n_leaves == 16
    for _ in range(200):
        idx = rng.integers(10, size=rng.integers(1, 6))  # repeated indices included
        tree.update(idx, rng.integers(1, 100, size=len(idx)).astype(float))
        assert_tree_consistent(tree)
    assert tree.total == tree.leaves.sum()  # integer priorities: exact, with no rounding at all
    assert not tree.leaves[10:].any()  # the padding stays empty


def test_sum_tree_find_is_the_prefix_sum_inverse():
    tree = SumTree(5)
    tree.update(np.arange(5), np.array([1.0, 0.0, 2.0, 3.0, 4.0]))
    # cumulative sums: [0, 1) -> 0, [1, 3) -> 2 (leaf 1 is empty), [3, 6) -> 3, [6, 10) -> 4
    values = np.array([0.0, 0.999, 1.0, 2.999, 3.0, 5.999, 6.0, 9.999999])
    assert tree.find(values).tolist() == [0, 0, 2, 2, 3, 3, 4, 4]


def test_sampling_frequencies_match_priorities():
    rng = np.random.default_rng(0)
    buffer = PrioritizedReplayBuffer(capacity=8, alpha=0.7)
    buffer.add(*(np.zeros(8),) * 5)
    td_errors = np.array([0.1, 0.5, 1.0, 2.0, 0.0, 3.0, 0.2, 1.5])
    buffer.update_priorities(np.arange(8), td_errors)
    expected = (np.abs(td_errors) + buffer.eps) ** 0.7
    expected /= expected.sum()
    n = 200_000
    counts = np.bincount(np.concatenate([buffer.sample(200, 0.4, rng)[0] for _ in range(n // 200)]), minlength=8)
    # each count is at most binomial (stratification only lowers the variance): within 5 standard deviations
    assert np.all(np.abs(counts - n * expected) <= 5 * np.sqrt(n * expected * (1 - expected)) + 1)
    assert counts[4] < 0.01 * n  # |TD error| 0 keeps only the eps priority


def test_importance_weights_match_their_formula():
    rng = np.random.default_rng(1)
    buffer = PrioritizedReplayBuffer(capacity=100, alpha=0.6)
    buffer.add(*(np.zeros(6),) * 5)  # 6 of 100 slots used: N is 6
    td_errors = np.array([0.3, 1.0, 0.05, 2.0, 0.7, 0.1])
    buffer.update_priorities(np.arange(6), td_errors)
    idx, weights, max_raw_weight = buffer.sample(32, 0.5, rng)
    probs = (td_errors + buffer.eps) ** 0.6 / ((td_errors + buffer.eps) ** 0.6).sum()
    raw = (6 * probs[idx]) ** -0.5  # w_i = (N P(i))^-beta
    np.testing.assert_allclose(weights, raw / ((6 * probs.min()) ** -0.5), rtol=1e-10)  # / max_k w_k of the buffer
    np.testing.assert_allclose(max_raw_weight, raw.max(), rtol=1e-10)
    assert weights.max() <= 1.0


def test_new_transitions_get_the_largest_priority_so_far():
    buffer = PrioritizedReplayBuffer(capacity=8, alpha=1.0)
    buffer.add(*(np.zeros(2),) * 5)
    assert buffer.tree.leaves[:2].tolist() == [1.0, 1.0]  # nothing seen yet: priority 1
    buffer.update_priorities(np.array([0, 1]), np.array([4.0, -0.5]))  # the absolute TD error counts
    buffer.add(*(np.zeros(1),) * 5)
    np.testing.assert_allclose(buffer.tree.leaves[:3], [4.0 + 1e-6, 0.5 + 1e-6, 4.0 + 1e-6])


def test_buffer_wraps_around_at_capacity_and_keeps_the_tree_consistent():
    rng = np.random.default_rng(2)
    buffer = PrioritizedReplayBuffer(capacity=10, alpha=0.8)
    for start in range(0, 25, 7):  # 4 batches of 7: 28 transitions into 10 slots
        cells = np.arange(start, start + 7)
        buffer.add(cells, cells % 4, cells * 0.1, cells + 1, cells % 2)
        idx, _, _ = buffer.sample(5, 0.1, rng)
        buffer.update_priorities(idx, rng.normal(size=5))
        assert_tree_consistent(buffer.tree)
    assert buffer.size == 10 and buffer.pos == 28 % 10
    assert sorted(buffer.cells.tolist()) == list(range(18, 28))  # the 10 newest, the oldest overwritten first
    np.testing.assert_array_equal(buffer.next_cells, buffer.cells + 1)
    np.testing.assert_allclose(buffer.rewards, buffer.cells * 0.1, rtol=1e-6)
    assert np.all(buffer.tree.leaves[:10] > 0) and not buffer.tree.leaves[10:].any()
    assert buffer.sample(1000, 0.1, rng)[0].max() < 10  # never a padding slot


def test_table3_rows_and_the_nearest_row_for_other_sizes():
    assert table3(11) == (200, 0.8) and table3(13) == (2000, 0.8) and table3(15) == (1000, 0.95)
    assert table3(7) == table3(11) and table3(19) == table3(15)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--per-alpha", "-0.5"], "--per-alpha must be finite and >= 0"),
        (["--batch-size", "2000", "--buffer-size", "1000"], "--batch-size (2000) cannot be larger than --buffer-size"),
        (["--size", "13", "--buffer-size", "1000"], "--batch-size (2000) cannot be larger than --buffer-size (1000)"),
        (["--per-beta", "1.5"], "--per-beta must be in [0, 1]"),
        (["--ac-steps-per-per-step", "0"], "--ac-steps-per-per-step must be >= 1"),
        (["--size", "10"], "--size must be an odd integer >= 7"),
        (["--seed", "-5"], "--seed must be >= 0"),
        (["--learning-rate", "-1"], "--learning-rate must be finite and > 0"),
    ],
)
def test_bad_arguments_get_one_line(tmp_path, flags, message):
    assert_refused(refusal("per_fourroom.py", tmp_path, *flags), message, tmp_path)


def test_smoke_logs_every_tag_and_anneals_beta(tmp_path):
    flags = ["--size", "7", "--total-timesteps", "6144", "--num-envs", "4", "--eval-episodes", "5"]
    result = run_script(
        tmp_path, *flags, "--batch-size", "64", "--learning-starts", "256", "--per-beta-end", "1.0", "--save-model"
    )
    assert result.returncode == 0, result.stderr
    per_tags = ["per/value_loss", "per/policy_loss", "per/td_error", "per/mean_priority", "per/max_is_weight", "per/beta"]
    _, logged, checkpoint = assert_fourroom_run_logged(tmp_path, per_tags)
    # 6144 steps of 64 per iteration: 96 iterations, a prioritized update every 3rd once 256 steps are stored
    assert len(logged["per/beta"]) == 96 // 3 - 1
    assert (
        logged["per/beta"] == sorted(logged["per/beta"]) and 0.1 < logged["per/beta"][0] < 0.2 < 0.9 < logged["per/beta"][-1]
    )
    assert all(0.0 < w < np.inf for w in logged["per/max_is_weight"])
    assert checkpoint["args"]["batch_size"] == 64 and checkpoint["args"]["per_alpha"] == 0.8  # Table 3's nearest row


def test_no_per_logs_no_per_tags_and_runs_are_reproducible(tmp_path):
    flags = ["--size", "7", "--total-timesteps", "4096", "--num-envs", "4", "--eval-episodes", "5", "--batch-size", "64"]
    runs = {}
    for name, extra in (("a", []), ("b", []), ("c", ["--no-per"])):
        (tmp_path / name).mkdir()
        assert run_script(tmp_path / name, *flags, *extra).returncode == 0
        runs[name] = scalars(tmp_path / name)[2]
    assert not any(tag.startswith("per/") for tag in runs["c"])
    for tag in ("charts/episodic_return", "per/td_error", "losses/value_loss", "eval/visitation_coverage"):
        assert runs["a"][tag] == runs["b"][tag]  # same seed, same machine, same numbers


def test_per_learns_the_smallest_grid(tmp_path):
    """Table 3's nearest row (batch 200, alpha 0.8): 128 iterations, a prioritized update all along."""
    logged = assert_learns_smallest_grid("per_fourroom.py", tmp_path)
    assert len(logged["per/td_error"]) >= 128 // 3 - 4
