"""Standard triplet margin loss (FaceNet, Schroff et al. 2015) on squared distances."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from trafficsiam.errors import ConfigError
from trafficsiam.losses.base import TripletLoss


class TripletMarginLoss(TripletLoss):
    """L = max(d_ap - d_an + margin, 0), d = squared Euclidean distance.

    Zero once the negative is at least `margin` farther (in squared distance) from
    the anchor than the positive is.
    """

    name: ClassVar[str] = "triplet"

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        margin = float(margin)
        if not margin > 0:  # also rejects NaN
            raise ConfigError(
                f"loss.margin must be greater than 0, got {margin:g}; "
                "set loss.margin to a positive value such as 1.0"
            )
        self.margin = margin

    @property
    def mining_margin(self) -> float | None:
        """Semi-hard mining looks for negatives within this loss's margin."""
        return self.margin

    def per_triplet(self, d_ap: Tensor, d_an: Tensor) -> Tensor:
        """max(d_ap - d_an + margin, 0) per triplet."""
        return (d_ap - d_an + self.margin).clamp_min(0.0)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, margin={self.margin:g}"
