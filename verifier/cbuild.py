"""Build a C file into a shared library once per machine and cache it (the engine's kernels, the zygote's loop).

The library lands in ``$NANO_CODEGEN_CACHE`` (default ``~/.cache/nano-codegen-agent``) under a
name that hashes the sources, the compiler, the flags and ``machine`` (what else the build
depends on, e.g. the CPU for ``-march=native``), so a shared home directory never hands one
machine a build it cannot run. Concurrent builders compile to temporary files and rename them
into place. The compiler is ``$CC``, else ``cc``, ``gcc`` or ``clang``.

Standard library only: the verifier imports this before anything else of the project.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path


class BuildError(RuntimeError):
    """No compiler, or the compile failed; the message says which and what to do."""


def compiler() -> str | None:
    for cc in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cc and shutil.which(cc):
            return cc
    return None


def cache_dir() -> Path:
    base = os.environ.get("NANO_CODEGEN_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) \
        / "nano-codegen-agent"
    return Path(base)


def build(name: str, main: Path, sources: Sequence[Path], flags: Sequence[str], libs: Sequence[str] = (),
          machine: str = "") -> Path:
    """Path of ``name-<hash>.so`` built from ``main`` (``sources``: every file it includes, for the hash)."""
    cc = compiler()
    if cc is None:
        raise BuildError("no C compiler found (set $CC or install gcc)")
    key = hashlib.sha256(b"".join(f.read_bytes() for f in sources)
                         + " ".join([cc, *flags, *libs, machine]).encode()).hexdigest()
    lib = cache_dir() / f"{name}-{key[:16]}.so"
    if lib.is_file():
        return lib
    lib.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=lib.parent)
    os.close(fd)
    try:
        r = subprocess.run([cc, *flags, "-o", tmp, str(main), *libs], capture_output=True, text=True)
        if r.returncode != 0:
            first = (r.stderr.strip().splitlines() or ["(no output)"])[0]
            raise BuildError(f"{cc} could not build {main.name}: {first}")
        os.chmod(tmp, 0o755)   # mkstemp made it 0600: a sandbox's unprivileged uid must be able to load it
        os.replace(tmp, lib)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return lib
