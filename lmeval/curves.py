"""Curves: how a model's held-out perplexity falls as it gets more text or more training.

* :func:`learning_curve` fits every model on growing prefixes of the training
  text (whole lines, a geometric series of fractions up to all of it) and
  scores each on the same test text: an n-gram's curve takes seconds, an
  RNN's its budget times the points.
* :func:`training_history` trains one model and reads the per-epoch history
  it keeps (the RNN: train and validation perplexity against tokens seen).

Both give a :class:`Curve` that :func:`curve_table` shows in the terminal and
:func:`save_plot` draws as PNG or SVG (matplotlib, the optional extra
``lmeval[plot]``).
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .corpus import Corpus, count_lines, first_lines, load_corpus
from .errors import UsageError
from .evaluate import compare, host_for, train
from .files import atomic_write, check_writable
from .plugins import PluginHost

PLOT_FORMATS = ("png", "svg")


@dataclass
class Curve:
    """Points of one or more series, with what a plot needs to be read."""

    title: str
    x_label: str
    y_label: str
    #: label -> [(x, y), ...]; a point's y is ``None`` where the model failed there
    series: dict[str, list[tuple[float, float | None]]] = field(default_factory=dict)
    #: whether the x axis spans orders of magnitude (drawn on a log scale)
    log_x: bool = True
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        series = {k: [[x, y] for x, y in points] for k, points in self.series.items()}
        return {
            "title": self.title,
            "x_label": self.x_label,
            "y_label": self.y_label,
            "series": series,
            "meta": self.meta,
        }


def fractions(points: int, smallest: float) -> list[float]:
    """``points`` fractions from ``smallest`` to 1, evenly spaced on a log scale."""
    if points < 2:
        raise UsageError(f"--points {points}: a curve needs at least 2 points")
    if not 0 < smallest < 1:
        raise UsageError(f"--smallest {smallest}: give a fraction between 0 and 1")
    step = math.log(smallest) / (points - 1)
    return [math.exp(step * (points - 1 - i)) for i in range(points)]


def learning_curve(
    models: list[str],
    *,
    points: int = 5,
    smallest: float = 1 / 32,
    tokenizer: str = "char",
    lines: bool = True,
    min_freq: int = 1,
    seed: int = 0,
    host: PluginHost | None = None,
    plugins: list[str] | tuple[str, ...] = (),
    **data: Any,
) -> Curve:
    """Perplexity on the test text of every model fitted on growing prefixes of the
    training text (``points`` fractions from ``smallest`` to 1); ``data`` as in
    :func:`lmeval.compare`. x: characters of training text; y: perplexity per token
    of each point's own vocabulary (the tokenizer is fitted on that prefix), and the
    meta keeps bits per character, which compares points across vocabularies."""
    spans = fractions(points, smallest)  # checked before any data is read
    host = host_for(host, plugins)
    corpus = load_corpus(**data, datasets=host.datasets)
    total = count_lines(corpus.train)
    curve = Curve(
        title=f"learning curve on {corpus.name} ({tokenizer} tokenizer)",
        x_label="training text (characters, log scale)",
        y_label="test perplexity (per token)",
        meta={"dataset": corpus.name, "tokenizer": tokenizer, "bits_per_char": {}},
    )
    seen: set[int] = set()
    for fraction in spans:
        n = max(1, round(total * fraction))
        if n in seen:
            continue  # a short text gives two fractions the same lines
        seen.add(n)
        train_text = first_lines(corpus.train, n)
        part = Corpus(corpus.name, train_text, corpus.test, corpus.valid, corpus.sources)
        result = compare(
            models,
            corpus=part,
            tokenizer=tokenizer,
            lines=lines,
            min_freq=min_freq,
            seed=seed,
            host=host,
        )
        for record in result.results:
            ok = not record.get("error")
            curve.series.setdefault(record["label"], []).append(
                (len(train_text), record["perplexity"] if ok else None)
            )
            bpc = curve.meta["bits_per_char"].setdefault(record["label"], [])
            bpc.append(record["bits_per_char"] if ok else None)
    return curve


def training_history(
    spec: str,
    *,
    tokenizer: str = "char",
    lines: bool = True,
    min_freq: int = 1,
    seed: int = 0,
    host: PluginHost | None = None,
    plugins: list[str] | tuple[str, ...] = (),
    **data: Any,
) -> Curve:
    """Train ``spec`` once and read its per-epoch history: train and validation
    perplexity against the tokens it has trained on."""
    host = host_for(host, plugins)
    model, _ = train(
        spec, tokenizer=tokenizer, lines=lines, min_freq=min_freq, seed=seed, host=host, **data
    )
    history = model.details().get("history") or []
    if not history or not all("tokens" in row and "valid_ppl" in row for row in history):
        raise UsageError(
            f"model {model.name!r} keeps no per-epoch history (tokens, valid_ppl): "
            "curve --history is for models that train in epochs, such as rnn"
        )
    seen = 0
    train_points, valid_points = [], []
    for row in history:
        seen += row["tokens"]
        train_points.append((seen, _finite(row.get("train_ppl"))))
        valid_points.append((seen, _finite(row["valid_ppl"])))
    return Curve(
        title=f"training history of {spec} ({tokenizer} tokenizer)",
        x_label="tokens trained on",
        y_label="perplexity (per token)",
        series={"train (running mean over the epoch)": train_points, "validation": valid_points},
        log_x=False,
        meta={"spec": spec, "epochs": len(history), "details": model.details()},
    )


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def curve_table(curve: Curve):
    """The curve as a rich table: one row per x, one column per series."""
    from rich.table import Table

    table = Table(title=curve.title, caption=f"x: {curve.x_label}; values: {curve.y_label}")
    table.add_column(curve.x_label.split(" (")[0], justify="right")
    labels = list(curve.series)
    for label in labels:
        table.add_column(label, justify="right")
    xs = sorted({x for points in curve.series.values() for x, _ in points})
    for x in xs:
        cells = []
        for label in labels:
            y = dict(curve.series[label]).get(x)
            cells.append("–" if y is None else f"{y:.3f}")
        table.add_row(f"{x:,.0f}", *cells)
    return table


def check_plot_path(path: str | Path) -> str:
    """The format of ``path`` (``png`` or ``svg``), checked with matplotlib's presence
    before any work; one-line usage errors otherwise."""
    fmt = Path(path).suffix.lower().lstrip(".")
    if fmt not in PLOT_FORMATS:
        raise UsageError(f"--plot {path}: give a .png or .svg file")
    check_writable(path)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError(
            "--plot needs matplotlib: pip install 'lmeval[plot]' (or drop --plot)"
        ) from None
    return fmt


def save_plot(curve: Curve, path: str | Path) -> None:
    """Draw ``curve`` to ``path`` (PNG at 150 dpi, or SVG), atomically."""
    fmt = check_plot_path(path)
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 4.8), layout="constrained")
    axes = figure.subplots()
    for label, points in curve.series.items():
        drawn = [(x, y) for x, y in points if y is not None]
        if drawn:
            axes.plot(*zip(*drawn, strict=True), marker="o", label=label)
    if curve.log_x:
        from matplotlib.ticker import NullFormatter

        axes.set_xscale("log")
        axes.xaxis.set_minor_formatter(NullFormatter())  # 2x10^4 3x10^4 ... crowd the axis
    ys = [y for points in curve.series.values() for _, y in points if y]
    if ys and max(ys) / max(min(ys), 1e-12) > 20:
        axes.set_yscale("log")  # a uniform baseline far above the rest
    else:
        from matplotlib.ticker import FuncFormatter

        axes.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))  # no 1e6
    axes.set_xlabel(curve.x_label)
    axes.set_ylabel(curve.y_label)
    axes.set_title(textwrap.fill(curve.title, 70), fontsize="medium")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    with atomic_write(path, "wb") as handle:
        figure.savefig(handle, format=fmt, dpi=150)
