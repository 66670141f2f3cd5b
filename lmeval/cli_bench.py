"""``lmeval bench`` (run a suite, report its records) and ``lmeval cache`` (the fitted models)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from .bench import EXECUTORS, BenchInterrupted, default_output, plan, run_suite
from .benchtables import latest, parse_filter, read_records, select, summary_table
from .cache import ModelCache, parse_age
from .clikit import Invocation, fail, listing_format, plugin_option, print_rows, set_progress_for
from .errors import UsageError
from .files import atomic_write, check_writable, format_size
from .suite import RECORD_NUMBERS, load_suite

SUMMARY_FORMATS = ("table", "markdown", "csv", "json")


class _DefaultRun(click.Group):
    """``lmeval bench SUITE.toml`` is ``lmeval bench run SUITE.toml``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_DefaultRun)
def bench() -> None:
    """Run benchmark suites and report their records.

    \b
      lmeval bench SUITE.toml              run what is not yet recorded (= bench run)
      lmeval bench SUITE.toml --dry-run    list the runs: recorded, cached or to run
      lmeval bench report RESULTS.jsonl    the tables again, from the records alone

    A suite (TOML) names data sets, models (a list of values is a grid) and
    seeds; every (data set, model, seed) is one run and one record, appended to
    the results file as it finishes. Fitted models go to the model cache
    (lmeval cache list), so no model is trained twice. See `lmeval bench run --help`.
    """


def _group_by(text: str) -> tuple[str, ...]:
    keys = tuple(k.strip() for k in text.split(",") if k.strip())
    if not keys:
        raise UsageError("--group-by needs at least one key (dataset,label)")
    return keys


_summary_options = [
    click.option(
        "--format",
        "fmt",
        type=click.Choice(SUMMARY_FORMATS),
        default="table",
        show_default=True,
        help="table for people, markdown for papers, csv and json for scripts.",
    ),
    click.option(
        "--group-by",
        default="dataset,label",
        show_default=True,
        help="Record keys whose values make one row (mean and spread over the rest, "
        "usually seeds); dotted keys reach inside (resolved.order).",
    ),
    click.option(
        "--metric",
        "metrics",
        multiple=True,
        metavar="NAME",
        help="A column to summarise (repeatable; default: the suite's metrics, or "
        "bits per character, perplexity and the fit and score seconds).",
    ),
]


def summary_options(f):
    for option in reversed(_summary_options):
        f = option(f)
    return f


def _summary(records, fmt: str, group_by: str, metrics: tuple[str, ...]) -> str:
    return summary_table(records, fmt, _group_by(group_by), list(metrics) or None)


def _check_metrics(metrics: tuple[str, ...], run: Invocation) -> None:
    """Refuse a --metric that is neither a metric nor a number records carry."""
    known = [*run.host.metrics, *RECORD_NUMBERS]
    for name in metrics:
        if name not in known:
            raise UsageError(f"--metric {name!r}: not a metric; known: {', '.join(known)}")


def _emit(text: str, output: str | None) -> None:
    if output is None:
        click.echo(text, nl=not text.endswith("\n"))
        return
    with atomic_write(output, "w", encoding="utf-8") as handle:
        handle.write(text)
    click.echo(f"wrote {output}", err=True)


@bench.command("run")
@click.argument("suite_file", metavar="SUITE.toml", type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--output",
    metavar="RESULTS.jsonl",
    help="The results file records are appended to (default: SUITE.results.jsonl "
    "beside the suite).",
)
@click.option("--rerun", is_flag=True, help="Run recorded runs again (their new records count).")
@click.option("--dry-run", is_flag=True, help="List the runs and what each would do; run nothing.")
@click.option(
    "--cache/--no-cache",
    default=True,
    show_default=True,
    help="Reuse fitted models from the model cache and store new ones there.",
)
@click.option(
    "--cache-dir",
    metavar="DIR",
    help="The model cache folder (default: $LMEVAL_CACHE_DIR/models or the user cache "
    "folder's); on a cluster, a folder every worker shares.",
)
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(1, 1024),
    default=1,
    show_default=True,
    help="Runs at once, each in a worker process with its share of the CPU cores.",
)
@click.option(
    "--executor",
    type=click.Choice(EXECUTORS),
    help="Where runs go: sequential (default for --jobs 1), processes (default for "
    "--jobs N), or ray (a Ray cluster; pip install 'lmeval[ray]').",
)
@click.option(
    "--address",
    metavar="ADDR",
    help="The Ray cluster to join (host:port, or auto); default: RAY_ADDRESS, else a "
    "new local Ray instance.",
)
@summary_options
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@plugin_option
@click.pass_obj
def run_command(
    run: Invocation,
    suite_file,
    output,
    rerun,
    dry_run,
    cache,
    cache_dir,
    jobs,
    executor,
    address,
    fmt,
    group_by,
    metrics,
    quiet,
) -> None:
    """Run a benchmark suite: every run not yet recorded, then the summary table.

    \b
    Each run (data set x model x seed) is one record appended to the results
    file (JSON Lines) as soon as it finishes, flushed to disk: a killed
    benchmark loses only the runs in progress, and the same command finishes
    the rest. The summary shows, per data set and model, the mean and spread
    (sample standard deviation) across seeds and the mean bootstrap interval.
    Exit status 1 when a run failed (its record says why), 130 when interrupted.
    """
    _group_by(group_by)
    model_cache: Any = ModelCache(cache_dir) if (cache and cache_dir) else cache
    suite = load_suite(suite_file, run.host)  # read once: a pipe can be read only once
    _check_metrics(metrics, run)
    output = output or default_output(suite)
    if dry_run:
        _dry_run(run, suite, output, rerun, model_cache, executor, jobs)
        return
    set_progress_for(quiet)
    metrics = metrics or tuple(suite.metrics)
    start = time.perf_counter()
    done: list[dict[str, Any]] = []
    try:
        records = run_suite(
            suite,
            output=output,
            rerun=rerun,
            cache=model_cache,
            jobs=jobs,
            executor=executor,
            address=address,
            host=run.host,
            on_record=lambda record: done.append(record),
        )
    except BenchInterrupted as exc:
        if exc.records:
            click.echo(_summary(exc.records, fmt, group_by, metrics), nl=False)
        fail(f"interrupted: {exc.not_run} run(s) not finished; run the suite again to do them", 130)
        return
    seconds = time.perf_counter() - start
    click.echo(_summary(records, fmt, group_by, metrics), nl=False)
    cached = sum(1 for r in done if r.get("from_cache"))
    click.echo(
        f"{len(done)} run(s) done in {seconds:.1f} s ({cached} from cached models), "
        f"{len(records) - len(done)} recorded before",
        err=True,
    )
    failed = [f"{r['dataset']}/{r['label']}/seed {r['seed']}" for r in records if r.get("error")]
    if failed:
        click.echo(f"lmeval: error: run(s) failed: {', '.join(failed)}", err=True)
        sys.exit(1)


def _dry_run(run, suite, output, rerun, cache, executor, jobs) -> None:
    suite, planned, _, _ = plan(
        suite,
        output=output,
        rerun=rerun,
        cache=cache,
        host=run.host,
        executor=executor or ("processes" if jobs > 1 else "sequential"),
        jobs=jobs,
    )
    rows = [
        {
            "dataset": p.task.dataset.label,
            "label": p.task.label,
            "spec": p.task.spec.text,
            "seed": p.task.seed,
            "run_id": p.task.run_id,
            "status": p.status,
        }
        for p in planned
    ]
    counts = {s: sum(1 for r in rows if r["status"] == s) for s in ("recorded", "cached", "to run")}
    title = f"suite {suite.name}: " + ", ".join(f"{n} {s}" for s, n in counts.items())
    print_rows(
        rows,
        "table",
        title,
        ["data set", "model", "spec", "seed", "status"],
        lambda r: [r["dataset"], r["label"], r["spec"], str(r["seed"]), r["status"]],
        lines=False,
    )


@bench.command("report")
@click.argument("results", metavar="RESULTS.jsonl", type=click.Path(dir_okay=False))
@summary_options
@click.option(
    "--filter",
    "filters",
    multiple=True,
    metavar="KEY=VALUE",
    help="Keep records where KEY=VALUE (also !=, <, >; dotted keys reach inside, "
    "resolved.order=5); repeatable, all must hold.",
)
@click.option("-o", "--output", metavar="FILE", help="Write the table here instead of stdout.")
@plugin_option
@click.pass_obj
def report_command(run: Invocation, results, fmt, group_by, metrics, filters, output) -> None:
    """The summary tables again from a results file alone; nothing is run.

    \b
    lmeval bench report RESULTS.jsonl --format markdown
    lmeval bench report RESULTS.jsonl --group-by dataset,model --filter seed=0
    lmeval bench report RESULTS.jsonl --format json      the summary rows
    """
    if output is not None:
        check_writable(output)
        if Path(output).resolve() == Path(results).resolve():
            raise UsageError(f"-o {output} is the results file itself: write the table elsewhere")
    _check_metrics(metrics, run)
    records = latest(read_records(Path(results)))
    records = select(records, [parse_filter(f) for f in filters])
    if not records:
        raise UsageError(f"no records in {results} match: loosen --filter")
    _emit(_summary(records, fmt, group_by, metrics), output)


@click.group()
def cache() -> None:
    """The model cache: fitted models that bench and compare --cache reuse.

    \b
    Where: $LMEVAL_CACHE_DIR/models, else the user cache folder's models.
    An entry is keyed by the model, its resolved parameters, its plugin's
    version and code, the tokenizer and vocabulary, the training and
    validation text, the seed and lmeval's version.
    """


def _cache_option(f):
    return click.option(
        "--cache-dir", metavar="DIR", help="The cache folder (default: the user cache)."
    )(f)


@cache.command("list")
@_cache_option
@listing_format
@plugin_option
@click.pass_obj
def cache_list(run: Invocation, cache_dir, fmt) -> None:
    """List the cached models, most recently used first, with their sizes."""
    store = ModelCache(cache_dir)
    entries = store.entries()
    rows = [
        {
            "key": e.key,
            "label": e.label,
            "spec": e.spec,
            "bytes": e.size,
            "created": e.created,
            "last_used": time.strftime("%Y-%m-%d %H:%M", time.localtime(e.last_used)),
            "fit_seconds": e.fit_seconds,
            "complete": e.complete,
            "path": str(e.path),
        }
        for e in entries
    ]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    total = sum(e.size for e in entries)
    title = f"{len(entries)} cached model(s), {format_size(total)} in {store.root}"
    print_rows(
        rows,
        "table",
        title,
        ["key", "model", "size", "last used", "fit s"],
        lambda r: [
            r["key"][:12] + ("" if r["complete"] else " (incomplete)"),
            r["spec"] or "?",
            format_size(r["bytes"]),
            r["last_used"],
            "–" if r["fit_seconds"] is None else f"{r['fit_seconds']:.2f}",
        ],
        lines=False,
    )


@cache.command("clear")
@_cache_option
@click.option(
    "--older-than",
    metavar="AGE",
    help="Only entries not used for AGE (30d, 12h, 90m, 2w); default: all.",
)
@plugin_option
@click.pass_obj
def cache_clear(run: Invocation, cache_dir, older_than) -> None:
    """Remove cached models (all, or those not used for --older-than AGE)."""
    age = parse_age(older_than) if older_than is not None else None
    store = ModelCache(cache_dir)
    removed, freed = store.clear(age)
    click.echo(f"removed {removed} cached model(s), {format_size(freed)} from {store.root}")


def register(cli: click.Group) -> None:
    """Add ``bench`` and ``cache`` to the command line."""
    cli.add_command(bench)
    cli.add_command(cache)
