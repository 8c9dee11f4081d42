"""Agreement between recognizers on the demo set, for BENCHMARKS.md: Fleiss' kappa per
generator/version, the images they disagree on, accuracy and structural confusion per
recognizer, gender by majority.

Run from the project root with the project's venv (after `exprbench fetch-models`):

    .venv/bin/python benchmarks/bench_agreement.py

Builds the demo set (`exprbench fetch-demo`) in a temporary folder, runs ingest, upscale,
faces and score in this process with params.yaml's settings, restricted to the scorers of
`score.scorers` that recognize expressions or gender (whichever are registered: nothing
here names one), and prints the aggregate stage's judgement tables (exprbench.aggregate,
definitions in exprbench.agreement) as markdown. Nothing under data/ is touched; weights
come from the user cache.

The demo "generators" are the packages the photos come from, each with one to seven
images: the figures show what the tables say on real photos, not a ranking of anything.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import ROOT, demo_through_faces, load, load_note

sys.path.insert(0, str(ROOT))


def _fmt(value: Any, digits: int = 2) -> str:
    return "–" if value is None or value != value else f"{value:.{digits}f}"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> None:
    from exprbench.aggregate import compute_tables
    from exprbench.config import Layout
    from exprbench.scorers import get_scorer_class
    from exprbench.settings import load_settings
    from tasks.score import score

    at_start = load()
    settings = load_settings(ROOT / "params.yaml")
    recognizers = tuple(
        name
        for name in settings.score.scorers
        if {"expression", "gender"} & get_scorer_class(name).outputs
    )
    settings = dataclasses.replace(
        settings, score=dataclasses.replace(settings.score, scorers=recognizers)
    )
    with tempfile.TemporaryDirectory(prefix="bench-agreement-") as tmp:
        raw, out = demo_through_faces(Path(tmp), _log)
        layout = Layout.for_output(raw, out)
        _log(f"score: {', '.join(recognizers)}")
        score.fn(layout, settings)
        tables = {name: t.to_pylist() for name, t in compute_tables(str(layout.scores)).items()}

    print(f"Demo set, recognizers from `score.scorers`: {', '.join(recognizers)}.\n")
    print(
        "| generator / version | expression recognizers (m) | n images | Fleiss' kappa "
        "| mean agreement | unanimous | disagree (tied) |"
    )
    print("|---|---|---|---|---|---|---|")
    for run in tables["agreement"]:
        print(
            f"| {run['generator']} {run['version']} | {run['recognizers']} ({run['n_raters']}) "
            f"| {run['n_images']} | {_fmt(run['fleiss_kappa'])} "
            f"| {_fmt(run['mean_agreement_rate'])} | {_fmt(run['share_unanimous'])} "
            f"| {run['n_disagree']} ({run['n_tied']}) |"
        )
    print("\nImages the expression recognizers disagree on (majority by the tie rule):\n")
    print("| image | requested | verdicts | majority |")
    print("|---|---|---|---|")
    for image in tables["image_agreement"]:
        if not image["unanimous"]:
            tie = " (tie)" if image["tied"] else ""
            print(
                f"| {image['path']} | {image['expression']} | {image['verdicts']} "
                f"| {image['majority']}{tie} |"
            )
    print(
        "\n| recognizer | generator / version | accuracy over 7 (n) | over 6 (n) "
        "| fear/surprise | disgust/angry | sad/neutral | mSCR |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in tables["confusion_summary"]:
        print(
            f"| {row['scorer']} | {row['generator']} {row['version']} "
            f"| {_fmt(row['accuracy_7'])} ({row['n_7']}) | {_fmt(row['accuracy_6'])} "
            f"({row['n_6']}) | {_fmt(row['scr_fear_surprise'])} "
            f"| {_fmt(row['scr_disgust_angry'])} | {_fmt(row['scr_sad_neutral'])} "
            f"| {_fmt(row['mscr'])} |"
        )
    print(
        "\n| generator / version | gender recognizers (m) | n images | disagree "
        "| majority = subjects.csv |"
    )
    print("|---|---|---|---|---|")
    for run in tables["gender_runs"]:
        print(
            f"| {run['generator']} {run['version']} | {run['recognizers']} ({run['n_raters']}) "
            f"| {run['n_images']} | {run['n_disagree']} "
            f"| {_fmt(run['gender_majority_match_rate'])} (n={run['n_with_subject_gender']}) |"
        )
    print(f"\n{load_note(at_start)}.")


if __name__ == "__main__":
    main()
