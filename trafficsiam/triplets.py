"""Triplet sampling (offline, class-balanced) and mining (online, inside a batch).

Triplets are index arrays into one feature matrix, never copies of the data.

* `random_triplets`: the original recipe, class-balanced random triplets drawn
  offline (`triplets.strategy: random`).
* `BalancedBatches` + `mine`: class-balanced P x K batches and online mining from
  the batch's distance matrix (`triplets.strategy: semi-hard | batch-hard`).

Records with byte-identical features but different labels (`duplicate_groups`)
can never be told apart by the network; they are never used as each other's
negatives.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from trafficsiam.errors import ConfigError, InputError

MINING_STRATEGIES = ("random", "semi-hard", "batch-hard")
"""Values of `triplets.strategy`; "random" means offline `random_triplets` (the trainer)."""

_ONLINE_STRATEGIES = ("semi-hard", "batch-hard", "all")

# Rejection rounds for negatives in `random_triplets` before the exact fallback.
_REJECTION_ROUNDS = 64


@dataclass(frozen=True)
class Triplets:
    """(anchor, positive, negative) row indices into one matrix, int64 arrays of one length."""

    anchor: np.ndarray
    positive: np.ndarray
    negative: np.ndarray

    def __post_init__(self) -> None:
        for field in ("anchor", "positive", "negative"):
            arr = np.asarray(getattr(self, field))
            if arr.ndim != 1:
                raise ValueError(f"Triplets.{field} must be 1-D, got shape {arr.shape}")
            if arr.size and not np.issubdtype(arr.dtype, np.integer):
                raise ValueError(f"Triplets.{field} must hold integers, got dtype {arr.dtype}")
            object.__setattr__(self, field, arr.astype(np.int64, copy=False))
        lengths = {len(self.anchor), len(self.positive), len(self.negative)}
        if len(lengths) != 1:
            raise ValueError(
                "Triplets: anchor, positive and negative lengths differ: "
                f"{len(self.anchor)}, {len(self.positive)}, {len(self.negative)}"
            )

    def __len__(self) -> int:
        return len(self.anchor)


def duplicate_groups(x: np.ndarray) -> np.ndarray:
    """int64 id per row such that rows with byte-identical feature vectors share an id.

    Signed zeros are made equal first (-0.0 and 0.0 give the same embedding). Ids are
    dense in [0, number of distinct rows). A 1-D array is taken as one column.
    """
    x = np.asarray(x)
    if x.ndim == 1:
        x = x.reshape(-1, 1)
    if x.ndim != 2:
        raise ValueError(f"duplicate_groups: expected a 2-D array, got shape {x.shape}")
    if x.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    if np.issubdtype(x.dtype, np.floating):
        x = x + x.dtype.type(0)  # -0.0 + 0.0 == +0.0
    x = np.ascontiguousarray(x)
    row_bytes = x.dtype.itemsize * x.shape[1]
    if row_bytes == 0:
        return np.zeros(x.shape[0], dtype=np.int64)
    rows = x.view(np.dtype((np.void, row_bytes))).reshape(-1)
    _, inverse = np.unique(rows, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64)


def _encode(labels: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(class values, int64 code per record)."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"{what}: labels must be 1-D, got shape {labels.shape}")
    classes, codes = np.unique(labels, return_inverse=True)
    return classes, codes.reshape(-1).astype(np.int64)


def _class_index(codes: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Records sorted by class (`order`), first position of each class in it, class sizes."""
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes, minlength=n_classes)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    return order, starts, counts


def random_triplets(
    labels: np.ndarray,
    n: int,
    rng: np.random.Generator,
    groups: np.ndarray | None = None,
) -> Triplets:
    """The original recipe: `n` class-balanced random triplets.

    The anchor class is drawn uniformly over the classes that have >= 2 records (so
    rare scenarios are learned as much as common ones), the anchor uniformly within
    it and the positive uniformly among the *other* records of that class. The
    negative class is drawn uniformly over the other classes (singletons included)
    and the negative record uniformly within it.

    With `groups` (see `duplicate_groups`) a negative never shares the anchor's
    duplicate group: such negatives are redrawn (class and record), i.e. drawn from
    the distribution above conditioned on a valid negative; the few still clashing
    after 64 rounds get an exact draw from that same conditional distribution. Anchors
    that have no valid negative at all (every record of every other class is
    identical to them) are never drawn, and classes made only of such records are
    not anchor classes.

    Vectorised: the cost is a handful of numpy passes over `n`, no per-triplet loop.
    """
    classes, codes = _encode(labels, "random_triplets")
    if n < 0:
        raise ValueError(f"random_triplets: n must be >= 0, got {n}")
    n_records = codes.size
    n_classes = classes.size
    if groups is not None:
        groups = np.asarray(groups).reshape(-1).astype(np.int64)
        if groups.size != n_records:
            raise ValueError(
                f"random_triplets: groups has {groups.size} entries for {n_records} labels"
            )
    if n_classes < 2:
        raise InputError(
            f"random triplets need records of at least 2 labels, got {n_classes} "
            f"({', '.join(map(str, classes[:5]))}); add records of another scenario"
        )
    order, starts, counts = _class_index(codes, n_classes)

    # Which records can be anchors: every record, unless groups leave it no negative.
    if groups is None:
        anchor_ok = np.ones(n_records, dtype=bool)
    else:
        # Valid negatives of record i: other-label records minus other-label records
        # in i's duplicate group.
        _, pair_id = np.unique(np.stack([groups, codes]), axis=1, return_inverse=True)
        pair_id = pair_id.reshape(-1)
        pair_size = np.bincount(pair_id)[pair_id]
        group_size = np.bincount(groups)[groups]
        other_label = n_records - counts[codes]
        same_group_other_label = group_size - pair_size
        anchor_ok = other_label - same_group_other_label > 0
    ok_counts = np.bincount(codes[anchor_ok], minlength=n_classes)
    eligible = np.flatnonzero((counts >= 2) & (ok_counts >= 1))
    if eligible.size == 0:
        raise InputError(
            "random triplets need a label with at least 2 records (for a positive pair) "
            "that differ from the records of other labels; every label has a single "
            "record or only duplicates of other labels' records; add more records"
        )
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Triplets(empty, empty, empty)

    # Anchor: class uniform over eligible ones, record uniform over its valid anchors.
    a_class = eligible[rng.integers(0, eligible.size, size=n)]
    ok_order = np.argsort(codes[anchor_ok], kind="stable")
    ok_records = np.flatnonzero(anchor_ok)[ok_order]
    ok_starts = np.concatenate(([0], np.cumsum(ok_counts)[:-1]))
    anchor = ok_records[ok_starts[a_class] + rng.integers(0, ok_counts[a_class])]

    # Positive: uniform over the other records of the class.
    rank = np.empty(n_records, dtype=np.int64)
    rank[order] = np.arange(n_records) - starts[codes[order]]
    a_rank = rank[anchor]
    offset = rng.integers(0, counts[a_class] - 1)
    offset += offset >= a_rank
    positive = order[starts[a_class] + offset]

    # Negative: class uniform over the other classes, record uniform within it.
    def draw_negatives(anchor_class: np.ndarray) -> np.ndarray:
        r = rng.integers(0, n_classes - 1, size=anchor_class.size)
        neg_class = r + (r >= anchor_class)
        return order[starts[neg_class] + rng.integers(0, counts[neg_class])]

    negative = draw_negatives(a_class)
    if groups is not None:
        clash = np.flatnonzero(groups[negative] == groups[anchor])
        for _ in range(_REJECTION_ROUNDS):
            if clash.size == 0:
                break
            negative[clash] = draw_negatives(a_class[clash])
            clash = clash[groups[negative[clash]] == groups[anchor[clash]]]
        if clash.size:
            _exact_negatives(clash, anchor, a_class, negative, codes, counts, groups, rng)
    return Triplets(anchor, positive, negative)


def _exact_negatives(
    rows: np.ndarray,
    anchor: np.ndarray,
    a_class: np.ndarray,
    negative: np.ndarray,
    codes: np.ndarray,
    counts: np.ndarray,
    groups: np.ndarray,
    rng: np.random.Generator,
) -> None:
    """Fallback for the rare rows still clashing after rejection: draws exactly from the
    distribution rejection sampling targets (class uniform over the other classes,
    record uniform within it, conditioned on a valid negative), i.e. class weight
    proportional to its share of valid records. Loops over distinct (anchor group,
    anchor class) pairs, not over rows."""
    keys = np.stack([groups[anchor[rows]], a_class[rows]], axis=1)
    uniq, which = np.unique(keys, axis=0, return_inverse=True)
    which = which.reshape(-1)
    for k, (group, cls) in enumerate(uniq):
        sel = rows[which == k]
        cand = np.flatnonzero((codes != cls) & (groups != group))
        cand_classes, cand_codes = np.unique(codes[cand], return_inverse=True)  # sorted
        cand_order, cand_starts, cand_counts = _class_index(
            cand_codes.reshape(-1), cand_classes.size
        )
        # P(class) proportional to its share of valid records: the distribution that
        # rejection sampling converges to.
        weight = cand_counts / counts[cand_classes]
        pick = rng.choice(cand_classes.size, size=sel.size, p=weight / weight.sum())
        within = rng.integers(0, cand_counts[pick])
        negative[sel] = cand[cand_order[cand_starts[pick] + within]]


class BalancedBatches:
    """Class-balanced batches of P classes x K records, as int64 index arrays.

    Each batch draws `classes_per_batch` (P) distinct classes uniformly among those
    with >= 2 records (a class with a single record cannot form a positive pair and
    is never chosen), all of them when there are fewer than P, then `samples_per_class`
    (K) records of each: without replacement, or with replacement when the class has
    fewer than K records. Batches therefore hold P' x K indices, P' = min(P, classes).

    Iterating yields one epoch, `len(self)` batches: `n_batches` if given, else enough
    batches to cover the records of the eligible classes once on average.
    `batches(n)` yields exactly n batches.
    """

    def __init__(
        self,
        labels: np.ndarray,
        classes_per_batch: int,
        samples_per_class: int,
        rng: np.random.Generator,
        n_batches: int | None = None,
    ) -> None:
        if classes_per_batch < 2:
            raise ConfigError(
                f"triplets.classes_per_batch must be at least 2 (negatives come from another "
                f"class), got {classes_per_batch}; set it to 2 or more"
            )
        if samples_per_class < 2:
            raise ConfigError(
                f"triplets.samples_per_class must be at least 2 (anchor and positive), "
                f"got {samples_per_class}; set it to 2 or more"
            )
        if n_batches is not None and n_batches < 1:
            raise ValueError(f"BalancedBatches: n_batches must be >= 1, got {n_batches}")
        classes, codes = _encode(labels, "BalancedBatches")
        order, starts, counts = _class_index(codes, classes.size)
        eligible = np.flatnonzero(counts >= 2)
        if eligible.size < 2:
            raise InputError(
                "class-balanced batches need at least 2 labels with 2 or more records each, "
                f"got {eligible.size}; add records or use triplets.strategy: random"
            )
        self.classes = classes
        self.eligible_classes = eligible
        self.classes_per_batch = int(min(classes_per_batch, eligible.size))
        self.samples_per_class = int(samples_per_class)
        self.rng = rng
        self._order, self._starts, self._counts = order, starts, counts
        if n_batches is None:
            n_eligible_records = int(counts[eligible].sum())
            n_batches = max(1, -(-n_eligible_records // self.batch_size))
        self.n_batches = int(n_batches)

    @property
    def batch_size(self) -> int:
        """Indices per batch: P' x K."""
        return self.classes_per_batch * self.samples_per_class

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.batches(self.n_batches)

    def batches(self, n_batches: int) -> Iterator[np.ndarray]:
        """Yield `n_batches` batches of P' x K record indices (grouped by class)."""
        for _ in range(n_batches):
            yield self._one_batch()

    def _one_batch(self) -> np.ndarray:
        k = self.samples_per_class
        chosen = self.rng.choice(self.eligible_classes, self.classes_per_batch, replace=False)
        parts = []
        for cls in chosen:
            size = int(self._counts[cls])
            offsets = self.rng.choice(size, k, replace=size < k)
            parts.append(self._order[self._starts[cls] + offsets])
        return np.concatenate(parts).astype(np.int64, copy=False)


def mine(
    distances: Tensor,
    labels: Tensor,
    strategy: str,
    groups: Tensor | None = None,
    margin: float | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Online mining inside one batch from its [B, B] squared-distance matrix.

    Returns (a, p, n): int64 index tensors of positions in the batch, one entry per
    mined triplet. A valid positive of anchor a is another position with the same
    label; a valid negative has a different label and, when `groups` is given, a
    different duplicate group (an identical input under another label can never be
    separated). Selection runs on detached distances; compute the loss afterwards
    from the (differentiable) distance matrix at these indices.

    * 'batch-hard' (Hermans et al. 2017): one triplet per anchor having a positive and
      a valid negative: its farthest positive and its closest negative.
    * 'semi-hard' (FaceNet, Schroff et al. 2015): one triplet per anchor-positive pair
      (every ordered pair a != p of one label) whose anchor has a valid negative: the
      closest negative with d_an > d_ap (and d_an < d_ap + margin when `margin` is
      given). Fallback: when the pair has no such negative, the hardest (closest)
      valid negative is used, so every pair still contributes a triplet.
    * 'all': every valid (a, p, n) triple; B^3 memory, for small batches and tests.

    Ties are broken by the lowest position. Fully vectorised; no loop over anchors.
    """
    if strategy not in _ONLINE_STRATEGIES:
        hint = " ('random' is offline: use random_triplets)" if strategy == "random" else ""
        raise ConfigError(
            f"triplets.strategy {strategy!r} is not an online mining strategy{hint}; "
            f"choose one of: {', '.join(_ONLINE_STRATEGIES)}"
        )
    if distances.dim() != 2 or distances.shape[0] != distances.shape[1]:
        raise ValueError(f"mine: distances must be [B, B], got {tuple(distances.shape)}")
    b = distances.shape[0]
    labels = labels.reshape(-1)
    if labels.numel() != b:
        raise ValueError(f"mine: {labels.numel()} labels for a {b} x {b} distance matrix")
    device = distances.device
    d = distances.detach()
    labels = labels.to(device)
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    eye = torch.eye(b, dtype=torch.bool, device=device)
    pos_mask = same & ~eye
    neg_mask = ~same
    if groups is not None:
        groups = groups.reshape(-1).to(device)
        if groups.numel() != b:
            raise ValueError(f"mine: {groups.numel()} groups for a {b} x {b} distance matrix")
        neg_mask &= groups.unsqueeze(0) != groups.unsqueeze(1)
    has_neg = neg_mask.any(dim=1)
    inf = torch.tensor(float("inf"), dtype=d.dtype, device=device)

    if strategy == "batch-hard":
        anchors = torch.nonzero(pos_mask.any(dim=1) & has_neg).reshape(-1)
        pos_d = torch.where(pos_mask[anchors], d[anchors], -inf)
        neg_d = torch.where(neg_mask[anchors], d[anchors], inf)
        return anchors, pos_d.argmax(dim=1), neg_d.argmin(dim=1)

    if strategy == "semi-hard":
        a, p = torch.nonzero(pos_mask & has_neg.unsqueeze(1), as_tuple=True)
        rows = d[a]  # [pairs, B]: d(a, .)
        valid = neg_mask[a]
        d_ap = d[a, p].unsqueeze(1)
        semi = valid & (rows > d_ap)
        if margin is not None:
            semi &= rows < d_ap + margin
        semi_n = torch.where(semi, rows, inf).argmin(dim=1)
        hard_n = torch.where(valid, rows, inf).argmin(dim=1)
        return a, p, torch.where(semi.any(dim=1), semi_n, hard_n)

    # "all"
    triples = pos_mask.unsqueeze(2) & neg_mask.unsqueeze(1)
    a, p, n = torch.nonzero(triples, as_tuple=True)
    return a, p, n
