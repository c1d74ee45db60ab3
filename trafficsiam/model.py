"""Model: the Siamese MLP. One network with shared weights embeds anchor, positive
and negative alike. Its output head follows the loss (`losses.Loss.head`):

* "sigmoid" (default): every embedding in [0,1]^N, what the lossless triplet loss's
  bounds (0 <= d <= N) rely on;
* "l2": L2-normalised onto the unit sphere, for the angular (cosine) losses;
* "gaussian": a sigmoid mean in [0,1]^N plus a bounded log-variance per dimension from a
  second linear layer, for the KL loss. The mean is the embedding used for clustering
  and scoring; the log-variance is seen only in training (`forward_train`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import nn

HEADS = ("sigmoid", "l2", "gaussian")
# The gaussian head's log-variance is LOGVAR_BOUND * tanh(raw / LOGVAR_BOUND): variances
# within [e^-6, e^6], so the KL divergence (which divides by them) stays finite.
LOGVAR_BOUND = 6.0


class L2Normalise(nn.Module):
    """x / ||x|| per row (an all-zero row stays zero: the norm is floored at 1e-12)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(x, dim=-1)


class SiameseMLP(nn.Module):
    """MLP encoder: Linear -> ReLU (-> Dropout) per hidden layer, then Linear -> head."""

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int] = (128, 64),
        embedding_dim: int = 8,
        dropout: float = 0.0,
        head: str = "sigmoid",
    ) -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"SiameseMLP: head {head!r} is not one of {', '.join(HEADS)}")
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        # The same layer list for every head, so a sigmoid model's weights keep their names.
        layers += [nn.Linear(width, embedding_dim), L2Normalise() if head == "l2" else nn.Sigmoid()]
        self.net = nn.Sequential(*layers)
        if head == "gaussian":
            self.logvar = nn.Linear(width, embedding_dim)
        self.in_features = in_features
        self.embedding_dim = embedding_dim
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The embedding [B, N] (for the gaussian head: its mean)."""
        return self.net(x)

    def forward_train(self, x: torch.Tensor) -> torch.Tensor:
        """What the loss sees: the embedding, or for the gaussian head [mean | log-variance]
        ([B, 2N])."""
        if self.head != "gaussian":
            return self.net(x)
        features = self.net[:-2](x)
        mean = self.net[-1](self.net[-2](features))
        logvar = LOGVAR_BOUND * torch.tanh(self.logvar(features) / LOGVAR_BOUND)
        return torch.cat([mean, logvar], dim=-1)

    def forward_triplet(
        self, anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Embed the three branches in one pass through the shared weights."""
        out = self.net(torch.cat([anchor, positive, negative]))
        n = anchor.shape[0]
        return out[:n], out[n : 2 * n], out[2 * n :]


@torch.inference_mode()
def embed(model: SiameseMLP, x: np.ndarray, batch_size: int = 65_536) -> np.ndarray:
    """Embeddings of the rows of `x` (float32 [rows, N]) in evaluation mode. The float32
    result can change in the last bit with `batch_size`; fix it for reproducible runs.

    The activations are applied in place (the values of `model(x)`, bit for bit): a new
    [batch, width] tensor per ReLU cost as much as the linear layers. Batches of a few
    thousand rows stay in cache, and run faster than large ones (BENCHMARKS.md,
    "Scoring throughput")."""
    model.eval()
    device = next(model.parameters()).device
    out = np.empty((x.shape[0], model.embedding_dim), dtype=np.float32)
    for start in range(0, x.shape[0], batch_size):
        chunk = torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size]))
        h = chunk.to(device)
        for layer in model.net:
            if h is chunk or not isinstance(layer, (nn.ReLU, nn.Sigmoid, nn.Dropout)):
                h = layer(h)
            elif isinstance(layer, nn.ReLU):
                h = h.relu_()
            elif isinstance(layer, nn.Sigmoid):
                h = h.sigmoid_()
            # Dropout: the identity in evaluation mode
        out[start : start + batch_size] = h.cpu().numpy()
    return out


@contextmanager
def one_thread() -> Iterator[None]:
    """torch and BLAS kernels on one thread for the block. Small products (a report's
    20,000 rows, a batch per core while scoring) run faster on one thread than split over
    two: the split costs more than it saves, and more still when the other core is busy
    (BENCHMARKS.md, "Scoring throughput"). Thread counts are process-wide: restored on exit."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(before)
