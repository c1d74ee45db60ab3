"""Sample traffic: realistic, labelled flow records for demos and tests.

Each row is one network flow (one connection or one request/response exchange) as a flow
collector such as Zeek or an IPFIX exporter would log it, with a ``scenario`` label saying
which kind of traffic produced it.

Known scenarios (always present):

``good``
    Healthy traffic, a mix of sub-modes with distinct profiles: web (http/https over tcp,
    some https over udp as QUIC; moderate, heavy-tailed byte counts, state SF), streaming
    (``streaming``/``rtsp``; long flows, huge ``bytes_in``, duration growing with bytes),
    DNS (udp, one tiny query and answer, a few ms), ssh (long interactive sessions, many small
    packets), smtp (uploads, ``bytes_out`` > ``bytes_in``), ntp (udp, one 90-byte packet each
    way) and ping (icmp echo). Low latency, jitter a small fraction of latency, error rates
    well under 1 %.
``error_type_1``
    Congestion / a degraded path: the same services as ``good`` but latency about eight times
    higher, jitter a larger share of latency, retransmissions and an error rate of about 10 %,
    lower throughput (so longer flows), and some flows torn down by resets (RSTO/RSTR).
``error_type_2``
    Failed handshakes / refused connections: tcp only, states S0 (no answer), REJ (refused),
    RSTO/RSTR/SH (reset or half-open); one to a few packets of 40-60 bytes, very short
    (or timing-out) flows, SYN retransmissions and an error rate of 50-100 %.

Novel scenarios (only with ``novel=True``; they stand for failures a model never saw):

``error_type_3``
    DNS / NTP amplification (reflection): udp ``dns`` or ``ntp`` flows where one small
    request draws tens to hundreds of large (fragmented) answer packets, so ``bytes_in`` is
    hundreds of times ``bytes_out``. Latency and error rate look healthy; only the byte and
    packet shape gives it away.
``error_type_4``
    Route flap / packet-loss burst: web, streaming, ssh and dns flows whose path keeps
    changing, so jitter exceeds latency, a third of packets are lost (few packets come back,
    many retransmissions), and tcp flows often end in RSTO/SH/OTH.

About 4.5 % of the records of every error scenario are drawn close to the good profile
(good services and sizes with only slightly raised latency and error rate), so no classifier
separates the scenarios perfectly. About 2 % of ``latency_ms`` and ``jitter_ms`` and 1 % of
``retransmissions`` are missing (NaN), as when a probe drops its timing sample.

Shares: good 70 %, error_type_1 15 %, error_type_2 15 %; with ``novel=True`` 9 % of the rows
are novel (error_type_3 5 %, error_type_4 4 %), taken proportionally from the other three.
Every scenario gets at least two rows, whatever ``rows`` is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from trafficsiam import write as writing
from trafficsiam.errors import InputError

SCENARIOS: tuple[str, ...] = ("good", "error_type_1", "error_type_2")
NOVEL_SCENARIOS: tuple[str, ...] = ("error_type_3", "error_type_4")

NUMERIC_COLUMNS: tuple[str, ...] = (
    "duration_ms",
    "bytes_in",
    "bytes_out",
    "packets_in",
    "packets_out",
    "latency_ms",
    "jitter_ms",
    "retransmissions",
    "error_rate",
)
CATEGORICAL_COLUMNS: tuple[str, ...] = ("protocol", "service", "tcp_state")
COLUMNS: tuple[str, ...] = ("id", "timestamp", "scenario") + NUMERIC_COLUMNS + CATEGORICAL_COLUMNS

MIN_ROWS = 10
MIN_PER_SCENARIO = 2
START = pd.Timestamp("2026-11-01", tz="UTC")
DAY_NS = 86_400 * 10**9

_SHARES: dict[str, float] = {"good": 0.70, "error_type_1": 0.15, "error_type_2": 0.15}
_NOVEL_SHARES: dict[str, float] = {"error_type_3": 0.05, "error_type_4": 0.04}
_NEAR_GOOD_SHARE = 0.045  # of each error scenario's rows, drawn close to the good profile
_MISSING_LATENCY = 0.02  # latency_ms and jitter_ms missing together
_MISSING_JITTER_ONLY = 0.003
_MISSING_RETRANSMISSIONS = 0.01

# Protocols each service runs over, with their shares (https over udp is QUIC).
_SERVICE_PROTOCOLS: dict[str, dict[str, float]] = {
    "https": {"tcp": 0.9, "udp": 0.1},
    "http": {"tcp": 1.0},
    "streaming": {"tcp": 0.7, "udp": 0.3},
    "rtsp": {"tcp": 0.6, "udp": 0.4},
    "dns": {"udp": 0.95, "tcp": 0.05},
    "ssh": {"tcp": 1.0},
    "smtp": {"tcp": 1.0},
    "ntp": {"udp": 1.0},
    "ping": {"icmp": 1.0},
}
_NO_TCP_STATE = "none"  # tcp_state of udp and icmp flows

_HEALTHY_TCP_STATES: dict[str, float] = {"SF": 0.93, "RSTR": 0.04, "OTH": 0.03}

LogNormal = tuple[float, float]  # (median, sigma of the log)
Mix = tuple[tuple["Mode", float], ...]  # modes and their weights


@dataclass(frozen=True)
class Mode:
    """One traffic profile: how to draw the features of a flow of this kind.

    Sizes and times are lognormal ``(median, sigma)``. Packets and bytes are linked
    (bytes = packets x per-packet size), jitter is a multiple of latency, duration is
    think time + round trips + transfer time of all the bytes, and retransmissions are a
    Poisson count of ``packets_out x error_rate x retrans_factor``.
    """

    services: Mapping[str, float]
    packets_out: LogNormal
    packets_in_ratio: LogNormal  # packets_in / packets_out
    size_out: LogNormal  # bytes per outgoing packet
    size_in: LogNormal  # bytes per incoming packet
    rate_kbps: LogNormal  # throughput; transfer ms = bits / kbps
    think_ms: LogNormal  # time not spent moving bytes (user, server, timeouts)
    latency_ms: LogNormal
    jitter_ratio: LogNormal  # jitter_ms / latency_ms
    error_beta: tuple[float, float]  # error_rate ~ Beta(a, b)
    tcp_states: Mapping[str, float] = field(default_factory=lambda: dict(_HEALTHY_TCP_STATES))
    pareto_alpha: float | None = None  # heavy-tail multiplier on packets_out
    rtts: float = 1.0  # round trips in connection set-up
    retrans_factor: float = 1.0
    min_packets_in: int = 1
    protocol: str | None = None  # force one protocol instead of the service's usual ones


# --- variations on a mode ------------------------------------------------------------------


def _scale(value: LogNormal, factor: float, sigma: float | None = None) -> LogNormal:
    """A lognormal with its median times ``factor`` (and optionally a new sigma)."""
    return (value[0] * factor, value[1] if sigma is None else sigma)


def _congested(mode: Mode) -> Mode:
    """error_type_1: the same flow on a congested, degraded path."""
    return replace(
        mode,
        latency_ms=_scale(mode.latency_ms, 8.0, 0.7),
        jitter_ratio=(0.4, 0.5),
        error_beta=(2.5, 25.0),
        rate_kbps=_scale(mode.rate_kbps, 1 / 6),
        retrans_factor=1.5,
        tcp_states={"SF": 0.75, "RSTO": 0.10, "RSTR": 0.05, "OTH": 0.05, "SH": 0.05},
    )


def _flapping(mode: Mode) -> Mode:
    """error_type_4: the same flow on a path that keeps changing and drops packets."""
    return replace(
        mode,
        latency_ms=_scale(mode.latency_ms, 3.0, 0.9),
        jitter_ratio=(1.6, 0.5),
        error_beta=(4.0, 8.0),
        packets_in_ratio=_scale(mode.packets_in_ratio, 0.6, 0.5),
        rate_kbps=_scale(mode.rate_kbps, 1 / 4),
        think_ms=_scale(mode.think_ms, 3.0),
        retrans_factor=2.0,
        min_packets_in=0,
        tcp_states={"SF": 0.35, "RSTO": 0.25, "SH": 0.15, "OTH": 0.15, "RSTR": 0.10},
    )


def _near_good(mode: Mode) -> Mode:
    """An error record that looks almost good: slightly raised latency and error rate."""
    return replace(
        mode,
        latency_ms=_scale(mode.latency_ms, 1.6),
        jitter_ratio=_scale(mode.jitter_ratio, 1.3),
        error_beta=(1.0, 120.0),
    )


# --- the good sub-modes -------------------------------------------------------------------
# fmt: off

_WEB = Mode(
    services={"https": 0.77, "http": 0.23},
    packets_out=(10, 0.9), packets_in_ratio=(1.6, 0.4), pareto_alpha=2.0,
    size_out=(120, 0.5), size_in=(900, 0.4), rate_kbps=(8000, 0.8), think_ms=(150, 1.2),
    latency_ms=(25, 0.6), jitter_ratio=(0.12, 0.5), error_beta=(1.0, 500.0), rtts=3,
)
_STREAMING = Mode(
    services={"streaming": 0.7, "rtsp": 0.3},
    packets_out=(4000, 1.0), packets_in_ratio=(2.2, 0.2), pareto_alpha=2.5,
    size_out=(60, 0.15), size_in=(1350, 0.08), rate_kbps=(4000, 0.5), think_ms=(500, 1.0),
    latency_ms=(30, 0.5), jitter_ratio=(0.1, 0.5), error_beta=(1.0, 800.0), rtts=3,
)
_DNS = Mode(
    services={"dns": 1.0},
    packets_out=(1, 0.2), packets_in_ratio=(1.0, 0.1),
    size_out=(70, 0.2), size_in=(160, 0.5), rate_kbps=(10000, 0.5), think_ms=(2, 0.8),
    latency_ms=(15, 0.6), jitter_ratio=(0.1, 0.5), error_beta=(1.0, 300.0),
)
_SSH = Mode(
    services={"ssh": 1.0},
    packets_out=(300, 1.4), packets_in_ratio=(1.1, 0.3),
    size_out=(100, 0.4), size_in=(150, 0.5), rate_kbps=(2000, 0.7), think_ms=(60000, 1.5),
    latency_ms=(30, 0.6), jitter_ratio=(0.12, 0.5), error_beta=(1.0, 600.0), rtts=4,
)
_SMTP = Mode(
    services={"smtp": 1.0},
    packets_out=(30, 1.0), packets_in_ratio=(0.6, 0.3), pareto_alpha=1.8,
    size_out=(1000, 0.4), size_in=(80, 0.3), rate_kbps=(5000, 0.7), think_ms=(400, 1.0),
    latency_ms=(35, 0.6), jitter_ratio=(0.12, 0.5), error_beta=(1.0, 400.0), rtts=6,
)
_NTP = Mode(
    services={"ntp": 1.0},
    packets_out=(1, 0.1), packets_in_ratio=(1.0, 0.05),
    size_out=(90, 0.02), size_in=(90, 0.02), rate_kbps=(10000, 0.5), think_ms=(1, 0.5),
    latency_ms=(20, 0.6), jitter_ratio=(0.1, 0.5), error_beta=(1.0, 500.0),
)
_PING = Mode(
    services={"ping": 1.0},
    packets_out=(4, 0.5), packets_in_ratio=(1.0, 0.05),
    size_out=(84, 0.1), size_in=(84, 0.1), rate_kbps=(10000, 0.5), think_ms=(3000, 0.3),
    latency_ms=(20, 0.6), jitter_ratio=(0.15, 0.5), error_beta=(1.0, 300.0),
)

_GOOD_MODES: Mix = (
    (_WEB, 0.52), (_STREAMING, 0.10), (_DNS, 0.20), (_SSH, 0.06), (_SMTP, 0.06), (_NTP, 0.04),
    (_PING, 0.02),
)


# --- the error modes ----------------------------------------------------------------------

_FAILED_HANDSHAKE = Mode(
    services={"https": 0.45, "http": 0.2, "ssh": 0.2, "smtp": 0.15},
    protocol="tcp",
    packets_out=(2, 0.4), packets_in_ratio=(0.5, 0.8), min_packets_in=0,
    size_out=(52, 0.1), size_in=(44, 0.1), rate_kbps=(1000, 0.5), think_ms=(300, 1.6),
    latency_ms=(40, 0.8), jitter_ratio=(0.2, 0.5), error_beta=(6.0, 2.0), retrans_factor=0.6,
    tcp_states={"S0": 0.40, "REJ": 0.35, "RSTO": 0.12, "RSTR": 0.08, "SH": 0.05},
)
_DNS_AMPLIFICATION = Mode(
    services={"dns": 1.0}, protocol="udp",
    packets_out=(1, 0.2), packets_in_ratio=(30, 0.6),
    size_out=(64, 0.1), size_in=(1400, 0.1), rate_kbps=(50000, 0.5), think_ms=(20, 0.8),
    latency_ms=(20, 0.6), jitter_ratio=(0.15, 0.5), error_beta=(1.0, 100.0),
)
_NTP_AMPLIFICATION = Mode(
    services={"ntp": 1.0}, protocol="udp",
    packets_out=(1, 0.2), packets_in_ratio=(100, 0.5),
    size_out=(90, 0.05), size_in=(468, 0.05), rate_kbps=(50000, 0.5), think_ms=(20, 0.8),
    latency_ms=(20, 0.6), jitter_ratio=(0.15, 0.5), error_beta=(1.0, 100.0),
)

_SCENARIO_MODES: dict[str, Mix] = {
    "good": _GOOD_MODES,
    "error_type_1": (
        (_congested(_WEB), 0.55), (_congested(_STREAMING), 0.20), (_congested(_SSH), 0.08),
        (_congested(_SMTP), 0.07), (_congested(_DNS), 0.10),
    ),
    "error_type_2": ((_FAILED_HANDSHAKE, 1.0),),
    "error_type_3": ((_DNS_AMPLIFICATION, 0.75), (_NTP_AMPLIFICATION, 0.25)),
    "error_type_4": (
        (_flapping(_WEB), 0.60), (_flapping(_STREAMING), 0.20), (_flapping(_SSH), 0.10),
        (_flapping(_DNS), 0.10),
    ),
}
# fmt: on
_NEAR_GOOD_MODES: Mix = tuple((_near_good(mode), weight) for mode, weight in _GOOD_MODES)


# --- drawing ------------------------------------------------------------------------------


def _lognormal(rng: np.random.Generator, value: LogNormal, n: int) -> np.ndarray:
    return rng.lognormal(np.log(value[0]), value[1], n)


def _pick(rng: np.random.Generator, weights: Mapping[str, float], n: int) -> np.ndarray:
    names = np.array(list(weights), dtype=str)
    p = np.array(list(weights.values()), dtype=float)
    return rng.choice(names, size=n, p=p / p.sum())


def _protocols(rng: np.random.Generator, services: np.ndarray, forced: str | None) -> np.ndarray:
    if forced is not None:
        return np.full(len(services), forced, dtype="<U4")
    protocols = np.empty(len(services), dtype="<U4")
    for service in np.unique(services):
        rows = services == service
        protocols[rows] = _pick(rng, _SERVICE_PROTOCOLS[str(service)], int(rows.sum()))
    return protocols


def _draw(rng: np.random.Generator, mode: Mode, n: int) -> dict[str, np.ndarray]:
    """Draw ``n`` flows of one mode; every feature column, no label, no missing values."""
    service = _pick(rng, mode.services, n)
    protocol = _protocols(rng, service, mode.protocol)
    is_tcp = protocol == "tcp"
    tcp_state = np.where(is_tcp, _pick(rng, mode.tcp_states, n), _NO_TCP_STATE)
    unanswered = tcp_state == "S0"  # a SYN that nobody answered

    packets = _lognormal(rng, mode.packets_out, n)
    if mode.pareto_alpha is not None:
        packets *= 1.0 + rng.pareto(mode.pareto_alpha, n)
    packets_out = np.maximum(1, np.rint(packets)).astype(np.int64)
    ratio = _lognormal(rng, mode.packets_in_ratio, n)
    packets_in = np.maximum(mode.min_packets_in, np.rint(packets_out * ratio)).astype(np.int64)
    packets_in[unanswered] = 0
    size_out = np.clip(_lognormal(rng, mode.size_out, n), 28, 1500)
    size_in = np.clip(_lognormal(rng, mode.size_in, n), 28, 1500)
    bytes_out = np.rint(packets_out * size_out).astype(np.int64)
    bytes_in = np.rint(packets_in * size_in).astype(np.int64)

    latency = _lognormal(rng, mode.latency_ms, n)
    jitter = latency * _lognormal(rng, mode.jitter_ratio, n)
    transfer_ms = (bytes_in + bytes_out) * 8.0 / _lognormal(rng, mode.rate_kbps, n)
    duration = _lognormal(rng, mode.think_ms, n) + mode.rtts * latency + transfer_ms

    error_rate = rng.beta(*mode.error_beta, n)
    lam = np.where(is_tcp, packets_out * error_rate * mode.retrans_factor, 0.0)
    retransmissions = rng.poisson(lam).astype(np.float64)

    return {
        "duration_ms": duration,
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "packets_in": packets_in,
        "packets_out": packets_out,
        "latency_ms": latency,
        "jitter_ms": jitter,
        "retransmissions": retransmissions,
        "error_rate": np.clip(error_rate, 0.0, 1.0),
        "protocol": protocol,
        "service": service,
        "tcp_state": tcp_state,
    }


def _draw_mix(rng: np.random.Generator, mix: Mix, n: int) -> list[dict[str, np.ndarray]]:
    """Split ``n`` rows over the modes of ``mix`` by weight and draw each part."""
    weights = np.array([weight for _, weight in mix], dtype=float)
    counts = rng.multinomial(n, weights / weights.sum())
    return [_draw(rng, mode, int(k)) for (mode, _), k in zip(mix, counts, strict=True) if k > 0]


def _scenario_counts(rows: int, novel: bool) -> dict[str, int]:
    """Rows per scenario: the target shares, at least MIN_PER_SCENARIO each, summing to rows."""
    shares = dict(_SHARES)
    if novel:
        known = 1.0 - sum(_NOVEL_SHARES.values())
        shares = {name: share * known for name, share in shares.items()} | _NOVEL_SHARES
    counts = {name: max(MIN_PER_SCENARIO, int(rows * share)) for name, share in shares.items()}
    # Hand out (or take back) the difference, largest scenario first.
    order = sorted(shares, key=lambda name: -shares[name])
    i = 0
    while (diff := rows - sum(counts.values())) != 0:
        name = order[i % len(order)]
        if diff > 0:
            counts[name] += 1
        elif counts[name] > MIN_PER_SCENARIO:
            counts[name] -= 1
        i += 1
    return counts


def _timestamps(rng: np.random.Generator, rows: int) -> pd.Series:
    """Flow start times over one day from START: Poisson arrivals in row order, with a little
    export jitter so the order is increasing only on the whole, as collectors log them."""
    spacing = DAY_NS / rows
    arrivals = np.cumsum(rng.exponential(1.0, rows))
    offsets = arrivals / arrivals[-1] * (DAY_NS - spacing)
    offsets = np.abs(offsets + rng.normal(0.0, min(0.5 * spacing, 5e9), rows))
    offsets = np.minimum(offsets, DAY_NS - 1).astype(np.int64)
    stamps = (START.value + offsets).astype("datetime64[ns]")
    return pd.Series(stamps).dt.tz_localize("UTC")


def _check(rows: object, seed: object) -> None:
    for name, value, low, example in (("rows", rows, MIN_ROWS, 20_000), ("seed", seed, 0, 0)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise InputError(
                f"synth: --{name} must be a whole number, got {value!r}; pass --{name} {example}"
            )
        if value < low:
            what = f"at least {low}" if name == "rows" else "0 or more"
            raise InputError(
                f"synth: --{name} must be {what}, got {value}; pass --{name} {low} or more"
            )


def generate(rows: int = 20_000, seed: int = 0, novel: bool = False) -> pd.DataFrame:
    """Labelled flow records: exactly ``rows`` rows, shuffled, the same for the same arguments.

    With ``novel=True`` about 9 % of the rows belong to NOVEL_SCENARIOS; otherwise only
    SCENARIOS appear. Raises InputError when ``rows < 10`` or ``seed < 0``.
    """
    _check(rows, seed)
    rows, seed = int(rows), int(seed)
    rng = np.random.default_rng(seed)

    parts: list[dict[str, np.ndarray]] = []
    labels: list[np.ndarray] = []
    for scenario, n in _scenario_counts(rows, novel).items():
        n_near = 0
        if scenario != "good":
            n_near = min(int(rng.binomial(n, _NEAR_GOOD_SHARE)), n - MIN_PER_SCENARIO)
        drawn = _draw_mix(rng, _SCENARIO_MODES[scenario], n - n_near)
        drawn += _draw_mix(rng, _NEAR_GOOD_MODES, n_near)
        parts += drawn
        labels += [np.full(len(part["protocol"]), scenario) for part in drawn]

    order = rng.permutation(rows)
    data: dict[str, object] = {
        "id": pd.Series([f"f{i:07d}" for i in range(1, rows + 1)], dtype=str),
        "timestamp": _timestamps(rng, rows),
        "scenario": _strings(np.concatenate(labels)[order]),
    }
    for column in NUMERIC_COLUMNS:
        data[column] = np.concatenate([part[column] for part in parts])[order]
    for column in CATEGORICAL_COLUMNS:
        data[column] = _strings(np.concatenate([part[column] for part in parts])[order])
    frame = pd.DataFrame(data)
    _add_missing(rng, frame)
    return frame


def _strings(values: np.ndarray) -> pd.Series:
    """A plain string column (going through object is several times faster than from <U)."""
    return pd.Series(values.astype(object), dtype=str)


def _add_missing(rng: np.random.Generator, frame: pd.DataFrame) -> None:
    """Blank a few timing samples and retransmission counts, as dropped probe samples do."""
    n = len(frame)
    no_latency = rng.random(n) < _MISSING_LATENCY
    no_jitter = no_latency | (rng.random(n) < _MISSING_JITTER_ONLY)
    frame.loc[no_latency, "latency_ms"] = np.nan
    frame.loc[no_jitter, "jitter_ms"] = np.nan
    frame.loc[rng.random(n) < _MISSING_RETRANSMISSIONS, "retransmissions"] = np.nan


def write(path: str | Path, rows: int = 20_000, seed: int = 0, novel: bool = False) -> pd.DataFrame:
    """Generate and write parquet (or CSV if the suffix is .csv) atomically; return the frame.

    The file is written under a temporary name in the same folder and then moved into place
    (`trafficsiam.write`), so a reader never sees half a file. Missing folders are created.
    """
    frame = generate(rows=rows, seed=seed, novel=novel)
    target = Path(path)
    writing.folder(target.parent)
    if target.suffix.lower() == ".csv":
        writing.csv(target, frame)
    else:
        writing.atomic(target, lambda tmp: frame.to_parquet(tmp, index=False))
    return frame
