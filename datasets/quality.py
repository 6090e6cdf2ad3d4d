"""What a dataset is worth: noise floor, drift, summary, and validation of a file."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from latkit.datasets.store import (BASELINE_PERCENTILE, KINDS, REF_COLUMNS, REFERENCE_BOUND_PCT, STAT_COLUMNS, STATUSES,
                                   Dataset, DatasetError, journal_path, load, protocol_name, rejected_path)
from latkit.space import GenotypeError, parse, sample


def noise_floor(ds: Dataset, stat: str = "median_ms", min_cpu_share: float | None = None,
                normalised: bool = True, unflagged: bool = False) -> dict[str, float]:
    """MAPE (%) between the first measurement of a sample and its independent re-measurement(s), of the normalised
    latency where the dataset is a duet (``normalised``; the pair MAPE of the ratios), else of the raw one.

    ``mape_pct`` is the pair MAPE, mean |a - b| / a over re-measured pairs: the error of comparing two measurements.
    ``single_mape_pct`` = pair MAPE / sqrt(2) is the noise of one measurement (the difference of two independent
    measurements has sqrt(2) times the spread of one, for independent errors): roughly the MAPE against this data
    of a predictor that knew each architecture's true latency.
    With ``min_cpu_share``, only pairs whose both timed loops got that share of a core count (undisturbed pairs).
    With ``unflagged`` (a duet dataset), only pairs whose both windows had the reference within the bound of its
    baseline (``Dataset.flagged``): how well the duet measures outside the host's slow states.
    """
    t = ds.table
    if unflagged and ds.duet:
        t = t.filter(pa.array(~ds.flagged(t, stat)))
    t = with_cpu_share(t, min_cpu_share)
    value = ds.latency_ms(t, stat, normalised).tolist()
    errors = [abs(value[b] - value[a]) / value[a] for a, b in repeat_pairs(t)]
    if not errors:
        return {"pairs": 0, "mape_pct": float("nan"), "single_mape_pct": float("nan"), "p90_ape_pct": float("nan")}
    e = 100 * np.asarray(errors)
    return {"pairs": len(errors), "mape_pct": float(e.mean()), "single_mape_pct": float(e.mean() / math.sqrt(2)),
            "p90_ape_pct": float(np.percentile(e, 90))}


def with_cpu_share(table: pa.Table, min_cpu_share: float | None) -> pa.Table:
    """The rows whose timed loop got at least ``min_cpu_share`` of a core (CPU time over wall time); every row
    where ``min_cpu_share`` is None (a protocol without the bound)."""
    if min_cpu_share is None:
        return table
    share = np.asarray(table.column("timing_cpu_ms").to_numpy(zero_copy_only=False), dtype=np.float64) / \
        np.asarray(table.column("timing_ms").to_numpy(zero_copy_only=False), dtype=np.float64)
    return table.filter(np.nan_to_num(share) >= min_cpu_share)


def repeat_pairs(table: pa.Table) -> list[tuple[int, int]]:
    """(row of an index's first successful sample, row of one of its successful repeats) for every such repeat."""
    kind, status, index = (table.column(c).to_pylist() for c in ("kind", "status", "index"))
    first: dict[int, int] = {}
    for n, (k, s, i) in enumerate(zip(kind, status, index)):
        if k == "sample" and s == "ok":
            first.setdefault(i, n)
    return [(first[i], n) for n, (k, s, i) in enumerate(zip(kind, status, index))
            if k == "repeat" and s == "ok" and i in first]


def drift(ds: Dataset, stat: str = "median_ms", normalised: bool = True) -> dict[str, float]:
    """The reference architecture's rows (DARTS_V2 timed as a sample, every K samples): spread over the campaign,
    relative to their median. Raw, it is the host's drift. Normalised (``normalised``, a duet dataset), DARTS_V2 is
    timed beside itself, so its ratio is 1 by construction: the spread is the duet's own noise over the campaign,
    not a drift (a fixed architecture's normalised drift shows in the noise floor, whose re-measured pairs are often
    hours apart)."""
    t = ds.table
    mask = [k == "reference" and s == "ok" for k, s in zip(t.column("kind").to_pylist(), t.column("status").to_pylist())]
    return _spread(ds.latency_ms(t, stat, normalised)[np.asarray(mask, dtype=bool)], "timings")


def _spread(values: np.ndarray, count: str) -> dict[str, float]:
    """Median, first, last, largest deviation from the median (%) and CV (%) of a series of latencies."""
    if values.size == 0:
        return {count: 0}
    mid = float(np.median(values))
    return {count: int(values.size), "median_ms": mid, "first_ms": float(values[0]), "last_ms": float(values[-1]),
            "max_dev_pct": float(100 * np.abs(values - mid).max() / mid),
            "cv_pct": float(100 * values.std() / values.mean())}


def reference_windows(ds: Dataset, stat: str = "min_ms") -> dict[str, Any]:
    """The reference's own drift in a duet dataset: its ``stat`` in every ok row's window, the baseline the
    normalised latencies are in, and the windows flagged as slower than the baseline by more than the bound."""
    t = ds.table
    ok = np.asarray(t.column("status").to_pylist()) == "ok"
    ref = np.asarray(t.column(f"ref_{stat}").to_pylist(), dtype=np.float64)
    keep = ok & np.isfinite(ref)
    out = _spread(ref[keep], "windows")
    if keep.any():
        frozen = ds.header["baseline"] if ds.frozen else {}
        out.update(baseline_ms=ds.baseline_ms(stat), baseline_percentile=BASELINE_PERCENTILE,
                   baseline_frozen_at=frozen.get("frozen_at"), baseline_windows=frozen.get("windows"),
                   bound_pct=REFERENCE_BOUND_PCT, flagged=int(ds.flagged(t.filter(pa.array(keep)), stat).sum()))
    return out


def summary(ds: Dataset, stat: str = "median_ms") -> dict[str, Any]:
    """Rows, failures, latency range (normalised in a duet dataset), noise floor and drift (normalised and raw),
    the reference's windows, runs, unreadable journal lines and fingerprint."""
    if stat not in STAT_COLUMNS:
        raise DatasetError(f"unknown statistic {stat!r} (known: {', '.join(STAT_COLUMNS)})")
    t = ds.table
    kinds = t.column("kind").to_pylist()
    ok = ds.samples(ok_only=True)
    lat = ds.latency_ms(ok, stat)
    samples = ds.samples(ok_only=False).num_rows  # sample indices measured, retried ones once
    stages = {c: float(np.median(ok.column(c).to_numpy())) for c in ("build_ms", "prepare_ms", "warmup_ms",
                                                                     "timing_ms")} if ok.num_rows else {}
    run_rows: dict[str, int] = {}
    for run_id in t.column("run_id").to_pylist():
        run_rows[run_id] = run_rows.get(run_id, 0) + 1
    return {
        "path": str(ds.path), "rows": t.num_rows, "samples": samples, "samples_ok": ok.num_rows,
        "failures": samples - ok.num_rows, "superseded": kinds.count("sample") - samples,
        "repeats": kinds.count("repeat"), "references": kinds.count("reference"), "anchor_rows": kinds.count("anchor"),
        "latency_ms": {"min": float(lat.min()), "median": float(np.median(lat)), "max": float(lat.max())}
        if lat.size else {},
        "stat": stat, "protocol": protocol_name(ds.header), "normalised": ds.duet,
        "noise_floor": noise_floor(ds, stat), "noise_floor_raw": noise_floor(ds, stat, normalised=False),
        "drift": drift(ds, stat), "drift_raw": drift(ds, stat, normalised=False),
        "reference_windows": reference_windows(ds, stat) if ds.duet else {},
        "noise_floor_unflagged": noise_floor(ds, stat, unflagged=True) if ds.duet else {}, "median_stage_ms": stages,
        "rows_per_run": run_rows, "anchors": ds.anchors() if ds.duet else [],
        "levels": ds.levels("min_ms") if ds.duet else {}, "unreadable_lines": ds.unreadable_lines, "set_aside_lines": ds.set_aside,
        "warnings": journal_warnings(ds), "header": ds.header,
    }


def journal_warnings(ds: Dataset) -> list[str]:
    """One line for each journal line that could not be read: unreadable lines, a torn last line, lines that
    compaction set aside in ``FILE.journal.rejected``."""
    out, jp = [], journal_path(ds.path)
    if ds.bad_lines:
        lines = ", ".join(map(str, ds.bad_lines[:5])) + (", ..." if len(ds.bad_lines) > 5 else "")
        out.append(f"{jp}: {len(ds.bad_lines)} unreadable line(s) (line {lines}); their rows are not in the "
                   f"dataset, and the next compaction moves them to {rejected_path(ds.path).name}")
    if ds.torn_line is not None:
        out.append(f"{jp}: line {ds.torn_line} is a partial last line (a write cut short by a crash: the "
                   "architecture in flight); the next run cuts it off and measures that architecture again")
    if ds.set_aside:
        out.append(f"{rejected_path(ds.path)}: {ds.set_aside} unreadable journal line(s) set aside by compaction; "
                   "their rows are not in the dataset")
    return out


def validate(path: str | Path, check_genotypes: bool = True) -> Dataset:
    """Load ``path`` and check every invariant of the format; raises DatasetError naming the first fault.

    An unreadable journal line in the middle is a fault; a torn last line (a crash mid-write) and lines set aside by
    compaction are not (``journal_warnings`` reports them). A sample index may have error rows followed by one ok
    row (a retried failure), never two ok rows or an error row after its ok row.
    """
    ds = load(path)
    if ds.bad_lines:
        raise DatasetError(f"{journal_path(ds.path)}: line {ds.bad_lines[0]} is not a readable journal record "
                           f"({len(ds.bad_lines)} unreadable line(s) in all)")
    t = ds.table
    shape = ("batch", "resolution", "channels", "layers")
    col = {c: t.column(c).to_pylist() for c in ("kind", "status", "seed", "index", "genotype", "backend", "device")
           + shape}
    stats = {c: t.column(c).to_pylist() for c in STAT_COLUMNS + REF_COLUMNS + ("ratio",)}
    header = ds.header
    config = header["config"]
    sample_status: dict[tuple[int, int], str] = {}
    for r in range(t.num_rows):
        where = f"{path}: row {r}"
        if col["kind"][r] not in KINDS:
            raise DatasetError(f"{where}: unknown kind {col['kind'][r]!r}")
        if col["status"][r] not in STATUSES:
            raise DatasetError(f"{where}: unknown status {col['status'][r]!r}")
        if (col["backend"][r], col["device"][r]) != (header.get("backend"), header.get("device")):
            raise DatasetError(f"{where}: backend/device {col['backend'][r]}/{col['device'][r]} differs from the "
                               f"file's {header.get('backend')}/{header.get('device')}")
        if col["kind"][r] == "model":
            if col["batch"][r] != config.get("input_shape", [None])[0]:
                raise DatasetError(f"{where}: batch {col['batch'][r]} differs from the file's input shape "
                                   f"{config.get('input_shape')}")
        else:
            if col["seed"][r] != header["seed"]:
                raise DatasetError(f"{where}: seed {col['seed'][r]} differs from the file's seed {header['seed']}")
            row_shape = {k: col[k][r] for k in shape}
            if row_shape != {k: config.get(k) for k in shape}:
                raise DatasetError(f"{where}: network {row_shape} differs from the file's config "
                                   f"{ {k: config.get(k) for k in shape} }")
        if col["status"][r] == "ok":
            values = [stats[c][r] for c in STAT_COLUMNS]
            if any(v is None or not np.isfinite(v) for v in values) or stats["min_ms"][r] <= 0 \
                    or not stats["min_ms"][r] <= stats["median_ms"][r] <= stats["p90_ms"][r]:
                raise DatasetError(f"{where}: latency statistics are missing or inconsistent")
            _check_reference(where, {c: stats[c][r] for c in REF_COLUMNS + ("ratio", "min_ms")}, ds.duet)
        if col["kind"][r] == "sample":
            key = (col["seed"][r], col["index"][r])
            if sample_status.get(key) == "ok":
                what = ("appears twice (two ok rows)" if col["status"][r] == "ok"
                        else "has an error row after its ok row")
                raise DatasetError(f"{where}: sample index {key[1]} (seed {key[0]}) {what}")
            sample_status[key] = col["status"][r]
            if check_genotypes:
                try:
                    genotype = parse(col["genotype"][r])
                except GenotypeError as exc:
                    raise DatasetError(f"{where}: bad genotype ({exc})") from None
                if genotype != sample(key[0], key[1]):
                    raise DatasetError(f"{where}: genotype is not sample(seed={key[0]}, index={key[1]}); "
                                       "the file is corrupt or from another sampler")
    return ds


def _check_reference(where: str, row: dict[str, Any], duet: bool) -> None:
    """A duet row's reference statistics are complete and consistent and its ratio is min_ms / ref_min_ms; a solo
    row has none."""
    ref = [row[c] for c in REF_COLUMNS + ("ratio",)]
    if not duet:
        if any(v is not None for v in ref):
            raise DatasetError(f"{where}: reference statistics in a solo-protocol file")
        return
    if any(v is None or not np.isfinite(v) for v in ref) or row["ref_min_ms"] <= 0 \
            or not row["ref_min_ms"] <= row["ref_median_ms"] <= row["ref_p90_ms"]:
        raise DatasetError(f"{where}: the reference's statistics are missing or inconsistent (a duet file)")
    if not math.isclose(row["ratio"], row["min_ms"] / row["ref_min_ms"], rel_tol=1e-9):
        raise DatasetError(f"{where}: ratio {row['ratio']} is not min_ms / ref_min_ms")


def describe_run(run: dict[str, Any]) -> str:
    """One line of a run's provenance: host, start time, the CPUs it could run on, threads, burn-in if any (what
    is missing or not as latkit writes it shows as '?')."""
    cpus, protocol, burn_in = run.get("cpus"), run.get("protocol"), run.get("burn_in_s")
    threads = protocol.get("threads", "?") if isinstance(protocol, dict) else "?"
    burn_in = f", burn-in {burn_in:g} s" if isinstance(burn_in, (int, float)) and burn_in else ""
    return (f"host {run.get('host', '?')}, started {run.get('started', '?')}, CPUs "
            f"{','.join(map(str, cpus)) if isinstance(cpus, list) and cpus else 'unknown'}, threads {threads}"
            f"{burn_in}")


def frozen_note(rw: dict[str, Any]) -> str:
    """Where a file's baseline was frozen, for a line that prints it."""
    if not rw.get("baseline_frozen_at"):
        return ", live: not yet frozen"
    return f" over {rw['baseline_windows']} windows, frozen {rw['baseline_frozen_at']}"


def datasheet(ds: Dataset, command: str, notes: str = "") -> str:
    """A Markdown datasheet computed from the file itself: machine, protocol, size, noise floor, drift."""
    s = summary(ds, stat="min_ms")
    h = ds.header
    c, env = h["config"], h["environment"]
    t = ds.table
    ok = ds.samples()
    ratio = ok.column("timing_cpu_ms").to_numpy() / ok.column("timing_ms").to_numpy() if ok.num_rows else np.array([])
    stamps = sorted(t.column("timestamp").to_pylist())
    lines = [
        f"# Datasheet: {ds.path.name}",
        "",
        f"Latency of sampled DARTS architectures on **{h['backend']} / {h['device']}** ({h.get('device_name', '')}), "
        f"measured by latkit. Rows: {s['rows']} ({s['samples']} samples, {s['failures']} failed, {s['repeats']} "
        f"independent re-measurements, {s['references']} timings of the reference {h.get('reference')}); "
        f"measured {stamps[0][:16]} to {stamps[-1][:16]} UTC." if stamps else "",
        "",
        "## Reproduce",
        "",
        f"```\n{command}\n```",
        "",
        "## Configuration",
        "",
        f"- network: batch {c['batch']}, input {c.get('in_channels', '?')}x{c['resolution']}x{c['resolution']}, "
        f"{c['layers']} cells, {c['channels']} initial channels, {c.get('classes', '?')} classes; architectures "
        f"`sample({h['seed']}, i)`" if h["seed"] is not None else f"- models of input shape {c['input_shape']}",
        f"- protocol: {protocol_name(h)} ("
        + ("each architecture timed beside the reference, run for run; latencies are normalised: the ratio to the "
           "reference in the same window times the dataset's baseline" if ds.duet else
           "each architecture timed alone; latencies are raw and move with the host's speed") + f"): {h['protocol']}",
        f"- backend options: {h.get('backend_options', {})}",
        f"- environment: {env}",
        *[f"- run {run_id}: {describe_run(run)}" for run_id, run in ds.runs.items()],
        "",
        "## Quality (statistic: min_ms, the one predictors learn by default"
        + (", normalised)" if ds.duet else ")"),
        "",
    ]
    gate = h["protocol"].get("min_cpu_share")
    for stat in ("min_ms", "median_ms"):
        for normalised in (True, False) if ds.duet else (False,):
            for share in (None, gate) if gate else (None,):
                nf = noise_floor(ds, stat, share, normalised)
                which = "all pairs" if share is None else f"pairs whose both loops got >= {share:.0%} of a core"
                lines.append(f"- noise floor, {stat}{', normalised' if normalised else ', raw' if ds.duet else ''}, "
                             f"{which}: pair MAPE {nf['mape_pct']:.2f}% (p90 {nf['p90_ape_pct']:.2f}%; two "
                             f"measurements of one architecture), single-measurement MAPE {nf['single_mape_pct']:.2f}% "
                             f"(pair / sqrt 2: the noise of one measurement) over {nf['pairs']} re-measured "
                             "architectures")
    if ratio.size and gate:
        lines.append(f"- samples whose timed loop stayed below {gate:.0%} of a core after every attempt (kept in the "
                     "file; predictors do not learn from them, held-out scores are given with and without them): "
                     f"{int((ratio < gate).sum())} of {ratio.size}")
    for key, label in [("drift", "normalised"), ("drift_raw", "raw")] if ds.duet else [("drift", "")]:
        dr = s[key]
        if dr.get("timings"):
            what = ("the duet's own noise: DARTS_V2 beside itself" if label == "normalised"
                    else "the host's drift" if label == "raw" else "drift")
            lines.append(f"- {what}, {h.get('reference')} timed as a sample ({', '.join(filter(None, ['min_ms', label]))}"
                         f", {dr['timings']} timings): median {dr['median_ms']:.3f} ms, first {dr['first_ms']:.3f}, "
                         f"last {dr['last_ms']:.3f}, max deviation {dr['max_dev_pct']:.2f}%, CV {dr['cv_pct']:.2f}%")
    rw = s["reference_windows"]
    if rw.get("windows"):
        lines.append(f"- the reference in each row's window (min_ms, {rw['windows']} windows): baseline "
                     f"{rw['baseline_ms']:.3f} ms (its {rw['baseline_percentile']:.0f}th percentile{frozen_note(rw)}: the "
                     f"unit of the normalised latencies), median {rw['median_ms']:.3f}, CV {rw['cv_pct']:.2f}%, max deviation "
                     f"{rw['max_dev_pct']:.2f}% from its median; {rw['flagged']} windows more than "
                     f"{rw['bound_pct']:.0f}% slower than the baseline (flagged: a slow host state)")
        nf = s["noise_floor_unflagged"]
        lines.append(f"- noise floor, min_ms, normalised, pairs whose both windows are unflagged: single-measurement "
                     f"MAPE {nf['single_mape_pct']:.2f}% over {nf['pairs']} re-measured architectures (the duet "
                     "outside the host's slow states)" if nf["pairs"] else "- no re-measured pair has both windows "
                     "unflagged")
    if s["latency_ms"]:
        lat = s["latency_ms"]
        lines.append(f"- latency range (min_ms{', normalised' if ds.duet else ''}): {lat['min']:.3f} to "
                     f"{lat['max']:.3f} ms, median {lat['median']:.3f}")
    if ratio.size:
        lines.append(f"- timed loop CPU/wall (1.0 = the measuring thread was never descheduled): median "
                     f"{np.median(ratio):.3f}, 5th percentile {np.percentile(ratio, 5):.3f}")
    stages = s["median_stage_ms"]
    if stages:
        lines.append("- median time per architecture: " + ", ".join(f"{k[:-3]} {v:.0f} ms" for k, v in stages.items()))
    lines += [f"- warning: {w}" for w in journal_warnings(ds)]
    if notes:
        lines += ["", "## Notes", "", notes]
    return "\n".join(lines) + "\n"
