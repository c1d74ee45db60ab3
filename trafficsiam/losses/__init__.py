"""The losses and their registry.

One file per loss holds its formula; the base class of its kind (`base.TripletLoss`,
`base.PairLoss`, `base.ClassLoss`) does the plumbing. To add a loss, write a subclass
with a unique `name` (and the `head` it needs) and list it in `_BUILTIN` (or call
`register_loss`); `make_loss` then builds it from the `loss:` config section.

| name | kind | head | file |
| --- | --- | --- | --- |
| lossless-triplet (default) | triplet | sigmoid | lossless_triplet.py |
| triplet | triplet | sigmoid | triplet.py |
| contrastive | pair | sigmoid | contrastive.py |
| hinge | pair | sigmoid | hinge.py |
| kl | pair | gaussian | kl.py |
| angular-prototypical | class | l2 | angular_prototypical.py |
| aam-softmax | class | l2 | aam_softmax.py |
| am-softmax | class | l2 | am_softmax.py |
"""

from __future__ import annotations

import inspect
from typing import Any

from trafficsiam.errors import ConfigError
from trafficsiam.losses.aam_softmax import AAMSoftmaxLoss
from trafficsiam.losses.am_softmax import AMSoftmaxLoss
from trafficsiam.losses.angular_prototypical import AngularPrototypicalLoss
from trafficsiam.losses.base import (
    ClassLoss,
    Loss,
    MarginSoftmaxLoss,
    PairLoss,
    TripletLoss,
    pairwise_squared_distances,
    squared_distances,
)
from trafficsiam.losses.contrastive import ContrastiveLoss
from trafficsiam.losses.hinge import HingePairLoss
from trafficsiam.losses.kl import KLPairLoss
from trafficsiam.losses.lossless_triplet import LosslessTripletLoss
from trafficsiam.losses.triplet import TripletMarginLoss

__all__ = [
    "LOSSES",
    "AAMSoftmaxLoss",
    "AMSoftmaxLoss",
    "AngularPrototypicalLoss",
    "ClassLoss",
    "ContrastiveLoss",
    "HingePairLoss",
    "KLPairLoss",
    "Loss",
    "LosslessTripletLoss",
    "MarginSoftmaxLoss",
    "PairLoss",
    "TripletLoss",
    "TripletMarginLoss",
    "loss_class",
    "make_loss",
    "pairwise_squared_distances",
    "register_loss",
    "squared_distances",
]

_BUILTIN: tuple[type[Loss], ...] = (
    LosslessTripletLoss, TripletMarginLoss, ContrastiveLoss, HingePairLoss, KLPairLoss,
    AngularPrototypicalLoss, AAMSoftmaxLoss, AMSoftmaxLoss,
)

LOSSES: dict[str, type[Loss]] = {cls.name: cls for cls in _BUILTIN}


def register_loss(cls: type[Loss]) -> type[Loss]:
    """Add a loss class to `LOSSES` under its `name` (usable as a class decorator)."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"{cls.__name__} has no `name`; set the class attribute `name`")
    if name in LOSSES and LOSSES[name] is not cls:
        raise ValueError(f"loss name {name!r} is already taken by {LOSSES[name].__name__}")
    LOSSES[name] = cls
    return cls


def loss_class(name: str) -> type[Loss]:
    """The class registered under `name`, or a ConfigError listing the known names."""
    cls = LOSSES.get(name)
    if cls is None:
        known = ", ".join(LOSSES)
        raise ConfigError(f"loss.name {name!r} is not a known loss; choose one of: {known}")
    return cls


def _accepted_params(cls: type[Loss]) -> set[str]:
    params = inspect.signature(cls.__init__).parameters
    return {
        p.name
        for p in params.values()
        if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def make_loss(name: str, embedding_dim: int, n_classes: int | None = None,
              **params: Any) -> Loss:
    """Build the loss registered under `name`.

    Only the parameters the class accepts are passed (`embedding_dim` and `n_classes`,
    the number of training scenarios, only to classes that take them), so the whole
    `loss:` config section can be given as `params`. A parameter given as None is left
    out, i.e. the class default applies.
    """
    cls = loss_class(name)
    accepted = _accepted_params(cls)
    kwargs = {k: v for k, v in params.items() if k in accepted and v is not None}
    if "embedding_dim" in accepted:
        kwargs["embedding_dim"] = embedding_dim
    if "n_classes" in accepted:
        if n_classes is None:
            raise ValueError(f"make_loss: {name!r} needs n_classes (the number of scenarios)")
        kwargs["n_classes"] = n_classes
    return cls(**kwargs)
