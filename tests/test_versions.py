"""Version order: versions.csv, the manifest's release_date, the folder-time fallback
with its warning, and malformed declarations (file and line named)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from exprbench.config import Layout
from exprbench.ingest import InputConfigError, discover
from exprbench.schema import QUARANTINE, read_table
from exprbench.settings import Settings, load_params
from exprbench.versions import version_orders
from tasks.ingest import ingest
from tests.badinputs import swallowing_manifest
from tests.conftest import build_raw

PARAMS = Settings.from_params(load_params(Path(__file__).resolve().parent.parent / "params.yaml"))


def _folders(raw: Path, mtimes: dict[str, int]) -> list[tuple[str, str]]:
    """Version folders with the given modification times (seconds); their pairs."""
    for rel, when in mtimes.items():
        folder = raw / rel
        folder.mkdir(parents=True, exist_ok=True)
        os.utime(folder, (when, when))
    return [tuple(rel.split("/")) for rel in mtimes]  # type: ignore[misc]


def test_versions_csv_orders_by_release_date_not_by_name_or_time(tmp_path: Path) -> None:
    # folder times and names both say old < new < rc; the declaration says otherwise
    found = _folders(tmp_path, {"gen/old": 100, "gen/new": 200, "gen/rc": 300, "solo/1": 50})
    (tmp_path / "versions.csv").write_text(
        "generator,version,release_date\n"
        "gen,rc,2026-03-01\n"
        "gen,new,2026-06-01T09:00\n"
        "gen,old,2026-06-01T08:00\n"  # same day as 'new', earlier time
        "gen,gone,2027-01-01\n"  # a version with no images: ignored
    )
    orders = version_orders(tmp_path, found)
    assert orders["gen"].versions == ("rc", "old", "new")
    assert (orders["gen"].source, orders["gen"].warning) == ("versions.csv", None)
    assert orders["gen"].newest_pair() == ("old", "new")
    # one version: nothing to order, no warning, no pair
    assert orders["solo"].versions == ("1",) and orders["solo"].warning is None
    assert orders["solo"].newest_pair() is None


def test_manifest_release_date_orders_versions(tmp_path: Path) -> None:
    found = _folders(tmp_path, {"gen/b": 100, "gen/a": 200})
    (tmp_path / "manifest.csv").write_text(
        "path,generator,version,subject,expression,release_date\n"
        "x/1.jpg,gen,a,s,happy,2026-01-05\n"
        "x/2.jpg,gen,a,s,sad,\n"  # empty: the other row of the version dates it
        "x/3.jpg,gen,b,s,happy,2026-02-01\n"
    )
    order = version_orders(tmp_path, found)["gen"]
    assert (order.versions, order.source, order.warning) == (("a", "b"), "manifest", None)


def test_fallback_to_folder_time_warns_naming_the_folders(tmp_path: Path) -> None:
    found = _folders(tmp_path, {"gen/v10": 300, "gen/v9": 100, "gen/v11": 200})
    order = version_orders(tmp_path, found)["gen"]
    assert order.versions == ("v9", "v11", "v10")  # by time, not by name
    assert order.source == "mtime"
    assert order.warning is not None
    assert "gen/v9/, gen/v11/, gen/v10/" in order.warning
    assert "no release dates declared" in order.warning and "versions.csv" in order.warning


def test_a_declaration_missing_a_version_falls_back_and_says_which(tmp_path: Path) -> None:
    found = _folders(tmp_path, {"gen/a": 200, "gen/b": 100})
    (tmp_path / "versions.csv").write_text("generator,version,release_date\ngen,a,2026-01-01\n")
    order = version_orders(tmp_path, found)["gen"]
    assert order.source == "mtime" and order.versions == ("b", "a")
    assert order.warning is not None
    assert "versions.csv has no release_date for b" in order.warning


def test_versions_without_folders_are_ordered_by_name_with_a_warning(tmp_path: Path) -> None:
    order = version_orders(tmp_path, [("gen", "v10"), ("gen", "v9")])["gen"]
    assert (order.versions, order.source) == (("v9", "v10"), "name")
    assert order.warning is not None and "(gen/v9/, gen/v10/ absent)" in order.warning


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "versions.csv",
            "generator,version,release_date\ngen,a,2026-01-01\ngen,b,last tuesday\n",
            "versions.csv:3: release_date 'last tuesday' is not an ISO 8601 date",
        ),
        (
            "versions.csv",
            "generator,version,release_date\ngen,a,2026-01-01\ngen,b,2026-01-01\n",
            "versions.csv:3: gen/b has the same release_date as gen/a (versions.csv:2)",
        ),
        (
            "versions.csv",
            "generator,version,release_date\ngen,a,2026-01-01\ngen,a,2026-01-01\n",
            "versions.csv:3: gen/a is already listed on versions.csv:2",
        ),
        (
            "versions.csv",
            "generator,version,release_date\ngen,a,\n",
            "versions.csv:2: empty release_date",
        ),
        ("versions.csv", "generator,version\ngen,a\n", "versions.csv:1: missing column(s)"),
        (
            "manifest.csv",
            "path,generator,version,subject,expression,release_date\n"
            "x/1.jpg,gen,a,s,happy,2026-01-05\nx/2.jpg,gen,a,s,sad,2026-01-06\n",
            "manifest.csv:3: gen/a has release_date 2026-01-06, but manifest.csv:2 gave",
        ),
    ],
)
def test_a_malformed_declaration_names_file_and_line(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    found = _folders(tmp_path, {"gen/a": 100, "gen/b": 200})
    (tmp_path / name).write_text(text)
    with pytest.raises(InputConfigError) as caught:
        version_orders(tmp_path, found)
    assert str(caught.value).startswith(message), str(caught.value)


def test_ingest_records_the_order_and_quarantines_a_bad_versions_csv(
    tmp_path: Path, photos: dict[str, Path]
) -> None:
    raw = build_raw(
        tmp_path / "raw",
        photos,
        {"gen/new/s/happy.jpg": "obama", "gen/old/s/happy.jpg": "obama2"},
    )
    (raw / "versions.csv").write_text(
        "generator,version,release_date\ngen,old,2025-01-01\ngen,new,2026-01-01\n"
    )
    # at the root, versions.csv is configuration, not an input to quarantine
    assert not discover(raw, PARAMS.ingest.extensions).rejected
    layout = Layout.for_output(raw, tmp_path / "out")
    result = ingest.fn(layout, PARAMS)
    assert result.counts["version_order"] == "gen: old < new (versions.csv)"
    assert "version_order_warning" not in result.counts

    (raw / "versions.csv").unlink()
    os.utime(raw / "gen" / "new", (300, 300))
    os.utime(raw / "gen" / "old", (100, 100))
    result = ingest.fn(layout, PARAMS)
    assert result.counts["version_order"] == "gen: old < new (mtime)"
    assert "gen/old/, gen/new/" in str(result.counts["version_order_warning"])

    (raw / "versions.csv").write_text("generator,version,release_date\ngen,old,soon\n")
    result = ingest.fn(layout, PARAMS)
    assert result.counts["version_order"] == "not read (versions.csv quarantined)"
    assert result.counts["accepted"] == 2  # the images are scored all the same
    quarantine = read_table(layout.quarantine, QUARANTINE).to_pylist()
    assert [r["path"] for r in quarantine] == ["versions.csv"]
    assert quarantine[0]["reason"].startswith("versions.csv:2: release_date 'soon'")


def test_a_broken_manifest_is_quarantined_once(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    swallowing_manifest(raw)
    layout = Layout.for_output(raw, tmp_path / "out")
    result = ingest.fn(layout, PARAMS)
    assert result.counts["version_order"] == "not read (manifest.csv quarantined)"
    quarantine = read_table(layout.quarantine, QUARANTINE).to_pylist()
    assert [r["path"] for r in quarantine].count("manifest.csv") == 1
    assert result.counts["quarantined"] == result.counts["discovered"] == 2  # + the image


def test_undated_manifest_rows_without_labels_are_skipped(tmp_path: Path) -> None:
    found = _folders(tmp_path, {"gen/a": 200, "gen/b": 100})
    (tmp_path / "manifest.csv").write_text(
        "path,generator,version,subject,expression,release_date\n"
        "x/0.png,,,s,happy,2026-03-01\n"  # labels from the file's metadata: not attributable
        "x/1.jpg,gen,a,s,happy,2026-01-05\n"
        "x/3.jpg,gen,b,s,happy,2026-02-01\n"
    )
    assert version_orders(tmp_path, found)["gen"].versions == ("a", "b")
