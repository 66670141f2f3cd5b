"""Presenting a comparison: a rich table for people, JSON / CSV / Markdown for scripts.

Nothing here computes a metric; it only formats the records ``compare`` made.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from typing import Any

from .evaluate import Comparison
from .records import EXTRA_KEYS, RECORD_KEYS, finite_or_none, rank_key

FORMATS = ("table", "json", "csv", "markdown")

# (record key, header, format) of the columns that are not metrics, and where the
# metrics go: a metric's header arrow and format come from its Metric (the meta).
_METRIC_COLUMNS = (
    ("perplexity", "ppl"),
    ("cross_entropy", "nats/tok"),
    ("bits_per_char", "bits/char"),
    ("bits_per_byte", "bits/byte"),
)
_OTHER_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("tokens", "tokens", ",d"),
    ("oov_rate", "OOV", ".2%"),
    ("params", "params", ",d"),
    ("fit_seconds", "fit s", ".2f"),
    ("score_seconds", "score s", ".2f"),
)
_CI_METRICS = frozenset(key for key, _ in _METRIC_COLUMNS)
#: Formats of the standard metrics when a comparison's meta does not say (older JSON).
_DEFAULT_FORMATS = {"perplexity": ".3f", "cross_entropy": ".4f"}


def columns(
    comparison: Comparison, metrics: Sequence[str] | None = None
) -> list[tuple[str, str, str]]:
    """``(key, header, format)`` of every column: the standard metrics, the counts,
    then the plugin metrics that are shown by default; or, with ``metrics``, those
    metrics in that order, then the counts. A metric's arrow (↑ or ↓) and format are
    its own."""
    info = comparison.meta.get("metrics", {})

    def metric(key: str, header: str) -> tuple[str, str, str]:
        spec = info.get(key, {})
        arrow = "↑" if spec.get("higher_is_better") else "↓"
        return key, f"{header} {arrow}", spec.get("fmt", _DEFAULT_FORMATS.get(key, ".4f"))

    if metrics:
        headers = dict(_METRIC_COLUMNS)
        chosen = [metric(key, headers.get(key, key)) for key in metrics]
        others = [c for c in _OTHER_COLUMNS if c[0] not in metrics]
        return [*chosen, *others]
    standard = [metric(key, header) for key, header in _METRIC_COLUMNS]
    extra = [
        metric(key, key)
        for key in extra_metric_keys(comparison)
        if info.get(key, {}).get("shown", True)
    ]
    return [*standard, *_OTHER_COLUMNS, *extra]


def row_label(record: dict[str, Any], mark_incomparable: bool = True) -> str:
    """The row's name in a table: its label, and what kind of row it is
    (``mark_incomparable``: say when its bits per character do not compare)."""
    label = record["label"]
    if record.get("yardstick"):
        label += " (yardstick)"
    if record.get("verified") is False and not record.get("error"):
        label += " (unverified)"
    if mark_incomparable and record.get("comparable") is False and not record.get("error"):
        label += " (<unk>: not comparable)"
    if tie(record):
        label += " ≈"
    return label


def tie(record: dict[str, Any]) -> bool:
    """Whether the paired bootstrap finds the row not significantly worse than the best."""
    versus = record.get("vs_best")
    return isinstance(versus, dict) and not versus.get("significant")


def metric_cell(record: dict[str, Any], key: str, spec: str) -> str:
    """A metric's value, and ``±`` the half-width of its bootstrap interval when the
    record has one (``KEY_ci``), in the metric's own format."""
    text = fmt_value(record.get(key), spec)
    interval = record.get(f"{key}_ci") if key in _CI_METRICS else None
    if isinstance(interval, list | tuple) and len(interval) == 2 and None not in interval:
        text += " ±" + fmt_value((interval[1] - interval[0]) / 2, spec)
    return text


def _mixed_units(records: list[dict[str, Any]]) -> bool:
    """Whether some rows pay for every character and others do not (then the second
    kind is marked; when no row does, they are alike and nothing is marked)."""
    return any(r.get("comparable") is True for r in records) and any(
        r.get("comparable") is False and not r.get("error") for r in records
    )


def ordered(comparison: Comparison) -> list[dict[str, Any]]:
    return sorted(comparison.results, key=rank_key)


def fmt_value(value: Any, spec: str) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and math.isinf(value):
        return "∞"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    try:
        return format(value, spec)
    except (ValueError, TypeError):
        return str(value)


def extra_metric_keys(comparison: Comparison) -> list[str]:
    """Keys of plugin metrics (not among the standard columns), in first-seen order."""
    standard = set(RECORD_KEYS + EXTRA_KEYS)
    seen: list[str] = []
    for record in comparison.results:
        for key, value in record.items():
            if key not in standard and key not in seen and isinstance(value, int | float):
                seen.append(key)
    return seen


def caption(meta: dict[str, Any], results: list[dict[str, Any]] | None = None) -> str:
    """One line on the data and the checks; ``results`` adds how many rows passed them."""
    counts: dict[str, int] = {}
    if results:
        counts = {
            "verified": sum(1 for r in results if r.get("verified") is True),
            "unverified": sum(
                1 for r in results if r.get("verified") is False and not r.get("error")
            ),
            "failed": sum(1 for r in results if r.get("error")),
        }
    lines = meta.get("split_lines", {})
    split = ", ".join(f"{k} {v:,} lines" for k, v in lines.items())
    verify = meta.get("verify", {}).get("positions")
    checked = ""
    if verify == 0:
        checked = "verification off (--no-verify)"
    elif verify:
        checked = f"verified at {verify} positions"
        if counts:
            checked += " (" + ", ".join(f"{n} {what}" for what, n in counts.items() if n) + ")"
    return (
        f"{meta['dataset']} ({split}); tokenizer {meta['tokenizer']}, "
        f"vocabulary {meta['vocab_size']:,}; seed {meta['seed']}"
        + (f"; {checked}" if checked else "")
        + bootstrap_caption(meta, results)
    )


def bootstrap_caption(meta: dict[str, Any], results: list[dict[str, Any]] | None) -> str:
    """What ``±`` and ``≈`` mean, from ``meta["bootstrap"]`` (empty when it was off)."""
    boot = meta.get("bootstrap") or {}
    if not boot.get("replicates") or not boot.get("method"):
        return ""
    level = f"{100 * boot['confidence']:g} %"
    text = (
        f"; ± is the half-width of the {level} interval ({boot['method']}, "
        f"{boot['replicates']:,} replicates)"
    )
    best = next((r["vs_best"]["label"] for r in results or [] if tie(r)), None)
    if best is not None:
        alpha = f"{1 - boot['confidence']:.3g}"
        text += f"; ≈ marks a row not significantly worse than {best} (paired, p ≥ {alpha})"
    return text


#: Columns left out first when the terminal is too narrow for all of them.
_DROP_ORDER = (
    "score_seconds",
    "bits_per_byte",
    "params",
    "cross_entropy",
    "fit_seconds",
    "oov_rate",
    "tokens",
)


def _fit_columns(
    columns: list[tuple[str, str, str]], rows: list[tuple[str, list[str]]], width: int
) -> list[int]:
    """Indexes of the columns to show so that the table fits ``width`` characters."""

    def needed(keep: list[int]) -> int:
        label = max(len(label) for label, _ in rows) if rows else 5
        cells = [max([len(columns[i][1])] + [len(c[i]) for _, c in rows]) for i in keep]
        return label + sum(cells) + 3 * (len(keep) + 1) + 1

    keep = list(range(len(columns)))
    for key in _DROP_ORDER:
        if needed(keep) <= width:
            break
        keep = [i for i in keep if columns[i][0] != key]
    return keep


def render_table(
    comparison: Comparison, console=None, metrics: Sequence[str] | None = None
) -> None:
    """Print the comparison as a rich table, the policy, notes and training histories.

    On a narrow terminal the less important columns are left out (JSON has them all).
    """
    from rich.console import Console
    from rich.table import Table

    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=max(console.width, 150))
    cols = columns(comparison, metrics)
    records = ordered(comparison)
    best = next((r for r in records if not r.get("error")), None)
    rows = []
    for record in records:
        label = row_label(record, _mixed_units(records))
        if record.get("error"):
            rows.append((label, ["failed"] + [""] * (len(cols) - 1)))
        else:
            rows.append((label, [metric_cell(record, k, f) for k, _, f in cols]))
    keep = _fit_columns(cols, rows, console.width)
    table = Table(
        title="lmeval compare",
        caption=caption(comparison.meta, comparison.results),
        caption_justify="left",
    )
    table.add_column("model", style="bold", no_wrap=True)
    for i in keep:
        table.add_column(cols[i][1], justify="right", no_wrap=True)
    for record, (label, cells) in zip(records, rows, strict=True):
        style = "green" if record is best else None
        if record.get("yardstick"):
            style = "dim"
        if record.get("verified") is False:
            style = "yellow"
        if record.get("error"):
            style = "red"
        table.add_row(label, *(cells[i] for i in keep), style=style)
    console.print(table)
    if len(keep) < len(cols):
        hidden = ", ".join(cols[i][1] for i in range(len(cols)) if i not in keep)
        console.print(f"[dim]Not shown for lack of width: {hidden} (see --format json).[/]")
    console.print(f"[dim]Predicted tokens: {comparison.meta['policy']}.[/]")
    console.print(
        "[dim]ppl = exp(nats/tok); bits/char and bits/byte divide the same total by the "
        "characters and UTF-8 bytes of the test text (newlines included).[/]"
    )
    for record in comparison.results:
        if record.get("error"):
            console.print(f"[red]error[/] {record['label']}: {record['error']}")
        elif record.get("verified") is False:
            console.print(f"[yellow]unverified[/] {record['label']}: {record['verify_error']}")
        details = record.get("details") or {}
        if details.get("save_error"):
            console.print(f"[yellow]not saved[/] {record['label']}: {details['save_error']}")
        if details.get("arpa_saved_to"):
            console.print(f"[dim]ARPA[/] {record['label']}: {details['arpa_saved_to']}")
        elif details.get("arpa_error"):
            console.print(f"[yellow]no ARPA[/] {record['label']}: {details['arpa_error']}")
        for note in details.get("notes", []):
            console.print(f"[yellow]note[/] {record['label']}: {note}")
        history = details.get("history")
        if history:
            render_history(record["label"], history, console)


def render_history(label: str, history: list[dict[str, Any]], console) -> None:
    from rich.table import Table

    keys = [k for k in history[0] if isinstance(history[0][k], int | float)]
    table = Table(title=f"training history of {label}", title_justify="left")
    for key in keys:
        table.add_column(key.replace("_", " "), justify="right")
    shown = history if len(history) <= 12 else history[:6] + history[-6:]
    for i, row in enumerate(shown):
        if len(history) > 12 and i == 6:
            table.add_row(*["…" for _ in keys])
        table.add_row(*[_history_cell(row.get(k)) for k in keys])
    console.print(table)


def _history_cell(value: Any) -> str:
    """Counts with thousands separators, rates and times readable, small values to 4 digits."""
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float) and math.isfinite(value) and abs(value) >= 1000:
        return f"{value:,.0f}"
    return fmt_value(value, ".4g")


def to_json(comparison: Comparison) -> str:
    return json.dumps(_jsonable(comparison.to_dict()), indent=2, ensure_ascii=False) + "\n"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        value = value.item()
    return finite_or_none(value)


def _flat_rows(comparison: Comparison) -> tuple[list[str], list[dict[str, Any]]]:
    keys = [*RECORD_KEYS, *extra_metric_keys(comparison), "error"]
    rows = [{k: _jsonable(r.get(k)) for k in keys} for r in ordered(comparison)]
    return keys, rows


def to_csv(comparison: Comparison) -> str:
    keys, rows = _flat_rows(comparison)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buffer.getvalue()


def to_markdown(comparison: Comparison, metrics: Sequence[str] | None = None) -> str:
    cols = columns(comparison, metrics)
    headers = ["model", *(h for _, h, _ in cols)]
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" + "---:|" * len(cols)]
    for record in ordered(comparison):
        if record.get("error"):
            cells = [f"error: {record['error']}"] + [""] * (len(cols) - 1)
        else:
            cells = [metric_cell(record, k, f) for k, _, f in cols]
        row = [row_label(record, _mixed_units(comparison.results)), *cells]
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
    out.append("")
    text = caption(comparison.meta, comparison.results)
    out.append(f"{text}. Predicted tokens: {comparison.meta['policy']}.")
    return "\n".join(out) + "\n"


def render(comparison: Comparison, fmt: str, metrics: Sequence[str] | None = None) -> str:
    """The comparison as text in a machine format (``json``, ``csv``, ``markdown``);
    ``metrics`` chooses the markdown table's metric columns (JSON and CSV keep all)."""
    if fmt == "markdown":
        return to_markdown(comparison, metrics)
    return {"json": to_json, "csv": to_csv}[fmt](comparison)
