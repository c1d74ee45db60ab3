"""Lossless triplet loss (Arsenault 2018, "Lossless triplet loss").

For sigmoid embeddings in [0,1]^N the squared distance d lies in [0, N]. The
standard triplet loss is linear in d and flat (zero) once the margin is met; the
lossless loss replaces it by two logarithms that keep pulling positives together
and pushing negatives apart, ever more gently as the triplet gets better:

    L = -ln(-d_ap / beta + 1 + eps) - ln(-(N - d_an) / beta + 1 + eps)

with beta = N by default (the smallest value that keeps both log arguments
positive over [0, N]).
"""

from __future__ import annotations

import math
import operator
from typing import ClassVar

import torch
from torch import Tensor

from trafficsiam.errors import ConfigError
from trafficsiam.losses.base import TripletLoss


def _capped_log(x: Tensor, floor: float) -> Tensor:
    """ln(x) for x >= floor, continued below `floor` by its tangent line there.

    ln(floor) + (x - floor) / floor: same value and slope at `floor` (C1), finite for
    any x, and the slope never exceeds 1 / floor.
    """
    safe = torch.log(x.clamp_min(floor))
    tangent = math.log(floor) + (x - floor) / floor
    return torch.where(x >= floor, safe, tangent)


class LosslessTripletLoss(TripletLoss):
    """Lossless triplet loss on squared distances between embeddings in [0,1]^N.

    Args:
        embedding_dim: N, the embedding dimension (distances lie in [0, N]).
        beta: scale of the distances in the log arguments; None means N. Must be
            at least N so that both log arguments stay positive.
        eps: added to the log arguments (the paper's epsilon), > 0.
        min_log_arg: gradient cap, in (0, 1); see below.

    Numerical safety. Distances are clamped into [0, N] and each log argument to at
    least `eps`, so the loss is finite for every d in [0, N]. The true gradient is
    not: at d_an = 0 (an anchor and a negative with identical embeddings, e.g. the
    same input under two labels) -d ln(d_an/beta + eps)/d d_an = 1/(beta*eps) =
    1e8/N, which blows up training. Each log is therefore evaluated with
    `_capped_log`: exactly ln(arg) while arg >= `min_log_arg`, and below it the
    tangent line of ln at `min_log_arg` (continuous value and slope, finite, still
    pushing in the right direction). Consequences:

    * the value equals the formula whenever both arguments are >= `min_log_arg`,
      i.e. for beta = N: d_an >= ~min_log_arg * N and d_ap <= ~(1 - min_log_arg) * N;
      below, it is smaller than the formula (the tangent lies above ln) but finite;
    * |dL/d d_ap| and |dL/d d_an| never exceed `max_grad = 1 / (beta * min_log_arg)`
      (1250 for N = beta = 8 and the default 1e-4).

    The miners also exclude negatives from the anchor's duplicate group; this cap is
    the second line of defence.
    """

    name: ClassVar[str] = "lossless-triplet"

    def __init__(
        self,
        embedding_dim: int,
        beta: float | None = None,
        eps: float = 1e-8,
        min_log_arg: float = 1e-4,
    ) -> None:
        super().__init__()
        try:
            n = operator.index(embedding_dim)  # int or numpy integer; not float, not bool
        except TypeError:
            n = 0
        if isinstance(embedding_dim, bool) or n < 1:
            raise ConfigError(
                f"model.embedding_dim must be a whole number of at least 1, "
                f"got {embedding_dim!r}; set model.embedding_dim to e.g. 8"
            )
        if beta is None:
            beta = float(n)
        beta = float(beta)
        if not (math.isfinite(beta) and beta >= n):
            raise ConfigError(
                f"loss.beta must be at least the embedding dimension {n} (beta >= N keeps the "
                f"log argument positive), got {beta:g}; set loss.beta to {n} or more "
                "or leave it empty for N"
            )
        eps = float(eps)
        if not (math.isfinite(eps) and eps > 0):
            raise ConfigError(
                f"loss.eps must be greater than 0, got {eps:g}; "
                "set loss.eps to a small positive value such as 1e-8"
            )
        min_log_arg = float(min_log_arg)
        if not (0 < min_log_arg < 1):
            raise ConfigError(
                f"lossless triplet min_log_arg must be between 0 and 1 (exclusive), "
                f"got {min_log_arg:g}; use a small value such as 1e-4"
            )
        self.embedding_dim = n
        self.beta = beta
        self.eps = eps
        self.min_log_arg = min_log_arg

    @property
    def max_grad(self) -> float:
        """Upper bound of |dL/d d_ap| and |dL/d d_an| per triplet: 1 / (beta * min_log_arg)."""
        return 1.0 / (self.beta * self.min_log_arg)

    def per_triplet(self, d_ap: Tensor, d_an: Tensor) -> Tensor:
        """-ln(1 - d_ap/beta + eps) - ln((beta - N + d_an)/beta + eps), capped-gradient logs."""
        n = float(self.embedding_dim)
        d_ap = d_ap.clamp(0.0, n)
        d_an = d_an.clamp(0.0, n)
        # Algebraically the paper's arguments, ordered so that float rounding cannot
        # swallow eps (1 + 1e-8 == 1 in float32).
        pos_arg = ((1.0 - d_ap / self.beta) + self.eps).clamp_min(self.eps)
        neg_arg = (((self.beta - n) + d_an) / self.beta + self.eps).clamp_min(self.eps)
        return -_capped_log(pos_arg, self.min_log_arg) - _capped_log(neg_arg, self.min_log_arg)

    def extra_repr(self) -> str:
        return (
            f"name={self.name!r}, embedding_dim={self.embedding_dim}, beta={self.beta:g}, "
            f"eps={self.eps:g}, min_log_arg={self.min_log_arg:g}"
        )
