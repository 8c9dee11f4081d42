"""Identity against impostors: separability per identity model on the demo set, and the
impostor gallery against itself ("different synthetic people").

Run from the project root with the project's venv (after `exprbench fetch-models`, which
also fetches the gallery):

    .venv/bin/python benchmarks/bench_identity.py [--gallery 64]

1. Demo set: builds the demo set (`exprbench fetch-demo`) in a temporary folder, runs
   ingest, upscale, faces and the score stage with every registered identity scorer
   (those declaring the `identity` output; one that cannot run is listed as unavailable)
   and `score.impostor_gallery` = `--gallery`, then the aggregate (bootstrap as in
   params.yaml). Prints `identity_separability`: per generator/version (= package of the
   demo photos) and model, genuine pairs (image vs own neutral), impostor pairs (vs the
   other subjects' neutrals and the gallery), ROC AUC (Mann-Whitney; all impostors, and
   the set's own other subjects only), rank-1 rate, mean margin, the share of genuine and
   impostor pairs under the same-person threshold, the nearest impostor, and the ensemble
   (mean of standardised distances) with whether it beats the best single model.
2. Gallery vs itself: each model's descriptor of every gallery face (all 263), every pair
   of different faces: the share under the threshold (pairs of *different* generated people
   the fixed threshold calls the same person), the nearest pair and the 1st percentile.

Nothing under data/ is touched; weights and the gallery come from the user cache.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.benchlib import demo_through_faces, load, load_note, machine  # noqa: E402


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def identity_scorers() -> tuple[dict[str, type], dict[str, str]]:
    """(registered identity scorers that run here, {name: why not} for the others)."""
    from exprbench.faces import FaceDetector
    from exprbench.gallery import GALLERY, gallery_descriptor
    from exprbench.imageio import load_rgb
    from exprbench.packaged import ensure
    from exprbench.scorers import available_scorers
    from exprbench.scorers.base import ModelUnavailableError

    detector = FaceDetector()
    probe = load_rgb(ensure(GALLERY[0], fetch=False))
    usable, unavailable = {}, {}
    for name, cls in available_scorers().items():
        if "identity" not in cls.outputs:
            continue
        try:
            gallery_descriptor(detector, cls(), probe)
            usable[name] = cls
        except (ModelUnavailableError, FileNotFoundError, RuntimeError) as error:
            unavailable[name] = str(error).splitlines()[0][:160]
    return usable, unavailable


def demo_separability(tmp: Path, scorers: list[str], gallery: int) -> list[dict]:
    from exprbench.aggregate import build_tables
    from exprbench.config import Layout
    from exprbench.settings import load_settings
    from tasks.score import score

    raw, out = demo_through_faces(tmp, log)
    settings = load_settings(ROOT / "params.yaml")
    settings = dataclasses.replace(
        settings,
        score=dataclasses.replace(settings.score, scorers=tuple(scorers), impostor_gallery=gallery),
    )
    layout = Layout.for_output(raw, out)
    log("score (identity scorers, gallery descriptors)")
    score.fn(layout, settings)
    log("aggregate")
    boot = settings.uncertainty
    tables = build_tables(
        layout.scores, layout.database, layout.tables, (boot.seed, boot.resamples)
    )
    return tables["identity_separability"].to_pylist()


def gallery_self(scorers: dict[str, type], thresholds: dict[str, float]) -> list[dict]:
    from exprbench.faces import FaceDetector
    from exprbench.gallery import GALLERY, gallery_descriptor
    from exprbench.imageio import load_rgb
    from exprbench.packaged import ensure

    detector = FaceDetector()
    images = [load_rgb(ensure(item, fetch=False)) for item in GALLERY]
    rows = []
    for name, cls in scorers.items():
        log(f"gallery vs itself: {name} on {len(images)} faces")
        scorer = cls()
        found = [gallery_descriptor(detector, scorer, rgb) for rgb in images]
        vectors = np.array([f["descriptor"] for f in found if f.get("descriptor") is not None])
        diff = vectors[:, None, :] - vectors[None, :, :]
        distances = np.sqrt((diff**2).sum(axis=-1))[np.triu_indices(len(vectors), k=1)]
        rows.append(
            {
                "scorer": name,
                "faces": len(vectors),
                "pairs": distances.size,
                "threshold": thresholds[name],
                "under": float((distances < thresholds[name]).mean()),
                "nearest": float(distances.min()),
                "p1": float(np.percentile(distances, 1)),
                "median": float(np.median(distances)),
            }
        )
    return rows


def _f(value: object, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gallery", type=int, default=64, help="score.impostor_gallery")
    args = parser.parse_args()
    from exprbench.scoring import identity_thresholds
    from exprbench.settings import load_settings

    threshold = load_settings(ROOT / "params.yaml").score.same_identity_threshold
    at_start = load()
    usable, unavailable = identity_scorers()
    with tempfile.TemporaryDirectory() as tmp:
        separability = demo_separability(Path(tmp), list(usable), args.gallery)
    # each model's own same-person threshold (human_faceres declares 0.9), as the pipeline uses
    thresholds = identity_thresholds(usable, threshold)
    self_rows = gallery_self(usable, thresholds)
    print(f"Machine: {machine()}; {load_note(at_start)}.")
    print()
    print(
        f"Identity models: {', '.join(usable)}"
        + (
            "; unavailable here: " + "; ".join(f"{k} ({v})" for k, v in unavailable.items())
            if unavailable
            else ""
        )
        + ". Same-person threshold per model: "
        + ", ".join(f"{name} {value:g}" for name, value in thresholds.items())
        + f"; impostor gallery: first {args.gallery} "
        "faces of npm fake-avatars 1.1.0."
    )
    print()
    print("Demo set (real photos; generator/version = the package they ship in):")
    print()
    print(
        "| generator / version | model | genuine | impostor pairs | AUC | AUC own set | "
        "rank-1 | mean margin | genuine < thr | impostors < thr | thr | nearest impostor | "
        "beats members |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in separability:
        model = r["scorer"] if r["members"] == r["scorer"] else f"{r['scorer']} ({r['members']})"
        better = r["better_than_members"]
        print(
            f"| {r['generator']} {r['version']} | {model} | {r['n_genuine']} | "
            f"{r['n_impostor_pairs']} | {_f(r['auc'])} | {_f(r['auc_sets'])} | "
            f"{_f(r['rank1_rate'], 2)} | {_f(r['mean_margin'])} | "
            f"{_f(r['genuine_below_threshold'], 2)} | {_f(r['impostor_below_threshold'])} | "
            f"{_f(r['threshold'], 2)} | {_f(r['nearest_impostor'])} | "
            f"{'–' if better is None else better} |"
        )
    print()
    print("Impostor gallery against itself (every pair of different generated people):")
    print()
    print(
        "| model | faces found | pairs | threshold | share under it | nearest pair | "
        "1st percentile | median |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in self_rows:
        print(
            f"| {r['scorer']} | {r['faces']} | {r['pairs']} | {r['threshold']:g} | "
            f"{100 * r['under']:.1f}% | "
            f"{r['nearest']:.3f} | {r['p1']:.3f} | {r['median']:.3f} |"
        )


if __name__ == "__main__":
    main()
