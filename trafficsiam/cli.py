"""The command line: a thin click layer over `trafficsiam.api`.

Each command parses its options, calls one library function and prints a short
summary. A `TrafficSiamError` becomes one line on stderr and its exit code
(2 for bad input, configuration or model folders); anything unexpected exits 1
with one line too, unless --debug asks for the traceback.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from trafficsiam import __version__
from trafficsiam.errors import TrafficSiamError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        return f"warning: {msg}" if record.levelno >= logging.WARNING else msg


def _setup_logging(quiet: bool) -> None:
    logger = logging.getLogger("trafficsiam")
    logger.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


def _handle_errors(func: F) -> F:
    """Turn domain errors into one line and an exit code; no traceback unless --debug."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        debug = bool(ctx.find_root().params.get("debug"))
        try:
            return func(*args, **kwargs)
        except TrafficSiamError as err:
            if debug:
                raise
            click.echo(f"error: {err}", err=True)
            ctx.exit(err.exit_code)
        except KeyboardInterrupt:
            click.echo("error: interrupted; nothing was written", err=True)
            ctx.exit(130)
        except MemoryError:
            click.echo("error: out of memory; lower cluster.max_points or the input size", err=True)
            ctx.exit(EXIT_FAILURE)
        except Exception as err:  # noqa: BLE001 - the last line of defence for users
            if debug:
                raise
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            click.echo(
                f"error: unexpected {type(err).__name__}: {first} "
                "(rerun with --debug for the traceback and report it)",
                err=True,
            )
            ctx.exit(EXIT_FAILURE)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="trafficsiam")
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
def main(debug: bool) -> None:
    """trafficsiam: tell good traffic from known failures and spot new kinds of failure.

    fit learns an embedding of labelled traffic records with a Siamese network and
    the lossless triplet loss, then names HDBSCAN clusters after their scenarios.
    """


@main.command()
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--rows", default=20_000, show_default=True, help="Number of records.")
@click.option("--seed", default=0, show_default=True, help="Random seed (same seed, same data).")
@click.option("--novel", is_flag=True, help="Add error types never produced otherwise.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
@_handle_errors
def synth(out: Path, rows: int, seed: int, novel: bool, quiet: bool) -> None:
    """Write sample flow records (good traffic, error types) to OUT (.parquet or .csv)."""
    from trafficsiam import synth as synth_mod

    frame = synth_mod.write(out, rows=rows, seed=seed, novel=novel)
    if not quiet:
        counts = frame["scenario"].value_counts().sort_index()
        mix = ", ".join(f"{k} {v}" for k, v in counts.items())
        click.echo(f"wrote {len(frame)} records to {out} ({mix})")


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path),
              help="Model folder to write (must not exist unless --force).")
@click.option("--config", "config_path", type=click.Path(path_type=Path),
              help="YAML config file (see configs/default.yaml).")
@click.option("--label-column", help="Column naming each record's scenario [scenario].")
@click.option("--good-label", help="Scenario name of good traffic [good].")
@click.option("--ignore", multiple=True, metavar="COL",
              help="Column to keep out of the features (repeatable).")
@click.option("--loss", help="Loss name [lossless-triplet].")
@click.option("--epochs", type=int, help="Maximum training epochs.")
@click.option("--embedding-dim", type=int, help="Embedding dimension N.")
@click.option("--seed", type=int, help="Random seed.")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override any config key, e.g. --set cluster.min_cluster_size=50.")
@click.option("--force", is_flag=True, help="Replace the --out folder if it exists.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or summary; errors only.")
@_handle_errors
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
    quiet: bool,
) -> None:
    """Fit a model on labelled records in INPUTS (parquet file, folder, glob or CSV)."""
    from trafficsiam import api
    from trafficsiam.config import load_config, parse_override

    _setup_logging(quiet)
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
    cfg = load_config(config_path, over)

    result = api.fit(list(inputs), out, cfg, force=force, quiet=quiet)
    if not quiet:
        click.echo(_fit_summary(result))


def _fit_summary(result: Any) -> str:
    m = result.manifest
    tr, cl, data = m["training"], m["clusters"], m["data"]
    best = tr["history"][tr["best_epoch"] - 1] if tr["best_epoch"] else tr["history"][-1]
    n_features = len(m["schema"]["numeric"]) + len(m["schema"]["categorical"])
    lines = [
        f"read {data['rows']} records, {len(m['scenarios'])} scenarios, "
        f"{n_features} feature columns -> {m['model']['in_features']} inputs",
        f"trained {tr['epochs_run']} epochs (best {tr['best_epoch']}"
        f"{', stopped early' if tr['stopped_early'] else ''}) in {tr['seconds']:.1f} s on "
        f"{tr['device']}: val loss {best['val_loss']:.4f}, "
        f"val triplet accuracy {best['val_triplet_accuracy']:.3f}",
        f"clustered {cl['points']} records: {len(result.clusters) - 1} clusters, "
        f"weighted purity {cl['weighted_purity']:.3f}, noise {cl['noise_share']:.1%}, "
        f"{cl['explained_share']:.1%} in a cluster of their own scenario "
        f"(epsilon {cl['params']['cluster_selection_epsilon']:g})",
    ]
    table = result.clusters
    width = max(len(str(n)) for n in table["name"])
    lines.append(f"  {'cluster':>7}  {'name':<{width}}  {'size':>6}  {'purity':>6}")
    for row in table.itertuples():
        lines.append(
            f"  {row.cluster:>7}  {row.name:<{width}}  {row.size:>6}  {row.purity:>6.3f}"
        )
    cleaning = data["cleaning"]
    if cleaning["missing_imputed"]:
        parts = ", ".join(f"{k} {v}" for k, v in cleaning["missing_imputed"].items())
        lines.append(f"missing values imputed: {parts}")
    lines.append(f"model {m['model_id']} saved to {result.path}")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    main()
