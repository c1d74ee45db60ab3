"""Configuration: one frozen model per stage, composed into one `Config`.

`configs/default.yaml` mirrors these classes section by section and documents
every key. Values are validated once, at load: an unknown key or a wrong value
is a `ConfigError` that names the file, the key, the value and the fix.

Every number has a range that a working run can use: a seed numpy and torch accept,
layer sizes and batches that fit in memory, a learning rate that does not diverge at
once; NaN and infinity are refused everywhere. YAML is read without aliases (an alias
bomb expands a few lines into gigabytes) and with bounded nesting and size.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from trafficsiam.errors import ConfigError, printable
from trafficsiam.labels import clean_label

# A config file is a page of settings: anything this large or this deeply nested is
# not one (and nesting bombs reach Python's recursion limit).
MAX_CONFIG_BYTES = 1 << 20
MAX_NESTING = 16
# Characters of a value quoted in a message.
MAX_QUOTED = 60
# The largest seed numpy's and torch's generators both take.
MAX_SEED = 2**32 - 1


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, allow_inf_nan=False)


class DataConfig(_Section):
    label_column: str = "scenario"
    good_label: str = "good"
    # Columns never used as features (ids, timestamps, other labels).
    ignore: tuple[str, ...] = ()
    # Explicit feature lists; empty means inferred from the column types.
    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    # A scenario with a single record has no positive pair: `error` refuses the
    # data; `drop` leaves those records out of training with a warning and a count.
    rare_scenarios: Literal["error", "drop"] = "error"
    # Fit keeps at most this many records (a scenario-stratified sample, rare scenarios
    # whole), reading larger inputs in two streamed passes, so that fit's memory follows
    # this setting, not the input (BENCHMARKS.md §8); empty keeps all.
    max_records: int | None = Field(1_000_000, ge=1000, le=1_000_000_000)
    # Labels are always Unicode NFC and blank labels missing (trafficsiam.labels); true
    # also folds case and whitespace, so that "Normal " and "normal" are one scenario.
    label_normalise: bool = False

    @model_validator(mode="after")
    def _good_label_spelled_as_labels_are(self) -> DataConfig:
        good = clean_label(self.good_label, self.label_normalise)
        if good is None:
            raise ValueError("data.good_label is empty; name the good-traffic scenario, "
                             "e.g. --good-label normal")
        if good != self.good_label:
            object.__setattr__(self, "good_label", good)  # frozen: set once, while validating
        return self


class NormaliseConfig(_Section):
    # After signed log1p and robust scaling, values beyond +-clip are clipped: a bound
    # keeps a single huge flow from dominating distances; 5 cut into the failures the
    # sample data must tell apart (BENCHMARKS.md §3).
    clip: float = Field(10.0, gt=0, le=1e6)
    # One-hot over at most this many most frequent values per column, plus "other".
    max_categories: int = Field(20, ge=1, le=10_000)
    # Values rarer than this share of training rows go to "other" too.
    min_category_share: float = Field(0.001, ge=0, lt=1)


class ModelConfig(_Section):
    # N: embeddings live in [0,1]^N. Small N already separates the sample data's
    # scenarios; 8 leaves room for data with many more, while HDBSCAN's time grows
    # with N (BENCHMARKS.md §3).
    embedding_dim: int = Field(8, ge=1, le=256)
    hidden: tuple[Annotated[int, Field(ge=1, le=16_384)], ...] = Field(
        (128, 64), max_length=16)
    dropout: float = Field(0.0, ge=0, lt=1)


class LossConfig(_Section):
    # A name in trafficsiam.losses.LOSSES; the embedding head follows the loss.
    name: str = "lossless-triplet"
    # Lossless triplet loss scale; empty means N (the embedding dimension), the
    # smallest value for which the log argument stays positive.
    beta: float | None = Field(None, gt=0, le=1e9)
    eps: float = Field(1e-8, gt=0, le=1)
    # Margin of the margin losses; empty means the loss's own default (triplet 1.0 on
    # squared distances, contrastive 1.0, hinge 0.5, kl 2.0, aam-softmax 0.2 rad,
    # am-softmax 0.25), each sized for its distance's range in the [0,1]^N cube or on
    # the sphere.
    margin: float | None = Field(None, gt=0, le=1e3)
    # Logit scale of aam-softmax / am-softmax (16) and the initial learnable scale of
    # angular-prototypical (10); empty means those defaults.
    scale: float | None = Field(None, gt=0, le=1e4)

    @model_validator(mode="after")
    def _known_name(self) -> LossConfig:
        from trafficsiam.losses import LOSSES

        if self.name not in LOSSES:
            raise ValueError(
                f"loss.name {self.name!r} is not a known loss; choose one of: "
                + ", ".join(LOSSES)
            )
        return self


class TripletsConfig(_Section):
    # random: class-balanced random triplets drawn offline (the original recipe);
    # semi-hard / batch-hard: online mining in class-balanced batches.
    strategy: Literal["random", "semi-hard", "batch-hard"] = "batch-hard"
    # Class-balanced batches of classes_per_batch x samples_per_class records; with
    # fewer scenarios than classes_per_batch, more records per scenario keep the size.
    classes_per_batch: int = Field(16, ge=2, le=4096)
    samples_per_class: int = Field(16, ge=2, le=4096)
    # random strategy only: triplets per batch.
    batch_size: int = Field(256, ge=1, le=1 << 20)


class TrainConfig(_Section):
    epochs: int = Field(30, ge=1, le=100_000)
    # Optimiser steps per epoch; empty means one pass over the training records.
    steps_per_epoch: int | None = Field(None, ge=1, le=10_000_000)
    # Adam: above 1 the first steps already throw the weights out of range.
    learning_rate: float = Field(1e-3, gt=0, le=1)
    weight_decay: float = Field(0.0, ge=0, le=1)
    # Augmentation: each normalised input of a training record is blanked (set to 0) with
    # this probability per step, so that the embedding does not hang on single inputs;
    # auto: fit decides from the training data (`prototypes.choose_input_dropout`).
    input_dropout: float | Literal["auto"] = "auto"
    validation_fraction: float = Field(0.1, gt=0, lt=0.5)
    # Stop when the validation loss has not improved for this many epochs.
    patience: int = Field(5, ge=1, le=100_000)
    seed: int = Field(0, ge=0, le=MAX_SEED)
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @field_validator("input_dropout", mode="before")
    @classmethod
    def _input_dropout(cls, value: Any) -> float | str:
        return _number_or_auto(value, "train.input_dropout", lambda n: 0 <= n < 1,
                               "a number from 0 to below 1, or auto (chosen at fit)")


class ClusterConfig(_Section):
    # Empty means chosen from the sample size: 0.5% of it, within [10, 200].
    min_cluster_size: int | None = Field(None, ge=2, le=10_000_000)
    min_samples: int | None = Field(5, ge=1, le=10_000)
    cluster_selection_method: Literal["eom", "leaf"] = "eom"
    # Empty means chosen among a few candidates by how many training records land in
    # a cluster named after their own scenario (see cluster.EPSILON_CANDIDATES).
    cluster_selection_epsilon: float | None = Field(None, ge=0, le=1e3)
    # HDBSCAN runs on a stratified sample of at most this many training records.
    max_points: int = Field(20_000, ge=100, le=10_000_000)
    # k-means prototypes per cluster (at most one per 10 records) of the normalised
    # inputs, for the input-space novelty distance at scoring.
    prototypes: int = Field(256, ge=1, le=100_000)


class ScoreConfig(_Section):
    # The verdict's one setting: at most about this share of the fit's held-out good
    # records are flagged as unlike good traffic (conformal p-values, `decide`); fit
    # measures and prints what it flags at it. Another value at scoring needs no refit.
    false_alarm_rate: float = Field(0.01, gt=0, lt=0.5)
    # ts_anomaly (distance to good traffic): empty = Euclidean; a number c = saturated,
    # each normalised input's squared difference counting up to c^2, so that one input
    # far off cannot outweigh the rest (robust standard deviations); auto = chosen at fit
    # from the held-out records: saturated at 0.25 when the known failures differ from
    # good traffic in more inputs at once than good traffic's own spread, else Euclidean
    # (at scoring: the fit's choice). Calibrated at fit; another value at scoring
    # recalibrates.
    anomaly_saturation: float | Literal["auto"] | None = "auto"
    # New error types: HDBSCAN over the unexplained records of a run. A candidate needs at
    # least this many records among the clustered ones (and at least 0.5% of them).
    new_type_min_size: int = Field(50, ge=2, le=10_000_000)
    # HDBSCAN cluster_selection_epsilon for new types, at least: merge groups closer than
    # this in the embedding (one unseen failure type is one candidate, not fragments);
    # raised to the sample's own density scale when that is larger (newtypes.discover).
    new_type_epsilon: float = Field(0.1, ge=0, le=1e3)
    # HDBSCAN min_samples for new types (how conservative the density estimate is).
    new_type_min_samples: int = Field(3, ge=1, le=10_000)
    # The unexplained records clustered: at most this many (a reproducible sample); the
    # rest are assigned to the candidates found.
    max_new_points: int = Field(20_000, ge=100, le=10_000_000)
    # Per candidate: example records and distinguishing features reported.
    examples: int = Field(5, ge=0, le=10_000)
    top_features: int = Field(5, ge=1, le=10_000)
    # Run folders (OUT/runs/<run id>/: the run's summary, tables and page) kept, the
    # newest; empty keeps all. Scored files are never removed.
    keep_runs: int | None = Field(None, ge=1, le=1_000_000)
    # Records per processing batch (memory is proportional to it, not to the input).
    batch_size: int = Field(65_536, ge=1, le=1 << 24)

    @field_validator("anomaly_saturation", mode="before")
    @classmethod
    def _saturation(cls, value: Any) -> float | str | None:
        if value is None:
            return value
        return _number_or_auto(value, "score.anomaly_saturation",
                               lambda n: 0 < n < float("inf"),
                               "a number > 0, auto (chosen at fit), or empty (Euclidean)")


class Config(_Section):
    data: DataConfig = DataConfig()
    normalise: NormaliseConfig = NormaliseConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    triplets: TripletsConfig = TripletsConfig()
    train: TrainConfig = TrainConfig()
    cluster: ClusterConfig = ClusterConfig()
    score: ScoreConfig = ScoreConfig()

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        n = self.model.embedding_dim
        if self.loss.beta is not None and self.loss.beta < n:
            raise ValueError(
                f"loss.beta must be at least the embedding dimension {n} (beta >= N keeps the "
                f"log argument positive), got {self.loss.beta:g}; set loss.beta to {n} or more "
                "or leave it empty for N"
            )
        return self


def _number_or_auto(value: Any, key: str, allowed: Callable[[float], bool],
                    expected: str) -> float | str:
    """A key that takes "auto" or a number `allowed` accepts; otherwise the one-line
    error that names the key, the value and what is `expected`."""
    if value == "auto":
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not allowed(number):
        raise ValueError(f"config key '{key}' has value {quote(value)}: expected {expected}; "
                         "fix it (see configs/default.yaml)")
    return number


def quote(value: Any) -> str:
    """A value as a message quotes it: repr, control characters escaped, cut short."""
    text = printable(repr(value))
    return text if len(text) <= MAX_QUOTED else text[: MAX_QUOTED - 3] + "..."


def _format_validation_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    # a tuple item's index is part of its location (model.hidden.0): name the key
    loc = printable(".".join(str(p) for p in first["loc"] if not isinstance(p, int)))
    if first["type"] == "extra_forbidden":
        return (
            f"{source}: unknown config key '{loc}'; remove it or check its spelling "
            "against configs/default.yaml"
        )
    if first["type"] == "value_error":
        msg = str(first["ctx"]["error"]) if "ctx" in first else first["msg"]
        return f"{source}: {msg}"
    value = first.get("input")
    where = f"config key '{loc}'" if loc else "config"
    return (
        f"{source}: {where} has value {quote(value)}: {first['msg'].lower()}; "
        "fix it (see configs/default.yaml for the documented keys)"
    )


class _ConfigYamlError(yaml.YAMLError):
    """A YAML document this loader refuses (an alias, nesting too deep)."""

    def __init__(self, problem: str, mark: yaml.Mark | None) -> None:
        super().__init__(problem)
        self.problem, self.problem_mark = problem, mark


class _Loader(yaml.SafeLoader):
    """`yaml.SafeLoader` without aliases and with bounded nesting."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _ConfigYamlError("aliases (*name) are not supported; write the value out",
                                   event.start_mark)
        self._depth += 1
        if self._depth > MAX_NESTING:
            raise _ConfigYamlError(f"nested deeper than {MAX_NESTING} levels",
                                   self.peek_event().start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load_yaml(text: str) -> Any:
    """Parse one YAML document with `_Loader` (raises yaml.YAMLError)."""
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> dict[str, Any]:
    """`section.key=value` (value parsed as YAML) -> nested dict."""
    if "=" not in text:
        raise ConfigError(
            f"--set {text!r}: expected SECTION.KEY=VALUE, e.g. --set train.epochs=10"
        )
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"--set {text!r}: empty key; expected SECTION.KEY=VALUE")
    try:
        value = load_yaml(raw) if raw.strip() else None
    except _ConfigYamlError as err:
        raise ConfigError(f"--set {quote(text)}: {err.problem}") from None
    except yaml.YAMLError:
        value = raw
    nested: dict[str, Any] = {parts[-1]: value}
    for part in reversed(parts[:-1]):
        nested = {part: nested}
    return nested


def build_config(
    raw: dict[str, Any] | None = None,
    overrides: list[dict[str, Any]] | None = None,
    source: str = "config",
) -> Config:
    """Validate a raw mapping (plus overrides applied in order) into a `Config`."""
    merged: dict[str, Any] = dict(raw or {})
    for over in overrides or []:
        merged = _deep_merge(merged, over)
    try:
        return Config.model_validate(merged)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source)) from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The raw mapping of a YAML config file (validated later, with its name in errors)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, not a config file; pass the YAML file to "
                          "--config, e.g. configs/default.yaml")
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found; check the path given to --config")
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: {size:,} bytes is not a config file (at most "
                          f"{MAX_CONFIG_BYTES:,}); check the path given to --config")
    try:
        loaded = load_yaml(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; save the config file as UTF-8") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        if isinstance(err, _ConfigYamlError):
            raise ConfigError(f"{path}: YAML {err.problem}{where}") from None
        raise ConfigError(f"{path}: not valid YAML{where}; fix the syntax") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(
            f"{path}: expected a mapping of sections (data:, model:, ...), "
            f"got {type(loaded).__name__}"
        )
    return loaded


def load_config(
    path: str | Path | None = None, overrides: list[dict[str, Any]] | None = None
) -> Config:
    """Read a YAML config file (or the defaults when `path` is None) and apply overrides."""
    if path is None:
        return build_config({}, overrides, "command line")
    return build_config(read_config_file(path), overrides, str(path))


def score_config(
    stored: ScoreConfig, path: str | Path | None = None,
    overrides: list[dict[str, Any]] | None = None,
) -> ScoreConfig:
    """The score section for a scoring run: the model's stored section, then the `score:`
    section of a config file, then `--set score.KEY=VALUE` overrides. Other sections are
    fixed by the fitted model and refused."""
    layers: list[tuple[dict[str, Any], str]] = []
    if path is not None:
        layers.append((read_config_file(path), str(path)))
    layers += [(over, "--set") for over in overrides or []]
    merged: dict[str, Any] = {"score": stored.model_dump(mode="json")}
    for raw, source in layers:
        other = sorted(k for k in raw if k != "score")
        if other:
            raise ConfigError(
                f"{source}: section '{other[0]}' cannot change when scoring (the fitted model "
                "fixes it); only score.* keys apply here, refit to change the others"
            )
        merged = _deep_merge(merged, raw)
    return build_config(merged, source=str(path) if path is not None else "--set").score


def config_to_dict(config: Config) -> dict[str, Any]:
    """Plain JSON-ready dict (tuples as lists) for the manifest."""
    return config.model_dump(mode="json")
