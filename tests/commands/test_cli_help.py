"""Every command answers --help (exit 0), takes --config when it reads the configuration, and
is completed by the bash and zsh scripts `scanstation completion` prints."""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import SCANSTATION
from scanstation import cli
from scanstation.commands.completion import full_parser

READS_CONFIG = [
    ("run",),
    ("parse",),
    ("catalog", "import"),
    ("export",),
    ("api-key", "create"),
    ("api-key", "list"),
    ("set-password",),
    ("fleet",),
    ("report",),
    ("db", "check"),
    ("db", "backup"),
    ("doctor",),
    ("hid-replay",),
]


def command_paths() -> list[tuple[str, ...]]:
    """Every command and sub-command in the whole argparse tree (benchmarks included)."""
    parser = full_parser(cli.build_parser(), cli.DELEGATED, cli.BENCHMARKS)
    paths: list[tuple[str, ...]] = []

    def walk(p: argparse.ArgumentParser, path: tuple[str, ...]) -> None:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    paths.append((*path, name))
                    walk(child, (*path, name))

    walk(parser, ())
    return paths


def parser_of(path: tuple[str, ...]) -> argparse.ArgumentParser:
    parser = full_parser(cli.build_parser(), cli.DELEGATED, cli.BENCHMARKS)
    for name in path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return parser


def test_the_tree_has_every_command_and_benchmark() -> None:
    paths = command_paths()
    assert ("bench", "ingest") in paths
    assert ("db", "restore") in paths
    assert ("completion",) in paths
    assert {p[0] for p in paths} >= {"run", "demo", "decode", "devices", "fleet", "bench"}


@pytest.mark.parametrize("path", command_paths(), ids=" ".join)
def test_help_exits_0_and_prints_usage(
    path: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = cli.main([*path, "--help"])  # bench --help returns instead of exiting
    except SystemExit as exc:  # argparse's --help
        code = exc.code
    out = capsys.readouterr().out
    assert code in (0, None), out
    assert "usage:" in out


def test_bench_help_lists_every_benchmark_and_exits_0() -> None:
    result = subprocess.run(
        [*SCANSTATION, "bench", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    for name in cli.BENCHMARKS:
        assert f"\n  {name} " in result.stdout
    assert "bench NAME --help" in result.stdout


@pytest.mark.parametrize("path", READS_CONFIG, ids=" ".join)
def test_every_command_that_reads_the_config_takes_config(path: tuple[str, ...]) -> None:
    options = {o for a in parser_of(path)._actions for o in a.option_strings}
    assert "--config" in options


def completion(shell: str) -> str:
    result = subprocess.run(
        [*SCANSTATION, "completion", shell], capture_output=True, text=True, timeout=60, check=True
    )
    return result.stdout


def bash_complete(script: Path, line: str) -> list[str]:
    """What bash offers after `line` (as if Tab were pressed at its end)."""
    words = line.split(" ")
    program = (
        f"source {script}\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
        f"COMP_LINE={line!r}; COMP_POINT=${{#COMP_LINE}}\n"
        '_shtab_scanstation; printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    result = subprocess.run(
        ["bash", "-c", program], capture_output=True, text=True, timeout=30, check=True
    )
    return result.stdout.split()


def test_bash_completion_offers_commands_options_and_benchmarks(tmp_path: Path) -> None:
    script = tmp_path / "scanstation.bash"
    script.write_text(completion("bash"))
    assert "de" in "".join(bash_complete(script, "scanstation de"))
    assert set(bash_complete(script, "scanstation de")) == {"decode", "demo", "devices"}
    assert bash_complete(script, "scanstation fleet --c") == ["--config"]
    assert bash_complete(script, "scanstation bench in") == ["ingest"]
    assert "--keep" in bash_complete(script, "scanstation demo --")
    assert "--calibrate" in bash_complete(script, "scanstation devices --")
    assert set(bash_complete(script, "scanstation completion ")) == {"bash", "zsh"}


def test_zsh_completion_is_a_compdef_with_the_delegated_options(tmp_path: Path) -> None:
    text = completion("zsh")
    assert text.startswith("#compdef scanstation")
    assert "--calibrate" in text  # devices' own parser
    assert "--mqtt" in text  # bench ingest's
    zsh = shutil.which("zsh")
    if zsh is not None:
        script = tmp_path / "_scanstation"
        script.write_text(text)
        subprocess.run([zsh, "-n", str(script)], check=True, timeout=30)
