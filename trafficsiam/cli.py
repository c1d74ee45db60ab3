"""The command line: a thin click layer over `trafficsiam.api`.

Each command parses its options, calls one library function and prints a short
summary. A `TrafficSiamError` or a usage error becomes one line on stderr and its exit
code (2 for bad input, usage, configuration or model folders); anything unexpected exits
1 with one line too, unless --debug asks for the traceback (`console.handle_errors`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from trafficsiam import __version__
from trafficsiam.console import F, OneLineGroup, handle_errors, setup_logging
from trafficsiam.contract import VERDICTS, alert_exit_code, run_exit_code


@click.group(cls=OneLineGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="trafficsiam")
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
def main(debug: bool) -> None:
    """trafficsiam: tell good traffic from known failures and spot new kinds of failure.

    fit learns an embedding of labelled traffic records with a Siamese network and
    the lossless triplet loss, then names HDBSCAN clusters after their scenarios.
    score assigns new records to those clusters, flags what they do not explain and
    groups it into candidate new error types.
    """


@main.command()
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--rows", default=20_000, show_default=True, help="Number of records.")
@click.option("--seed", default=0, show_default=True, help="Random seed (same seed, same data).")
@click.option("--novel", is_flag=True, help="Add error types never produced otherwise.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
@handle_errors
def synth(out: Path, rows: int, seed: int, novel: bool, quiet: bool) -> None:
    """Write sample flow records (good traffic, error types) to OUT (.parquet or .csv)."""
    from trafficsiam import synth as synth_mod

    frame = synth_mod.write(out, rows=rows, seed=seed, novel=novel)
    if not quiet:
        counts = frame["scenario"].value_counts().sort_index()
        mix = ", ".join(f"{k} {v}" for k, v in counts.items())
        click.echo(f"wrote {len(frame)} records to {out} ({mix})")


def _training_options(func: F) -> F:
    """The options of every command that fits models (fit, compare; for compare they hold
    for every run): config file, data columns, epochs and --set overrides."""
    options = [
        click.option("--config", "config_path", type=click.Path(path_type=Path),
                     help="YAML config file (see configs/default.yaml)."),
        click.option("--label-column", help="Column naming each record's scenario [scenario]."),
        click.option("--good-label", help="Scenario name of good traffic [good]."),
        click.option("--ignore", multiple=True, metavar="COL",
                     help="Column to keep out of the features (repeatable)."),
        click.option("--epochs", type=int, help="Maximum training epochs."),
        click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
                     help="Override any config key, e.g. --set cluster.min_cluster_size=50."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path),
              help="Model folder to write (must not exist unless --force).")
@_training_options
@click.option("--loss", help="Loss name [lossless-triplet].")
@click.option("--embedding-dim", type=int, help="Embedding dimension N.")
@click.option("--seed", type=int, help="Random seed.")
@click.option("--force", is_flag=True, help="Replace the --out folder if it exists.")
@click.option("--no-report", is_flag=True, help="Do not write report.html into the model folder.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or summary; errors only.")
@handle_errors
def fit(
    inputs: tuple[str, ...],
    out: Path,
    config_path: Path | None,
    label_column: str | None,
    good_label: str | None,
    ignore: tuple[str, ...],
    loss: str | None,
    epochs: int | None,
    embedding_dim: int | None,
    seed: int | None,
    overrides: tuple[str, ...],
    force: bool,
    no_report: bool,
    quiet: bool,
) -> None:
    """Fit a model on labelled records in INPUTS (parquet file, folder, glob or CSV).

    The model folder also holds its report: report.html (unless --no-report),
    features_by_cluster.csv and examples.csv."""
    from trafficsiam import api

    setup_logging(quiet)
    cfg = _fit_config(config_path, label_column, good_label, ignore, loss, epochs,
                      embedding_dim, seed, overrides)
    result = api.fit(list(inputs), out, cfg, force=force, quiet=quiet, report=not no_report)
    if not quiet:
        click.echo(result.summary())


def _fit_config(
    config_path: Path | None, label_column: str | None, good_label: str | None,
    ignore: tuple[str, ...], loss: str | None, epochs: int | None,
    embedding_dim: int | None, seed: int | None, overrides: tuple[str, ...],
) -> Any:
    """The `Config` of fit-style options: the file, then each option, then --set."""
    from trafficsiam.config import load_config, parse_override

    over: list[dict[str, Any]] = []
    base = load_config(config_path) if config_path else None
    if label_column is not None:
        over.append({"data": {"label_column": label_column}})
    if good_label is not None:
        over.append({"data": {"good_label": good_label}})
    if ignore:
        existing = list(base.data.ignore) if base else []
        over.append({"data": {"ignore": existing + [c for c in ignore if c not in existing]}})
    if loss is not None:
        over.append({"loss": {"name": loss}})
    if epochs is not None:
        over.append({"train": {"epochs": epochs}})
    if embedding_dim is not None:
        over.append({"model": {"embedding_dim": embedding_dim}})
    if seed is not None:
        over.append({"train": {"seed": seed}})
    over += [parse_override(text) for text in overrides]
    return load_config(config_path, over)


def _alert_code(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    try:
        return None if value is None else alert_exit_code(value)
    except ValueError as err:
        raise click.BadParameter(str(err)) from None


@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the scored files and reports (created if missing).")
@click.option("--state", type=click.Path(dir_okay=False, path_type=Path),
              help="SQLite state of processed inputs and runs [OUT/trafficsiam-state.db].")
@click.option("--engine", type=click.Choice(["local", "dask"]), default="local",
              show_default=True, help="local: this process; dask: a Dask cluster.")
@click.option("--scheduler", metavar="ADDRESS",
              help="Dask scheduler address (tcp://host:8786); default: a local cluster.")
@click.option("--alert-exit-code", type=int, callback=_alert_code, metavar="N",
              help="Exit with N (3-125, not 75; 0 never) when a new error type was found.")
@click.option("--config", "config_path", type=click.Path(path_type=Path),
              help="YAML file whose score: section overrides the model's.")
@click.option("--set", "overrides", multiple=True, metavar="score.KEY=VALUE",
              help="Override a score key, e.g. --set score.false_alarm_rate=0.005.")
@click.option("--rescore", is_flag=True,
              help="Score every input again, even those already scored unchanged.")
@click.option("--wait", type=float, default=0.0, show_default=True, metavar="SECONDS",
              help="Wait up to this long for another run on the same state to finish.")
@click.option("--no-report", is_flag=True, help="Do not write OUT/report.html.")
@click.option("--quiet", "-q", is_flag=True, help="No progress or summary; errors only.")
@handle_errors
def score(
    model: Path,
    inputs: tuple[str, ...],
    out: Path,
    state: Path | None,
    engine: str,
    scheduler: str | None,
    alert_exit_code: int | None,
    config_path: Path | None,
    overrides: tuple[str, ...],
    rescore: bool,
    wait: float,
    no_report: bool,
    quiet: bool,
) -> None:
    """Score new records in INPUTS (parquet files, folders, globs, CSV) with MODEL.

    Inputs already scored with the same content (per the state) are skipped. Each
    input gets OUT/<its path below the given folder>.parquet with all its columns and
    ts_cluster, ts_scenario, ts_strength, ts_novelty, ts_anomaly, ts_verdict and
    ts_new_type; the run writes OUT/summary.json, clusters.csv, new_types.csv,
    features_by_cluster.csv and report.html (unless --no-report).
    """
    from trafficsiam import api
    from trafficsiam.config import parse_override, score_config

    setup_logging(quiet)
    if scheduler is not None and engine != "dask":
        raise click.UsageError("--scheduler needs --engine dask")
    art = api.load(model)
    cfg = score_config(art.config.score, config_path,
                       [parse_override(text) for text in overrides])
    result = api.score(art, list(inputs), out, config=cfg, state=state, engine=engine,
                       scheduler=scheduler, rescore=rescore, wait=wait, quiet=quiet,
                       report=not no_report)
    if not quiet:
        click.echo(_score_summary(result, report=not no_report))
    code = run_exit_code(result.found_new_types, alert_exit_code)
    if code:
        click.get_current_context().exit(code)


def _score_summary(result: Any, report: bool = True) -> str:
    if result.run_id is None:
        return f"nothing new to score: {len(result.skipped)} input(s) already scored unchanged"
    s = result.summary
    v = s["verdicts"]
    lines = [
        f"run {s['run_id']}: scored {s['records']} records from {len(result.outputs)} "
        f"file(s) in {s['seconds']:.1f} s"
        + (f" ({len(result.skipped)} unchanged input(s) skipped)" if result.skipped else ""),
        "  " + ", ".join(f"{k} {v[k]}" for k in VERDICTS),
    ]
    if result.found_new_types:
        lines.append(f"{len(result.new_types)} candidate new error type(s):")
        for row in result.new_types.itertuples():
            first = str(row.top_features).split("; ")[0]
            lines.append(f"  {row.new_type}: {row.records} records, near {row.nearest_known}; "
                         f"{first}")
    else:
        lines.append("no new error types")
    lines.append(f"outputs in {result.out}: {len(result.outputs)} scored file(s), "
                 "summary.json, clusters.csv, new_types.csv, features_by_cluster.csv")
    if report and result.run_id is not None:
        lines.append(f"report: {result.out / 'report.html'}")
    return "\n".join(lines)


@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("test", nargs=-1, required=True)
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for metrics.json, metrics.csv, scenarios.csv, records.parquet, "
                   "operating_points.csv and evaluate.html (created if missing).")
@click.option("--config", "config_path", type=click.Path(path_type=Path),
              help="YAML file whose score: section overrides the model's.")
@click.option("--set", "overrides", multiple=True, metavar="score.KEY=VALUE",
              help="Override a score key, e.g. --set score.anomaly_saturation=0.25.")
@click.option("--quiet", "-q", is_flag=True, help="No progress or summary; errors only.")
@handle_errors
def evaluate(model: Path, test: tuple[str, ...], out: Path, config_path: Path | None,
             overrides: tuple[str, ...], quiet: bool) -> None:
    """Measure MODEL on labelled records in TEST, some of scenarios it never saw.

    TEST needs the model's feature columns and its label column. Scenarios absent from
    the model's training labels are novel; the metrics say how many of them are
    flagged, how many are reported as good, and how well known scenarios are kept.
    --config/--set score.* measure other score settings without refitting.
    """
    from trafficsiam import api
    from trafficsiam.config import parse_override, score_config
    from trafficsiam.measure.evaluate import evaluate as run_evaluate

    setup_logging(quiet)
    art = api.load(model)
    cfg = score_config(art.config.score, config_path,
                       [parse_override(text) for text in overrides])
    result = run_evaluate(art, list(test), out, quiet=quiet, config=cfg)
    if not quiet:
        click.echo(_evaluate_summary(result))


def _evaluate_summary(result: Any) -> str:
    info = result.info
    lines = [f"evaluated model {info['model_id']} on {info['records']} records "
             f"({info['novel_records']} of {len(info['novel_scenarios'])} novel scenarios)"]
    for name, value in result.metrics.items():
        lines.append(f"  {name:<26} {value:.4f}" if value == value else f"  {name:<26} n/a")
    points = result.operating_points
    if points is not None and len(points):
        lines.append("operating points (score.false_alarm_rate): good false alarm / novel "
                     "called good / known called good / known accuracy")
        for row in points.to_dict(orient="records"):
            mark = "  <- this run" if row["configured"] else ""
            cells = " / ".join("  n/a" if v != v else f"{v:.3f}" for v in (
                row["good_false_alarm"], row["novel_called_good"],
                row["known_called_good"], row["known_accuracy"]))
            lines.append(f"  {row['false_alarm_rate']:<6g}  {cells}{mark}")
    lines.append(f"outputs in {result.out}: metrics.json, metrics.csv, scenarios.csv, "
                 "records.parquet, operating_points.csv, evaluate.html")
    return "\n".join(lines)


def _names(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip() and v.strip() != "none"]


@main.command()
@click.argument("train")
@click.option("--test", "tests", multiple=True, required=True,
              help="Labelled test records (file, folder or glob; repeatable).")
@click.option("--losses", default="lossless-triplet,triplet", show_default=True,
              help="Comma-separated loss names.")
@click.option("--seeds", type=int, default=3, show_default=True,
              help="Seeds per loss: train.seed, train.seed + 1, ...")
@click.option("--baselines", "baseline_names", default="no-embedding,isolation-forest,knn",
              show_default=True,
              help="Comma-separated baselines (no-embedding, isolation-forest, knn, "
                   "random-forest), or none.")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for models/, runs/, runs.csv, comparison.csv, comparison.html.")
@_training_options
@click.option("--quiet", "-q", is_flag=True, help="No progress or summary; errors only.")
@handle_errors
def compare(
    train: str, tests: tuple[str, ...], losses: str, seeds: int, baseline_names: str,
    out: Path, config_path: Path | None, label_column: str | None, good_label: str | None,
    ignore: tuple[str, ...], epochs: int | None, overrides: tuple[str, ...], quiet: bool,
) -> None:
    """Train one model per loss and seed on TRAIN, evaluate each on --test, beside baselines.

    Everything but the loss and the seed is equal between runs. Writes comparison.csv
    (mean and standard deviation over seeds per metric, and fit time), runs.csv and
    comparison.html (the table, each loss's embedding map, and the embedding over the
    training epochs).
    """
    from trafficsiam.measure.compare import compare as run_compare

    setup_logging(quiet)
    cfg = _fit_config(config_path, label_column, good_label, ignore, None, epochs, None, None,
                      overrides)
    result = run_compare(train, list(tests), out, cfg, losses=_names(losses), seeds=seeds,
                         baseline_names=_names(baseline_names), quiet=quiet)
    if not quiet:
        click.echo(_compare_summary(result))


def _compare_summary(result: Any) -> str:
    t = result.table
    cols = ["novel_auroc", "novel_recall_at_5pct_fpr", "novel_called_good", "known_accuracy",
            "good_false_alarm", "fit_seconds"]
    width = max(len(str(m)) for m in t["method"])
    lines = [f"  {'method':<{width}}  " + "  ".join(f"{c[:24]:>24}" for c in cols)]
    for row in t.to_dict(orient="records"):
        cells = []
        for c in cols:
            mean, std = row[f"{c}_mean"], row[f"{c}_std"]
            cells.append(f"{'n/a':>24}" if mean != mean else f"{mean:>15.3f} +- {std:<5.3f}")
        lines.append(f"  {row['method']:<{width}}  " + "  ".join(cells))
    lines.append(f"outputs in {result.out}: comparison.csv, runs.csv, comparison.html")
    return "\n".join(lines)


@main.command()
@click.argument("data", nargs=-1, required=True)
@click.option("--unseen", required=True, metavar="A,B",
              help="Comma-separated scenarios left out of training: all their records are "
                   "test records, never seen by the model.")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for split/, models/, runs/, runs.csv, comparison.csv, "
                   "comparison.html, backtest.json and backtest.csv (created if missing).")
@click.option("--split", "split_kind", type=click.Choice(["random", "time"]), default="random",
              show_default=True,
              help="random: a seeded share of each known scenario to test; time: the "
                   "latest share of each (for data whose neighbouring rows are related).")
@click.option("--test-share", type=float, default=0.3, show_default=True,
              help="Share of each known scenario's records that goes to test.")
@click.option("--time-column", metavar="COL",
              help="--split time: order records by COL (datetime, number or ISO text) "
                   "[row order].")
@click.option("--seeds", type=int, default=1, show_default=True,
              help="Models per run: train.seed, train.seed + 1, ... (the split stays).")
@_training_options
@click.option("--loss", help="Loss name [lossless-triplet].")
@click.option("--seed", type=int, help="train.seed: the split's and the first model's seed.")
@click.option("--quiet", "-q", is_flag=True, help="No progress or summary; errors only.")
@handle_errors
def backtest(
    data: tuple[str, ...], unseen: str, out: Path, split_kind: str, test_share: float,
    time_column: str | None, seeds: int, config_path: Path | None, label_column: str | None,
    good_label: str | None, ignore: tuple[str, ...], epochs: int | None,
    overrides: tuple[str, ...], loss: str | None, seed: int | None, quiet: bool,
) -> None:
    """How would a model do on failures it never saw, on your labelled DATA?

    Leaves the --unseen scenarios out of training, splits the others into train and
    test, fits the model and the isolation-forest, knn and random-forest baselines on
    the training part and measures all of them on the test part: how many unseen
    failures each calls good at the model's false alarm rate on good traffic.
    """
    from trafficsiam.measure.backtest import backtest as run_backtest

    setup_logging(quiet)
    cfg = _fit_config(config_path, label_column, good_label, ignore, loss, epochs, None, seed,
                      overrides)
    result = run_backtest(list(data), out, cfg, unseen=unseen, split=split_kind,
                          test_share=test_share, time_column=time_column, seeds=seeds,
                          quiet=quiet)
    if not quiet:
        click.echo(_backtest_summary(result))


def _backtest_summary(result: Any) -> str:
    split = result.split
    rows = split["rows"]
    unseen = sum(split["scenarios"][s]["test"] for s in split["unseen"])
    lines = [f"{split['kind']} split: train {rows['train']}, test {rows['test']} records "
             f"({unseen} of unseen {', '.join(split['unseen'])})"]
    t = result.table
    cols = ["good_false_alarm", "novel_called_good", "known_accuracy", "novel_auroc",
            "novel_called_good_at_model_false_alarm"]
    heads = ["good_false_alarm", "novel_called_good", "known_accuracy", "novel_auroc",
             "called_good_at_model_fa"]
    width = max(len("method"), *(len(str(m)) for m in t["method"]))
    lines.append(f"  {'method':<{width}}  " + "  ".join(f"{h:>23}" for h in heads))
    for method in dict.fromkeys(t["method"]):
        part = t[t["method"] == method]
        cells = []
        for c in cols:
            values = part[c].astype(float)
            mean = values.mean()
            if mean != mean:
                cells.append(f"{'n/a':>23}")
            elif values.notna().sum() > 1:  # several seeds: mean +- standard deviation
                cells.append(f"{mean:>14.3f} +- {values.std(ddof=1):<5.3f}")
            else:
                cells.append(f"{mean:>23.3f}")
        lines.append(f"  {method:<{width}}  " + "  ".join(cells))
    for entry in result.seeds:
        ok = entry["on_or_above_best_baseline"]
        best = entry["best_baseline"]
        if best is not None and ok is not None:
            lines.append(
                f"seed {entry['seed']}: the model calls {entry['model']['novel_called_good']:.3f} "
                f"of unseen failures good at {entry['model']['good_false_alarm']:.3f} false "
                f"alarms; the best baseline, {best}, calls "
                f"{entry['best_baseline_novel_called_good']:.3f} good at that false alarm "
                f"rate: the model is {'on or above' if ok else 'under'} {best}'s curve")
    if len(result.seeds) == 1:
        # one fit's point is one draw: on drifted traffic it moves with the training seed
        # (BENCHMARKS.md §6, six seeds on NSL-KDD)
        lines.append("one model: a refit with another training seed moves its point; "
                     "--seeds 3 shows how far")
    lines.append(f"outputs in {result.out}: split/, backtest.json, backtest.csv, "
                 "comparison.csv, runs.csv")
    lines.append(f"report: {result.out / 'comparison.html'}")
    return "\n".join(lines)


def _derived_options(func: F) -> F:
    """The options of the commands that derive a model from a fitted one."""
    for option in reversed((
        click.option("--out", "-o", required=True, type=click.Path(path_type=Path),
                     help="Model folder to write (must not exist unless --force)."),
        click.option("--seed", type=int, default=0, show_default=True,
                     help="Random seed of the split into reference and calibration records."),
        click.option("--force", is_flag=True, help="Replace the --out folder if it exists."),
        click.option("--quiet", "-q", is_flag=True, help="No summary; errors only."),
    )):
        func = option(func)
    return func


@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("good", nargs=-1, required=True)
@_derived_options
@handle_errors
def calibrate(model: Path, good: tuple[str, ...], out: Path, seed: int, force: bool,
              quiet: bool) -> None:
    """A new model that knows GOOD (records known to be good traffic at a new site or
    month) and is calibrated on it, keeping MODEL's network.

    Half of GOOD joins the reference records as good traffic (and the good-traffic
    prototypes), half replaces the held-out good records the decision is calibrated on:
    score.false_alarm_rate then holds on that traffic. Records whose label column names
    another scenario are left out, with a count. MODEL is not changed.
    """
    from trafficsiam.derive import recalibrate

    setup_logging(quiet)
    result = recalibrate(model, list(good), out, force=force, seed=seed)
    if not quiet:
        click.echo(result.summary())


@main.command()
@click.argument("folder", metavar="OUT", type=click.Path(file_okay=False, path_type=Path))
@click.argument("candidate")
@click.option("--as", "name", required=True, metavar="NAME",
              help="The scenario the candidate's records are (new, or a known one).")
@click.option("--run", "run_id", metavar="RUN_ID",
              help="An earlier run kept under OUT/runs/ [the latest run in OUT].")
@click.option("--model", type=click.Path(path_type=Path),
              help="The model that scored the run [the one its summary.json names].")
@_derived_options
@handle_errors
def promote(folder: Path, candidate: str, name: str, run_id: str | None, model: Path | None,
            out: Path, seed: int, force: bool, quiet: bool) -> None:
    """A new model in which CANDIDATE (new-1, ...) of a scoring run into OUT (the latest,
    or --run's) is the scenario NAME: its records become labelled examples (reference
    and calibration records, input prototypes), so that scoring the next batch with the
    new model calls that failure known_error NAME. The model that scored it is not
    changed.
    """
    from trafficsiam.derive import promote as run_promote
    from trafficsiam.derive import run_model

    setup_logging(quiet)
    result = run_promote(model if model is not None else run_model(folder, run_id), folder,
                         candidate, name, out, force=force, seed=seed, run_id=run_id)
    if not quiet:
        click.echo(result.summary())


@main.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="HTML file to write [a model: FOLDER.report.html beside it; "
                   "a scoring run: FOLDER/report.html].")
@click.option("--model", type=click.Path(file_okay=False, path_type=Path),
              help="Scoring run: the model folder, if not where summary.json says.")
@click.option("--state", type=click.Path(dir_okay=False, path_type=Path),
              help="Scoring run: the state store for the trend [FOLDER/trafficsiam-state.db].")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
@handle_errors
def report(folder: Path, out: Path | None, model: Path | None, state: Path | None,
           quiet: bool) -> None:
    """Write the HTML report of FOLDER: a model folder (from fit) or a scoring output
    folder (from score), told apart by their manifest.json or summary.json."""
    from trafficsiam.report import report as write_report

    setup_logging(quiet)
    path = write_report(folder, out, model=model, state=state)
    if not quiet:
        click.echo(f"report: {path}")


if __name__ == "__main__":  # pragma: no cover
    main()
