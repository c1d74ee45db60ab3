"""KL-divergence loss between Gaussian embeddings (the Siamese KL formulations).

Each record is embedded as a diagonal Gaussian N(mu, diag(sigma^2)) (the "gaussian"
head: mu in [0,1]^N, log sigma^2 bounded). Same-scenario pairs should have a small
divergence, other pairs a large one.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from trafficsiam.losses.base import PairLoss, check_positive


def symmetric_kl(mu1: Tensor, lv1: Tensor, mu2: Tensor, lv2: Tensor) -> Tensor:
    """KL(p||q) + KL(q||p) of two diagonal Gaussians given by means and log-variances,
    per row: 0.5 sum[ e^(lv1-lv2) + e^(lv2-lv1) - 2 + (mu1 - mu2)^2 (e^-lv1 + e^-lv2) ]."""
    ratio = lv1 - lv2
    spread = torch.exp(ratio) + torch.exp(-ratio) - 2.0
    mean = (mu1 - mu2).pow(2) * (torch.exp(-lv1) + torch.exp(-lv2))
    return 0.5 * (spread + mean).sum(dim=-1)


class KLPairLoss(PairLoss):
    """L = y s + (1 - y) max(margin - s, 0) + reg * R, s = ln(1 + KL_sym / N).

    Scaling: the symmetric KL grows with N and with 1/sigma^2 without bound, so it is
    divided by N and compressed with ln(1 + .): s is a distance-like quantity whose
    margin does not depend on N, and a pair already far apart cannot dominate the
    batch. Regularisation: R = mean over both records and dimensions of
    0.5 (sigma^2 - 1 - ln sigma^2), the KL of the variance to the unit variance; without
    it the network separates pairs by shrinking every variance towards the bound
    instead of moving the means. Inputs are [mu | log sigma^2] rows ([P, 2N]).
    """

    name: ClassVar[str] = "kl"
    head: ClassVar[str] = "gaussian"

    def __init__(self, margin: float = 2.0, regularisation: float = 0.01) -> None:
        super().__init__()
        self.margin = check_positive("loss.margin", margin, "2.0")
        self.regularisation = float(regularisation)

    def per_pair(self, x1: Tensor, x2: Tensor, same: Tensor) -> Tensor:
        if x1.shape[-1] % 2:
            raise ValueError(f"kl loss: expected [mean | log-variance] rows, got {x1.shape[-1]}")
        mu1, lv1 = x1.chunk(2, dim=-1)
        mu2, lv2 = x2.chunk(2, dim=-1)
        n = mu1.shape[-1]
        s = torch.log1p(symmetric_kl(mu1, lv1, mu2, lv2) / n)
        fit = same * s + (1.0 - same) * (self.margin - s).clamp_min(0.0)
        prior = 0.5 * (torch.exp(lv1) - 1.0 - lv1 + torch.exp(lv2) - 1.0 - lv2) / 2.0
        return fit + self.regularisation * prior.mean(dim=-1)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, margin={self.margin:g}, regularisation={self.regularisation:g}"
