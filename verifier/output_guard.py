"""Never overwrite a previous run's output silently.

A command that writes a checkpoint, a report folder or a figures file refuses a target that
already holds something unless the user passes ``--force`` (one line, exit 2, nothing written).
A checkpoint is written into a scratch folder beside its target and moved into place whole, so a
forced rerun leaves no stale file of the old checkpoint, and a failed or interrupted run leaves
the old one (or nothing) where it was. Standard library only: it sits on the verifier's floor so that
every command can use it (the verifier's own, the sut's, the harness's and the benchmarks'), and it
must not slow their ``--help``.

One spelling for what a command writes: ``--out DIR`` for every output folder, ``--json PATH`` for
its machine-readable summary (a new file, or ``-`` for stdout: ``add_json_flag``, ``check_json``,
``write_json``), and files of other formats named by their format (``--jsonl``, ``--csv``, ``--txt``).
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any

STDOUT = Path("-")   # ``--json -``: the JSON on stdout, every other line of the command on stderr


def _holds_files(path: Path) -> bool:
    """Whether ``path`` exists as anything but an empty directory."""
    if not (path.exists() or path.is_symlink()):
        return False
    return not path.is_dir() or path.is_symlink() or any(path.iterdir())


def output_problem(path: Path, force: bool, flag: str, kind: str = "folder") -> str | None:
    """Why writing ``path`` (``kind`` "folder" or "file") would destroy earlier output or cannot work
    (None: it would not). An empty folder holds nothing to lose; ``force`` allows replacing the rest."""
    path = Path(path)
    try:
        if (path.is_dir() if kind == "file" else path.exists() and not path.is_dir()):
            return f"{flag} {path} is a {'directory' if kind == 'file' else 'file'}: give a {kind} name"
        if _holds_files(path) and not force:
            return (f"{flag} {path} already exists and holds a previous run's output: pick a new "
                    f"{'directory' if kind == 'folder' else 'file'}, or pass --force to replace it")
    except OSError as e:
        return f"{flag} {path}: cannot inspect it ({e.strerror})"
    ancestor = path.parent   # where the output (or a checkpoint's scratch folder) is created
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"{flag} {path}: {ancestor} is not writable; pick a writable place"
    if path.is_file() and not os.access(path, os.W_OK):
        return f"{flag} {path} is not writable; pick a writable place"
    return None


def refuse_overwrite(path: Path, force: bool, flag: str, kind: str = "folder") -> None:
    """Exit 2 with one ``error:`` line if writing ``path`` would destroy earlier output (see output_problem)."""
    problem = output_problem(path, force, flag, kind)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        raise SystemExit(2)


@contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """A scratch folder beside ``out`` to write into. When the block ends without error it becomes ``out``
    whole, replacing an ``out`` that already held files when the block began (the caller checked --force);
    when the block raises it is removed. An ``out`` that appeared meanwhile is never replaced: that raises
    FileExistsError naming where the new output was kept."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    replace = _holds_files(out)
    scratch = out.parent / f".{out.name}.partial-{os.getpid()}-{secrets.token_hex(4)}"
    scratch.mkdir()
    try:
        yield scratch
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    if _holds_files(out) and not replace:
        raise FileExistsError(f"{out} appeared while this run was writing; its output is kept in {scratch}")
    old = None
    if out.is_symlink() or out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
        os.rename(out, old)
    os.rename(scratch, out)
    if old is not None:
        old.unlink() if old.is_symlink() or not old.is_dir() else shutil.rmtree(old, ignore_errors=True)


def add_json_flag(p: argparse.ArgumentParser, what: str = "the figures") -> None:
    """``--json PATH``, the same in every command with a machine-readable summary (and its ``--force``)."""
    p.add_argument("--json", type=Path, default=None, metavar="PATH",
                   help=f"write {what} as JSON to PATH, a new file (--force replaces one), or to stdout with - "
                        "(the command's other output then goes to stderr)")


def check_json(path: Path | None, force: bool) -> None:
    """Exit 2 with one ``error:`` line, before any work, if ``--json PATH`` would overwrite earlier output."""
    if path is not None and path != STDOUT:
        refuse_overwrite(path, force, "--json", "file")


@contextmanager
def text_to_stderr(json_path: Path | None) -> Iterator[None]:
    """While the block runs, what the command prints goes to stderr if ``--json -`` claims stdout."""
    if json_path != STDOUT:
        yield
        return
    with redirect_stdout(sys.stderr):
        yield


def write_json(path: Path | None, obj: Any, **dumps: Any) -> None:
    """``obj`` as JSON to ``--json``'s PATH (its folder made), to stdout for ``-``, nowhere for None."""
    if path is None:
        return
    text = json.dumps(obj, **{"indent": 1, **dumps}) + "\n"
    if path == STDOUT:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def refuse_overwrite_files(folder: Path, names: list[str], force: bool, flag: str = "--out") -> None:
    """Exit 2 with one ``error:`` line if a file of ``names`` in ``folder`` already exists (unless ``force``):
    a benchmark's figures in a folder the user chose (its own default folder is rewritten)."""
    for name in names:
        refuse_overwrite(Path(folder) / name, force, flag, "file")
