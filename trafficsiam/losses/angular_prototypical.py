"""Angular prototypical loss (Chung et al. 2020, "In defence of metric learning for
speaker recognition"): each record is classified among the scenario prototypes of its
batch by scaled cosine similarity, with a learnable scale and bias."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from trafficsiam.losses.base import ClassLoss, check_positive

# The paper clamps the scale at 1e-6 so that it stays positive.
_MIN_SCALE = 1e-6


class AngularPrototypicalLoss(ClassLoss):
    """L = cross-entropy over the batch's scenarios of w cos(e_i, c_k) + b.

    c_k is the mean embedding of scenario k in the batch; for a record's own scenario it
    is the mean of the *other* records of that scenario (leave one out), so every record
    with a scenario-mate in the batch is a query. (The paper takes one query per speaker,
    the last utterance; using every record gives the same objective K times per batch.)
    Records alone in their scenario within the batch are prototypes only. w (initially
    `scale`, default 10) and b (initially -5) are learnable, as in the paper; b shifts
    every logit alike, so the cross-entropy and its gradient do not depend on it. Both
    are training-only: scoring uses the embedding.
    """

    name: ClassVar[str] = "angular-prototypical"
    head: ClassVar[str] = "l2"

    def __init__(self, scale: float = 10.0, bias: float = -5.0) -> None:
        super().__init__()
        scale = check_positive("loss.scale", scale, "10")
        self.w = nn.Parameter(torch.tensor(scale))
        self.b = nn.Parameter(torch.tensor(float(bias)))

    def batch_loss(self, emb: Tensor, labels: Tensor) -> Tensor:
        classes, local = torch.unique(labels, return_inverse=True)
        k = classes.numel()
        count = torch.bincount(local, minlength=k).to(emb.dtype)  # [K]
        sums = torch.zeros(k, emb.shape[1], dtype=emb.dtype, device=emb.device)
        sums = sums.index_add(0, local, emb)  # [K, D]
        queries = torch.nonzero(count[local] >= 2).reshape(-1)
        if queries.numel() == 0:
            return emb.sum() * 0.0
        e = nn.functional.normalize(emb[queries], dim=-1)
        own = local[queries]
        protos = sums / count.unsqueeze(1)  # [K, D]
        cos = e @ nn.functional.normalize(protos, dim=-1).T  # [Q, K]
        loo = (sums[own] - emb[queries]) / (count[own] - 1).unsqueeze(1)
        own_cos = (e * nn.functional.normalize(loo, dim=-1)).sum(dim=-1)
        cos = cos.scatter(1, own.unsqueeze(1), own_cos.unsqueeze(1))
        logits = self.w.clamp_min(_MIN_SCALE) * cos + self.b
        return nn.functional.cross_entropy(logits, own)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, w={float(self.w):g}, b={float(self.b):g}"
