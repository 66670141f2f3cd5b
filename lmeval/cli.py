"""The ``lmeval`` command line: thin commands over the Python API.

Errors reach the user as one line on stderr (``lmeval: error: ...``) with exit
status 2 for a bad request and 1 for a run-time failure; ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import io
import json
import math
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from . import cli_bench
from .clikit import Invocation, listing_format, plugin_option, set_progress_for
from .clikit import fail as _fail
from .clikit import print_rows as _print_rows
from .clikit import short as _short
from .corpus import DEFAULT_SPLIT, parse_split
from .distributed import is_main_process
from .errors import LmevalError, LmevalWarning, UsageError, one_line
from .files import check_writable, parse_size
from .host import load_host
from .plugins import using
from .report import FORMATS
from .resources import share_allocator_arena
from .verify import DEFAULT_POSITIONS
from .version import __version__

#: Seeds are 32-bit: what numpy's and torch's generators all take.
MAX_SEED = 2**32 - 1


def _scan_plugin_args(args: list[str]) -> list[str]:
    """Values of every ``--plugin`` in argv, wherever it stands, so that plugins
    (and the commands they add) are loaded before click parses anything."""
    found: list[str] = []
    for i, arg in enumerate(args):
        if arg == "--plugin" and i + 1 < len(args):
            found.append(args[i + 1])
        elif arg.startswith("--plugin="):
            found.append(arg.split("=", 1)[1])
    return found


class _Interrupt(BaseException):
    """A KeyboardInterrupt carried past click, which would print a blank line for it."""


class LmevalGroup(click.Group):
    """Loads plugins first, then turns every error into one line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            raise _Interrupt from exc

    def main(self, args=None, prog_name=None, complete_var=None, **extra: Any):  # type: ignore[override]
        args = list(sys.argv[1:] if args is None else args)
        debug = "--debug" in args
        if not args:  # bare `lmeval`: the help, as `lmeval --help` prints it
            args = ["--help"]
        previous_sigterm = _sigterm_interrupts()
        previous_show = warnings.showwarning
        warnings.showwarning = _show_warning
        try:
            host = load_host(_scan_plugin_args(args))
            host.register_commands(self)
            for warning in host.warnings:
                click.echo(f"lmeval: warning: {warning}", err=True)
            with using(host):
                run = Invocation(host=host, debug=debug)
                code = super().main(
                    args, prog_name or "lmeval", complete_var, standalone_mode=False, obj=run
                )
        except click.exceptions.Exit as exc:
            code = exc.exit_code
        except click.Abort:
            _fail("aborted", 130)
        except Exception as exc:
            if debug:  # the traceback, then the one line and status as without --debug
                traceback.print_exc()
            _fail(*_error_line(exc))
        except (KeyboardInterrupt, _Interrupt) as exc:
            if debug:
                raise (exc.__cause__ or exc) from None
            _fail("interrupted", 130)
        finally:
            warnings.showwarning = previous_show
            if previous_sigterm is not None:
                signal.signal(signal.SIGTERM, previous_sigterm)
        sys.exit(code if isinstance(code, int) else 0)


_SHOW_WARNING = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """lmeval's own warnings as one line, as errors are; any other as Python shows it."""
    if issubclass(category, LmevalWarning):
        click.echo(f"lmeval: warning: {' '.join(str(message).split())}", err=True)
    else:
        _SHOW_WARNING(message, category, filename, lineno, file, line)


def _sigterm_interrupts():
    """Make SIGTERM (``timeout``, ``docker stop``, batch schedulers) act as Ctrl-C does:
    training stops at the end of the batch, finished rows are written. Returns the
    previous handler (``None`` off the main thread, where handlers cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, signal.default_int_handler)


def _error_line(exc: Exception) -> tuple[str, int]:
    """The message and exit status of an error: 2 for a bad request, 1 for a failure."""
    if isinstance(exc, click.ClickException):
        return exc.format_message().replace("\n", " "), exc.exit_code
    if isinstance(exc, LmevalError):
        return one_line(exc), exc.exit_code
    # a bug or an unexpected failure: still one line
    return f"{one_line(exc)} (rerun with --debug for the traceback)", 1


def _cache_choice(cache: bool | None, cache_dir: str | None) -> bool | str:
    """``--cache``/``--no-cache`` and ``--cache-dir`` as compare's ``cache=``: a folder
    alone turns the cache on; ``--no-cache`` turns it off whatever the folder."""
    if cache is False or (cache is None and not cache_dir):
        return False
    return cache_dir or True


def _finite(value: float, name: str) -> float:
    if not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number", param_hint=name)
    return value


@click.group(cls=LmevalGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lmeval")
@plugin_option
def cli() -> None:
    """Train language models on your text and compare them by perplexity.

    \b
    Quick start:
      lmeval compare                              every built-in model, built-in text
      lmeval compare -m ngram:order=3 -m uniform --text book.txt
      lmeval models                               models and their parameters
      lmeval check ngram:order=3                  does a model keep the contract?
      lmeval inspect -m ngram:order=3 -m ngram:order=5   where one beats the other
      lmeval curve -m ngram:order=5 --plot curve.png      perplexity vs training size
      lmeval bench suite.toml                     a suite: data sets x models x seeds
    """


# -- data options shared by compare and generate ------------------------------


def data_options(f: Callable) -> Callable:
    options = [
        click.option(
            "--dataset",
            metavar="NAME",
            help="A registered data set (lmeval datasets); default pydoc-topics.",
        ),
        click.option(
            "--text",
            type=click.Path(dir_okay=False),
            help="One text file, split by "
            "--split into train/valid/test (contiguous runs of lines).",
        ),
        click.option("--train", type=click.Path(dir_okay=False), help="Training text file."),
        click.option("--valid", type=click.Path(dir_okay=False), help="Validation text file."),
        click.option("--test", type=click.Path(dir_okay=False), help="Test text file."),
        click.option(
            "--split",
            default=",".join(map(str, DEFAULT_SPLIT)),
            show_default=True,
            help="Train,valid,test fractions of --text or --dataset.",
        ),
        click.option(
            "--encoding",
            default="utf-8",
            show_default=True,
            help="Encoding of the text files (.gz files are decompressed).",
        ),
        click.option(
            "--max-bytes",
            default="512M",
            show_default=True,
            metavar="SIZE",
            callback=lambda ctx, param, v: parse_size(v),
            help="Read at most this much of each text file (K, M, G; .gz: decompressed), "
            "so an endless stream is an error, not a full memory.",
        ),
        click.option(
            "--tokenizer",
            default="char",
            show_default=True,
            help="char (every character) or word (whitespace-split), or a plugin's.",
        ),
        click.option(
            "--stream",
            is_flag=True,
            help="Treat the text as one sequence: no "
            "end-of-line tokens (default: every line is a sequence).",
        ),
        click.option(
            "--min-freq",
            default=1,
            show_default=True,
            type=click.IntRange(min=1),
            help="Tokens seen fewer times in train become <unk>.",
        ),
        click.option(
            "--seed",
            default=0,
            show_default=True,
            type=click.IntRange(min=0, max=MAX_SEED),
            help="Seed for every model that samples (same seed, same numbers).",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _data_kwargs(kw: dict[str, Any]) -> dict[str, Any]:
    return {
        "dataset": kw["dataset"],
        "text": kw["text"],
        "train": kw["train"],
        "valid": kw["valid"],
        "test": kw["test"],
        "split": parse_split(kw["split"]),
        "encoding": kw["encoding"],
        "max_bytes": kw["max_bytes"],
        "tokenizer": kw["tokenizer"],
        "lines": not kw["stream"],
        "min_freq": kw["min_freq"],
        "seed": kw["seed"],
    }


@cli.command()
@click.option(
    "-m",
    "--model",
    "models",
    multiple=True,
    metavar="SPEC",
    help="[LABEL=]NAME[:key=value,...], repeatable; default: every model's "
    "recommended spec. See `lmeval models`.",
)
@data_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="Output format.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(),
    help="Write the results to this file (atomically) instead of the terminal.",
)
@click.option(
    "--save-models",
    type=click.Path(file_okay=False),
    metavar="DIR",
    help="Save every fitted model as DIR/LABEL.lmz (score later with -m saved:path=...).",
)
@click.option(
    "--save-arpa",
    type=click.Path(file_okay=False),
    metavar="DIR",
    help="Write every fitted n-gram model as DIR/LABEL.arpa, the ARPA file KenLM's "
    "build_binary and query and -m arpa:path=... read (other rows are skipped: "
    "details.arpa_error says why).",
)
@click.option(
    "--save-tokens",
    type=click.Path(dir_okay=False),
    metavar="PATH",
    help="Write every model's predicted tokens to PATH.jsonl or PATH.parquet (extra "
    "lmeval[parquet]): model, position, line, token, logprob (nats), oov, order (n-grams).",
)
@click.option(
    "--verify",
    "verify_positions",
    default=DEFAULT_POSITIONS,
    show_default=True,
    type=click.IntRange(min=1),
    metavar="N",
    help="Check each model's scores at N seeded positions before it is ranked: causal, "
    "normalised, consistent with next_token_logprobs.",
)
@click.option(
    "--verify-seed",
    type=click.IntRange(min=0, max=MAX_SEED),
    metavar="N",
    help="Seed of the verified positions (default: random, recorded in the meta, so "
    "that a model cannot know where it is probed; give it to repeat a verification).",
)
@click.option(
    "--no-verify",
    is_flag=True,
    help="Skip the checks: records say verified: null, the caption says verification "
    "was off (not recommended).",
)
@click.option(
    "--isolate",
    is_flag=True,
    help="Fit and score each model in a child process of its own, so that a crash in "
    "native code (a segmentation fault) fails only its row; costs a new interpreter "
    "per model (about a second) and shows no progress of the model's own work.",
)
@click.option(
    "--bootstrap",
    default=1000,
    show_default=True,
    type=click.IntRange(min=0),
    metavar="N",
    help="Replicates of the block bootstrap over test lines (seeded by --seed) that give "
    "each metric an interval and each row a paired test against the best (0 = off).",
)
@click.option(
    "--confidence",
    default=0.95,
    show_default=True,
    type=float,
    help="Level of the bootstrap intervals, strictly between 0 and 1; a row is a tie "
    "with the best when its p-value is at least 1 - level.",
)
@click.option(
    "--metric",
    "metrics",
    multiple=True,
    metavar="NAME",
    help="A metric column of the table (repeatable, in order; default: perplexity, "
    "cross_entropy, bits_per_char, bits_per_byte and plugin metrics). Also "
    "word_perplexity, bits_per_token, "
    "accuracy (top-1, computed only when asked: about one more scoring pass). "
    "JSON and CSV keep every metric.",
)
@click.option(
    "--cache/--no-cache",
    default=None,
    help="Reuse fitted models from the model cache (same model, parameters, plugin code, "
    "training text and seed) and store new ones there (lmeval cache list). "
    "[default: no cache, unless --cache-dir is given]",
)
@click.option(
    "--cache-dir",
    metavar="DIR",
    help="The model cache folder (implies --cache; default: $LMEVAL_CACHE_DIR/models "
    "or the user cache folder's).",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@plugin_option
@click.pass_obj
def compare(
    run: Invocation,
    models,
    fmt,
    output,
    save_models,
    save_arpa,
    save_tokens,
    verify_positions,
    verify_seed,
    no_verify,
    isolate,
    bootstrap,
    confidence,
    metrics,
    cache,
    cache_dir,
    quiet,
    **kw,
) -> None:
    """Fit models on the training text and compare them on the test text.

    \b
    Every model is scored on the same predicted tokens; the table is sorted
    by bits per character, which compares models across tokenizers. Before a
    row is ranked its scores are verified (--verify): a model whose scores
    look ahead or do not sum to 1 is a failed row with the reason.
    Columns:
      ppl        perplexity, exp(nats/tok), per predicted token
      nats/tok   cross-entropy, mean -ln p per predicted token
      bits/char  total -log2 p over the characters of the test text
      bits/byte  the same over its UTF-8 bytes
      OOV        share of predicted tokens that are <unk>
    JSON output: {"results": [record, ...], "meta": {...}}; each record has
    label, spec, perplexity, cross_entropy, bits_per_char, bits_per_byte, nll,
    tokens, chars, bytes, lines, oovs, oov_rate, fit_seconds, score_seconds,
    params, verified, verify_error, perplexity_ci, cross_entropy_ci,
    bits_per_char_ci, bits_per_byte_ci ([low, high] bootstrap intervals) and
    vs_best (label, delta_bits_per_char, ci, p_value, significant: the paired
    test against the best row; null for it) (and error for a failed model);
    meta.bootstrap says how. In the table ± is the interval's half-width and
    ≈ marks a tie with the best. Infinite values are null in JSON. Exit
    status 1 when any row failed.
    Ctrl-C (or SIGTERM) stops the comparison; the rows that finished are
    still shown or written, and the exit status is 130.
    """
    from .evaluate import Interrupted, default_specs
    from .evaluate import compare as run_compare
    from .export import save_tokens as write_tokens
    from .export import tokens_format
    from .progressbars import progress
    from .report import render, render_table

    metrics = tuple(dict.fromkeys(metrics))  # a name given twice is one column
    for name in metrics:
        if name not in run.host.metrics:
            known = ", ".join(run.host.metrics)
            raise UsageError(f"unknown metric {name!r} for --metric; known: {known}")
    if save_tokens is not None:
        tokens_format(save_tokens)  # a bad suffix, no pyarrow, no folder: before training
        if output is not None and Path(output).resolve() == Path(save_tokens).resolve():
            raise UsageError(f"-o and --save-tokens are both {output}: give two files")
    if output is not None:
        check_writable(output)
        if save_models and output.endswith(".lmz"):
            if Path(output).resolve().parent == Path(save_models).resolve():
                raise UsageError(
                    f"-o {output} is in the --save-models folder, where a saved model may "
                    "have its name: write the results elsewhere"
                )
    set_progress_for(quiet or not is_main_process())
    data = _data_kwargs(kw)
    specs = list(models) or None
    total = len(specs) if specs else len(default_specs(run.host))
    if not is_main_process():  # under torchrun: help rank 0 train, which writes the results
        run_compare(specs, host=run.host, bootstrap=0, **data)
        return
    interrupted = None
    try:
        with progress("compare", total=total) as bar:
            result = run_compare(
                specs,
                save_models=save_models,
                save_arpa=save_arpa,
                verify=0 if no_verify else verify_positions,
                verify_seed=verify_seed,
                host=run.host,
                on_result=lambda r: bar.update(advance=1, info=f"done: {r['label']}"),
                on_stage=lambda label, stage: bar.update(info=f"{stage} {_short(label)}"),
                top1="accuracy" in metrics,
                isolate=isolate,
                keep_tokens=save_tokens is not None,
                bootstrap=bootstrap,
                confidence=confidence,
                cache=_cache_choice(cache, cache_dir),
                **data,
            )
    except Interrupted as exc:
        if not exc.comparison.results:
            raise
        result, interrupted = exc.comparison, exc.comparison.meta["interrupted"]["not_run"]
    if run.debug:
        for label, text in result.tracebacks.items():
            click.echo(f"lmeval: traceback of {label}:\n{text}", err=True)
    if fmt == "table" and output is None:
        render_table(result, metrics=metrics)
    elif fmt == "table":
        from rich.console import Console

        buffer = io.StringIO()
        render_table(result, Console(file=buffer, width=160, no_color=True), metrics)
        _emit(buffer.getvalue(), output)
    else:
        _emit(render(result, fmt, metrics), output)
    if save_tokens is not None:
        rows = write_tokens(result, save_tokens)
        click.echo(f"wrote {save_tokens} ({rows} tokens)", err=True)
    if interrupted is not None:
        left = f"; not run: {', '.join(interrupted)}" if interrupted else ""
        _fail(f"interrupted: the {len(result.results)} finished row(s) are above{left}", 130)
    unsaved = [r["label"] for r in result.results if (r.get("details") or {}).get("save_error")]
    if save_models and unsaved and not any(r.get("error") for r in result.results):
        # the results are written; a model asked to be saved and not saved is a failure
        _fail(f"model(s) not saved: {', '.join(unsaved)} (details.save_error says why)", 1)
    failed = [r["label"] for r in result.results if r.get("error")]
    if failed:
        # the results are written; the status tells a script that a row holds an error
        click.echo(f"lmeval: error: model(s) failed: {', '.join(failed)}", err=True)
        sys.exit(1)


def _emit(text: str, output: str | None) -> None:
    if output is None:
        click.echo(text, nl=False)
        return
    from .files import STDOUT, atomic_write

    with atomic_write(output, "w", encoding="utf-8") as handle:
        handle.write(text)
    if output != STDOUT:
        click.echo(f"wrote {output}", err=True)


@cli.command()
@click.option("-m", "--model", "spec", metavar="SPEC", help="The model to train on the data.")
@click.option(
    "--load",
    type=click.Path(dir_okay=False),
    help="A saved model (.lmz, from compare --save-models) to generate from instead of "
    "training one; the data options are then not used.",
)
@click.option("--prefix", default="", help="Text to warm the model up on.")
@click.option(
    "-n",
    "length",
    default=200,
    show_default=True,
    type=click.IntRange(min=0),
    help="Tokens to generate.",
)
@click.option(
    "--temperature",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0, max=1e6),
    callback=lambda ctx, param, v: _finite(v, "--temperature"),
    help="Sampling temperature; 0 = always the most probable token (greedy).",
)
@data_options
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@plugin_option
@click.pass_obj
def generate(run: Invocation, spec, load, prefix, length, temperature, quiet, **kw) -> None:
    """Sample text from a model trained on the data (or loaded with --load).

    The prefix is printed, then the sampled continuation.
    """
    from .evaluate import make_tokenizer, train

    set_progress_for(quiet)
    data = _data_kwargs(kw)
    if load:
        from .saved import load_model

        model, meta = load_model(Path(load), run.host.models)
        lines = model.vocab.eos is not None
        tok = make_tokenizer(meta["tokenizer"], lines=lines, host=run.host)
        tok.vocab = model.vocab
    elif spec is None:
        raise UsageError("give a model to train with -m SPEC, or a saved one with --load FILE")
    else:
        model, tok = train(spec, host=run.host, **data)
    try:
        ids = model.generate(tok.encode_prefix(prefix), length, temperature, data["seed"])
    except NotImplementedError as exc:
        raise UsageError(str(exc)) from None
    click.echo(tok.continue_text(prefix, ids))


@cli.command("check")
@click.argument("spec")
@click.option(
    "--text",
    type=click.Path(dir_okay=False),
    help="Fit and probe on this text (split 80/10/10); default: the first "
    "400 lines of the built-in data set.",
)
@click.option(
    "--tokenizer", default="char", show_default=True, help="The tokenizer to fit on the text."
)
@click.option("--stream", is_flag=True, help="One sequence, no end-of-line tokens.")
@click.option(
    "--positions",
    default=32,
    show_default=True,
    type=click.IntRange(min=1),
    help="Probes per check.",
)
@click.option(
    "--seed",
    default=0,
    show_default=True,
    type=click.IntRange(min=0, max=MAX_SEED),
    help="Seed of the model and of the probed positions.",
)
@listing_format
@plugin_option
@click.pass_obj
def check(run: Invocation, spec, text, tokenizer, stream, positions, seed, fmt) -> None:
    """Check that a model keeps the contract: a pass/fail table of named checks.

    \b
    Fits SPEC on a small text, then checks its scores: causal (the future never
    changes the past), normalised (every next-token distribution sums to 1),
    consistent (score agrees with next_token_logprobs), finite and of the
    right shape, the same under the same seed, the same after save and load;
    and that bad parameter values are refused. Exit status 1 if any check
    fails. The same checks from Python: lmeval.testing.check_model.
    """
    from .testing import check_model

    report = check_model(
        spec,
        text,
        tokenizer=tokenizer,
        lines=not stream,
        positions=positions,
        seed=seed,
        host=run.host,
    )
    data = report.to_dict()
    rows = data["checks"]
    if fmt == "json":
        click.echo(json.dumps(data, indent=2))
    else:
        colour = {"pass": "green", "fail": "red", "skip": "yellow", "n/a": "dim"}
        verdict = "passed" if report.passed else "FAILED"
        _print_rows(
            rows,
            fmt,
            f"lmeval check {spec}: {verdict}",
            ["check", "result", "detail"],
            lambda r: [r["name"], f"[{colour[r['status']]}]{r['status']}[/]", r["detail"]],
            lines=False,
        )
    if not report.passed:
        sys.exit(1)


@cli.command("curve")
@click.option(
    "-m", "--model", "models", multiple=True, metavar="SPEC", required=True,
    help="A model to draw (repeatable); with --history, the one model to train.",
)  # fmt: skip
@click.option(
    "--history",
    is_flag=True,
    help="Instead of a learning curve: train the model once and draw its per-epoch "
    "train and validation perplexity against tokens seen (rnn).",
)
@click.option(
    "--points",
    default=5,
    show_default=True,
    type=click.IntRange(min=2, max=50),
    help="Training-set sizes of the learning curve.",
)
@click.option(
    "--smallest",
    default=1 / 32,
    show_default=True,
    type=click.FloatRange(min=0, max=1, min_open=True, max_open=True),
    help="The smallest training-set size, as a fraction of the training text.",
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False),
    metavar="PATH",
    help="Also draw the curve as a .png or .svg (needs the extra lmeval[plot]).",
)
@data_options
@listing_format
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@plugin_option
@click.pass_obj
def curve(run: Invocation, models, history, points, smallest, plot, fmt, quiet, **kw) -> None:
    """Draw held-out perplexity against training-set size, or a model's training history.

    \b
    A learning curve fits every -m model on growing prefixes of the training
    text (whole lines; --points sizes from --smallest of it to all of it) and
    scores each on the same test text: seconds for n-grams, the budget times
    the points for an RNN. --history trains one model and draws its train and
    validation perplexity per epoch. The table goes to the terminal (or JSON
    with --format json); --plot PATH writes a PNG or SVG as well.
    """
    from .curves import check_plot_path, curve_table, learning_curve, save_plot, training_history

    if plot is not None:
        check_plot_path(plot)
    set_progress_for(quiet)
    data = _data_kwargs(kw)
    if history:
        if len(models) != 1:
            raise UsageError("--history draws one model: give exactly one -m SPEC")
        result = training_history(models[0], host=run.host, **data)
    else:
        result = learning_curve(
            list(models), points=points, smallest=smallest, host=run.host, **data
        )
    if fmt == "json":
        click.echo(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        from rich.console import Console

        Console().print(curve_table(result))
    if plot is not None:
        save_plot(result, plot)
        click.echo(f"wrote {plot}", err=True)


@cli.command("inspect")
@click.option(
    "-m", "--model", "models", multiple=True, metavar="SPEC", required=True,
    help="The model to show (its surprisal), or two: their difference (first minus second).",
)  # fmt: skip
@click.option(
    "--start", default=0, show_default=True, type=click.IntRange(min=0),
    help="First line of the test text to show (0-based).",
)  # fmt: skip
@click.option(
    "--lines", "count", default=12, show_default=True, type=click.IntRange(min=1),
    help="How many lines of the test text to show.",
)  # fmt: skip
@click.option(
    "--top", default=5, show_default=True, type=click.IntRange(min=0),
    help="How many of each model's hardest tokens to list, with their contexts.",
)  # fmt: skip
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Also write the view as one self-contained HTML page (to share or print).",
)
@data_options
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@plugin_option
@click.pass_obj
def inspect(run: Invocation, models, start, count, top, html_path, quiet, **kw) -> None:
    """Show the test text coloured by each token's surprisal, or by how two models differ.

    \b
    One -m: every token coloured by -log2 p under that model (green: well
    predicted, red: surprising). Two -m A -m B: coloured by bits under A
    minus bits under B (purple where B predicts better, orange where A does).
    Below, the tokens each model found hardest, with their contexts.
    --html FILE writes the same view as one page (hover a token for its bits).
    """
    from .surprisal import render_html, render_terminal, surprisal_view

    if html_path is not None:
        check_writable(html_path)
    set_progress_for(quiet)
    data = _data_kwargs(kw)
    view = surprisal_view(list(models), host=run.host, **data)
    lines = int(view.line_of[-1]) + 1 if len(view.line_of) else 0
    if start >= lines:
        raise UsageError(f"--start {start}: the test text has {lines} lines (0 to {lines - 1})")
    from rich.console import Console

    Console().print(render_terminal(view, start, count, top))
    if html_path is not None:
        from .files import atomic_write

        with atomic_write(html_path, "w", encoding="utf-8") as handle:
            handle.write(render_html(view, start, count, top))
        click.echo(f"wrote {html_path}", err=True)


@cli.command("models")
@listing_format
@plugin_option
@click.pass_obj
def list_models(run: Invocation, fmt) -> None:
    """List the registered models and their parameters."""
    host = run.host
    rows = []
    for name, cls in host.models.items():
        rows.append(
            {
                "name": name,
                "plugin": host.models.plugin_of[name],
                "description": cls.description,
                "recommended": cls.recommended,
                "params": [
                    {
                        "name": p.name,
                        "type": p.type.__name__,
                        "default": p.default,
                        "help": p.help,
                        **({"choices": list(p.choices)} if p.choices else {}),
                    }
                    for p in cls.params
                ],
            }
        )

    def cells(row: dict[str, Any]) -> list[str]:
        params = "\n".join(
            f"[bold]{p['name']}[/]={p['default']!s} ({p['type']}"
            + (f": {'|'.join(p['choices'])}" if "choices" in p else "")
            + f") {p['help']}"
            for p in row["params"]
        )
        return [f"[bold]{row['name']}[/]\n{row['description']}", params or "–", row["plugin"]]

    _print_rows(
        rows, fmt, "models (spec: NAME:key=value,...)", ["model", "parameters", "plugin"], cells
    )


@cli.command("plugins")
@listing_format
@plugin_option
@click.pass_obj
def list_plugins(run: Invocation, fmt) -> None:
    """List loaded plugins, where each came from and what it registers."""
    host = run.host
    rows = [
        {"name": p.name, "source": p.source, "registered": p.registered, "error": p.error}
        for p in host.plugins
    ]

    def cells(row: dict[str, Any]) -> list[str]:
        what = "; ".join(f"{k}: {', '.join(v)}" for k, v in row["registered"].items())
        return [row["name"], row["source"], f"[red]{row['error']}[/]" if row["error"] else what]

    _print_rows(rows, fmt, "plugins", ["plugin", "from", "registers"], cells)


@cli.command("datasets")
@listing_format
@plugin_option
@click.pass_obj
def list_datasets(run: Invocation, fmt) -> None:
    """List the data sets --dataset can select, their sizes and whether they are cached."""
    host = run.host
    rows = [
        {
            "name": name,
            "description": ds.description,
            "bytes": ds.size_bytes,
            "cached": ds.cached,
            "plugin": host.datasets.plugin_of[name],
        }
        for name, ds in host.datasets.items()
    ]
    available = {None: "yes (built in)", True: "yes (cached)", False: "no (downloads)"}

    def cells(row: dict[str, Any]) -> list[str]:
        size = "–" if row["bytes"] is None else f"{row['bytes']:,}"
        return [row["name"], size, available[row["cached"]], row["description"]]

    _print_rows(
        rows, fmt, "data sets", ["name", "bytes", "available offline", "description"], cells
    )


cli_bench.register(cli)


def main() -> None:
    share_allocator_arena()  # before any thread allocates: memory freed is memory returned
    cli.main()
