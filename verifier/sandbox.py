"""Isolation levels: how a zygote is started, and a start-up probe that picks the strongest one.

Strongest first:

1. ``bwrap`` with user, network, pid, ipc, uts and mount namespaces, no capabilities, a
   read-only view of only the system and Python directories, its own /tmp tmpfs with a
   size cap, a clean environment, and a *real* unprivileged uid. Run as root, that needs
   two bubblewraps: a privileged outer one only builds the file-system view (so the
   Python prefix is reachable even if it lives under /root) and drops to uid 65534 with
   ``setpriv``; an unprivileged inner one then makes all the namespaces. Run as a normal
   user, the inner one alone does it, as that user.
2. ``bwrap`` as root with ``--uid 65534`` in a user namespace whose 65534 is root outside
   (when unprivileged user namespaces or setpriv are unavailable): same namespaces, but
   RLIMIT_NPROC is not enforced for root, so a fork bomb is bounded only by the wall clock.
3. A plain process with rlimits (and setuid 65534 in each child when run as root): no
   network, pid or mount isolation. Only when asked for by name (``isolation="process"``,
   ``--isolation process``): a hostile program can write files and start commands outside.

Fail closed: the default, ``isolation="bwrap"``, tries levels 1 and 2 and never downgrades to 3.
Without bubblewrap, or where it cannot create namespaces, ``probe`` raises ``SandboxUnavailable``,
whose one-line message says how to install it and how to opt in to level 3. ``probe`` starts a
real zygote, once per process and mode, and warns once when it had to settle for level 2.

At every level the zygote's loop runs in C where ``verifier/zygote_loop.c`` builds (once per
machine, ``verifier.cbuild``): the library is bound read-only into the sandbox at
``LOOP_IN_SANDBOX``. Without a compiler the loop runs in Python, at about 1.25x the CPU per
execution, with a warning.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from verifier import cbuild
from verifier.zygote import PRELOAD

log = logging.getLogger(__name__)

NOBODY = 65534
TMPFS_BYTES = 64 << 20          # size of the sandbox's /tmp (level 1 and 2)
START_TIMEOUT_S = 15.0
NAMESPACES = "user,net,pid,ipc,uts,mount"
ZYGOTE_MODULES = ("plaindata", "child", "zygote")
LOOP_SOURCE = Path(__file__).with_name("zygote_loop.c")
LOOP_IN_SANDBOX = "/run/verifier/zygote_loop.so"
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# Level 3 as root: the child runs as uid 65534 and may be unable to read the stdlib (e.g. pyenv under
# /root), so the zygote imports more up front.
FALLBACK_PRELOAD = ("abc array contextlib dataclasses datetime decimal enum fractions hashlib io json numbers "
                    "statistics textwrap time unicodedata").split()


@dataclass(frozen=True)
class Level:
    """One way to start a zygote: the command before ``python``, and what the zygote may assume."""

    label: str                   # recorded in every verdict, e.g. "bwrap(user,net,pid,ipc,uts,mount,uid=65534)+rlimits"
    prefix: tuple[str, ...]      # argv before the interpreter
    zygote_cfg: dict = field(default_factory=dict)
    env: dict | None = None      # environment of the started process (bwrap clears it inside anyway)

    def argv(self, native_loop: bool = True, preload: Sequence[str] | None = None) -> list[str]:
        """The command line; ``preload``: the modules the zygote imports (None: zygote.PRELOAD), besides
        those this level needs (the process fallback's, below)."""
        cfg = self.zygote_cfg if native_loop else {k: v for k, v in self.zygote_cfg.items() if k != "loop_lib"}
        cfg = {**cfg, "preload": sorted({*cfg.get("preload", ()), *(PRELOAD if preload is None else preload)})}
        return [*self.prefix, python_binary(), "-I", "-S", "-c", zygote_program(), json.dumps(cfg)]


@lru_cache(maxsize=1)
def loop_library() -> str | None:
    """The built zygote loop (verifier/zygote_loop.c), or None with a warning if it cannot be built here."""
    try:
        return str(cbuild.build("verifier_zygote_loop", LOOP_SOURCE, [LOOP_SOURCE],
                                ["-O2", "-shared", "-fPIC", "-std=c11"]))
    except cbuild.BuildError as e:
        log.warning("verifier: the zygote loop runs in Python, about 1.25x the CPU per execution: %s", e)
        return None


def _loop_args(make_parents: bool) -> list[str]:
    """bwrap arguments binding the zygote loop library into the sandbox, if it was built."""
    lib = loop_library()
    if lib is None:
        return []
    perms = ["--perms", "0755"] if make_parents else []
    return [*perms, "--dir", "/run", *perms, "--dir", os.path.dirname(LOOP_IN_SANDBOX), "--ro-bind", lib, LOOP_IN_SANDBOX]


def python_binary() -> str:
    """The real interpreter behind sys.executable (a venv's python is a symlink to it)."""
    return os.path.realpath(sys.executable)


def zygote_program() -> str:
    """Source of the zygote as one ``-c`` program: plaindata, child and zygote registered as modules."""
    here = Path(__file__).parent
    sources = [(f"verifier.{m}", (here / f"{m}.py").read_text()) for m in ZYGOTE_MODULES]
    return (
        "import sys, types\n"
        "pkg = types.ModuleType('verifier'); pkg.__path__ = []; sys.modules['verifier'] = pkg\n"
        f"for name, src in {sources!r}:\n"
        "    mod = types.ModuleType(name); sys.modules[name] = mod; setattr(pkg, name.split('.')[1], mod)\n"
        "    exec(compile(src, name, 'exec'), mod.__dict__)\n"
        "sys.modules['verifier.zygote'].main()\n"
    )


def _view_args(make_parents: bool) -> list[str]:
    """bwrap arguments for a read-only view of the system directories and the Python prefix."""
    args: list[str] = []
    for d in SYSTEM_DIRS:
        if os.path.islink(d):
            args += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            args += ["--ro-bind", d, d]
    if os.path.exists("/etc/ld.so.cache"):
        args += ["--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    covered = [os.path.realpath(d) for d in SYSTEM_DIRS if os.path.exists(d)]
    for prefix in sorted({os.path.realpath(p) for p in (sys.base_prefix, sys.base_exec_prefix, os.path.dirname(os.path.dirname(python_binary())))}):
        if any(prefix == c or prefix.startswith(c + "/") for c in covered):
            continue
        if make_parents:  # bwrap would create missing parents 0700 as root: unreadable to uid 65534
            parts = Path(prefix).parts[1:-1]
            for i in range(len(parts)):
                args += ["--perms", "0755", "--dir", "/" + "/".join(parts[: i + 1])]
        args += ["--ro-bind", prefix, prefix]
        covered.append(prefix)
    return args


def _pdeathsig(setpriv: str) -> list[str]:
    """setpriv's uid change clears the parent-death signal; set it again so the sandbox dies with the pool."""
    try:
        usage = subprocess.run([setpriv, "--help"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return ["--pdeathsig=SIGKILL"] if "--pdeathsig" in usage else []


def _inner_args(view: list[str]) -> list[str]:
    """The bubblewrap that makes every namespace (no further user namespaces) over ``view``, private /tmp."""
    return ["--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session", "--clearenv",
            "--setenv", "PATH", "/usr/bin:/bin", *view, "--proc", "/proc", "--dev", "/dev",
            "--size", str(TMPFS_BYTES), "--tmpfs", "/tmp", "--hostname", "sandbox", "--chdir", "/"]


def _sandboxed_cfg() -> dict:
    cfg = {"kill_all": True, "private_tmp": True, "tmp_root": "/tmp"}
    if loop_library() is not None:
        cfg["loop_lib"] = LOOP_IN_SANDBOX
    return cfg


ISOLATION_MODES = ("bwrap", "process")
OPT_IN = "or pass `--isolation process` to accept the weaker process isolation (no namespaces)"
INSTALL_HINT = f"install bubblewrap (`apt-get install bubblewrap`, or `bash scripts/setup.sh`), {OPT_IN}"
NAMESPACE_HINT = ("allow it user namespaces (`sysctl user.max_user_namespaces` above 0; in a container, one that "
                  f"permits unshare), {OPT_IN}")


class SandboxUnavailable(RuntimeError):
    """The requested isolation cannot be had here; the message says what to install or pass."""


def add_isolation_flag(parser) -> None:
    """``--isolation``, spelled the same in every command that runs generated code."""
    parser.add_argument("--isolation", choices=ISOLATION_MODES, default="bwrap",
                        help="verifier sandbox: bwrap (default; refuses to run without bubblewrap) or process "
                             "(rlimits and a separate uid only: generated code can reach files and network)")


def candidate_levels(mode: str = "bwrap") -> list[Level]:
    """The levels of ``mode`` (bwrap or process) worth trying on this machine, strongest first."""
    levels: list[Level] = []
    bwrap, setpriv = shutil.which("bwrap"), shutil.which("setpriv")
    if bwrap and mode == "bwrap":
        rlimits = "+rlimits(cpu,as,fsize,nproc,nofile)"
        if os.geteuid() == 0 and setpriv:
            outer = [bwrap, "--die-with-parent", "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
                     "--cap-add", "CAP_SETPCAP", *_view_args(make_parents=True), *_loop_args(make_parents=True),
                     "--dir", "/tmp", "--bind", "/proc", "/proc",
                     "--dev", "/dev"]
            drop = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--inh-caps=-all",
                    "--bounding-set=-all", "--no-new-privs", *_pdeathsig(setpriv), "--"]
            levels.append(Level(f"bwrap({NAMESPACES},uid={NOBODY})" + rlimits,
                                (*outer, *drop, bwrap, *_inner_args(["--ro-bind", "/", "/"])), _sandboxed_cfg()))
        if os.geteuid() != 0:
            levels.append(Level(f"bwrap({NAMESPACES},uid={os.geteuid()})" + rlimits,
                                (bwrap, *_inner_args(_view_args(make_parents=False) + _loop_args(make_parents=False))),
                                _sandboxed_cfg()))
        else:
            levels.append(Level(f"bwrap({NAMESPACES},uid={NOBODY} mapped to root)" + rlimits.replace("nproc,", "")
                                + " (RLIMIT_NPROC not enforced for root)",
                                (bwrap, "--uid", str(NOBODY), "--gid", str(NOBODY),
                                 *_inner_args(_view_args(make_parents=True) + _loop_args(make_parents=True))),
                                _sandboxed_cfg()))
    if mode == "process":
        root = os.geteuid() == 0
        cfg = {"kill_all": False, "private_tmp": False, "tmp_root": tempfile.gettempdir(), "drop_uid": NOBODY if root else None,
               "preload": FALLBACK_PRELOAD if root else []}
        if loop_library() is not None:
            cfg["loop_lib"] = loop_library()
        levels.append(Level(("process+setuid(65534)" if root else "process") + "+rlimits(cpu,as,fsize,nproc,nofile)",
                            (), cfg, env={"PATH": "/usr/bin:/bin"}))
    return levels


def start_zygote(level: Level, native_loop: bool = True, preload: Sequence[str] | None = None) -> subprocess.Popen:
    """Start one zygote at ``level`` (unbuffered pipes, its own session, stderr to a temp file);
    ``native_loop`` False keeps its loop in Python even where the C one is built; ``preload`` as Level.argv."""
    errfile = tempfile.TemporaryFile()
    proc = subprocess.Popen(level.argv(native_loop, preload), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errfile,
                            bufsize=0, start_new_session=True, close_fds=True, env=level.env or {})
    proc.errfile = errfile  # type: ignore[attr-defined]  # read when it fails to start
    return proc
