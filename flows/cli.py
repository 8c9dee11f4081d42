"""The `exprbench` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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
    if not server.use_local_server_if_running():
        print(
            "exprbench: no local Prefect server on 127.0.0.1:4200; using a temporary one "
            "(adds 10-20 s per command). Start one with `exprbench server start`.",
            file=sys.stderr,
        )


def cmd_run(args: argparse.Namespace) -> int:
    from exprbench.config import Layout
    from exprbench.settings import load_settings

    if not Path(args.input).is_dir():
        raise FileNotFoundError(f"input folder {args.input} does not exist")
    settings = load_settings(_params_path(args.params))
    layout = Layout.for_output(
        Path(args.input), Path(args.output), Path(args.cache) if args.cache else None
    )
    _connect()
    from flows.stages import pipeline

    pipeline(layout, settings)
    print(f"scores:     {layout.scores}")
    print(f"quarantine: {layout.quarantine}")
    print(f"database:   {layout.database}")
    print(f"report:     {layout.report_html.resolve()}")
    return 0


def cmd_stage(args: argparse.Namespace) -> int:
    from exprbench.config import Layout
    from exprbench.settings import load_settings

    settings = load_settings(_params_path(args.params))
    layout = Layout.from_paths(settings.paths)
    _connect()
    from flows.stages import stage_flow

    stage_flow(args.name)(layout, settings)
    if args.name == "report":
        print(f"report: {layout.report_html.resolve()}")
    elif args.name == "resolution":
        print(f"resolution study: {(layout.reports / 'resolution' / 'index.html').resolve()}")
    return 0


def cmd_fetch_models(args: argparse.Namespace) -> int:
    from exprbench.validation import fetch_data_docs_assets
    from exprbench.weights import WEIGHTS, fetch_models

    width = max(map(len, WEIGHTS))
    for key, path in zip(WEIGHTS, fetch_models(), strict=True):
        print(f"{key:{width}s} {path}  ({WEIGHTS[key].license})")
    assets = fetch_data_docs_assets()
    print(f"offline Data Docs assets: {len(assets)} files")
    return 0


def cmd_fetch_demo(args: argparse.Namespace) -> int:
    from exprbench.demo import build_demo

    written = build_demo(Path(args.dest))
    print(f"demo set: {len(written)} files under {args.dest}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    """Score single images without a pipeline run; one JSON object per image."""
    import json

    from exprbench.imageio import ImageRejected, load_rgb
    from exprbench.scorers import get_scorer_class
    from exprbench.settings import load_settings
    from exprbench.single import score_image

    min_score = load_settings(_params_path(None)).faces.min_score
    scorer = get_scorer_class(args.scorer)()
    detector = None
    if args.scorer != "faceapi":
        from exprbench.faces import FaceDetector

        detector = FaceDetector()
    failed = 0
    for path in args.images:
        try:
            record = {"path": path, **score_image(load_rgb(path), scorer, detector, min_score)}
        except (ImageRejected, OSError) as error:
            failed += 1
            record = {"path": path, "error": str(error)}
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
        url = server.start(args.port)
        print(
            f"Prefect server: {url}\nUI: {url.removesuffix('/api')}\n"
            f"Other shells: export PREFECT_API_URL={url}"
        )
    elif args.action == "stop":
        print("stopped" if server.stop() else "no server started by exprbench is running")
    else:
        healthy = server.is_healthy(args.port)
        print(f"{server.api_url(args.port)}: {'healthy' if healthy else 'not running'}")
        return 0 if healthy else 1
    return 0


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
    """Serve a deployment that reruns `dvc repro` on a cron schedule."""
    _connect()
    from flows.schedule import serve_repro

    serve_repro(args.cron, Path(args.project).resolve())
    return 0


def cmd_plots_template(args: argparse.Namespace) -> int:
    from flows.dvc_plots import configure

    print(f"dvc plots template: {configure(Path(args.project).resolve())}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="exprbench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run every stage on a folder, without DVC")
    run.add_argument("--input", required=True, help="folder of generator/version/subject/...")
    run.add_argument("--output", required=True, help="folder for tables, report and caches")
    run.add_argument("--params", help="params.yaml (default: ./params.yaml or the project's)")
    run.add_argument("--cache", help="per-image cache folder (default: OUTPUT/cache)")
    run.set_defaults(func=cmd_run)

    stage = sub.add_parser("stage", help="run one stage with params.yaml paths (DVC uses this)")
    stage.add_argument("name", choices=STAGES + STUDIES)
    stage.add_argument("--params")
    stage.set_defaults(func=cmd_stage)

    sub.add_parser(
        "fetch-models", help="download pinned weights and offline Data Docs assets"
    ).set_defaults(func=cmd_fetch_models)
    demo = sub.add_parser("fetch-demo", help="build the demo image set from packaged photos")
    demo.add_argument("--dest", default="data/raw")
    demo.set_defaults(func=cmd_fetch_demo)

    score = sub.add_parser("score", help="score single images (no pipeline, no Prefect)")
    score.add_argument("images", nargs="+", metavar="IMAGE")
    score.add_argument("--scorer", default="faceapi", help="registered scorer (default faceapi)")
    score.add_argument("--json", action="store_true", help="one JSON object per image")
    score.set_defaults(func=cmd_score)

    srv = sub.add_parser("server", help="local Prefect server on 127.0.0.1 (telemetry off)")
    srv.add_argument("action", choices=("start", "stop", "status"))
    srv.add_argument("--port", type=int, default=server.DEFAULT_PORT)
    srv.set_defaults(func=cmd_server)

    sub.add_parser("scorers", help="list registered scorers and their metrics").set_defaults(
        func=cmd_scorers
    )

    sched = sub.add_parser("schedule", help="rerun `dvc repro` on a cron schedule (foreground)")
    sched.add_argument("--cron", default="0 3 * * *")
    sched.add_argument("--project", default=".")
    sched.set_defaults(func=cmd_schedule)

    plots = sub.add_parser(
        "plots-template", help="make `dvc plots show` render offline (inlines vega from npm)"
    )
    plots.add_argument("--project", default=".")
    plots.set_defaults(func=cmd_plots_template)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # a clear one-line message instead of a traceback
        from exprbench.ingest import InputConfigError
        from exprbench.packaged import PackagedFileError
        from exprbench.scorers import ModelUnavailableError
        from exprbench.settings import ParamsError

        known = (
            ParamsError,
            InputConfigError,
            PackagedFileError,
            ModelUnavailableError,
            FileNotFoundError,
        )
        if isinstance(error, known) or type(error).__name__ == "ValidationFailed":
            print(f"exprbench: error: {error}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
