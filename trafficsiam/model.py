"""Model: the Siamese MLP. One network with shared weights embeds anchor, positive
and negative alike; its sigmoid output puts every embedding in [0,1]^N, which is
what the lossless triplet loss's bounds (0 <= d <= N) rely on."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn


class SiameseMLP(nn.Module):
    """MLP encoder: Linear -> ReLU (-> Dropout) per hidden layer, then Linear -> sigmoid."""

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int] = (128, 64),
        embedding_dim: int = 8,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        layers += [nn.Linear(width, embedding_dim), nn.Sigmoid()]
        self.net = nn.Sequential(*layers)
        self.in_features = in_features
        self.embedding_dim = embedding_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def forward_triplet(
        self, anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Embed the three branches in one pass through the shared weights."""
        out = self.net(torch.cat([anchor, positive, negative]))
        n = anchor.shape[0]
        return out[:n], out[n : 2 * n], out[2 * n :]


@torch.no_grad()
def embed(model: SiameseMLP, x: np.ndarray, batch_size: int = 65_536) -> np.ndarray:
    """Embeddings of the rows of `x` (float32 [rows, N]) in evaluation mode. The float32
    result can change in the last bit with `batch_size`; fix it for reproducible runs."""
    model.eval()
    device = next(model.parameters()).device
    out = np.empty((x.shape[0], model.embedding_dim), dtype=np.float32)
    for start in range(0, x.shape[0], batch_size):
        chunk = torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size]))
        out[start : start + batch_size] = model(chunk.to(device)).cpu().numpy()
    return out
