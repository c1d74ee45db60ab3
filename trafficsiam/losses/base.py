"""Base classes of the losses and the distance helpers they share.

A loss file (one per loss, pytorch-metric-learning style) holds only its formula; the
base class of its kind does the plumbing (distances, the mean, the empty batch):

* `TripletLoss` (kind "triplet"): `per_triplet(d_ap, d_an)` on squared distances of
  (anchor, positive, negative) triplets; combines with every mining strategy.
* `PairLoss` (kind "pair"): `per_pair(x1, x2, same)` on pairs of embeddings with a
  same-scenario flag; pairs come from the same triplets (anchor-positive and
  anchor-negative), so the mining strategies apply to them too.
* `ClassLoss` (kind "class"): `batch_loss(emb, labels)` over a class-balanced batch
  (prototypes, class weights); mining does not apply.

Every loss has one call signature for the training loop, pytorch-metric-learning's
`loss(embeddings, labels, indices_tuple)`: `compute(out, labels, indices, distances)`,
where `indices` are the (anchor, positive, negative) rows of the batch that triplet and
pair losses read (`takes_indices`), and `distances` the batch's squared distance matrix
when the miner already holds it. The training loop has one call site for every loss.

Each loss also names the embedding `head` it needs (`model.HEADS`): "sigmoid" (in
[0,1]^N, the lossless loss's bounds), "l2" (unit sphere, the angular losses) or
"gaussian" (sigmoid mean plus a log-variance, the KL loss).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor, nn

from trafficsiam.errors import ConfigError

# Above this many elements in the [B, B, D] difference tensor, pairwise distances
# use the (clamped) |x|^2 + |y|^2 - 2 x.y expansion instead of the exact differences.
_DIRECT_PAIRWISE_MAX_ELEMENTS = 1 << 24


def check_positive(key: str, value: float, example: str) -> float:
    """`value` as a float, or a ConfigError naming `key` unless it is finite and > 0."""
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(
            f"{key} must be greater than 0, got {value:g}; "
            f"set {key} to a positive value such as {example}"
        )
    return value


def squared_distances(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise squared Euclidean distances ||a_i - b_i||^2 of two [T, D] tensors -> [T].

    Computed from the differences, so it is exactly 0 for identical rows and its
    gradient (2 (a - b)) is finite everywhere.
    """
    if a.shape != b.shape:
        raise ValueError(f"squared_distances: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")
    return (a - b).pow(2).sum(dim=-1)


def pairwise_squared_distances(x: Tensor) -> Tensor:
    """All squared Euclidean distances between the rows of a [B, D] tensor -> [B, B].

    Small inputs (B*B*D up to 2**24 elements) use the exact sum of (x_i - x_j)^2;
    larger ones the expansion |x_i|^2 + |x_j|^2 - 2 x_i.x_j, clamped at 0. Either way
    the result is >= 0, symmetric, exactly 0 on the diagonal, and has a finite
    gradient everywhere, identical rows included (no square root is taken).
    """
    if x.dim() != 2:
        raise ValueError(
            f"pairwise_squared_distances: expected a [B, D] tensor, got {tuple(x.shape)}"
        )
    b, d = x.shape
    if b * b * d <= _DIRECT_PAIRWISE_MAX_ELEMENTS:
        dist = (x.unsqueeze(1) - x.unsqueeze(0)).pow(2).sum(dim=-1)
    else:
        sq = x.pow(2).sum(dim=1)
        dist = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2.0 * (x @ x.T)).clamp_min(0.0)
        dist = 0.5 * (dist + dist.T)
    eye = torch.eye(b, dtype=torch.bool, device=x.device)
    return dist.masked_fill(eye, 0.0)


# (anchor, positive, negative): int64 row indices into a batch, one entry per triplet.
Indices = tuple[Tensor, Tensor, Tensor]


class Loss(torch.nn.Module):
    """What every loss declares: its registry `name`, its `kind` ("triplet", "pair" or
    "class"), the embedding `head` it needs, and whether it reads mined or drawn triplets
    (`takes_indices`) or the whole class-balanced batch."""

    name: ClassVar[str]
    kind: ClassVar[str]
    head: ClassVar[str] = "sigmoid"
    takes_indices: ClassVar[bool] = True

    @property
    def mining_margin(self) -> float | None:
        """The margin of semi-hard mining's window, for losses that have one."""
        return None

    def compute(self, out: Tensor, labels: Tensor | None, indices: Indices | None = None,
                distances: Tensor | None = None) -> Tensor:
        """The loss of a batch: `out` the network's training output [B, D'] (the
        embedding, or the gaussian head's mean and log-variance), `labels` the rows'
        scenario codes [B], `indices` (anchor, positive, negative) rows of the batch and
        `distances` its [B, B] squared distances when already computed (they must be
        those of `out`'s embedding)."""
        raise NotImplementedError(f"{type(self).__name__} must implement compute")

    def terms(self, records: int, indices: Indices | None) -> int:
        """How many terms the loss of a batch of `records` rows averages over."""
        return records if indices is None else len(indices[0])

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


def _empty(*tensors: Tensor) -> Tensor:
    """0.0 still attached to the graph of `tensors` (a batch without terms)."""
    return sum((t.sum() for t in tensors), torch.zeros((), device=tensors[0].device)) * 0.0


class TripletLoss(Loss):
    """Loss over (anchor, positive, negative) triplets, defined on squared Euclidean distances.

    Subclasses set `name` (the registry key, `loss.name` in the config) and implement
    `per_triplet`, the formula alone. `forward` takes embeddings, `from_distances`
    takes distances (for miners that already hold a distance matrix); both return
    the mean over triplets, and 0.0 (still attached to the graph) for no triplets.
    """

    kind: ClassVar[str] = "triplet"

    def per_triplet(self, d_ap: Tensor, d_an: Tensor) -> Tensor:
        """Loss of each triplet from its anchor-positive and anchor-negative squared
        distances (both shape [T]) -> shape [T]."""
        raise NotImplementedError(f"{type(self).__name__} must implement per_triplet")

    def forward(self, anchor: Tensor, positive: Tensor, negative: Tensor) -> Tensor:
        """Mean loss over the triplets given as three [T, D] embedding tensors."""
        if not (anchor.shape == positive.shape == negative.shape):
            raise ValueError(
                f"{type(self).__name__}: anchor, positive and negative shapes differ: "
                f"{tuple(anchor.shape)}, {tuple(positive.shape)}, {tuple(negative.shape)}"
            )
        if anchor.shape[0] == 0:
            return (anchor.sum() + positive.sum() + negative.sum()) * 0.0
        return self.from_distances(
            squared_distances(anchor, positive), squared_distances(anchor, negative)
        )

    def from_distances(self, d_ap: Tensor, d_an: Tensor) -> Tensor:
        """Mean of `per_triplet(d_ap, d_an)`; 0.0 (attached to the graph) when empty."""
        if d_ap.shape != d_an.shape:
            raise ValueError(
                f"{type(self).__name__}: d_ap and d_an shapes differ: "
                f"{tuple(d_ap.shape)} vs {tuple(d_an.shape)}"
            )
        if d_ap.numel() == 0:
            return (d_ap.sum() + d_an.sum()) * 0.0
        return self.per_triplet(d_ap, d_an).mean()

    def compute(self, out: Tensor, labels: Tensor | None, indices: Indices | None = None,
                distances: Tensor | None = None) -> Tensor:
        if indices is None:
            raise ValueError(f"{type(self).__name__}: needs (anchor, positive, negative) indices")
        a, p, n = indices
        if distances is not None:
            return self.from_distances(distances[a, p], distances[a, n])
        anchor = out[a]
        return self.from_distances(squared_distances(anchor, out[p]),
                                   squared_distances(anchor, out[n]))


class PairLoss(Loss):
    """Loss over pairs of embeddings: `same` is 1 for a pair of one scenario, 0 otherwise.

    Subclasses implement `per_pair`, the formula alone; `forward` checks shapes and
    returns the mean over pairs (0.0, attached to the graph, for no pairs).
    """

    kind: ClassVar[str] = "pair"

    def per_pair(self, x1: Tensor, x2: Tensor, same: Tensor) -> Tensor:
        """Loss of each pair from the two [P, D] embeddings and the [P] 0/1 flag -> [P]."""
        raise NotImplementedError(f"{type(self).__name__} must implement per_pair")

    def forward(self, x1: Tensor, x2: Tensor, same: Tensor) -> Tensor:
        if x1.shape != x2.shape or same.shape != x1.shape[:1]:
            raise ValueError(
                f"{type(self).__name__}: pair shapes differ: {tuple(x1.shape)}, "
                f"{tuple(x2.shape)}, same {tuple(same.shape)}"
            )
        if x1.shape[0] == 0:
            return _empty(x1, x2)
        return self.per_pair(x1, x2, same.to(x1.dtype)).mean()

    def compute(self, out: Tensor, labels: Tensor | None, indices: Indices | None = None,
                distances: Tensor | None = None) -> Tensor:
        """The triplets as two pairs each: (anchor, positive) of one scenario and
        (anchor, negative) of two."""
        if indices is None:
            raise ValueError(f"{type(self).__name__}: needs (anchor, positive, negative) indices")
        a, p, n = indices
        same = torch.cat([torch.ones_like(a), torch.zeros_like(n)]).to(out.dtype)
        return self(out[torch.cat([a, a])], out[torch.cat([p, n])], same)

    def terms(self, records: int, indices: Indices | None) -> int:
        return records if indices is None else 2 * len(indices[0])


class ClassLoss(Loss):
    """Loss over a batch of embeddings and their integer scenario codes (0..C-1).

    Subclasses implement `batch_loss`; `forward` checks shapes and handles the empty
    batch. Learnable parameters (scale, bias, class weights) live on the loss and are
    trained with the network; they are training-only (scoring uses the embedding alone).
    """

    kind: ClassVar[str] = "class"
    takes_indices: ClassVar[bool] = False

    def compute(self, out: Tensor, labels: Tensor | None, indices: Indices | None = None,
                distances: Tensor | None = None) -> Tensor:
        if labels is None:
            raise ValueError(f"{type(self).__name__}: needs the records' scenario codes")
        return self(out, labels)

    def batch_loss(self, emb: Tensor, labels: Tensor) -> Tensor:
        """Mean loss of the [B, D] embeddings with [B] int64 codes -> scalar."""
        raise NotImplementedError(f"{type(self).__name__} must implement batch_loss")

    def forward(self, emb: Tensor, labels: Tensor) -> Tensor:
        if emb.dim() != 2 or labels.shape != emb.shape[:1]:
            raise ValueError(
                f"{type(self).__name__}: expected [B, D] embeddings and [B] labels, got "
                f"{tuple(emb.shape)} and {tuple(labels.shape)}"
            )
        if emb.shape[0] == 0:
            return _empty(emb)
        return self.batch_loss(emb, labels.to(torch.int64))


class MarginSoftmaxLoss(ClassLoss):
    """Softmax over learnable scenario weights with a margin on the record's own
    scenario (aam-softmax, am-softmax): logits s cos(theta_j), where theta_j is the angle
    between the L2-normalised embedding and the normalised weight row j, and the
    target's cosine goes through `target_logit` (the margin) first.

    The weights ([C, N], one row per training scenario) are a classifier over the
    training scenarios: training-only, since scoring clusters the embedding and never
    uses them. `scale` s sharpens the softmax; 16 instead of the papers' 30-64 because
    with N = 8 and a handful of scenarios the larger values saturate it from the start.
    """

    head: ClassVar[str] = "l2"

    def __init__(self, n_classes: int, embedding_dim: int, scale: float, margin: float) -> None:
        super().__init__()
        if int(n_classes) < 2:
            raise ConfigError(
                f"loss.name {self.name!r} needs records of at least 2 scenarios, "
                f"got {n_classes}; add another scenario or use another loss"
            )
        self.scale = check_positive("loss.scale", scale, "16")
        self.margin = check_positive("loss.margin", margin, "0.2")
        self.weight = nn.Parameter(torch.empty(int(n_classes), int(embedding_dim)))
        nn.init.xavier_uniform_(self.weight)

    def target_logit(self, cos: Tensor) -> Tensor:
        """The margin applied to the cosine of each record with its own scenario."""
        raise NotImplementedError(f"{type(self).__name__} must implement target_logit")

    def batch_loss(self, emb: Tensor, labels: Tensor) -> Tensor:
        if int(labels.max()) >= self.weight.shape[0] or int(labels.min()) < 0:
            raise ValueError(
                f"{self.name}: scenario codes must lie in [0, {self.weight.shape[0]}), "
                f"got {int(labels.min())}..{int(labels.max())}"
            )
        cos = nn.functional.normalize(emb, dim=-1) @ nn.functional.normalize(self.weight, dim=-1).T
        cos = cos.clamp(-1.0, 1.0)
        target = cos.gather(1, labels.unsqueeze(1))
        logits = cos.scatter(1, labels.unsqueeze(1), self.target_logit(target))
        return nn.functional.cross_entropy(self.scale * logits, labels)

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, classes={self.weight.shape[0]}, scale={self.scale:g}, "
                f"margin={self.margin:g}")
