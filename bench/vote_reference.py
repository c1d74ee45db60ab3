"""Which records the vote should ask: the model's reference (HDBSCAN's stratified sample,
`cluster.max_points`) against every training record, offline, on `bench/verdicts.py`'s
fitted models (issue 16).

The reference is a class-balanced sample of at most 20,000 training records: on NSL-KDD
2,708 of its 67,343 normal records, on TON_IoT 3,333 of 31,500. The vote's neighbours
come from it, so good traffic is thinned more than the failures. This asks whether the
vote would flag fewer good records, and call fewer new failures good, if it asked every
training record (or the reference plus every good record) instead.

Per data set and seed, from the stored model: every training record is embedded; the
vote and the three scores (`calibrate.SCORES`) are computed against each reference
variant (pykdtree, the model's `vote_neighbours`), the calibration is refitted on the
model's held-out records with that reference (so the held-out alarm is what `fit`
would print), and the test records are judged at the model's
`score.false_alarm_rate`. The HDBSCAN clusters are not involved (the verdict does not
use them).

    OMP_NUM_THREADS=1 .venv/bin/python bench/vote_reference.py --data nsl-kdd,ton-iot --seeds 3

Needs `bench/verdicts.py`'s run folder (`--runs`, default bench/results/verdicts-0.85)
and ../shared/datasets. Prints one line per data set, seed and reference.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from pykdtree.kdtree import KDTree

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _stored import LABELS, arguments, frames  # noqa: E402

from trafficsiam import artifact  # noqa: E402
from trafficsiam.calibrate import KnownScorer  # noqa: E402
from trafficsiam.model import embed  # noqa: E402


class OtherReference(KnownScorer):
    """A `KnownScorer` whose vote asks another set of embedded records."""

    def use(self, emb: np.ndarray, codes: np.ndarray) -> None:
        self.tree = KDTree(np.ascontiguousarray(emb, np.float32), leafsize=32)
        self.reference_scenarios = np.asarray(codes, np.int64)

    def neighbours(self, emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dist, idx = self.tree.query(np.ascontiguousarray(emb, np.float32),
                                    k=self.vote_neighbours)
        return dist.astype(np.float64), idx.astype(np.int64)

    def clusters(self, dist, idx, emb=None):  # type: ignore[no-untyped-def]
        none = np.zeros(len(dist), np.int64)
        return none, none.astype(np.float64), none


def measure(runs: Path, name: str, seed: int) -> None:
    train, test = frames(runs, name)
    label = LABELS[name]
    art = artifact.load(runs / name / "models" / f"lossless-triplet-seed{seed}")
    columns = list(art.schema.columns)
    scenarios = list(art.manifest["scenarios"])
    good = art.manifest["good_label"]
    code = {s: i for i, s in enumerate(scenarios)}
    y_train = train[label].astype(str).to_numpy()
    hold = art.holdout
    held_rows = hold["row"].to_numpy()
    if not (y_train[held_rows] == hold["scenario"].astype(str).to_numpy()).all():
        raise SystemExit(f"{name}: the held-out rows do not match the training file")
    x_train, _ = art.normaliser.transform(train[columns])
    e_train = embed(art.model, x_train)
    x_test, _ = art.normaliser.transform(test[columns])
    e_test = embed(art.model, x_test)
    y_test = test[label].astype(str).to_numpy()
    base = art.scorer(art.config.score.anomaly_saturation)
    rate = art.config.score.false_alarm_rate
    usable = np.isin(y_train, scenarios)
    usable[held_rows] = False
    shipped = np.zeros(len(train), bool)
    shipped[art.reference["row"].to_numpy()] = True
    held_emb = hold[art.embedding_columns].to_numpy(np.float64)
    held_codes = art.codes_of(hold["scenario"])
    is_good, novel = y_test == good, ~np.isin(y_test, scenarios)
    known_failure = ~is_good & ~novel
    for tag, rows in (("the model's reference", shipped),
                      ("reference + every good record", shipped | (usable & (y_train == good))),
                      ("every training record", usable)):
        scorer = OtherReference(
            base.assigner, base.reference_clusters, base.reference_scenarios, scenarios,
            base.good_code, base.prototypes, base.prototype_scenario, base.good_prototypes,
            base.saturation, base.anomaly_prototypes, base.anomaly_set, base.vote_neighbours)
        scorer.use(e_train[rows], np.array([code[s] for s in y_train[rows]]))
        scorer.calibrate(held_emb, art.inputs["holdout"], held_codes)
        held = scorer.held_out_rates(held_emb, art.inputs["holdout"], held_codes, [rate])[0]
        judged = scorer.assess(e_test, x_test, rate)
        voted = np.array(scenarios)[judged.voted]
        own = known_failure & judged.explained & (voted == y_test)
        failures = max(known_failure.sum(), 1)
        print(f"{name:8s} seed {seed} {tag:30s} records {rows.sum():7d} "
              f"(good {(y_train[rows] == good).sum():6d})  held-out alarm {held['flagged']:.3f}"
              f"  good_false_alarm {(is_good & ~judged.good).sum() / is_good.sum():.3f}"
              f"  novel_called_good {(novel & judged.good).sum() / max(novel.sum(), 1):.3f}"
              f"  known_called_good {(known_failure & judged.good).sum() / failures:.3f}"
              f"  known_own {own.sum() / failures:.3f}", flush=True)


def main() -> None:
    args = arguments(__doc__, "nsl-kdd,ton-iot,5g,sample")
    for name in args.data.split(","):
        for seed in range(args.seeds):
            measure(args.runs, name, seed)

if __name__ == "__main__":
    main()
