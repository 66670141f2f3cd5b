"""Summaries of bench records: read a results file, slice it, and tabulate it.

Pure functions over lists of records (dicts, see :mod:`lmeval.bench`), so that
``lmeval bench report RESULTS.jsonl`` re-renders any table from the file alone.
A summary row is one group of records (by default one data set and model,
over its seeds): for every metric the mean over the successful runs, the
sample standard deviation (``None`` for one run), the minimum and maximum,
and the mean of the bootstrap interval's bounds when the records have one.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import statistics
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import LmevalError, LmevalWarning, UsageError, one_line
from .report import fmt_value

FORMAT = "lmeval-bench/1"
#: Summarised when no metric is named: what a paper's table usually holds.
DEFAULT_METRICS = ("bits_per_char", "perplexity", "fit_seconds", "score_seconds")
#: The format of each metric's numbers (others: 4 decimals).
_FORMATS = {
    "perplexity": ".3f",
    "bits_per_char": ".4f",
    "bits_per_byte": ".4f",
    "cross_entropy": ".4f",
    "fit_seconds": ".2f",
    "score_seconds": ".3f",
    "seconds": ".2f",
    "accuracy": ".4f",
}
_HEADERS = {
    "bits_per_char": "bits/char",
    "bits_per_byte": "bits/byte",
    "perplexity": "ppl",
    "cross_entropy": "nats/tok",
    "fit_seconds": "fit s",
    "score_seconds": "score s",
}


class TornLineWarning(LmevalWarning):
    """The results file ends in half a line (a writer killed mid-record): skipped."""


#: Keys every bench record has, with the types they must be.
REQUIRED = {"run_id": str, "suite": str, "dataset": str, "label": str}


def read_records(path: Path) -> list[dict[str, Any]]:
    """The records of a results file (JSON Lines, or gzipped JSON Lines), in file order.

    Read a line at a time. Blank lines are skipped, and so is a last line without
    its newline that does not parse (a run killed while its record was written),
    with a :class:`TornLineWarning`; any other line that is not a bench record
    (not JSON, not an object of this format, a required key missing or of the
    wrong type) is a one-line :class:`~lmeval.errors.LmevalError` naming
    ``file:line``.
    """
    path = Path(path)
    if not path.exists():
        raise UsageError(f"no results file at {path}: give the file bench wrote (-o)")
    if path.is_dir():
        raise UsageError(f"{path} is a folder: give the results file bench wrote (-o)")
    records = []
    try:
        opened = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")
        with opened as handle:
            for number, raw in enumerate(handle, start=1):
                record = _parse_line(path, number, raw, last=not raw.endswith(b"\n"))
                if record is not None:
                    records.append(record)
    except (OSError, EOFError, zlib.error) as exc:
        raise LmevalError(f"cannot read {path}: {one_line(exc)}") from None
    return records


def _parse_line(path: Path, number: int, raw: bytes, last: bool) -> dict[str, Any] | None:
    where = f"{path}:{number}"
    if not raw.strip():
        return None
    try:
        record = json.loads(raw)
    except ValueError as exc:
        if last:
            warnings.warn(
                f"{where}: a record cut short (a run killed while writing): skipped; "
                "running the suite again does that run",
                TornLineWarning,
                stacklevel=3,
            )
            return None
        reason = exc.args[0] if exc.args else exc
        raise LmevalError(
            f"{where}: not a JSON record ({reason}): give a results file written by lmeval bench"
        ) from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise LmevalError(
            f"{where}: not an lmeval bench record (no format {FORMAT!r}): "
            "give a results file written by lmeval bench"
        )
    for key, kind in REQUIRED.items():
        if not isinstance(record.get(key), kind):
            raise LmevalError(
                f"{where}: its {key!r} is {record.get(key)!r}, not a {kind.__name__}: "
                "the record is damaged; remove that line (the run is done again)"
            )
    seed = record.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise LmevalError(
            f"{where}: its 'seed' is {seed!r}, not a whole number: the record is damaged; "
            "remove that line (the run is done again)"
        )
    return record


def slot(record: dict[str, Any]) -> tuple[Any, ...]:
    """What a record is the result of: its suite, data set, model label and seed.
    A later record of the same slot supersedes an earlier one (a rerun, a retried
    failure, or a run of changed data or code, which has another ``run_id``)."""
    return tuple(json.dumps(record.get(k), sort_keys=True) for k in SLOT_KEYS)


#: The keys whose values make a record's :func:`slot`.
SLOT_KEYS = ("suite", "dataset", "label", "seed")


def latest(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last record of each slot (see :func:`slot`), in the order the slots
    first appear."""
    last: dict[tuple[Any, ...], dict[str, Any]] = {}
    for record in records:
        last[slot(record)] = record
    order = list(dict.fromkeys(slot(r) for r in records))
    return [last[key] for key in order]


_MISSING = object()


def lookup(record: dict[str, Any], key: str, missing: Any = None) -> Any:
    """``record[key]``, dotted keys reaching inside (``resolved.order``); a
    missing key is ``missing``."""
    value: Any = record
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return missing
        value = value[part]
    return value


def _has(record: dict[str, Any], key: str) -> bool:
    return lookup(record, key, _MISSING) is not _MISSING


_OPS = ("!=", "<=", ">=", "=", "<", ">")


def parse_filter(text: str) -> tuple[str, str, str]:
    """``KEY=VALUE``, ``KEY!=VALUE``, ``KEY<VALUE``, ``KEY>VALUE`` (also ``<=``, ``>=``)
    as ``(key, op, value)``."""
    for op in _OPS:
        key, found, value = text.partition(op)
        if found and key.strip():
            return key.strip(), op, value.strip()
    raise UsageError(f"--filter {text!r}: give KEY=VALUE (or !=, <, >, <=, >=)")


def _matches(actual: Any, op: str, wanted: str) -> bool:
    if op in ("=", "!="):
        if isinstance(actual, bool):
            equal = str(actual).lower() == wanted.lower()
        elif isinstance(actual, int | float):
            try:
                equal = float(actual) == float(wanted)
            except ValueError:
                equal = False
        else:
            equal = str(actual) == wanted
        return equal if op == "=" else not equal
    if not isinstance(actual, int | float) or isinstance(actual, bool):
        return False
    try:
        number = float(wanted)
    except ValueError:
        raise UsageError(f"--filter {op}{wanted}: compare with a number") from None
    return {
        "<": actual < number,
        ">": actual > number,
        "<=": actual <= number,
        ">=": actual >= number,
    }[op]


def select(
    records: Sequence[dict[str, Any]], filters: Sequence[tuple[str, str, str]]
) -> list[dict[str, Any]]:
    """The records every filter holds for; a key no record has is a UsageError."""
    for key, _, _ in filters:
        if records and not any(_has(r, key) for r in records):
            known = ", ".join(sorted({k for r in records for k in r}))
            raise UsageError(f"--filter: no record has the key {key!r}; keys: {known}")
    return [r for r in records if all(_matches(lookup(r, k), op, v) for k, op, v in filters)]


def _cell_key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def summarise(
    records: Sequence[dict[str, Any]],
    group_by: Sequence[str] = ("dataset", "label"),
    metrics: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """One row per group of records with equal ``group_by`` values, in the order
    groups first appear; within a data set, rows ranked by mean bits per character
    (failed groups last). See the module docstring for the statistics."""
    metrics = list(metrics or DEFAULT_METRICS)
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for record in records:
        key = tuple(_cell_key(lookup(record, k)) for k in group_by)
        groups.setdefault(key, []).append(record)
    rows = [_summary_row(group, group_by, metrics) for group in groups.values()]
    first_seen: dict[Any, int] = {}
    for row in rows:
        first_seen.setdefault(_cell_key(row.get("dataset")), len(first_seen))

    def rank(row: dict[str, Any]) -> tuple[int, int, float]:
        bpc = (row.get("bits_per_char") or {}).get("mean")
        return (
            first_seen[_cell_key(row.get("dataset"))],
            0 if bpc is not None else 1,
            bpc if bpc is not None else math.inf,
        )

    return sorted(rows, key=rank)


def _summary_row(
    group: list[dict[str, Any]], group_by: Sequence[str], metrics: list[str]
) -> dict[str, Any]:
    ok = [r for r in group if not r.get("error")]
    row: dict[str, Any] = {k: lookup(group[0], k) for k in group_by}
    row.setdefault("dataset", lookup(group[0], "dataset"))
    verified = [r.get("verified") is True for r in ok]
    row.update(
        runs=len(group),
        seeds=sorted({r.get("seed") for r in group if r.get("seed") is not None}),
        failed=len(group) - len(ok),
        errors=sorted({str(r["error"]) for r in group if r.get("error")}),
        cached=sum(1 for r in group if r.get("from_cache")),
        verified="all" if ok and all(verified) else ("some" if any(verified) else "none"),
    )
    for metric in dict.fromkeys([*metrics, "bits_per_char"]):
        row[metric] = _statistics(ok, metric)
    return row


def _number(value: Any) -> float | None:
    """A record's value as a float, or ``None`` when it is not a number (a damaged
    or hand-edited record: never a crash). Infinite values stay infinite."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:  # an integer beyond float's range
        return None


def _statistics(records: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    values = [v for r in records if (v := _number(r.get(metric))) is not None]
    finite = [v for v in values if math.isfinite(v)]
    stats: dict[str, Any] = {"n": len(values), "mean": None, "sd": None, "min": None, "max": None}
    if values:
        stats["mean"] = statistics.fmean(values) if len(finite) == len(values) else math.inf
        stats["min"], stats["max"] = min(values), max(values)
        if len(finite) >= 2 and len(finite) == len(values):
            stats["sd"] = statistics.stdev(finite)
    intervals = []
    for r in records:
        ci = r.get(f"{metric}_ci")
        if isinstance(ci, list) and len(ci) == 2:
            low, high = _number(ci[0]), _number(ci[1])
            if low is not None and high is not None:
                intervals.append((low, high))
    if intervals:
        stats["ci_mean"] = [
            statistics.fmean(i[0] for i in intervals),
            statistics.fmean(i[1] for i in intervals),
        ]
    return stats


def _mean_cell(stats: dict[str, Any], spec: str) -> str:
    if stats["mean"] is None:
        return "–"
    text = fmt_value(stats["mean"], spec)
    if stats["sd"] is not None:
        text += " ± " + fmt_value(stats["sd"], spec)
    return text


def _ci_cell(stats: dict[str, Any], spec: str) -> str:
    ci = stats.get("ci_mean")
    if not ci:
        return "–"
    return f"[{fmt_value(ci[0], spec)}, {fmt_value(ci[1], spec)}]"


def _group_cell(value: Any) -> str:
    return "–" if value is None else str(value)


def _layout(
    rows: list[dict[str, Any]], group_by: Sequence[str], metrics: Sequence[str]
) -> tuple[list[str], list[list[str]]]:
    headers = [*group_by, "runs"]
    for metric in metrics:
        headers.append(_HEADERS.get(metric, metric))
        if any(row[metric].get("ci_mean") for row in rows):
            headers.append(f"{_HEADERS.get(metric, metric)} CI")
    headers += ["cached", "verified"]
    body = []
    for row in rows:
        cells = [_group_cell(row.get(k)) for k in group_by]
        runs = str(row["runs"]) + (f" ({row['failed']} failed)" if row["failed"] else "")
        cells.append(runs)
        for metric in metrics:
            spec = _FORMATS.get(metric, ".4f")
            cells.append(_mean_cell(row[metric], spec))
            if any(r[metric].get("ci_mean") for r in rows):
                cells.append(_ci_cell(row[metric], spec))
        cells += [f"{row['cached']}/{row['runs']}", row["verified"]]
        body.append(cells)
    return headers, body


def render(
    rows: list[dict[str, Any]],
    fmt: str,
    group_by: Sequence[str] = ("dataset", "label"),
    metrics: Sequence[str] | None = None,
    width: int | None = None,
) -> str:
    """The summary as ``"table"`` (rich, for a terminal), ``"markdown"`` (a pipe
    table for a paper), ``"csv"`` (a column per statistic: ``bits_per_char_mean``,
    ``bits_per_char_sd``, ...) or ``"json"`` (the rows)."""
    metrics = list(metrics or DEFAULT_METRICS)
    if fmt == "json":
        return json.dumps(rows, indent=2, default=str) + "\n"
    if fmt == "csv":
        return _csv(rows, group_by, metrics)
    headers, body = _layout(rows, group_by, metrics)
    if fmt == "markdown":
        lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |" for cells in body]
        return "\n".join(lines) + "\n"
    if fmt != "table":
        raise UsageError(f"unknown format {fmt!r}: table, markdown, csv or json")
    from rich.console import Console
    from rich.table import Table

    table = Table(title="lmeval bench", caption=_caption(rows), caption_justify="left")
    for i, header in enumerate(headers):
        table.add_column(header, justify="left" if i < len(group_by) else "right")
    for cells in body:
        table.add_row(*cells)
    buffer = io.StringIO()
    Console(file=buffer, width=width or 160, no_color=True, highlight=False).print(table)
    return buffer.getvalue()


def summary_table(
    records: Sequence[dict[str, Any]],
    fmt: str = "table",
    group_by: Sequence[str] = ("dataset", "label"),
    metrics: Sequence[str] | None = None,
) -> str:
    """The summary of ``records`` (as :func:`lmeval.run_suite` returns them, or read
    from a results file) rendered as ``fmt``: what ``lmeval bench`` prints."""
    for key in group_by:
        if records and not any(_has(r, key) for r in records):
            known = ", ".join(sorted({k for r in records for k in r}))
            raise UsageError(f"--group-by: no record has the key {key!r}; keys: {known}")
    rows = summarise(records, group_by=group_by, metrics=metrics)
    return render(rows, fmt, group_by=group_by, metrics=metrics)


def _caption(rows: list[dict[str, Any]]) -> str:
    seeds = sorted({s for row in rows for s in row["seeds"]})
    text = f"mean ± sample standard deviation over seeds {', '.join(map(str, seeds))}"
    text += "; cached: runs whose fitted model came from the model cache"
    if any(r[m].get("ci_mean") for r in rows for m in r if isinstance(r[m], dict)):
        text += "; CI: the mean of the runs' bootstrap intervals"
    errors = sorted({e for row in rows for e in row["errors"]})
    if errors:
        text += "\nfailed: " + "; ".join(errors[:3]) + (" ..." if len(errors) > 3 else "")
    return text


def _csv(rows: list[dict[str, Any]], group_by: Sequence[str], metrics: Sequence[str]) -> str:
    fields = [*group_by, "runs", "failed", "cached", "verified", "seeds"]
    for metric in metrics:
        fields += [f"{metric}_{s}" for s in ("mean", "sd", "min", "max", "n")]
        if any(r[metric].get("ci_mean") for r in rows):
            fields += [f"{metric}_ci_low", f"{metric}_ci_high"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        flat: dict[str, Any] = {k: row.get(k) for k in group_by}
        flat.update(
            runs=row["runs"],
            failed=row["failed"],
            cached=row["cached"],
            verified=row["verified"],
            seeds=" ".join(map(str, row["seeds"])),
        )
        for metric in metrics:
            stats = row[metric]
            for s in ("mean", "sd", "min", "max", "n"):
                flat[f"{metric}_{s}"] = stats.get(s)
            if f"{metric}_ci_low" in fields:
                ci = stats.get("ci_mean") or [None, None]
                flat[f"{metric}_ci_low"], flat[f"{metric}_ci_high"] = ci
        writer.writerow(flat)
    return buffer.getvalue()
