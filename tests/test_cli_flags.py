"""One set of flags for every command line (issue 19): ``--json PATH`` (``-`` for stdout) for a machine-readable
summary, ``--out DIR`` for every output folder, other output files named by their format (``--jsonl``, ``--csv``,
``--txt``), and an engine option means the same kind of value in every tool that takes it.

Each tool's parser is taken from its own ``main`` (stopped at ``parse_args``, before any work), so a new command
line anywhere under harness/, sut/, verifier/ or benchmarks/ is checked too. That ``--json -`` prints the JSON
alone on stdout is run for real in test_verifier_cli.py (the accuracy pass), test_engine.py (engine_bench) and
test_evaluate.py.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import pytest

from sut.engine.factory import EngineOptions

REPO = Path(__file__).resolve().parent.parent
OLD_SPELLINGS = {"--outdir", "--out-dir", "--output", "--output-dir", "--results-dir", "--results", "--plot"}
HIDDEN_ALIASES = {("harness.run", "--results-dir")}   # `python harness/run.py --results-dir R` in users' scripts
FILE_FLAGS = {"--json", "--jsonl", "--csv", "--txt"}


def command_modules() -> list[str]:
    """Every module with a command line: the ones that build an ArgumentParser (and tests/oracle_engine.py)."""
    found = []
    for top in ("harness", "sut", "verifier", "benchmarks"):
        for path in sorted((REPO / top).rglob("*.py")):
            if "ArgumentParser(" in path.read_text(encoding="utf-8"):
                found.append(".".join(path.relative_to(REPO).with_suffix("").parts))
    return found + ["oracle_engine"]


class _Parsed(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser


def parser_of(module: str, monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    """The parser ``module.main`` builds, caught at its ``parse_args`` (nothing after it runs); for
    tests/oracle_engine.py, its own flags' parser, caught at ``parse_known_args`` (the rest is harness.lg_run's)."""
    parse = "parse_args"
    if module == "oracle_engine":
        monkeypatch.syspath_prepend(str(REPO / "tests"))
        parse = "parse_known_args"
    main = importlib.import_module(module).main

    def caught(self: argparse.ArgumentParser, *_args: object, **_kw: object) -> None:
        raise _Parsed(self)
    monkeypatch.setattr(argparse.ArgumentParser, parse, caught)
    monkeypatch.setattr(sys, "argv", [module])
    with pytest.raises(_Parsed) as got:
        main()
    return got.value.parser


def options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Option string -> action, subcommands' options included."""
    out: dict[str, argparse.Action] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                out.update(options(sub))
        for flag in action.option_strings:
            out[flag] = action
    return out


def _engine_options() -> dict[str, argparse.Action]:
    p = argparse.ArgumentParser()
    EngineOptions.add_arguments(p)
    return options(p)


ENGINE = _engine_options()


@pytest.mark.parametrize("module", command_modules())
def test_every_command_spells_its_outputs_and_engine_options_alike(module: str, monkeypatch: pytest.MonkeyPatch) -> None:
    opts = options(parser_of(module, monkeypatch))
    for flag, action in opts.items():
        hidden = action.help == argparse.SUPPRESS
        if flag in OLD_SPELLINGS:
            assert hidden and (module, flag) in HIDDEN_ALIASES and action.dest == "out", f"{module}: {flag}"
        if not hidden:
            assert "dir" not in flag, f"{module}: {flag}: an output folder is --out DIR"
    if "--json" in opts:   # a value, not a switch: a new file, or - for stdout; --force replaces a file
        j = opts["--json"]
        assert j.nargs is None and j.type is Path and j.metavar == "PATH" and "stdout with -" in j.help, module
        assert "--force" in opts, module
    if "--out" in opts:
        assert opts["--out"].metavar == "DIR" and opts["--out"].nargs is None, module
    for flag in FILE_FLAGS & set(opts):
        assert opts[flag].nargs is None and opts[flag].metavar == "PATH", f"{module}: {flag}"
    for flag in ENGINE.keys() & opts.keys():   # the same option takes the same kind of value everywhere
        ours, shared = opts[flag], ENGINE[flag]
        assert (ours.type or str) == (shared.type or str) and ours.nargs == shared.nargs, f"{module}: {flag}"
        assert ours.choices is None or shared.choices is None or list(ours.choices) == list(shared.choices), \
            f"{module}: {flag}"


def test_the_old_results_dir_spelling_still_reaches_out(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.run import parse_args

    assert parse_args(["--scenario", "Offline", "--results-dir", "R"]).out == Path("R")
    assert parse_args(["--scenario", "Offline", "--out", "R"]).out == Path("R")


@pytest.mark.parametrize("module, argv", [
    ("sut.evaluate", ["--count", "1"]),
    ("verifier.accuracy", ["--mlperf-accuracy-file", "{tasks}", "--tasks", "{tasks}", "--txt", "{tmp}/accuracy.txt"]),
    ("verifier.humaneval", ["{tasks}"]),
])
def test_an_existing_json_file_is_refused_before_any_work(module: str, argv: list[str], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    """One ``error:`` line, exit 2, the file as it was, nothing else written (the check comes before any work)."""
    previous = tmp_path / "figures.json"
    previous.write_text("previous run")
    tasks = str(REPO / "sut" / "tasks" / "data" / "eval_tasks.jsonl")
    args = [a.replace("{tasks}", tasks).replace("{tmp}", str(tmp_path)) for a in argv]
    with pytest.raises(SystemExit) as e:
        importlib.import_module(module).main([*args, "--json", str(previous)])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and err[0].startswith(f"error: --json {previous}") and "--force" in err[0]
    assert previous.read_text() == "previous run" and [p.name for p in tmp_path.iterdir()] == ["figures.json"]


def test_json_goes_to_a_file_or_alone_to_stdout(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from verifier.output_guard import STDOUT, text_to_stderr, write_json

    with text_to_stderr(STDOUT):
        print("a table")
    write_json(STDOUT, {"x": 1})
    out, err = capsys.readouterr()
    assert out == '{\n "x": 1\n}\n' and err == "a table\n"
    write_json(tmp_path / "new" / "f.json", {"x": 1})
    with text_to_stderr(tmp_path / "f.json"):
        print("a table")
    assert (tmp_path / "new" / "f.json").read_text() == '{\n "x": 1\n}\n' and capsys.readouterr().out == "a table\n"
