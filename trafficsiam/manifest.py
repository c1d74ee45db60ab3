"""The model manifest's schema: manifest.json checked as data before any of it is used.

The manifest is the one file of a model folder that its own hashes do not cover, so a
hand-edited or forged one must be refused by its content: every field's type (ints
where ints, no bool for a number), finite numbers in their ranges, layer sizes and list
lengths within what a model can have, strings of bounded length, no keys the format
does not have, and the fields that describe one thing twice (the layers in the config
and in the model, the columns in the schema and in the normaliser) in agreement. One
line names the field and the fix; `artifact.load` calls `check` before anything else
reads the manifest.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.functional_validators import AfterValidator
from pydantic_core import PydanticCustomError

from trafficsiam.config import Config, quote
from trafficsiam.contract import MAX_TEXT, MODEL_FORMAT
from trafficsiam.errors import ArtifactError, printable
from trafficsiam.model import HEADS
from trafficsiam.normalise import MAX_RARE

# Bounds far above any real model and far below what would exhaust memory or a screen.
MAX_ITEMS = 1_000_000  # entries in one list or mapping
MAX_DEPTH = 8  # nesting of the free-form parts (histories, tables, lineage)
MAX_COUNT = 10**15  # records, bytes, triplets
FIX = "restore the model folder or refit the model"


def _plain(value: Any) -> Any:
    """A free-form part (a table, a history): JSON of bounded depth, finite numbers and
    bounded text, so that a report or a message can show it as it is."""
    _walk(value, (), 0)
    return value


def _walk(value: Any, at: tuple[int | str, ...], depth: int) -> None:
    def refuse(problem: str) -> None:
        # the place inside the part travels in the error, for the message's field path
        raise PydanticCustomError("plain", problem, {"at": at, "value": value})

    if depth > MAX_DEPTH:
        refuse(f"nested more than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        items: list[tuple[Any, Any]] = list(value.items())
        if any(not isinstance(k, str) or len(k) > MAX_TEXT for k, _ in items):
            refuse("a key is not text of bounded length")
    elif isinstance(value, list):
        items = list(enumerate(value))
    elif isinstance(value, str):
        if len(value) > MAX_TEXT:
            refuse(f"text longer than {MAX_TEXT:,} characters")
        return
    elif isinstance(value, float):
        if not math.isfinite(value):
            refuse("input should be a finite number")
        return
    elif value is None or isinstance(value, bool | int):
        return
    else:
        refuse(f"{type(value).__name__} is not a JSON value")
    if len(items) > MAX_ITEMS:
        refuse(f"more than {MAX_ITEMS:,} entries")
    for key, item in items:
        _walk(item, (*at, key), depth + 1)


def _unique(values: list[str]) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError("names a value more than once")
    return values


Plain = Annotated[Any, AfterValidator(_plain)]
Text = Annotated[str, Field(max_length=MAX_TEXT)]
Label = Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]
Names = Annotated[list[Text], Field(max_length=MAX_ITEMS), AfterValidator(_unique)]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
Share = Annotated[float, Field(ge=0, le=1)]
Seconds = Annotated[float, Field(ge=0, le=1e9)]
Digest = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class _Part(BaseModel):
    # strict: 1.0 is not an int, true is not a number, "5" is not 5; NaN and infinity
    # (which Python's json reads) are refused in every float
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


class SchemaPart(_Part):
    numeric: Names
    categorical: Names
    excluded: dict[Text, Text] = Field(default_factory=dict, max_length=MAX_ITEMS)


class NumericPart(_Part):
    columns: Names
    transform: Literal["signed_log1p"]
    center: list[float] = Field(max_length=MAX_ITEMS)
    scale: list[Annotated[float, Field(gt=0)]] = Field(max_length=MAX_ITEMS)
    missing_indicator: Names

    @model_validator(mode="after")
    def _lengths(self) -> NumericPart:
        n = len(self.columns)
        if len(self.center) != n or len(self.scale) != n:
            raise ValueError(f"center and scale hold {len(self.center)} and "
                             f"{len(self.scale)} values for {n} columns")
        if not set(self.missing_indicator) <= set(self.columns):
            raise ValueError("missing_indicator names a column that is not one of columns")
        return self


class CategoricalPart(_Part):
    columns: Names
    categories: dict[Text, Annotated[list[Text], Field(max_length=MAX_ITEMS)]]
    # values seen at fit that go to (other), per column; None: too many to remember
    # (`normalise.MAX_RARE`); absent in models fitted before they were remembered
    rare: dict[Text, Annotated[list[Text], Field(max_length=MAX_RARE)] | None] = Field(
        default_factory=dict)

    @model_validator(mode="after")
    def _one_list_per_column(self) -> CategoricalPart:
        if set(self.categories) != set(self.columns):
            raise ValueError("categories does not hold one list per column of columns")
        if not set(self.rare) <= set(self.columns):
            raise ValueError("rare names a column that is not one of columns")
        return self


class NormaliserPart(_Part):
    numeric: NumericPart
    categorical: CategoricalPart
    clip: float = Field(gt=0, le=1e6)
    feature_names: Annotated[list[Text], Field(max_length=MAX_ITEMS)]


class ModelPart(_Part):
    in_features: int = Field(ge=1, le=MAX_ITEMS)
    hidden: list[Annotated[int, Field(ge=1, le=16_384)]] = Field(max_length=16)
    embedding_dim: int = Field(ge=1, le=256)
    dropout: float = Field(ge=0, lt=1)
    head: Literal[HEADS] = "sigmoid"  # type: ignore[valid-type]  # models before heads: sigmoid


class ClusterParams(_Part):
    # passed to HDBSCAN as keywords: no key beyond these four may reach it
    min_cluster_size: int = Field(ge=2, le=10_000_000)
    min_samples: int = Field(ge=1, le=10_000)
    cluster_selection_method: Literal["eom", "leaf"]
    cluster_selection_epsilon: float | None = Field(ge=0, le=1e3)


class ClustersPart(_Part):
    params: ClusterParams
    points: Count
    weighted_purity: Share | None
    explained_share: Share | None
    epsilon_selection: Plain
    noise_share: Share | None
    table: Plain


class CalibrationPart(_Part):
    scores: Annotated[list[Text], Field(max_length=16)]
    # absent in models saved before it was stored (they voted with 10)
    vote_neighbours: int | None = Field(None, ge=1, le=10_000)
    held_out_records: dict[Label, Count] = Field(max_length=MAX_ITEMS)
    # the decision's threshold, as the config bounds it
    false_alarm_rate: float = Field(gt=0, lt=0.5)
    held_out_good: Plain
    anomaly_quantile: float = Field(gt=0, lt=1)
    anomaly_scale: float | None = Field(gt=0, le=1e12)


class AnomalyPart(_Part):
    rule: Literal["auto", "configured"]
    saturation: float | None = Field(gt=0, le=1e6)
    failure_inputs: float | None = Field(None, ge=0, le=1e9)
    good_inputs: float | None = Field(None, ge=0, le=1e9)
    failure_records: Count | None = None
    why: Text


class AssignPart(_Part):
    min_samples: int = Field(ge=1, le=10_000)
    has_clusters: bool
    # the reference tree is built with these: euclidean, no keywords from the file
    metric: Literal["euclidean"]
    tree_type: Literal["KDTree", "BallTree"]
    metric_kwargs: dict[str, Any] = Field(default_factory=dict, max_length=0)


class TrainingRows(_Part):
    train: Count
    validation: Count


class InputDropoutPart(_Part):
    rule: Literal["auto", "configured"]
    rate: float = Field(ge=0, lt=1)
    why: Text


class TrainingPart(_Part):
    rows: TrainingRows
    best_epoch: Count
    epochs_run: Count
    stopped_early: bool
    device: Text
    seconds: Seconds
    triplets_seen: Count
    history: Plain
    # models saved before the choice was recorded trained with train.input_dropout as set
    input_dropout: InputDropoutPart | None = None


class Manifest(_Part):
    format: Literal[MODEL_FORMAT]  # type: ignore[valid-type]
    format_version: int = Field(ge=1, le=1_000)
    created: Annotated[str, Field(max_length=64)]
    versions: dict[Text, Text] = Field(max_length=64)
    config: Config
    label_column: Text
    good_label: Label
    scenarios: Annotated[list[Label], Field(min_length=1, max_length=MAX_ITEMS),
                         AfterValidator(_unique)]
    schema_: SchemaPart = Field(alias="schema")
    normaliser: NormaliserPart
    model: ModelPart
    clusters: ClustersPart
    calibration: CalibrationPart
    anomaly: AnomalyPart
    training: TrainingPart
    data: dict[Text, Plain] = Field(max_length=64)
    timings: dict[Text, Seconds | None] = Field(max_length=64)
    assign: AssignPart
    files: dict[Text, Digest] = Field(max_length=64)
    model_id: Annotated[str, Field(pattern=r"^[0-9a-f]{12}$")]
    lineage: Annotated[list[dict[Text, Plain]], Field(max_length=10_000)] = Field(
        default_factory=list)

    @model_validator(mode="after")
    def _one_thing_said_twice_agrees(self) -> Manifest:
        cfg, net, norm = self.config, self.model, self.normaliser
        if list(net.hidden) != list(cfg.model.hidden) or net.embedding_dim != (
                cfg.model.embedding_dim):
            raise ValueError(
                f"the model's layers (hidden {net.hidden}, {net.embedding_dim} outputs) do not "
                f"match its config (hidden {list(cfg.model.hidden)}, "
                f"{cfg.model.embedding_dim} outputs)")
        if net.in_features != len(norm.feature_names):
            raise ValueError(f"model.in_features is {net.in_features} but the normaliser has "
                             f"{len(norm.feature_names)} feature_names")
        if (self.schema_.numeric != norm.numeric.columns
                or self.schema_.categorical != norm.categorical.columns):
            raise ValueError("the schema's columns are not the normaliser's")
        if (self.label_column, self.good_label) != (cfg.data.label_column,
                                                     cfg.data.good_label):
            raise ValueError("label_column and good_label are not the config's data.*")
        if not set(self.calibration.held_out_records) <= set(self.scenarios):
            raise ValueError("calibration.held_out_records names a scenario that is not in "
                             "scenarios")
        return self


def _where(loc: tuple[int | str, ...]) -> str:
    """A pydantic location as a field path: normaliser.numeric.scale[3]."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            name = "schema" if part == "schema_" else str(part)
            text += f".{name}" if text else name
    return printable(text)


def check(manifest: Any, manifest_path: Path) -> Manifest:
    """`manifest` (json.loads of `manifest_path`) as a validated `Manifest`, or an
    ArtifactError naming the first field that is wrong, its value and the fix."""
    try:
        return Manifest.model_validate(manifest)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        loc, kind, value = first["loc"], first["type"], first.get("input")
        if kind == "plain":  # inside a free-form part: name the item itself
            loc, value = (*loc, *first["ctx"]["at"]), first["ctx"]["value"]
        where = _where(loc)
        if kind == "missing":
            what = f"field '{where}' is missing"
        elif kind == "extra_forbidden":
            what = f"field '{where}' is not part of a model manifest"
        else:
            msg = str(first["ctx"]["error"]) if kind == "value_error" else first["msg"]
            # a config validator's own fix names configs/default.yaml, not this folder's
            msg = msg.split(";")[0]
            what = (f"{where + ': ' if where else ''}{msg}" if kind == "value_error"
                    else f"field '{where}' has value {quote(value)}: "
                         f"{msg[0].lower()}{msg[1:]}")
        raise ArtifactError(f"{manifest_path}: {what}; {FIX}") from None
