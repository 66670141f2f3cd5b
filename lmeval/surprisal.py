"""Where a model is surprised: the test text coloured token by token.

:func:`surprisal_view` runs a comparison of one or two models (keeping their
per-token scores) and returns a :class:`SurprisalView`: every test token's
text and its surprisal, ``-log2 p`` in bits, under each model. With two
models the colour is the difference (bits under the first minus bits under
the second: positive where the second model predicts better). It renders as
rich text for the terminal (:func:`render_terminal`) and as one
self-contained HTML page (:func:`render_html`: inline CSS, no script, no
external file), each with a legend and the tokens each model found hardest.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .corpus import DataOptions, load_corpus
from .errors import UsageError
from .evaluate import compare, host_for
from .tokenizers import split_lines

#: Surprisal bins (bits) and their colours: from well predicted to surprising.
BITS_BINS = (1.0, 2.0, 4.0, 8.0)
BITS_COLOURS = ("#1a9850", "#a6d96a", "#fee08b", "#fc8d59", "#d73027")
#: Difference bins (bits, first model minus second) and colours: orange where the
#: first model is better, purple where the second is.
DIFF_BINS = (-2.0, -0.5, 0.5, 2.0)
DIFF_COLOURS = ("#e66101", "#fdb863", "#f7f7f7", "#b2abd2", "#5e3c99")


@dataclass
class SurprisalView:
    """Per-token texts and surprisals (bits) of one test text under one or two models."""

    labels: list[str]
    pieces: list[str]  #: each token's text as it appears in the test text
    bits: list[np.ndarray]  #: per model, -log2 p of every token
    line_of: np.ndarray  #: the 0-based line of every token
    meta: dict[str, Any]

    @property
    def colour_values(self) -> np.ndarray:
        """What the colours show: bits of the one model, or the difference of two."""
        return self.bits[0] if len(self.bits) == 1 else self.bits[0] - self.bits[1]

    def colours(self) -> list[str]:
        bins, palette = (
            (BITS_BINS, BITS_COLOURS) if len(self.bits) == 1 else (DIFF_BINS, DIFF_COLOURS)
        )
        values = np.nan_to_num(self.colour_values, posinf=1e9, neginf=-1e9)
        return [palette[i] for i in np.digitize(values, bins)]

    def legend(self) -> list[tuple[str, str]]:
        """``(colour, meaning)`` of each bin."""
        if len(self.bits) == 1:
            edges, palette, unit = BITS_BINS, BITS_COLOURS, "bits"
        else:
            edges, palette, unit = DIFF_BINS, DIFF_COLOURS, "bits"
        names = [f"< {edges[0]:g} {unit}"]
        names += [f"{lo:g} to {hi:g}" for lo, hi in zip(edges, edges[1:], strict=False)]
        names += [f">= {edges[-1]:g} {unit}"]
        return list(zip(palette, names, strict=True))

    def hardest(self, model: int, k: int, context: int = 30) -> list[dict[str, Any]]:
        """The ``k`` tokens model ``model`` gave the least probability, with their context."""
        order = np.argsort(-np.nan_to_num(self.bits[model], posinf=1e9), kind="stable")[:k]
        rows = []
        for i in order.tolist():
            before = "".join(self.pieces[max(0, i - context) : i])[-context:]
            after = "".join(self.pieces[i + 1 : i + 1 + context // 3])
            rows.append(
                {
                    "position": i,
                    "line": int(self.line_of[i]),
                    "token": self.pieces[i],
                    "bits": float(self.bits[model][i]),
                    "before": before,
                    "after": after,
                }
            )
        return rows

    def window(self, start_line: int, lines: int) -> range:
        """The token positions of ``lines`` lines from ``start_line``."""
        inside = np.flatnonzero((self.line_of >= start_line) & (self.line_of < start_line + lines))
        return range(int(inside[0]), int(inside[-1]) + 1) if len(inside) else range(0)


def surprisal_view(models: list[str], **options: Any) -> SurprisalView:
    """Score ``models`` (one or two specs) on the test text and keep every token's
    surprisal; ``options`` are :func:`lmeval.compare`'s (data, tokenizer, seed...)."""
    if not 1 <= len(models) <= 2:
        raise UsageError("inspect shows one model, or the difference of two: give one or two -m")
    if options.get("corpus") is None:  # read it here: the view shows the text itself
        data = {k: options.pop(k) for k in list(options) if k in DataOptions.__annotations__}
        host = options["host"] = host_for(options.get("host"), options.pop("plugins", ()))
        options["corpus"] = load_corpus(**data, datasets=host.datasets)
    result = compare(list(models), keep_tokens=True, **options)
    failed = [r for r in result.results if r.get("error")]
    if failed:
        raise UsageError(f"model {failed[0]['label']!r} failed: {failed[0]['error']}")
    labels = [r["label"] for r in result.results]
    kept = [result.tokens[label] for label in labels]
    if len(kept) == 2 and not np.array_equal(kept[0].ids, kept[1].ids):
        raise UsageError("the two models predict different tokens: compare them with one tokenizer")
    line_of = kept[0].line_numbers()
    if line_of is None:  # a stream of words: one line
        line_of = np.zeros(len(kept[0].ids), dtype=np.int64)
    pieces = _pieces(kept[0], result.meta, options["corpus"].test)
    bits = [-result.scores[label].logprobs / math.log(2) for label in labels]
    return SurprisalView(labels, pieces, bits, line_of, result.meta)


def _pieces(kept, meta: dict[str, Any], test: str) -> list[str]:
    """Each token's text: the test text's own characters for the char tokenizer (so an
    unknown character shows as itself), else the vocabulary's spelling."""
    itos = kept.vocab.itos
    texts = [itos[i] for i in kept.ids.tolist()]
    eos = kept.vocab.eos_id
    if eos is not None:
        for i, token_id in enumerate(kept.ids.tolist()):
            if token_id == eos:
                texts[i] = "\n"
    if meta.get("tokenizer") == "word":
        texts = [t if t == "\n" or i + 1 == len(texts) or texts[i + 1] == "\n" else t + " "
                 for i, t in enumerate(texts)]  # fmt: skip
    if meta.get("tokenizer") == "char":
        own = list("".join(line + "\n" for line in split_lines(test)))
        if len(own) == len(texts):
            texts = own
    return texts


def render_terminal(view: SurprisalView, start_line: int = 0, lines: int = 12, top: int = 5):
    """A rich renderable: the coloured window, the legend, the hardest tokens."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    colours = view.colours()
    body = Text()
    for i in view.window(start_line, lines):
        piece = view.pieces[i]
        visible = piece.replace("\n", "⏎\n") if piece == "\n" else piece
        body.append(visible, style=f"black on {colours[i]}")
    what = (
        f"surprisal under {view.labels[0]} (-log2 p)"
        if len(view.labels) == 1
        else f"bits under {view.labels[0]} minus bits under {view.labels[1]} "
        f"(purple: {view.labels[1]} better, orange: {view.labels[0]} better)"
    )
    legend = Text(f"{what}: ")
    for colour, name in view.legend():
        legend.append(f" {name} ", style=f"black on {colour}")
        legend.append(" ")
    parts: list[Any] = [
        Text(f"lines {start_line}-{start_line + lines - 1} of the test text", style="bold"),
        body,
        legend,
    ]
    for m, label in enumerate(view.labels):
        table = Table(title=f"hardest tokens for {label}", title_justify="left")
        for column in ("line", "bits", "context"):
            table.add_column(column, justify="right" if column != "context" else "left")
        for row in view.hardest(m, top):
            context = Text(_show(row["before"]), style="dim")
            context.append(_show(row["token"]), style="bold reverse")
            context.append(_show(row["after"]), style="dim")
            table.add_row(str(row["line"]), f"{row['bits']:.2f}", context)
        parts.append(table)
    return Group(*parts)


def _show(text: str) -> str:
    return text.replace("\n", "⏎")


def render_html(view: SurprisalView, start_line: int = 0, lines: int = 40, top: int = 10) -> str:
    """The same view as one self-contained HTML page (inline CSS, nothing external)."""
    esc = html.escape
    colours = view.colours()
    spans = []
    for i in view.window(start_line, lines):
        piece = view.pieces[i]
        tip = "; ".join(
            f"{label}: {view.bits[m][i]:.2f} bits" for m, label in enumerate(view.labels)
        )
        shown = "⏎" if piece == "\n" else esc(piece)
        spans.append(f'<span style="background:{colours[i]}" title="{esc(tip)}">{shown}</span>')
        if piece == "\n":
            spans.append("\n")  # the text is pre-wrapped: a newline is the line break
    legend = "".join(
        f'<span class="key" style="background:{c}">{esc(name)}</span>' for c, name in view.legend()
    )
    if len(view.labels) == 1:
        heading = f"Surprisal under {esc(view.labels[0])} (&minus;log<sub>2</sub> p, bits)"
    else:
        heading = (
            f"Bits under {esc(view.labels[0])} minus bits under {esc(view.labels[1])}: "
            f"purple where {esc(view.labels[1])} predicts better, orange where "
            f"{esc(view.labels[0])} does"
        )
    tables = []
    for m, label in enumerate(view.labels):
        rows = "".join(
            f"<tr><td>{r['line']}</td><td>{r['bits']:.2f}</td><td class='ctx'>"
            f"<span class='dim'>{esc(_show(r['before']))}</span><b>{esc(_show(r['token']))}</b>"
            f"<span class='dim'>{esc(_show(r['after']))}</span></td></tr>"
            for r in view.hardest(m, top)
        )
        tables.append(
            f"<h2>Hardest tokens for {esc(label)}</h2><table><tr><th>line</th><th>bits</th>"
            f"<th>context</th></tr>{rows}</table>"
        )
    meta = view.meta
    source = f"{meta.get('dataset', '')}, {meta.get('tokenizer', '')} tokenizer"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>lmeval inspect: {esc(", ".join(view.labels))}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 70em; color: #222; }}
.text {{ font-family: ui-monospace, monospace; white-space: pre-wrap; line-height: 1.6;
  border: 1px solid #ccc; padding: 1em; }}
.key {{ font-family: ui-monospace, monospace; padding: 0.1em 0.5em; margin-right: 0.4em; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 0.2em 0.8em; text-align: right; }}
th:last-child {{ text-align: left; }}
td.ctx {{ font-family: ui-monospace, monospace; text-align: left; white-space: pre; }}
.dim {{ color: #888; }}
</style></head><body>
<h1>lmeval inspect</h1>
<p>{heading}. Test text of {esc(source)}, lines {start_line}&ndash;{start_line + lines - 1};
hover a token for its bits.</p>
<p>{legend}</p>
<div class="text">{"".join(spans)}</div>
{"".join(tables)}
</body></html>
"""
