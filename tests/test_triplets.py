"""Triplet sampling and online mining, checked against brute-force loops."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import trafficsiam.triplets as triplets_module
from trafficsiam.errors import ConfigError, InputError
from trafficsiam.triplets import (
    MINING_STRATEGIES,
    BalancedBatches,
    Triplets,
    duplicate_groups,
    mine,
    random_triplets,
)

# ---------------------------------------------------------------- Triplets


def test_triplets_dataclass_checks_and_dtype():
    t = Triplets(np.array([0, 1], dtype=np.int32), [1, 0], np.array([2, 2]))
    assert len(t) == 2
    assert all(arr.dtype == np.int64 for arr in (t.anchor, t.positive, t.negative))
    with pytest.raises(ValueError, match="lengths differ"):
        Triplets(np.array([0, 1]), np.array([1]), np.array([2, 2]))
    with pytest.raises(ValueError, match="integers"):
        Triplets(np.array([0.5]), np.array([1]), np.array([2]))


def test_duplicate_groups():
    x = np.array(
        [[1.0, 2.0], [3.0, 4.0], [1.0, 2.0], [0.0, 1.0], [-0.0, 1.0], [3.0, 4.000001]],
        dtype=np.float32,
    )
    g = duplicate_groups(x)
    assert g.dtype == np.int64 and g.shape == (6,)
    assert g[0] == g[2] and g[3] == g[4]
    assert len({g[0], g[1], g[3], g[5]}) == 4
    assert set(g.tolist()) == set(range(4))  # dense ids
    assert duplicate_groups(np.zeros((0, 3))).shape == (0,)


# ---------------------------------------------------------------- random_triplets


def _check_valid(t: Triplets, labels: np.ndarray, groups: np.ndarray | None = None) -> None:
    assert len(t.anchor) == len(t.positive) == len(t.negative)
    assert (labels[t.anchor] == labels[t.positive]).all()
    assert (t.anchor != t.positive).all()
    assert (labels[t.anchor] != labels[t.negative]).all()
    if groups is not None:
        assert (groups[t.anchor] != groups[t.negative]).all()


def test_random_triplets_valid_and_class_balanced():
    labels = np.array(["a"] * 1000 + ["b"] * 10 + ["c"] * 10 + ["d"])
    t = random_triplets(labels, 30_000, np.random.default_rng(0))
    assert len(t) == 30_000
    _check_valid(t, labels)
    # Anchor classes: uniform over a, b, c; 'd' has one record and is never an anchor.
    shares = {c: np.mean(labels[t.anchor] == c) for c in "abcd"}
    for c in "abc":
        assert shares[c] == pytest.approx(1 / 3, abs=0.02)
    assert shares["d"] == 0
    # ... but 'd' is a negative (negative class uniform over the 3 others).
    assert 0 < np.mean(labels[t.negative] == "d")
    # Records within the small classes are all used as anchors.
    assert set(t.anchor[labels[t.anchor] == "b"].tolist()) == set(range(1000, 1010))
    neg_share_d = np.mean(labels[t.negative][labels[t.anchor] == "a"] == "d")
    assert neg_share_d == pytest.approx(1 / 3, abs=0.03)


def test_random_triplets_deterministic_with_seed():
    labels = np.repeat(np.arange(5), [50, 3, 2, 20, 1])
    t1 = random_triplets(labels, 500, np.random.default_rng(42))
    t2 = random_triplets(labels, 500, np.random.default_rng(42))
    t3 = random_triplets(labels, 500, np.random.default_rng(43))
    for f in ("anchor", "positive", "negative"):
        assert np.array_equal(getattr(t1, f), getattr(t2, f))
    assert not np.array_equal(t1.anchor, t3.anchor)


def test_random_triplets_two_record_class_positive_is_the_other():
    labels = np.array([0, 0, 1, 1, 1])
    t = random_triplets(labels, 2000, np.random.default_rng(1))
    _check_valid(t, labels)
    zero = labels[t.anchor] == 0
    assert (t.anchor[zero] + t.positive[zero] == 1).all()


def test_random_triplets_never_negative_in_anchor_duplicate_group():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 3, size=(300, 2)).astype(np.float32)  # many duplicates
    labels = rng.integers(0, 3, size=300)
    groups = duplicate_groups(x)
    t = random_triplets(labels, 20_000, np.random.default_rng(0), groups=groups)
    _check_valid(t, labels, groups)
    # Without groups the same data does produce such clashes (the test can fail).
    t0 = random_triplets(labels, 20_000, np.random.default_rng(0))
    assert (groups[t0.anchor] == groups[t0.negative]).any()


def test_random_triplets_groups_leave_few_valid_negatives():
    # Class 'b' is all identical to anchor records of 'a' except one record: negatives
    # for those anchors can only be that record or class 'c'; anchor 0 (a, group 0)
    # clashes with every 'b' record in group 0.
    labels = np.array(["a", "a", "a", "b", "b", "b", "b", "c"])
    groups = np.array([0, 0, 1, 0, 0, 0, 2, 0])
    t = random_triplets(labels, 5000, np.random.default_rng(0), groups=groups)
    _check_valid(t, labels, groups)
    # Anchors in group 0 of class 'a' only ever get record 6 as negative.
    mask = (labels[t.anchor] == "a") & (groups[t.anchor] == 0)
    assert mask.any() and set(t.negative[mask].tolist()) == {6}


def test_random_triplets_exact_fallback(monkeypatch):
    # No rejection rounds: every clashing negative comes from the exact fallback.
    monkeypatch.setattr(triplets_module, "_REJECTION_ROUNDS", 0)
    labels = np.array(["a", "a", "a", "b", "b", "b", "b", "c", "c"])
    groups = np.array([0, 0, 1, 0, 0, 0, 2, 0, 3])
    t = random_triplets(labels, 6000, np.random.default_rng(0), groups=groups)
    _check_valid(t, labels, groups)
    mask = (labels[t.anchor] == "a") & (groups[t.anchor] == 0)
    # valid negatives of those anchors: 6 ('b', 1 of 4) and 8 ('c', 1 of 2). Rejection
    # sampling (class uniform, record uniform, redraw clashes) gives them 1/3 and 2/3;
    # the fallback must draw from that same distribution.
    assert set(t.negative[mask].tolist()) == {6, 8}
    assert np.mean(t.negative[mask] == 6) == pytest.approx(1 / 3, abs=0.04)
    monkeypatch.setattr(triplets_module, "_REJECTION_ROUNDS", 64)
    t2 = random_triplets(labels, 6000, np.random.default_rng(1), groups=groups)
    mask2 = (labels[t2.anchor] == "a") & (groups[t2.anchor] == 0)
    assert np.mean(t2.negative[mask2] == 6) == pytest.approx(1 / 3, abs=0.04)


def test_random_triplets_anchor_without_any_valid_negative_is_skipped():
    # Record 2 ('b') is identical to every record of the other labels: no negative.
    # Records 0, 1 ('a') can only use record 3; 'c' (one record) is never an anchor.
    labels = np.array(["a", "a", "b", "b", "c"])
    groups = np.array([0, 0, 0, 1, 0])
    t = random_triplets(labels, 2000, np.random.default_rng(0), groups=groups)
    _check_valid(t, labels, groups)
    assert set(t.anchor.tolist()) == {0, 1, 3}
    is_b = labels[t.anchor] == "b"
    assert (t.positive[is_b] == 2).all()  # record 2 is still a positive
    assert set(t.negative[~is_b].tolist()) == {3}
    # Class balance between a and b is kept.
    assert np.mean(is_b) == pytest.approx(0.5, abs=0.05)


def test_random_triplets_errors_and_empty():
    with pytest.raises(InputError, match="at least 2 labels"):
        random_triplets(np.array(["a", "a"]), 5, np.random.default_rng(0))
    with pytest.raises(InputError, match="at least 2 records"):
        random_triplets(np.array(["a", "b", "c"]), 5, np.random.default_rng(0))
    assert len(random_triplets(np.array([0, 0, 1]), 0, np.random.default_rng(0))) == 0


def test_random_triplets_large_n_is_fast():
    labels = np.random.default_rng(0).integers(0, 20, size=100_000)
    groups = np.arange(100_000)
    groups[:500] = 0
    t = random_triplets(labels, 1_000_000, np.random.default_rng(0), groups=groups)
    assert len(t) == 1_000_000
    _check_valid(t, labels, groups)


# ---------------------------------------------------------------- BalancedBatches


def test_balanced_batches_shape_classes_and_replacement():
    labels = np.array(["a"] * 100 + ["b"] * 50 + ["c"] * 3 + ["d"] * 20 + ["e"])
    sampler = BalancedBatches(labels, 3, 5, np.random.default_rng(0))
    seen_classes: set[str] = set()
    batches = list(sampler.batches(200))
    assert len(batches) == 200
    for batch in batches:
        assert batch.dtype == np.int64 and batch.shape == (15,)
        lab = labels[batch]
        classes, counts = np.unique(lab, return_counts=True)
        assert len(classes) == 3 and (counts == 5).all()
        assert "e" not in classes  # single record: never chosen
        seen_classes.update(classes.tolist())
        for c in classes:
            idx = batch[lab == c]
            if c == "c":
                assert len(set(idx.tolist())) <= 3  # with replacement
            else:
                assert len(set(idx.tolist())) == 5  # without replacement
    assert seen_classes == {"a", "b", "c", "d"}


def test_balanced_batches_fewer_classes_than_p_and_epoch_length():
    labels = np.array([0] * 10 + [1] * 6)
    sampler = BalancedBatches(labels, 8, 4, np.random.default_rng(0))
    assert sampler.classes_per_batch == 2 and sampler.batch_size == 8
    assert len(sampler) == 2  # 16 records / 8 per batch
    batches = list(sampler)
    assert len(batches) == 2 and all(b.shape == (8,) for b in batches)
    assert len(list(BalancedBatches(labels, 2, 2, np.random.default_rng(0), n_batches=7))) == 7


def test_balanced_batches_deterministic_and_errors():
    labels = np.repeat(np.arange(4), 10)
    b1 = list(BalancedBatches(labels, 2, 3, np.random.default_rng(5)).batches(5))
    b2 = list(BalancedBatches(labels, 2, 3, np.random.default_rng(5)).batches(5))
    assert all(np.array_equal(x, y) for x, y in zip(b1, b2, strict=True))
    with pytest.raises(ConfigError, match="classes_per_batch"):
        BalancedBatches(labels, 1, 3, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="samples_per_class"):
        BalancedBatches(labels, 2, 1, np.random.default_rng(0))
    with pytest.raises(InputError, match="at least 2 labels"):
        BalancedBatches(np.array([0, 0, 1, 2]), 2, 2, np.random.default_rng(0))


# ---------------------------------------------------------------- mine


def _problem(seed: int = 0, b: int = 14):
    rng = np.random.default_rng(seed)
    d = rng.random((b, b)) * 4
    d = d + d.T
    np.fill_diagonal(d, 0.0)
    labels = rng.integers(0, 3, size=b)
    labels[:2] = 0  # at least one positive pair
    groups = np.arange(b)
    # duplicate groups spanning labels
    groups[3] = groups[0]
    groups[5] = groups[4]
    groups[7] = groups[6] = groups[2]
    return d, labels, groups


def _valid_neg(labels, groups, a, n):
    return labels[n] != labels[a] and (groups is None or groups[n] != groups[a])


def _brute_batch_hard(d, labels, groups):
    out = []
    b = len(labels)
    for a in range(b):
        pos = [p for p in range(b) if p != a and labels[p] == labels[a]]
        neg = [n for n in range(b) if _valid_neg(labels, groups, a, n)]
        if pos and neg:
            out.append((a, max(pos, key=lambda p: d[a, p]), min(neg, key=lambda n: d[a, n])))
    return out


def _brute_semi_hard(d, labels, groups, margin):
    out = []
    b = len(labels)
    for a in range(b):
        neg = [n for n in range(b) if _valid_neg(labels, groups, a, n)]
        if not neg:
            continue
        for p in range(b):
            if p == a or labels[p] != labels[a]:
                continue
            semi = [
                n
                for n in neg
                if d[a, n] > d[a, p] and (margin is None or d[a, n] < d[a, p] + margin)
            ]
            pool = semi or neg
            out.append((a, p, min(pool, key=lambda n: d[a, n])))
    return out


def _as_list(result):
    a, p, n = result
    assert a.dtype == p.dtype == n.dtype == torch.int64
    return sorted(zip(a.tolist(), p.tolist(), n.tolist(), strict=True))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("use_groups", [False, True])
def test_mine_batch_hard_matches_brute_force(seed, use_groups):
    d, labels, groups = _problem(seed)
    g = groups if use_groups else None
    got = mine(
        torch.tensor(d),
        torch.tensor(labels),
        "batch-hard",
        groups=torch.tensor(groups) if use_groups else None,
    )
    assert _as_list(got) == sorted(_brute_batch_hard(d, labels, g))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("use_groups", [False, True])
@pytest.mark.parametrize("margin", [None, 0.5])
def test_mine_semi_hard_matches_brute_force(seed, use_groups, margin):
    d, labels, groups = _problem(seed)
    g = groups if use_groups else None
    got = mine(
        torch.tensor(d),
        torch.tensor(labels),
        "semi-hard",
        groups=torch.tensor(groups) if use_groups else None,
        margin=margin,
    )
    want = _brute_semi_hard(d, labels, g, margin)
    assert _as_list(got) == sorted(want)
    n_pos_pairs = sum(
        1 for a, p in itertools.permutations(range(len(labels)), 2) if labels[a] == labels[p]
    )
    if not use_groups:
        assert len(want) == n_pos_pairs


def test_mine_semi_hard_fallback_is_hardest_negative():
    # Anchor 0, positive 1 at 5.0; negatives 2 (1.0) and 3 (2.0): no semi-hard one.
    d = torch.tensor(
        [[0.0, 5.0, 1.0, 2.0], [5.0, 0.0, 3.0, 6.0], [1.0, 3.0, 0.0, 1.0], [2.0, 6.0, 1.0, 0.0]]
    )
    labels = torch.tensor([0, 0, 1, 1])
    got = dict(((a, p), n) for a, p, n in _as_list(mine(d, labels, "semi-hard")))
    assert got[(0, 1)] == 2  # fallback: the closest negative
    assert got[(1, 0)] == 3  # semi-hard: d=6 > 5, the only one
    # Anchor 2, positive 3 (d_ap = 1): negative 0 at 1.0 is not > d_ap, negative 1 at 3.0 is.
    assert got[(2, 3)] == 1
    # With margin 1.5, 3.0 is not < 1 + 1.5 either: fallback to the closest, 0.
    with_margin = dict(
        ((a, p), n) for a, p, n in _as_list(mine(d, labels, "semi-hard", margin=1.5))
    )
    assert with_margin[(2, 3)] == 0


def test_mine_all_counts_and_groups_excluded():
    d, labels, groups = _problem(4)
    b = len(labels)
    got = _as_list(mine(torch.tensor(d), torch.tensor(labels), "all"))
    counts = np.bincount(labels)
    expected = sum(c * (c - 1) * (b - c) for c in counts)
    assert len(got) == expected == len(set(got))
    got_g = _as_list(
        mine(torch.tensor(d), torch.tensor(labels), "all", groups=torch.tensor(groups))
    )
    assert all(groups[a] != groups[n] and labels[a] != labels[n] for a, _, n in got_g)
    assert all(labels[a] == labels[p] and a != p for a, p, _ in got_g)
    # exactly the groups-excluded triples were removed
    assert set(got_g) == {t for t in got if groups[t[0]] != groups[t[2]]}
    assert len(got_g) < len(got)


def test_mine_excludes_identical_input_negative():
    # Records 0 (label 0) and 2 (label 1) are the same input: distance 0.
    d = torch.tensor(
        [[0.0, 1.0, 0.0, 3.0], [1.0, 0.0, 2.0, 2.5], [0.0, 2.0, 0.0, 1.0], [3.0, 2.5, 1.0, 0.0]]
    )
    labels = torch.tensor([0, 0, 1, 1])
    groups = torch.tensor([7, 8, 7, 9])
    a, _, n = mine(d, labels, "batch-hard", groups=groups)
    hard = dict(zip(a.tolist(), n.tolist(), strict=True))
    assert hard[0] == 3  # not 2, which shares its group
    assert hard[2] == 1
    a0, _, n0 = mine(d, labels, "batch-hard")
    assert dict(zip(a0.tolist(), n0.tolist(), strict=True))[0] == 2


def test_mine_detached_and_loss_flows_through_distances():
    x = torch.rand(8, 3, requires_grad=True)
    dist = ((x[:, None] - x[None]) ** 2).sum(-1)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1])
    a, p, n = mine(dist, labels, "batch-hard")
    assert not a.requires_grad and len(a) == 8
    (dist[a, p] - dist[a, n]).sum().backward()
    assert x.grad is not None


def test_mine_unknown_strategy():
    d = torch.zeros(2, 2)
    labels = torch.tensor([0, 1])
    with pytest.raises(ConfigError, match="choose one of: semi-hard, batch-hard, all"):
        mine(d, labels, "hardest")
    with pytest.raises(ConfigError, match="random_triplets"):
        mine(d, labels, "random")
    assert MINING_STRATEGIES == ("random", "semi-hard", "batch-hard")


def test_mine_no_positive_pairs_gives_empty():
    d = torch.rand(3, 3)
    a, p, n = mine(d, torch.tensor([0, 1, 2]), "semi-hard")
    assert a.numel() == p.numel() == n.numel() == 0
    a, p, n = mine(d, torch.tensor([0, 1, 2]), "batch-hard")
    assert a.numel() == 0
