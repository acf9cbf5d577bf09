"""The pre-started process inside the sandbox that forks one child per execution.

Started once per pool worker (``python -I -S -c <source>``, see ``sandbox.zygote_program``),
it imports what programs commonly need, then loops: read a request frame from the parent,
fork, let the child run it (``verifier.child``) under rlimits, in its own session, in a
fresh working directory, with stdin closed and stdout/stderr on a capped pipe; enforce the
wall-clock limit; then kill every process the execution left behind and wipe its files.
The zygote itself never runs submitted code, so each execution starts from the same clean
interpreter state, copied by fork.

The loop runs in C where ``verifier/zygote_loop.c`` was built (``cfg["loop_lib"]``, bound into
the sandbox by ``verifier.sandbox``): the same steps without the copy-on-write faults that
Python's reference counting causes after every fork (1.25x less CPU an execution,
docs/verifier.md). This module's ``Zygote`` is the fallback and the readable statement of what
both do; the child's Python side (``run_request``) is shared.

Frames are a 4-byte big-endian length, then the payload. The parent's request: ``REQUEST``
(timeout_s, output_limit, memory_mb, native byte order) then the request as UTF-8 JSON. The
reply: ``REPLY`` (outcome index into ``OUTCOMES``, exit code or -1, signal or 0, padding,
exec_ms, report length, output length), then the report and output bytes (for a zygote_error
the message is the output). The first frame, the ready frame, is JSON. Shipped into the
sandbox as source: standard library and ``verifier.child`` only, no ``from __future__`` import.
"""
import gc
import json
import os
import resource
import signal
import struct
import sys
import time

from verifier import child

REPORT_MAX = 4_000_000      # bytes of report a child may send
FILE_LIMIT = 16 << 20       # RLIMIT_FSIZE: largest file a program may write
NOFILE = 64                 # RLIMIT_NOFILE
NPROC = 32                  # RLIMIT_NPROC: processes of the sandbox user
# What a pool preloads unless told otherwise (SandboxPool(preload=...), cfg["preload"]): imported
# once here so that programs using them pay nothing. Kept short on purpose: every module makes the
# zygote bigger and each fork slower (copy-on-write faults, a bigger address space to copy and tear
# down): with none of these a trivial execution costs ~18% less sandbox CPU (docs/verifier.md), which
# is what the engine's pool chooses, its programs importing nothing. typing: HumanEval prompts import it.
# The Python loop's own modules (select, shutil, tempfile) are imported only where it runs.
PRELOAD = "bisect collections copy functools heapq itertools math operator random re string typing".split()
REPORT_FD = 3
REQUEST = struct.Struct("=dqq")       # zygote_loop.c's ReqHeader
REPLY = struct.Struct("=iiiidqq")     # zygote_loop.c's ReplyHeader
OUTCOMES = ("exited", "timeout", "output_limit", "report_too_large", "zygote_error")


def encode_request(req: dict) -> bytes:
    """A request frame: the limits the zygote applies, then the request for the child."""
    head = REQUEST.pack(float(req["timeout_s"]), int(req["output_limit"]), int(req["memory_mb"]))
    # a lone surrogate (test code, a call's input) leaves as JSON's \uXXXX escape: the same string inside
    body = head + json.dumps(req, ensure_ascii=False).encode("utf-8", "backslashreplace")
    return len(body).to_bytes(4, "big") + body


def decode_request(payload: bytes) -> dict:
    timeout_s, output_limit, memory_mb = REQUEST.unpack_from(payload)
    req = json.loads(payload[REQUEST.size:])
    req.update(timeout_s=timeout_s, output_limit=output_limit, memory_mb=memory_mb)
    return req


def encode_reply(outcome: str, exit_code, sig, exec_ms: float, report: bytes, output: bytes) -> bytes:
    head = REPLY.pack(OUTCOMES.index(outcome), -1 if exit_code is None else exit_code, sig or 0, 0, exec_ms,
                      len(report), len(output))
    return (len(head) + len(report) + len(output)).to_bytes(4, "big") + head + report + output


def decode_reply(payload: bytes) -> dict:
    """The reply as the dict verifier.judge reads: outcome, exit_code, signal, exec_ms, report, output."""
    outcome, exit_code, sig, _, exec_ms, n_report, n_output = REPLY.unpack_from(payload)
    if not 0 <= outcome < len(OUTCOMES) or REPLY.size + n_report + n_output != len(payload):
        raise ValueError("malformed reply")
    report = payload[REPLY.size:REPLY.size + n_report].decode("utf-8", "replace")
    output = payload[REPLY.size + n_report:].decode("utf-8", "replace")
    reply = {"outcome": OUTCOMES[outcome], "exit_code": None if exit_code < 0 else exit_code,
             "signal": sig or None, "exec_ms": exec_ms, "report": report, "output": output}
    if reply["outcome"] == "zygote_error":
        reply["message"] = output[:300]
    return reply


def read_frame(fd: int):
    """Read one frame's payload; None at end of file."""
    header = _read_exact(fd, 4)
    if header is None:
        return None
    return _read_exact(fd, int.from_bytes(header, "big"))


def write_frame(fd: int, obj: object) -> None:
    body = json.dumps(obj, ensure_ascii=False).encode("utf-8")
    data = memoryview(len(body).to_bytes(4, "big") + body)
    while data:
        data = data[os.write(fd, data):]


def _read_exact(fd: int, n: int):
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


_libc: list = []


def _libc_handle():
    if not _libc:
        import ctypes
        _libc.append(ctypes.CDLL(None, use_errno=True))
    return _libc[0]


def _prctl(option: int, arg: int) -> bool:
    try:
        return _libc_handle().prctl(option, arg, 0, 0, 0) == 0
    except (OSError, AttributeError, ImportError):
        return False


def _make_removable(path: str) -> None:
    os.chmod(path, 0o700)
    for entry in os.scandir(path):
        if entry.is_dir(follow_symlinks=False):
            _make_removable(entry.path)


def _remove_sysv_ipc() -> None:
    """Delete the SysV shared memory, queues and semaphores an execution created in this IPC namespace."""
    for kind in ("shm", "msg", "sem"):
        try:
            with open(f"/proc/sysvipc/{kind}") as f:
                ids = [int(line.split()[1]) for line in f.read().splitlines()[1:] if line.strip()]
        except (OSError, ValueError, IndexError):
            continue
        try:
            ctl = getattr(_libc_handle(), kind + "ctl")
        except (OSError, AttributeError, ImportError):
            return
        for ident in ids:
            ctl(ident, 0, 0) if kind == "sem" else ctl(ident, 0, None)  # IPC_RMID


class Zygote:
    def __init__(self, cfg: dict) -> None:
        self.kill_all = bool(cfg["kill_all"])        # alone in a pid namespace: kill(-1) reaches only the execution
        self.private_tmp = bool(cfg["private_tmp"])  # /tmp is this sandbox's own tmpfs
        self.tmp_root = cfg["tmp_root"]
        self.drop_uid = cfg.get("drop_uid")          # fallback without namespaces, started as root
        self._reaped: dict = {}                      # pid -> wait status, of this execution's processes

    def execute(self, req: dict) -> bytes:
        """Run one request in a forked child; the reply frame."""
        self._reaped = {}
        out_r, out_w = os.pipe()
        rep_r, rep_w = os.pipe()
        workdir = self._make_workdir()
        t0 = time.monotonic()
        zygote_pid = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            try:
                self._child(req, out_w, rep_w, workdir, zygote_pid)
            finally:
                os._exit(70)
        os.close(out_w)
        os.close(rep_w)
        try:
            outcome, status, out, rep = self._watch(pid, out_r, rep_r, t0 + float(req["timeout_s"]), int(req["output_limit"]))
        finally:
            exec_ms = (time.monotonic() - t0) * 1000.0
            self._kill_and_reap(pid)
            os.close(out_r)
            os.close(rep_r)
            self._wipe(workdir)
        if status is None:
            status = self._reaped.get(pid, 0)
        exit_code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        return encode_reply(outcome, exit_code, sig, exec_ms, bytes(rep), bytes(out))

    def _watch(self, pid: int, out_r: int, rep_r: int, deadline: float, output_limit: int):
        """Collect output and report until the child exits, the clock runs out or a cap is hit."""
        for fd in (out_r, rep_r):
            os.set_blocking(fd, False)
        try:
            pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):  # Linux < 5.3: poll the child every 5 ms instead
            pidfd = None
        import select
        poller = select.poll()
        for fd in (out_r, rep_r) + ((pidfd,) if pidfd is not None else ()):
            poller.register(fd, select.POLLIN)
        out, rep = bytearray(), bytearray()
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return "timeout", None, out, rep
                events = poller.poll(remaining * 1000 if pidfd is not None else min(remaining * 1000, 5))
                status = None
                for fd, _ in events:
                    if fd == out_r:
                        self._drain(fd, out, output_limit, poller)
                    elif fd == rep_r:
                        self._drain(fd, rep, REPORT_MAX, poller)
                if pidfd is None or any(fd == pidfd for fd, _ in events):
                    done, st = os.waitpid(pid, os.WNOHANG)
                    if done == pid:
                        status = self._reaped[pid] = st
                        self._drain(out_r, out, output_limit, None)
                        self._drain(rep_r, rep, REPORT_MAX, None)
                if len(out) > output_limit:
                    return "output_limit", status, out[:output_limit], rep
                if len(rep) > REPORT_MAX:
                    return "report_too_large", status, out, rep[:0]
                if status is not None:
                    return "exited", status, out, rep
        finally:
            if pidfd is not None:
                os.close(pidfd)

    @staticmethod
    def _drain(fd: int, buf: bytearray, cap: int, poller) -> None:
        """Read what is there without blocking, stopping once past ``cap``; unregister at end of file."""
        while len(buf) <= cap:
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                return
            if not chunk:
                if poller is not None:
                    poller.unregister(fd)
                return
            buf += chunk

    def _kill_and_reap(self, pid: int) -> None:
        """Kill every process this execution started, including setsid'd ones ignoring signals."""
        while True:
            if self.kill_all:
                try:
                    os.kill(-1, signal.SIGKILL)  # everyone in this pid namespace but pid 1 and us
                except ProcessLookupError:
                    pass
            else:
                self._kill_descendants(pid)
            try:
                dead, status = os.waitpid(-1, 0)
            except ChildProcessError:
                return
            self._reaped.setdefault(dead, status)

    @staticmethod
    def _kill_descendants(pid: int) -> None:
        """Without a pid namespace: the child's process group, then every child of ours (a subreaper)."""
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        me = str(os.getpid())
        try:
            tids = os.listdir(f"/proc/{me}/task")
            kids = set()
            for tid in tids:
                with open(f"/proc/{me}/task/{tid}/children") as f:
                    kids.update(int(p) for p in f.read().split())
        except OSError:
            kids = set()
        for kid in kids:
            try:
                os.kill(kid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def _make_workdir(self) -> str:
        if self.private_tmp:
            workdir = os.path.join(self.tmp_root, "work")
            os.mkdir(workdir, 0o700)
        else:
            import tempfile
            workdir = tempfile.mkdtemp(prefix="verifier-", dir=self.tmp_root)
            if self.drop_uid is not None:
                os.chown(workdir, self.drop_uid, self.drop_uid)
        return workdir

    def _wipe(self, workdir: str) -> None:
        """Remove the working directory; with a private /tmp and IPC namespace, everything the execution left.

        Raises if something cannot be removed: the pool then replaces this whole sandbox.
        """
        import shutil
        paths = [e.path for e in os.scandir(self.tmp_root)] if self.private_tmp else [workdir]
        for path in paths:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
                if os.path.lexists(path):  # a directory the program made unreadable or read-only
                    _make_removable(path)
                    shutil.rmtree(path)
            elif os.path.lexists(path):
                os.unlink(path)
        if self.private_tmp:
            _remove_sysv_ipc()

    def _child(self, req: dict, out_w: int, rep_w: int, workdir: str, zygote_pid: int) -> None:
        os.setsid()
        if self.drop_uid is not None:
            os.setgroups([])
            os.setresgid(self.drop_uid, self.drop_uid, self.drop_uid)
            os.setresuid(self.drop_uid, self.drop_uid, self.drop_uid)
        _prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG (after the uid change, which clears it): die with the zygote
        if os.getppid() != zygote_pid:
            os._exit(71)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_w, 1)
        os.dup2(out_w, 2)
        os.dup2(rep_w, REPORT_FD)
        os.closerange(REPORT_FD + 1, 1 << 16)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        cpu = int(float(req["timeout_s"])) + 1
        memory = int(req["memory_mb"]) << 20
        for limit, value in ((resource.RLIMIT_CPU, (cpu, cpu + 1)), (resource.RLIMIT_AS, (memory, memory)),
                             (resource.RLIMIT_FSIZE, (FILE_LIMIT, FILE_LIMIT)), (resource.RLIMIT_NPROC, (NPROC, NPROC)),
                             (resource.RLIMIT_NOFILE, (NOFILE, NOFILE)), (resource.RLIMIT_CORE, (0, 0))):
            resource.setrlimit(limit, value)
        os.chdir(workdir)
        _prctl(4, 1)  # dumpable again: the program may use its own /proc/self; the zygote stays protected
        run_request(req, workdir)


def run_request(req: dict, workdir: str) -> None:
    """In the set-up child: run the request, write the report to REPORT_FD, exit."""
    me = os.getpid()
    report = child.run(req, workdir)
    if os.getpid() != me:  # a process the program forked fell back into us: it has nothing to report
        os._exit(0)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    data = memoryview(json.dumps(report).encode("utf-8"))
    while data:
        data = data[os.write(REPORT_FD, data):]
    os._exit(0)


def _native_loop(path: str):
    """zygote_loop.c loaded with the GIL held (ctypes.PyDLL, as os.fork holds it); None if it cannot run here."""
    try:
        import ctypes
        lib = ctypes.PyDLL(path)
        lib.zygote_serve.argtypes = [ctypes.c_int] * 5 + [ctypes.c_char_p] + [ctypes.c_int64] * 4
        lib.zygote_body.restype = ctypes.c_void_p
        lib.zygote_body_len.restype = ctypes.c_int64
        lib.zygote_workdir.restype = ctypes.c_char_p
        return lib if lib.zygote_loop_ok() == 1 else None
    except (OSError, AttributeError, ImportError):
        return None


def serve_native(lib, rfd: int, wfd: int, cfg: dict) -> None:
    """The C loop; returns at end of input. In each forked child it returns 1 and the child runs here."""
    drop_uid = cfg.get("drop_uid")
    rc = lib.zygote_serve(rfd, wfd, int(bool(cfg["kill_all"])), int(bool(cfg["private_tmp"])),
                          -1 if drop_uid is None else int(drop_uid), cfg["tmp_root"].encode(),
                          REPORT_MAX, FILE_LIMIT, NPROC, NOFILE)
    if rc == 1:
        import ctypes
        body = ctypes.string_at(lib.zygote_body(), lib.zygote_body_len())
        try:
            req = json.loads(body)
        except ValueError:
            os._exit(76)
        run_request(req, lib.zygote_workdir().decode())
    if rc < 0:
        sys.exit(f"zygote loop failed ({rc})")


def main() -> None:
    cfg = json.loads(sys.argv[1])
    rfd, wfd = os.dup(0), os.dup(1)  # the protocol pipes move off 0/1, out of every child's reach
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    subreaper = _prctl(36, 1)   # PR_SET_CHILD_SUBREAPER: setsid'd orphans come back to us to be reaped
    nondumpable = _prctl(4, 0)  # PR_SET_DUMPABLE 0: a child of the same uid cannot ptrace us or open our fds
    for name in cfg.get("preload", PRELOAD):
        try:
            __import__(name)
        except ImportError:
            pass
    os.chdir("/")
    native = _native_loop(cfg["loop_lib"]) if cfg.get("loop_lib") else None
    child.warm_up()
    gc.collect()
    gc.freeze()
    write_frame(wfd, {"ready": True, "uid": os.getuid(), "pid": os.getpid(), "subreaper": subreaper,
                      "nondumpable": nondumpable, "loop": "native" if native else "python",
                      "compiled_tag": child.COMPILED_TAG})
    if native:
        serve_native(native, rfd, wfd, cfg)
        return
    zygote = Zygote(cfg)
    while True:
        payload = read_frame(rfd)
        if payload is None:
            return
        try:
            reply = zygote.execute(decode_request(payload))
        except Exception as e:  # a zygote bug or exhausted resource: say so, keep serving
            reply = encode_reply("zygote_error", None, None, 0.0, b"", f"{type(e).__name__}: {e}"[:300].encode())
        data = memoryview(reply)
        while data:
            data = data[os.write(wfd, data):]


if __name__ == "__main__":
    main()
