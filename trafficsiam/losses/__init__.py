"""Triplet losses and their registry.

One file per loss holds its formula; `base.TripletLoss` does the plumbing. To add a
loss, write a `TripletLoss` subclass with a unique `name` and list it in `_BUILTIN`
(or call `register_loss`); `make_loss` then builds it from the `loss:` config section.
"""

from __future__ import annotations

import inspect
from typing import Any

from trafficsiam.errors import ConfigError
from trafficsiam.losses.base import (
    TripletLoss,
    pairwise_squared_distances,
    squared_distances,
)
from trafficsiam.losses.lossless_triplet import LosslessTripletLoss
from trafficsiam.losses.triplet import TripletMarginLoss

__all__ = [
    "LOSSES",
    "LosslessTripletLoss",
    "TripletLoss",
    "TripletMarginLoss",
    "make_loss",
    "pairwise_squared_distances",
    "register_loss",
    "squared_distances",
]

_BUILTIN: tuple[type[TripletLoss], ...] = (LosslessTripletLoss, TripletMarginLoss)

LOSSES: dict[str, type[TripletLoss]] = {cls.name: cls for cls in _BUILTIN}


def register_loss(cls: type[TripletLoss]) -> type[TripletLoss]:
    """Add a loss class to `LOSSES` under its `name` (usable as a class decorator)."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"{cls.__name__} has no `name`; set the class attribute `name`")
    if name in LOSSES and LOSSES[name] is not cls:
        raise ValueError(f"loss name {name!r} is already taken by {LOSSES[name].__name__}")
    LOSSES[name] = cls
    return cls


def _accepted_params(cls: type[TripletLoss]) -> set[str]:
    params = inspect.signature(cls.__init__).parameters
    return {
        p.name
        for p in params.values()
        if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def make_loss(name: str, embedding_dim: int, **params: Any) -> TripletLoss:
    """Build the loss registered under `name`.

    Only the parameters the class accepts are passed (`embedding_dim` only to classes
    that take it), so the whole `loss:` config section can be given as `params`.
    A parameter given as None is left out, i.e. the class default applies.
    """
    cls = LOSSES.get(name)
    if cls is None:
        known = ", ".join(LOSSES)
        raise ConfigError(f"loss.name {name!r} is not a known loss; choose one of: {known}")
    accepted = _accepted_params(cls)
    kwargs = {k: v for k, v in params.items() if k in accepted and v is not None}
    if "embedding_dim" in accepted:
        kwargs["embedding_dim"] = embedding_dim
    return cls(**kwargs)
