/* The zygote's per-execution loop in C: read a request, fork, supervise, clean up, reply.
 *
 * verifier/zygote.py's Zygote does the same in Python and stays the fallback (and the
 * readable statement of what happens). Why C: after every fork each page a process writes
 * costs a copy-on-write fault, and the Python loop writes a few hundred pages of its heap per
 * execution (reference counts of every object it touches). This loop touches its stack and
 * its buffers only: about half the page faults, 1.25x less CPU an execution (docs/verifier.md).
 *
 * zygote_serve() is called from the zygote's Python through ctypes.PyDLL (the GIL stays held,
 * as os.fork holds it). It returns 0 at end of input, negative if it cannot run, and 1 in
 * each forked child, which has been set up as verifier/zygote.py's _child sets it up (own
 * session, uid, parent-death signal, fds, rlimits, working directory) and then runs the
 * request in Python (zygote_body, zygote_workdir). Frames: verifier/zygote.py describes them.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { EXITED, TIMEOUT, OUTPUT_LIMIT, REPORT_TOO_LARGE, ZYGOTE_ERROR };

typedef struct { double timeout_s; int64_t output_limit, memory_mb; } ReqHeader;          /* "=dqq" */
typedef struct { int32_t outcome, exit_code, signal, pad; double exec_ms; int64_t report_len, output_len; }
    ReplyHeader;                                                                          /* "=iiiidqq" */

#define REPORT_FD 3                 /* zygote.py's REPORT_FD; the caps and rlimits come from zygote.py too */
#define MAX_FRAME (64 << 20)
#define MAX_DEPTH 512               /* deeper directories are not wiped (one fd a level): the sandbox is replaced */

static struct {
    int kill_all, private_tmp, drop_uid;
    int64_t report_max, file_limit, nproc, nofile;   /* zygote.py's REPORT_MAX, FILE_LIMIT, NPROC, NOFILE */
    char tmp_root[256], workdir[300];
    char *body; int64_t body_len, body_cap;
    char *out, *rep; int64_t out_len, rep_len, out_cap;
    char error[300];
    int have_status, status;
} Z;

static void (*before_fork)(void), (*after_fork_parent)(void), (*after_fork_child)(void);

const char *zygote_body(void) { return Z.body; }
int64_t zygote_body_len(void) { return Z.body_len; }
const char *zygote_workdir(void) { return Z.workdir; }

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int fail(const char *what) {
    snprintf(Z.error, sizeof Z.error, "%s: %s", what, strerror(errno));
    return -1;
}

static int read_exact(int fd, char *buf, int64_t n) {   /* 1 ok, 0 end of file, -1 error */
    while (n > 0) {
        ssize_t k = read(fd, buf, (size_t)n);
        if (k == 0) return 0;
        if (k < 0) { if (errno == EINTR) continue; return -1; }
        buf += k; n -= k;
    }
    return 1;
}

static int write_all(int fd, const char *buf, int64_t n) {
    while (n > 0) {
        ssize_t k = write(fd, buf, (size_t)n);
        if (k < 0) { if (errno == EINTR) continue; return -1; }
        buf += k; n -= k;
    }
    return 0;
}

static int reply(int wfd, int outcome, double exec_ms, const char *rep, int64_t rep_len, const char *out, int64_t out_len) {
    ReplyHeader h = {outcome, -1, 0, 0, exec_ms, rep_len, out_len};
    if (Z.have_status && WIFEXITED(Z.status)) h.exit_code = WEXITSTATUS(Z.status);
    else if (Z.have_status && WIFSIGNALED(Z.status)) h.signal = WTERMSIG(Z.status);
    uint32_t n = (uint32_t)(sizeof h + rep_len + out_len);
    unsigned char len[4] = {n >> 24, n >> 16, n >> 8, n};
    if (write_all(wfd, (const char *)len, 4) || write_all(wfd, (const char *)&h, sizeof h) ||
        write_all(wfd, rep, rep_len) || write_all(wfd, out, out_len)) return -1;
    return 0;
}

/* ---- the child: zygote.py's Zygote._child up to running the program ------------------------- */
static void child_setup(const ReqHeader *req, int out_w, int rep_w, pid_t zygote_pid) {
    setsid();
    if (Z.drop_uid >= 0) {
        uid_t u = (uid_t)Z.drop_uid;
        if (setgroups(0, NULL) || setresgid(u, u, u) || setresuid(u, u, u)) _exit(72);
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL);   /* after the uid change, which clears it: die with the zygote */
    if (getppid() != zygote_pid) _exit(71);
    int null = open("/dev/null", O_RDONLY);
    if (null < 0 || dup2(null, 0) < 0 || dup2(out_w, 1) < 0 || dup2(out_w, 2) < 0 || dup2(rep_w, REPORT_FD) < 0) _exit(73);
    if (syscall(SYS_close_range, REPORT_FD + 1, ~0U, 0) != 0)
        for (int fd = REPORT_FD + 1; fd < (1 << 16); fd++) close(fd);
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    sigaction(SIGINT, &dfl, NULL);
    sigaction(SIGTERM, &dfl, NULL);
    sigaction(SIGCHLD, &dfl, NULL);
    rlim_t cpu = (rlim_t)req->timeout_s + 1, mem = (rlim_t)req->memory_mb << 20;
    struct { int what; rlim_t soft, hard; } limits[] = {
        {RLIMIT_CPU, cpu, cpu + 1}, {RLIMIT_AS, mem, mem}, {RLIMIT_FSIZE, (rlim_t)Z.file_limit, (rlim_t)Z.file_limit},
        {RLIMIT_NPROC, (rlim_t)Z.nproc, (rlim_t)Z.nproc}, {RLIMIT_NOFILE, (rlim_t)Z.nofile, (rlim_t)Z.nofile}, {RLIMIT_CORE, 0, 0}};
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        struct rlimit r = {limits[i].soft, limits[i].hard};
        if (setrlimit(limits[i].what, &r)) _exit(74);
    }
    if (chdir(Z.workdir)) _exit(75);
    prctl(PR_SET_DUMPABLE, 1);   /* the program may use its own /proc/self; the zygote stays protected */
}

/* ---- the zygote's side --------------------------------------------------------------------- */
static void drain(int *fd, char *buf, int64_t *len, int64_t cap) {
    /* Read what is there without blocking, keeping at most cap + 1 bytes; close at end of file. */
    while (*fd >= 0 && *len <= cap) {
        ssize_t k = read(*fd, buf + *len, (size_t)(cap + 1 - *len));
        if (k > 0) { *len += k; continue; }
        if (k < 0 && errno == EINTR) continue;
        if (k == 0) { close(*fd); *fd = -1; }
        return;   /* EAGAIN, or end of file */
    }
}

static int watch(pid_t pid, int out_r, int rep_r, double deadline, int64_t output_limit) {
    fcntl(out_r, F_SETFL, O_NONBLOCK);
    fcntl(rep_r, F_SETFL, O_NONBLOCK);
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);   /* Linux < 5.3: poll the child every 5 ms */
    int outcome = -1;
    while (outcome < 0) {
        double left = deadline - now_s();
        if (left <= 0) { outcome = TIMEOUT; break; }
        struct pollfd p[3] = {{out_r, POLLIN, 0}, {rep_r, POLLIN, 0}, {pidfd, POLLIN, 0}};
        int ms = (int)(left * 1000.0) + 1;
        if (pidfd < 0 && ms > 5) ms = 5;
        if (poll(p, 3, ms) < 0 && errno != EINTR) { outcome = TIMEOUT; break; }
        drain(&out_r, Z.out, &Z.out_len, output_limit);
        drain(&rep_r, Z.rep, &Z.rep_len, Z.report_max);
        if (pidfd < 0 || (p[2].revents & POLLIN)) {
            int st;
            if (waitpid(pid, &st, WNOHANG) == pid) {
                Z.have_status = 1; Z.status = st;
                drain(&out_r, Z.out, &Z.out_len, output_limit);
                drain(&rep_r, Z.rep, &Z.rep_len, Z.report_max);
                outcome = EXITED;
            }
        }
        if (Z.out_len > output_limit) outcome = OUTPUT_LIMIT;
        else if (Z.rep_len > Z.report_max) outcome = REPORT_TOO_LARGE;
    }
    if (pidfd >= 0) close(pidfd);
    if (out_r >= 0) close(out_r);
    if (rep_r >= 0) close(rep_r);
    return outcome;
}

static void kill_descendants(pid_t pid) {
    /* Without a pid namespace: the child's process group, then every child of ours (a subreaper). */
    killpg(pid, SIGKILL);
    DIR *tasks = opendir("/proc/self/task");
    if (!tasks) return;
    struct dirent *t;
    while ((t = readdir(tasks))) {
        if (t->d_name[0] == '.') continue;
        char path[300];
        snprintf(path, sizeof path, "/proc/self/task/%s/children", t->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        long kid;
        while (fscanf(f, "%ld", &kid) == 1) kill((pid_t)kid, SIGKILL);
        fclose(f);
    }
    closedir(tasks);
}

static void kill_and_reap(pid_t pid) {
    for (;;) {
        if (Z.kill_all) kill(-1, SIGKILL);   /* everyone in this pid namespace but pid 1 and us */
        else kill_descendants(pid);
        int st;
        pid_t dead = waitpid(-1, &st, 0);
        if (dead < 0) {
            if (errno == EINTR) continue;
            return;   /* ECHILD: nobody left */
        }
        if (dead == pid && !Z.have_status) { Z.have_status = 1; Z.status = st; }
    }
}

static int remove_at(int parent, const char *name, int depth) {
    /* Remove name (a file, or a directory and everything in it, made writable first). */
    struct stat st;
    if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW)) return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR(st.st_mode)) return unlinkat(parent, name, 0) && errno != ENOENT ? -1 : 0;
    if (depth > MAX_DEPTH) { errno = ELOOP; return -1; }
    fchmodat(parent, name, 0700, 0);   /* a directory the program made unreadable or read-only */
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return -1;
    DIR *d = fdopendir(fd);
    if (!d) { close(fd); return -1; }
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && remove_at(fd, e->d_name, depth + 1)) rc = -1;
    closedir(d);
    if (unlinkat(parent, name, AT_REMOVEDIR) && errno != ENOENT) rc = -1;
    return rc;
}

static void remove_sysv_ipc(void) {
    /* Delete the SysV shared memory, queues and semaphores an execution created in this IPC namespace. */
    const char *kinds[3] = {"/proc/sysvipc/shm", "/proc/sysvipc/msg", "/proc/sysvipc/sem"};
    for (int k = 0; k < 3; k++) {
        FILE *f = fopen(kinds[k], "r");
        if (!f) continue;
        char line[512];
        if (!fgets(line, sizeof line, f)) { fclose(f); continue; }   /* the header */
        while (fgets(line, sizeof line, f)) {
            int id;
            if (sscanf(line, "%*s %d", &id) != 1) continue;
            if (k == 0) shmctl(id, IPC_RMID, NULL);
            else if (k == 1) msgctl(id, IPC_RMID, NULL);
            else semctl(id, 0, IPC_RMID);
        }
        fclose(f);
    }
}

static int wipe(void) {
    /* The working directory; with a private /tmp and IPC namespace, everything the execution left. */
    if (!Z.private_tmp) return remove_at(AT_FDCWD, Z.workdir, 0) ? fail("cannot wipe the working directory") : 0;
    int root = open(Z.tmp_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root < 0) return fail("cannot open the sandbox's /tmp");
    DIR *d = fdopendir(root);
    if (!d) { close(root); return fail("cannot list the sandbox's /tmp"); }
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && remove_at(root, e->d_name, 0)) rc = -1;
    closedir(d);
    remove_sysv_ipc();
    return rc ? fail("cannot wipe the sandbox's /tmp") : 0;
}

static int make_workdir(void) {
    if (Z.private_tmp) {
        snprintf(Z.workdir, sizeof Z.workdir, "%s/work", Z.tmp_root);
        return mkdir(Z.workdir, 0700) ? fail("cannot make the working directory") : 0;
    }
    snprintf(Z.workdir, sizeof Z.workdir, "%s/verifier-XXXXXX", Z.tmp_root);
    if (!mkdtemp(Z.workdir)) return fail("cannot make the working directory");
    if (Z.drop_uid >= 0 && chown(Z.workdir, (uid_t)Z.drop_uid, (gid_t)Z.drop_uid)) return fail("cannot chown the working directory");
    return 0;
}

/* One execution: 1 in the child (set up), 0 in the zygote after replying, -1 if the reply could not be sent. */
static int execute(int wfd, const ReqHeader *req) {
    Z.have_status = 0; Z.out_len = Z.rep_len = 0; Z.error[0] = 0;
    if (req->output_limit < 0 || req->output_limit > MAX_FRAME || !(req->timeout_s > 0) || req->memory_mb < 1) {
        snprintf(Z.error, sizeof Z.error, "bad limits in the request");
        return reply(wfd, ZYGOTE_ERROR, 0, "", 0, Z.error, (int64_t)strlen(Z.error));
    }
    if (Z.out_cap < req->output_limit + 1) {
        char *p = realloc(Z.out, (size_t)req->output_limit + 1);
        if (!p) { snprintf(Z.error, sizeof Z.error, "out of memory"); return reply(wfd, ZYGOTE_ERROR, 0, "", 0, Z.error, (int64_t)strlen(Z.error)); }
        Z.out = p; Z.out_cap = req->output_limit + 1;
    }
    int out[2] = {-1, -1}, rep[2] = {-1, -1};
    if (make_workdir() || pipe2(out, O_CLOEXEC) || pipe2(rep, O_CLOEXEC)) {
        if (!Z.error[0]) fail("cannot make pipes");
        for (int i = 0; i < 2; i++) { if (out[i] >= 0) close(out[i]); if (rep[i] >= 0) close(rep[i]); }
        wipe();
        return reply(wfd, ZYGOTE_ERROR, 0, "", 0, Z.error, (int64_t)strlen(Z.error));
    }
    double t0 = now_s();
    pid_t me = getpid();
    before_fork();
    pid_t pid = fork();
    if (pid == 0) {
        after_fork_child();
        close(out[0]); close(rep[0]);
        child_setup(req, out[1], rep[1], me);
        return 1;
    }
    int fork_errno = errno;
    after_fork_parent();
    close(out[1]); close(rep[1]);
    int outcome;
    double exec_ms;
    if (pid < 0) {
        close(out[0]); close(rep[0]);
        errno = fork_errno;
        fail("fork failed");
        outcome = ZYGOTE_ERROR;
        exec_ms = 0;
    } else {
        outcome = watch(pid, out[0], rep[0], t0 + req->timeout_s, req->output_limit);
        exec_ms = (now_s() - t0) * 1000.0;
        kill_and_reap(pid);
    }
    if (wipe() && outcome != ZYGOTE_ERROR) outcome = ZYGOTE_ERROR;
    if (outcome == ZYGOTE_ERROR) return reply(wfd, ZYGOTE_ERROR, exec_ms, "", 0, Z.error, (int64_t)strlen(Z.error));
    int64_t out_len = Z.out_len > req->output_limit ? req->output_limit : Z.out_len;
    int64_t rep_len = outcome == REPORT_TOO_LARGE ? 0 : Z.rep_len;
    return reply(wfd, outcome, exec_ms, Z.rep, rep_len, Z.out, out_len);
}

int zygote_serve(int rfd, int wfd, int kill_all, int private_tmp, int drop_uid, const char *tmp_root,
                 int64_t report_max, int64_t file_limit, int64_t nproc, int64_t nofile) {
    before_fork = (void (*)(void))dlsym(RTLD_DEFAULT, "PyOS_BeforeFork");
    after_fork_parent = (void (*)(void))dlsym(RTLD_DEFAULT, "PyOS_AfterFork_Parent");
    after_fork_child = (void (*)(void))dlsym(RTLD_DEFAULT, "PyOS_AfterFork_Child");
    if (!before_fork || !after_fork_parent || !after_fork_child) return -2;   /* not inside CPython */
    if (strlen(tmp_root) >= sizeof Z.tmp_root) return -3;
    Z.kill_all = kill_all; Z.private_tmp = private_tmp; Z.drop_uid = drop_uid;
    Z.report_max = report_max; Z.file_limit = file_limit; Z.nproc = nproc; Z.nofile = nofile;
    strcpy(Z.tmp_root, tmp_root);
    if (report_max < 0 || !(Z.rep = realloc(Z.rep, (size_t)report_max + 1))) return -4;
    for (;;) {
        unsigned char len[4];
        int r = read_exact(rfd, (char *)len, 4);
        if (r <= 0) return 0;   /* end of input (or a broken pipe): the zygote exits */
        int64_t n = ((int64_t)len[0] << 24) | (len[1] << 16) | (len[2] << 8) | len[3];
        if (n < (int64_t)sizeof(ReqHeader) || n > MAX_FRAME) return -5;
        if (Z.body_cap < n) {
            char *p = realloc(Z.body, (size_t)n);
            if (!p) return -4;
            Z.body = p; Z.body_cap = n;
        }
        if (read_exact(rfd, Z.body, n) <= 0) return 0;
        ReqHeader req;
        memcpy(&req, Z.body, sizeof req);
        Z.body_len = n - (int64_t)sizeof req;
        memmove(Z.body, Z.body + sizeof req, (size_t)Z.body_len);
        int rc = execute(wfd, &req);
        if (rc == 1) return 1;   /* the child: run the request in Python */
        if (rc < 0) return 0;    /* the parent hung up */
    }
}

/* 1 if the loop can run in this process (inside CPython, whose fork hooks it calls). */
int zygote_loop_ok(void) {
    return dlsym(RTLD_DEFAULT, "PyOS_BeforeFork") && dlsym(RTLD_DEFAULT, "PyOS_AfterFork_Parent") &&
           dlsym(RTLD_DEFAULT, "PyOS_AfterFork_Child");
}
