"""Command-line pieces that need no pipeline run."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from contextlib import redirect_stdout
from functools import cache
from pathlib import Path
from unittest import mock

import pytest

from flows import server
from flows.cli import STAGE_HELP, build_parser, main, subcommands
from flows.dvc_plots import build_template
from tasks import STAGES, STUDIES

REPO = Path(__file__).resolve().parent.parent


def test_scorers_lists_the_registry_with_ranges(capsys):
    assert main(["scorers"]) == 0
    out = capsys.readouterr().out
    for name in ("fer", "age_gender", "dlib"):
        # the version is derived from the scorer's code and weights, never typed by hand
        assert re.search(rf"^{name} \(version [0-9a-f]{{12}}\)", out, re.M), out
    assert "target_prob" in out and "[0, 1] higher is better" in out
    assert "identity_distance" in out and "lower is better" in out


def test_plots_template_is_offline(tmp_path):
    page = build_template(tmp_path / "t.html").read_text()
    assert "{plot_divs}" in page and "{scripts}" not in page
    assert not re.search(r"<script[^>]+src=", page)
    assert "vegaEmbed" in page or "vega-embed" in page


def test_server_status_on_a_closed_port_is_not_running(capsys):
    assert not server.is_healthy(1)
    assert main(["server", "status", "--port", "1"]) == 1
    assert "not running" in capsys.readouterr().out


def test_missing_params_file_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    code = main(
        [
            "run",
            "--input",
            str(tmp_path / "in"),
            "--output",
            str(tmp_path / "out"),
            "--params",
            str(tmp_path / "nope.yaml"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "params file not found" in err
    assert f"exprbench: next: fix {tmp_path / 'nope.yaml'}" in err


def test_missing_input_folder_says_what_to_do(tmp_path, capsys):
    code = main(["run", "--input", str(tmp_path / "none"), "--output", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert f"input folder {tmp_path / 'none'} does not exist" in err
    assert "exprbench: next: check the path; `exprbench run --help`" in err


def test_score_json_one_object_per_image_and_errors_at_the_end(photos, models, capsys, tmp_path):
    import json

    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    code = main(["score", str(photos["astronaut"]), str(bad), "--json"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1
    assert [line["path"] for line in lines] == [str(photos["astronaut"]), str(bad)]
    (face,) = lines[0]["faces"]
    assert set(face) == {
        "box",
        "score",
        "expressions",
        "age",
        "gender",
        "gender_probability",
        "descriptor",
    }
    assert set(face["expressions"]) == {
        "neutral",
        "happy",
        "sad",
        "angry",
        "surprise",
        "fear",
        "disgust",
    }
    assert max(face["expressions"], key=face["expressions"].get) == "happy"
    assert len(face["descriptor"]) == 128 and len(face["box"]) == 4
    assert "not an image" in lines[1]["error"]


def test_score_with_a_pipeline_scorer(photos, models, capsys):
    assert main(["score", str(photos["obama"]), "--scorer", "age_gender"]) == 0
    out = capsys.readouterr().out
    assert "1 face(s)" in out and "male" in out


# ---- the CLI explains itself ----------------------------------------------------------


@cache
def _help(*command: str) -> str:
    """`exprbench [COMMAND] --help`, one line per option (wide terminal: no wrapping)."""
    out = io.StringIO()
    with (
        mock.patch.dict(os.environ, {"COLUMNS": "400"}),
        redirect_stdout(out),
        pytest.raises(SystemExit) as done,
    ):
        main([*command, "--help"])
    assert done.value.code == 0
    return out.getvalue()


def _section(text: str, heading: str) -> str:
    """The lines of an argparse help section ('options:') up to the next blank line."""
    _, found, rest = text.partition(f"\n{heading}\n")
    assert found, f"no {heading!r} in:\n{text}"
    return rest.split("\n\n", 1)[0]


def _help_commands() -> list[str]:
    listing = _section(_help(), "positional arguments:")
    return re.findall(r"^    ([a-z][a-z-]*)(?:\s|$)", listing, re.M)


def _help_options(command: str) -> dict[str, str | None]:
    """option -> its default as --help shows it (None: no default shown), -h excluded."""
    options: dict[str, str | None] = {}
    for line in _section(_help(command), "options:").splitlines():
        match = re.match(r"  (?:-\w, )?(--[a-z][a-z-]*)", line)
        if match and match[1] != "--help":
            default = re.search(r"\(default: (.*)\)$", line)
            options[match[1]] = default[1] if default else None
    return options


def _help_choices(command: str) -> list[str]:
    """Choices of the command's positional arguments shown as {a,b,c}."""
    text = _help(command)
    if "\npositional arguments:\n" not in text:
        return []
    listing = _section(text, "positional arguments:")
    return [c for group in re.findall(r"^  \{(.*?)\}", listing, re.M) for c in group.split(",")]


def test_help_describes_the_tool_and_the_daily_loop():
    text = _help()
    assert "measures how well generative image tools render human facial expressions" in text
    for step in ("exprbench fetch-models", "exprbench server start", "dvc repro", "score"):
        assert step in _section(text, "the daily loop (from the project root):"), step
    assert "--version" in text
    assert _help_commands() == list(subcommands(build_parser()))


def test_every_command_and_option_has_help_and_every_default_is_shown():
    parser = build_parser()
    for name, command in subcommands(parser).items():
        assert command.description, f"{name}: no description"
        text = " ".join(_help(name).split())
        assert " ".join(command.description.split())[:60] in text, name
        options = _help_options(name)
        for action in command._actions:
            assert action.help, f"{name} {action.dest}: no help"
            option = action.option_strings[-1] if action.option_strings else None
            if option and option != "--help":
                assert option in options, (name, option)
                if action.default not in (None, False):
                    assert options[option] == str(action.default), (name, option)
    listing = _section(_help(), "positional arguments:")
    for name in subcommands(parser):  # each command's one-line help in the listing
        assert re.search(rf"^    {name}(\s+|\n\s+)\S", listing, re.M), name


def test_version_is_the_package_version(capsys):
    from importlib.metadata import version

    import exprbench

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"exprbench {exprbench.__version__} (")
    assert exprbench.__version__ == version("exprbench")
    assert str(Path(exprbench.__file__).resolve().parent.parent) in out


def test_score_scorer_choices_are_the_registry(capsys):
    from exprbench.scorers import available_scorers

    names = list(available_scorers())
    lines = _help("score").splitlines()
    line = next(text for text in lines if text.lstrip().startswith("--scorer"))
    assert f"one of: {', '.join(names)} (default: faceapi)" in line
    with pytest.raises(SystemExit) as done:
        main(["score", "photo.jpg", "--scorer", "no-such-scorer"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'no-such-scorer'" in err and all(repr(n) in err for n in names)


def test_help_does_not_import_the_scorers():
    """The registry imports every scorer module (seconds); only `score` needs it."""
    script = (
        "import sys\nfrom flows.cli import main\n"
        "for argv in (['--help'], ['run', '--help'], ['stage', '--help']):\n"
        "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
        "print('exprbench.scorers' in sys.modules, file=sys.stderr)"
    )
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
        check=True,
    )
    assert result.stderr.strip().splitlines()[-1] == "False", result.stderr


def test_stage_processes_give_arrow_memory_back_to_the_system():
    """The exprbench command (flows.cli imports `flows` first) allocates Arrow data with
    the system allocator (mimalloc, Arrow's default, kept freed blocks committed: peaks
    grew with the largest table ever held), unless the user chose another pool."""
    script = "import flows, pyarrow\nprint(pyarrow.default_memory_pool().backend_name)"
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    for chosen, expected in ((None, "system"), ("jemalloc", "jemalloc")):
        extra = {"ARROW_DEFAULT_MEMORY_POOL": chosen} if chosen else {}
        result = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            env={**env, **extra, "PYTHONPATH": path},
            check=True,
        )
        assert result.stdout.strip() == expected, result.stderr


def test_stage_help_describes_every_stage_and_study():
    assert list(STAGE_HELP) == [*STAGES, *STUDIES]
    epilog = _help("stage").split("stages, in pipeline order:")[1]
    for name, text in STAGE_HELP.items():
        assert f"  {name:11s}{text}" in epilog


# ---- README's command reference agrees with --help ------------------------------------

REFERENCE_HEADING = "## Command reference"


def _reference_section(path: Path) -> str:
    """The '## Command reference' section of a Markdown file, up to the next '## '."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if REFERENCE_HEADING not in lines:
        pytest.fail(f"{path.name} has no '{REFERENCE_HEADING}' section")
    body = []
    for line in lines[lines.index(REFERENCE_HEADING) + 1 :]:
        if line.startswith("## "):
            break
        body.append(line)
    return "\n".join(body)


def test_command_reference_covers_help():
    """README's command reference names every command and option `--help` shows, with its
    default and positional choices, and nothing --help lacks. The prose may differ:
    the check is 'covers', not 'equals'."""
    section = _reference_section(REPO / "README.md")
    rows = {
        match[2]: match[1]
        for match in re.finditer(r"^(\| `exprbench ([a-z][a-z-]*)[^`]*` \|.*)$", section, re.M)
    }
    assert sorted(rows) == sorted(_help_commands()), "commands differ from `exprbench --help`"
    assert "--version" in section
    for command, row in rows.items():
        options = _help_options(command)
        documented = set(re.findall(r"--[a-z][a-z-]*", row))
        assert documented == set(options), f"{command}: {sorted(documented)} vs --help"
        for option, default in options.items():
            if default is not None:
                assert default in row, f"{command} {option}: default {default!r} not shown"
        for choice in _help_choices(command):
            assert choice in row, f"{command}: choice {choice!r} not shown"
    for name in [*STAGES, *STUDIES]:
        assert f"`{name}`" in rows["stage"], f"stage {name} not in the stage row"


def test_launcher_runs_this_checkout_from_a_plain_shell():
    """dvc.yaml's stage commands call bin/exprbench: it must work with no venv activated
    (a PATH without the venv), using this checkout's code."""
    result = subprocess.run(
        [str(REPO / "bin" / "exprbench"), "--version"],
        env={"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert str(REPO) in result.stdout


@pytest.mark.parametrize("scorer", ["geometry", "stlpips"])
def test_score_with_a_pair_scorer_is_a_clear_error(scorer: str, capsys) -> None:
    # a pair scorer needs the set's neutral image: one line saying where it runs instead
    assert main(["score", "any.jpg", "--scorer", scorer]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"exprbench: error: {scorer} compares a face with its set's neutral")
    assert "Traceback" not in err
