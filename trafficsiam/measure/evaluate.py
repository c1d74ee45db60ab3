"""Evaluate: the open-set protocol. A fitted model scores labelled test records, some of
scenarios it never saw, and the verdicts are checked against the labels.

    read labels -> score (api.score) -> embed -> metrics -> metrics.json / .csv, report

A *known* scenario is one in the model's training labels (`manifest["scenarios"]`); every
other label in the test data is *novel*. The good label is the model's
(`manifest["good_label"]`). The metric functions take plain arrays (`Predictions`), so a
baseline detector (`trafficsiam.measure.baselines`) is measured by exactly the same code.

* `ari`, `nmi`: the cluster assignment (known cluster; candidate new type; one group
  for outliers) against the labels, over all records;
* `known_accuracy`: records of known scenarios explained (good / known_error) by a
  cluster of their own scenario;
* `known_macro_f1`: macro F1 over the known scenarios on their records, a flagged
  record counting as no scenario;
* `known_error_accuracy`: the same as `known_accuracy` over the records of known
  non-good scenarios only (issue 6's "seen attack types": a RandomForest that calls a
  quarter of them good scores about 0.75 here, while good records lift `known_accuracy`);
* `known_called_good`: records of known non-good scenarios whose verdict is `good`;
* `good_false_alarm`: good records whose verdict is not `good`;
* `novel_auroc`: AUROC of the novelty score, novel records against good records (for
  trafficsiam's own scoring, `ts_anomaly`: how unlike good traffic a record is; the
  baselines give theirs);
* `novel_recall_at_1pct_fpr`, `novel_recall_at_5pct_fpr`: novel records above the
  score that only 1% / 5% of good records exceed;
* `novel_called_good`: novel records whose verdict is `good` (a new failure reported
  as healthy);
* `novel_grouping_ari`: candidate new types against the novel labels, over the novel
  records and the records in a candidate (0 when nothing was grouped);
* `novel_grouped`: the share of the flagged novel records (new_error or outlier) that
  are in a candidate new type;
* `map_at_r`: MAP@R of the embedding (Musgrave et al. 2020) on a stratified sample.

A metric that does not apply (no novel records, a detector that assigns no scenario)
is NaN in the JSON as null.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    adjusted_rand_score,
    f1_score,
    normalized_mutual_info_score,
    roc_auc_score,
)

from trafficsiam import artifact, read, write
from trafficsiam.artifact import Artifact
from trafficsiam.config import ScoreConfig
from trafficsiam.contract import GOOD, KNOWN, NEW, OUTLIER, VERDICTS, own_name
from trafficsiam.labels import clean_labels
from trafficsiam.model import embed
from trafficsiam.paths import check_outputs, input_roots
from trafficsiam.report import cards
from trafficsiam.report.figures import Projection, scenario_colors
from trafficsiam.scoring import score
from trafficsiam.write import json_file as write_json

log = logging.getLogger("trafficsiam")

METRICS: tuple[str, ...] = (
    "ari", "nmi", "known_accuracy", "known_macro_f1", "known_error_accuracy",
    "known_called_good", "good_false_alarm",
    "novel_auroc", "novel_recall_at_1pct_fpr", "novel_recall_at_5pct_fpr", "novel_called_good",
    "novel_grouping_ari", "novel_grouped", "map_at_r",
)
"""The metrics `evaluate` reports, in the order of metrics.csv."""

# MAP@R compares every sampled record with every other one: a stratified sample of at
# most this many test records bounds its [n, n] distance matrix (time and memory).
MAP_AT_R_RECORDS = 4000
# Records per scenario in the report's embedding map.
MAP_POINTS = 3000
EXPLAINED = (VERDICTS[GOOD], VERDICTS[KNOWN])
FLAGGED = "(flagged)"


@dataclass
class Predictions:
    """What one detector says about each test record (arrays of one length).

    verdict: good / known_error / new_error / outlier. scenario: the known scenario a
    record is explained by (None where flagged, or for a detector that names none: set
    `assigns` False). group: the cluster assignment for ari/nmi (None: not applicable).
    novelty: higher is more novel. new_type: candidate new type or None (None array: no
    grouping). embedding: what map_at_r measures (None: not applicable).
    """

    verdict: np.ndarray
    novelty: np.ndarray
    scenario: np.ndarray | None = None
    group: np.ndarray | None = None
    new_type: np.ndarray | None = None
    embedding: np.ndarray | None = None

    @property
    def assigns(self) -> bool:
        return self.scenario is not None


# --- the metrics, each on plain arrays ---------------------------------------------------


def masked(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """An object array: `values` where `keep`, None elsewhere."""
    out = np.full(len(values), None, dtype=object)
    out[keep] = np.asarray(values, dtype=object)[keep]
    return out


def _nan() -> float:
    return float("nan")


def ari_nmi(labels: np.ndarray, group: np.ndarray | None) -> tuple[float, float]:
    """Adjusted Rand index and normalised mutual information of `group` against `labels`."""
    if group is None or len(labels) == 0:
        return _nan(), _nan()
    y, g = np.asarray(labels).astype(str), np.asarray(group).astype(str)
    return float(adjusted_rand_score(y, g)), float(normalized_mutual_info_score(y, g))


def known_scores(labels: np.ndarray, scenario: np.ndarray | None,
                 known: Iterable[str], f1: bool = True) -> tuple[float, float]:
    """(accuracy, macro F1) on the records of known scenarios: a record is right when it
    is explained by its own scenario; flagged records (scenario None) count as
    `(flagged)`, a class of their own that is never right. F1 is averaged over the known
    scenarios present in `labels`."""
    if scenario is None:
        return _nan(), _nan()
    y = np.asarray(labels).astype(str)
    mask = np.isin(y, list(known))
    if not mask.any():
        return _nan(), _nan()
    truth = y[mask]
    named = np.asarray(scenario, dtype=object)[mask]
    pred = np.where(pd.isna(named), FLAGGED, named).astype(str)
    accuracy = float((pred == truth).mean())
    if not f1:  # the accuracy alone (operating points: no sklearn per row)
        return accuracy, _nan()
    present = sorted(set(truth))
    macro = float(f1_score(truth, pred, labels=present, average="macro", zero_division=0))
    return accuracy, macro


def share(mask: np.ndarray, among: np.ndarray) -> float:
    """Share of the records in `among` for which `mask` holds (NaN when `among` is empty)."""
    among = np.asarray(among, dtype=bool)
    if not among.any():
        return _nan()
    return float(np.asarray(mask, dtype=bool)[among].mean())


def novel_auroc(novelty: np.ndarray, novel: np.ndarray, good: np.ndarray) -> float:
    """AUROC of `novelty` for novel records (positives) against good records."""
    if not novel.any() or not good.any():
        return _nan()
    scores = np.concatenate([novelty[novel], novelty[good]])
    truth = np.concatenate([np.ones(int(novel.sum())), np.zeros(int(good.sum()))])
    return float(roc_auc_score(truth, scores))


def recall_at_fpr(novelty: np.ndarray, novel: np.ndarray, good: np.ndarray,
                  fpr: float) -> float:
    """Share of novel records above the threshold that at most `fpr` of good records
    exceed (the threshold is a good record's score: ties stay below it)."""
    if not novel.any() or not good.any():
        return _nan()
    threshold = float(np.quantile(novelty[good], 1.0 - fpr, method="higher"))
    return float((novelty[novel] > threshold).mean())


def novel_grouping_ari(labels: np.ndarray, new_type: np.ndarray | None,
                       novel: np.ndarray) -> float:
    """ARI of the candidate new types against the labels, over the records that are novel
    or in a candidate: known records in a candidate count as one label `(known)`, novel
    records in no candidate as one group `(none)`."""
    if new_type is None or not novel.any():
        return _nan()
    in_candidate = np.array([t is not None and t == t for t in new_type], dtype=bool)
    if not in_candidate.any():
        return 0.0  # nothing grouped (all novel records in one "(none)" would score 1.0)
    rows = novel | in_candidate
    truth = np.where(novel[rows], np.asarray(labels)[rows].astype(str), "(known)")
    group = np.where(in_candidate[rows], np.asarray(new_type, dtype=object)[rows], "(none)")
    return float(adjusted_rand_score(truth, group.astype(str)))


def novel_grouped(verdict: np.ndarray, novel: np.ndarray) -> float:
    """Share of the flagged novel records (new_error or outlier) that are in a candidate
    new type (new_error)."""
    flagged = np.isin(verdict, (VERDICTS[NEW], VERDICTS[OUTLIER]))
    return share(verdict == VERDICTS[NEW], novel & flagged)


def map_at_r(embedding: np.ndarray | None, labels: np.ndarray,
             max_records: int = MAP_AT_R_RECORDS, seed: int = 0) -> float:
    """MAP@R (Musgrave, Belongie, Lim 2020): for each record, R = the number of other
    records of its label; the mean over its R nearest neighbours i = 1..R of
    precision@i where neighbour i shares the label, divided by R. Averaged over records
    (records alone in their label are not queries). Euclidean distance; on a stratified
    sample of at most `max_records` records when there are more."""
    if embedding is None or len(labels) < 2:
        return _nan()
    from trafficsiam.cluster import stratified_sample

    y = np.asarray(labels).astype(str)
    rows = stratified_sample(y, max_records, np.random.default_rng(seed))
    e = np.asarray(embedding, dtype=np.float64)[rows]
    y = y[rows]
    _, codes = np.unique(y, return_inverse=True)
    counts = np.bincount(codes)
    r = counts[codes] - 1
    queries = np.flatnonzero(r > 0)
    if queries.size == 0:
        return _nan()
    sq = (e * e).sum(axis=1)
    total = 0.0
    for start in range(0, queries.size, 512):
        q = queries[start : start + 512]
        d = sq[q, None] + sq[None, :] - 2.0 * (e[q] @ e.T)
        d[np.arange(q.size), q] = np.inf  # never its own neighbour
        k = int(r[q].max())  # <= n - 1, so the partition index is valid
        near = np.argpartition(d, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(d, near, axis=1).argsort(axis=1, kind="stable")
        near = np.take_along_axis(near, order, axis=1)
        hit = codes[near] == codes[q, None]
        ranks = np.arange(1, k + 1)
        within = ranks[None, :] <= r[q, None]
        hit &= within
        precision = np.cumsum(hit, axis=1) / ranks[None, :]
        total += float(((precision * hit).sum(axis=1) / r[q]).sum())
    return total / queries.size


def metrics(labels: Sequence[str] | np.ndarray, pred: Predictions, known: Iterable[str],
            good_label: str, seed: int = 0) -> dict[str, float]:
    """Every metric in `METRICS` for one detector's predictions on labelled records."""
    y = np.asarray(labels).astype(str)
    known = {str(k) for k in known}
    verdict = np.asarray(pred.verdict).astype(str)
    novelty = np.asarray(pred.novelty, dtype=np.float64)
    good = y == good_label
    novel = ~np.isin(y, list(known))
    known_bad = ~novel & ~good
    called_good = verdict == "good"
    ari, nmi = ari_nmi(y, pred.group)
    accuracy, f1 = known_scores(y, pred.scenario, known)
    error_accuracy, _ = known_scores(y, pred.scenario, known - {good_label})
    return {
        "ari": ari,
        "nmi": nmi,
        "known_accuracy": accuracy,
        "known_macro_f1": f1,
        "known_error_accuracy": error_accuracy,
        "known_called_good": share(called_good, known_bad),
        "good_false_alarm": share(~called_good, good),
        "novel_auroc": novel_auroc(novelty, novel, good),
        "novel_recall_at_1pct_fpr": recall_at_fpr(novelty, novel, good, 0.01),
        "novel_recall_at_5pct_fpr": recall_at_fpr(novelty, novel, good, 0.05),
        "novel_called_good": share(called_good, novel),
        "novel_grouping_ari": novel_grouping_ari(y, pred.new_type, novel),
        "novel_grouped": (novel_grouped(verdict, novel) if pred.new_type is not None
                          else _nan()),
        "map_at_r": map_at_r(pred.embedding, y, seed=seed),
    }


def per_scenario(labels: np.ndarray, pred: Predictions, known: Iterable[str]) -> pd.DataFrame:
    """One row per test label: records, known or novel, share of each verdict, and the
    share explained by its own scenario (known scenarios)."""
    known = {str(k) for k in known}
    y = np.asarray(labels).astype(str)
    verdict = np.asarray(pred.verdict).astype(str)
    rows = []
    for label in sorted(set(y), key=lambda s: (-int((y == s).sum()), s)):
        at = y == label
        row: dict[str, Any] = {"scenario": label, "known": label in known,
                               "records": int(at.sum())}
        for v in VERDICTS:
            row[v] = float((verdict[at] == v).mean())
        if pred.scenario is not None and label in known:
            row["own_scenario"] = float(np.mean([s == label for s in pred.scenario[at]]))
        else:
            row["own_scenario"] = float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


# --- operating points: the verdict at other false-alarm rates ---------------------------

# The rates of the operating-point table (and the configured one).
OPERATING_RATES: tuple[float, ...] = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1)
OPERATING_METRICS: tuple[str, ...] = (
    "good_false_alarm", "novel_called_good", "known_called_good", "known_accuracy",
    "flagged",
)
# Beyond this many test records, the table is measured on a reproducible random sample
# of them (bench/evaluate_cost.py: the rows share one measurement of the evidence).
OPERATING_MAX_RECORDS = 200_000


def operating_points(
    art: Artifact, x: np.ndarray, emb: np.ndarray, labels: np.ndarray, cfg: ScoreConfig,
    seed: int = 0, max_records: int = OPERATING_MAX_RECORDS,
) -> pd.DataFrame:
    """The verdict metrics at each false-alarm rate of `OPERATING_RATES` (and the
    configured one): one row each, the configured one marked, as `score --set
    score.false_alarm_rate=...` would judge the records (`x` the normalised inputs, `emb`
    their embedding; the evidence is measured once). new_error and outlier both count
    as flagged (no new-type clustering is needed). Which trade-off suits the traffic is
    read off this table instead of refitting. Beyond `max_records` test records, a
    random sample of that many (seeded; column `records`)."""
    y = np.asarray(labels).astype(str)
    if len(y) > max_records:
        keep = np.sort(np.random.default_rng(seed).choice(len(y), max_records, replace=False))
        x, emb, y = x[keep], emb[keep], y[keep]
    good_label = str(art.manifest["good_label"])
    known = {str(k) for k in art.manifest["scenarios"]}
    good, novel = y == good_label, ~np.isin(y, list(known))
    known_bad = ~novel & ~good
    names = np.array(art.manifest["scenarios"], dtype=object)
    scorer = art.scorer(cfg.anomaly_saturation)
    measured = scorer.measure(np.ascontiguousarray(emb, dtype=np.float64),
                              np.ascontiguousarray(x, dtype=np.float32))
    rows = []
    for rate in sorted({*OPERATING_RATES, float(cfg.false_alarm_rate)}):
        a = scorer.judge(measured, rate)
        scenario = masked(names[a.voted], a.explained)
        rows.append({
            "false_alarm_rate": rate,
            "configured": bool(rate == cfg.false_alarm_rate),
            "records": int(len(y)),
            "good_false_alarm": share(~a.good, good),
            "novel_called_good": share(a.good, novel),
            "known_called_good": share(a.good, known_bad),
            "known_accuracy": known_scores(y, scenario, known, f1=False)[0],
            "flagged": share(~a.explained, np.ones(len(y), dtype=bool)),
        })
    return pd.DataFrame(rows)


# --- evaluating a fitted model -------------------------------------------------------------


@dataclass
class EvaluateResult:
    out: Path
    metrics: dict[str, float]
    scenarios: pd.DataFrame  # per_scenario()
    info: dict[str, Any]  # model id, test inputs, counts, known / novel scenarios
    operating_points: pd.DataFrame | None = None  # operating_points()


def predictions_from_scored(scored: pd.DataFrame, embedding: np.ndarray | None) -> Predictions:
    """`Predictions` from records scored by `api.score` (the ts_* columns)."""
    verdict = scored["ts_verdict"].astype(str).to_numpy()
    explained = np.isin(verdict, EXPLAINED)
    scenario = masked(scored["ts_scenario"].to_numpy(dtype=object), explained)
    new_type = scored["ts_new_type"].to_numpy(dtype=object)
    new_type = np.array([None if t is None or t != t else str(t) for t in new_type],
                        dtype=object)
    cluster = scored["ts_cluster"].to_numpy()
    group = np.where(verdict == VERDICTS[NEW], new_type.astype(str),
                     np.where(verdict == VERDICTS[OUTLIER], VERDICTS[OUTLIER],
                              np.char.add("c", cluster.astype(str))))
    # Novel against good traffic: ranked by how unlike good traffic a record is
    # (ts_anomaly), not by how unlike its own scenario (ts_novelty, which decides the
    # verdict): a new attack landing near a known attack is not novel but is anomalous.
    return Predictions(verdict=verdict, novelty=scored["ts_anomaly"].to_numpy(np.float64),
                       scenario=scenario, group=group, new_type=new_type, embedding=embedding)


def _warn_unmatched_labels(labels: pd.Series, known: list[str], good: str, label_col: str,
                           model_id: str) -> None:
    """Warn when the test labels cannot measure what the metrics say: no good record (no
    false alarm to measure), no known scenario (every record counts as unseen), or labels
    that differ from a known scenario only in case or spaces (compared exactly)."""
    present = sorted({str(v) for v in labels.dropna().unique()})
    folded = {k.casefold().strip(): k for k in known}
    near = [(v, folded[v.casefold().strip()]) for v in present
            if v not in known and v.casefold().strip() in folded]
    if near:
        log.warning("test label %r in '%s' is not a scenario of model %s, but %r is: labels "
                    "are compared exactly, so its records count as an unseen failure; fix "
                    "the spelling in the test data", near[0][0], label_col, model_id,
                    near[0][1])
    if good not in present:
        log.warning("no test record in '%s' is labelled %r (the model's good label): the "
                    "false alarm on good traffic cannot be measured", label_col, good)
    if not set(present) & set(known):
        shown = ", ".join(repr(v) for v in present[:5])
        log.warning("no test label in '%s' is a scenario of model %s (test labels: %s): every "
                    "record counts as an unseen failure; check the label column and its "
                    "values", label_col, model_id, shown)


def own_column(name: str, label_col: str) -> str:
    """The name of one of records.parquet's own columns (`known`, `ts_*`, `e0`...) beside
    the label column, which comes first and keeps its name (`contract.own_name`)."""
    return own_name(name, [label_col])


def evaluate(
    model: str | Path | Artifact,
    test: str | Path | Sequence[str | Path],
    out: str | Path,
    *,
    quiet: bool = False,
    report: bool = True,
    seed: int = 0,
    config: ScoreConfig | None = None,
) -> EvaluateResult:
    """Score the labelled records in `test` with `model` (its score section, or `config`)
    and measure the verdicts.

    Writes to `out`: metrics.json (metrics, model, test inputs, counts, known and novel
    scenarios), metrics.csv (metric, value), scenarios.csv (per test label),
    records.parquet (per test record: label, known, ts_verdict, ts_scenario, ts_novelty,
    ts_anomaly, ts_new_type and the embedding e0..e{N-1}; `own_column`), operating_points.csv (the
    verdict metrics at other novelty quantiles, `operating_points`) and, with `report`,
    evaluate.html.
    """
    art = model if isinstance(model, Artifact) else artifact.load(model)
    label_col = str(art.manifest["label_column"])
    good_label = str(art.manifest["good_label"])
    known = [str(s) for s in art.manifest["scenarios"]]
    specs = [test] if isinstance(test, str | Path) else list(test)
    check_outputs([("--out", out)], [("test input", r) for r in input_roots(specs)],
                  models=[art.path], around=False)  # outputs of its own names
    paths = read.resolve_inputs(specs)
    columns = read.common_columns(paths)
    read.require_column(paths[0], columns, label_col, "label column",
                        "the test records need the model's label column to be evaluated")
    # the labels are checked before anything is scored or written
    labelled = read.read_records(paths, [label_col])
    test_labels = clean_labels(labelled.frame[label_col], art.config.data.label_normalise)
    labelled.refuse_rows(
        test_labels.isna().to_numpy(), f"label column '{label_col}' is empty ({{n}} records; "
        "empty and blank labels count as missing); every test record needs a label to be "
        "evaluated")
    _warn_unmatched_labels(test_labels, known, good_label, label_col, art.model_id)
    out = write.folder(out)
    work = Path(tempfile.mkdtemp(prefix=".evaluate-", dir=out))
    try:
        log.info("scoring %d test file(s) with model %s", len(paths), art.model_id)
        run = score(art, [str(p) for p in paths], work / "scored", config=config, quiet=quiet)
        frames = [pd.read_parquet(o) for _, o, _ in run.outputs]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    scored = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    y = clean_labels(scored[label_col], art.config.data.label_normalise).astype(str).to_numpy()
    x, _ = art.normaliser.transform(scored[list(art.schema.columns)])
    embedding = embed(art.model, x)  # = art.embed, with x kept for the operating points
    pred = predictions_from_scored(scored, embedding)
    values = metrics(y, pred, known, good_label, seed=seed)
    table = per_scenario(y, pred, known)
    points = operating_points(art, x, embedding, y, config or art.config.score, seed=seed)
    novel = sorted(set(y) - set(known))
    info = {
        "model": str(art.path), "model_id": art.model_id,
        "loss": art.config.loss.name, "test": [str(p) for p in paths],
        "label_column": label_col, "good_label": good_label,
        "records": int(len(y)), "good_records": int((y == good_label).sum()),
        "novel_records": int(np.isin(y, novel).sum()),
        "known_scenarios": sorted(set(y) & set(known)), "novel_scenarios": novel,
        "verdicts": {v: int((pred.verdict == v).sum()) for v in VERDICTS},
        "new_types": int(len(run.new_types)),
    }
    write_json(out / "metrics.json", {"metrics": values, **info,
                                      "operating_points": points.to_dict(orient="records")})
    write.csv(out / "operating_points.csv", points)
    write.csv(out / "metrics.csv",
              pd.DataFrame({"metric": list(values), "value": list(values.values())}))
    write.csv(out / "scenarios.csv", table)
    own = {"known": np.isin(y, known), "ts_verdict": pred.verdict,
           "ts_scenario": scored["ts_scenario"], "ts_novelty": scored["ts_novelty"],
           "ts_anomaly": pred.novelty, "ts_new_type": scored["ts_new_type"],
           **{f"e{i}": embedding[:, i] for i in range(embedding.shape[1])}}
    records = pd.DataFrame({label_col: y, **{own_column(k, label_col): v
                                             for k, v in own.items()}})
    write.atomic(out / "records.parquet", lambda tmp: records.to_parquet(tmp, index=False))
    if report:
        write.text(out / "evaluate.html",
                   report_page(values, info, table, embedding, y, pred.verdict, seed, points,
                               known))
    if not quiet:
        log.info("evaluated %d records (%d of novel scenarios): %s", len(y),
                 info["novel_records"], out)
    return EvaluateResult(out=out, metrics=values, scenarios=table, info=info,
                          operating_points=points)


# --- the report ----------------------------------------------------------------------------


def map_points(emb: np.ndarray, labels: np.ndarray, verdict: np.ndarray | None,
               seed: int = 0, limit: int = MAP_POINTS) -> dict[str, Any]:
    """A stratified sample of records for a scatter map: x, y (PCA), label, verdict."""
    from trafficsiam.cluster import stratified_sample

    rows = stratified_sample(np.asarray(labels).astype(str), limit, np.random.default_rng(seed))
    xy = Projection.fit(emb[rows], keep=0)(emb[rows])
    return {
        "x": np.round(xy[:, 0], 4).tolist(), "y": np.round(xy[:, 1], 4).tolist(),
        "label": np.asarray(labels).astype(str)[rows].tolist(),
        "verdict": [] if verdict is None else np.asarray(verdict).astype(str)[rows].tolist(),
    }


def report_page(values: dict[str, float], info: dict[str, Any], table: pd.DataFrame,
                embedding: np.ndarray, labels: np.ndarray, verdict: np.ndarray,
                seed: int = 0, operating: pd.DataFrame | None = None,
                known: Sequence[str] = ()) -> str:
    """evaluate.html: the metrics, the verdicts per scenario, the operating points and
    the embedding map (a scenario in the colour every page gives it; `known`: the model's
    scenarios), on the report pages' base template."""
    def rows_of(frame: pd.DataFrame | None) -> list[dict[str, Any]]:
        if frame is None:
            return []
        return [{k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                 for k, v in r.items()} for r in frame.to_dict(orient="records")]

    return cards.page(
        "evaluate.html.j2", {"points": map_points(embedding, labels, verdict, seed),
                             "colours": scenario_colors(known, info["good_label"],
                                                        np.unique(np.asarray(labels, str)))},
        title=f"Evaluation of model {info['model_id']}", metrics=write.jsonable(values),
        info=info, scenarios=rows_of(table), operating=rows_of(operating))
