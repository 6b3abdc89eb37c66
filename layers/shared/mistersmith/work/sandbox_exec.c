/* mistersmith-exec: the sandbox's exec helper (see mistersmith/work/sandbox.py, _HelperRoute).
 *
 * The worker starts it without preexec_fn, user or group, so CPython vforks instead of copying
 * the worker; it does what preexec_fn did, then execs the task's program:
 *
 *   mistersmith-exec exec UID REPORT_FD FILTER_HEX NLIMITS [RESOURCE SOFT HARD]... EXECUTABLE ARGV...
 *       drops every group and becomes UID (unless UID is -1), sets the rlimits, sets no_new_privs,
 *       installs the seccomp program FILTER_HEX ("-": none), execs. A failure before the exec is
 *       written to REPORT_FD as JSON ({"exec_errno": N} or {"error": "..."}), exit status 125.
 *       With a UID the helper vforks instead and the child execs: the helper, as UID and under
 *       the same filter, waits for the program, sweeps UID (as `kill` does), writes the verdict
 *       to REPORT_FD on a line of its own (SWEPT or NOT_SWEPT below) and ends as the program
 *       ended (its exit status, or its signal). No verdict (the program killed the helper): the
 *       worker sweeps with `kill`.
 *   mistersmith-exec kill UID
 *       becomes UID and kills every other process of UID with kill(-1, SIGKILL), again while any
 *       still counts (a fork cannot complete with a kill pending), then removes UID's System V
 *       IPC objects (only their owner may). Exit 0 when no process of UID is left (the kernel's
 *       count of the user's processes says so), 3 when some still counts (a zombie not yet
 *       reaped, or a kill that did not take).
 *
 * Built static with musl at image build (fargate_worker/Dockerfile) and by the tests (with cc
 * where musl-gcc is missing): static glibc's start-up took 0.27 ms of each run, musl's 0.04 ms.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <unistd.h>

/* The kernel's seccomp ABI (linux/filter.h, linux/seccomp.h), spelled out: musl's compiler has no
 * kernel headers. */
#define SECCOMP_MODE_FILTER 2
struct sock_filter {
    unsigned short code;
    unsigned char jt, jf;
    unsigned int k;
};
struct sock_fprog {
    unsigned short len;
    struct sock_filter *filter;
};

#define FAILED 125
#define KILL_PASSES 20
#define MAX_FILTER 4096
/* The supervising helper's verdict lines (mistersmith/work/sandbox.py reads them). */
#define SWEPT "\n{\"swept\": true}\n"
#define NOT_SWEPT "\n{\"swept\": false}\n"

static int report_fd = -1;

static void report(const char *json) {
    if (report_fd >= 0) {
        ssize_t ignored = write(report_fd, json, strlen(json));
        (void)ignored;
    }
}

static void fail(const char *what) {
    char message[256];
    snprintf(message, sizeof message, "{\"error\": \"exec helper: %s: %s\"}", what, strerror(errno));
    report(message);
    _exit(FAILED);
}

static long long number(const char *text) {
    char *end;
    errno = 0;
    long long value = strtoll(text, &end, 10);
    if (errno || *end || end == text) {
        errno = EINVAL;
        fail("bad number");
    }
    return value;
}

static void become(long long uid) {
    if (uid < 0) return;
    if (setgroups(0, NULL) != 0) fail("setgroups");
    if (setgid((gid_t)uid) != 0) fail("setgid");
    if (setuid((uid_t)uid) != 0) fail("setuid");
}

static int nibble(char digit) {
    if (digit >= '0' && digit <= '9') return digit - '0';
    if (digit >= 'a' && digit <= 'f') return digit - 'a' + 10;
    if (digit >= 'A' && digit <= 'F') return digit - 'A' + 10;
    return -1;
}

static void install_filter(const char *hex) {
    static struct sock_filter program[MAX_FILTER / 8];
    size_t length = strlen(hex);
    if (strcmp(hex, "-") == 0) return;
    if (length % 16 || length / 2 > MAX_FILTER) {
        errno = EINVAL;
        fail("bad filter");
    }
    unsigned char *bytes = (unsigned char *)program;
    for (size_t i = 0; i < length / 2; i++) {
        int high = nibble(hex[2 * i]), low = nibble(hex[2 * i + 1]);
        if (high < 0 || low < 0) {
            errno = EINVAL;
            fail("bad filter");
        }
        bytes[i] = (unsigned char)(high << 4 | low);
    }
    struct sock_fprog fprog = {.len = (unsigned short)(length / 16), .filter = program};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail("PR_SET_NO_NEW_PRIVS");
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog, 0, 0) != 0) fail("PR_SET_SECCOMP");
}

/* The column of `name` in the header `line`, -1 without one. */
static int column_of(char *line, const char *name) {
    int column = 0;
    for (char *word = strtok(line, " \t"); word; word = strtok(NULL, " \t"), column++)
        if (strcmp(word, name) == 0) return column;
    return -1;
}

/* Removes the IPC object of the row `line` of /proc/sysvipc/<kind> if `uid` owns it. */
static void remove_ipc_row(const char *kind, char *line, uid_t uid, int uid_column) {
    long long id = -1, owner = -1;
    int column = 0;
    for (char *word = strtok(line, " \t"); word; word = strtok(NULL, " \t"), column++) {
        if (column == 1) id = strtoll(word, NULL, 10);
        if (column == uid_column) owner = strtoll(word, NULL, 10);
    }
    if (id < 0 || owner != (long long)uid) return;
    if (kind[1] == 'h') shmctl((int)id, IPC_RMID, NULL);
    else if (kind[1] == 's') msgctl((int)id, IPC_RMID, NULL);
    else semctl((int)id, 0, IPC_RMID);
}

/* Removes the IPC objects of `uid` listed in /proc/sysvipc/<kind> (columns found by the header),
 * read with read(2): stdio would set up malloc, a cost on every run's path. */
static void remove_ipc(const char *kind, uid_t uid) {
    static char buffer[8192];
    char path[64];
    snprintf(path, sizeof path, "/proc/sysvipc/%s", kind);
    int table = open(path, O_RDONLY | O_CLOEXEC);
    if (table < 0) return;
    int uid_column = -1, header = 1, skipping = 0;
    size_t held = 0;
    ssize_t got;
    while ((got = read(table, buffer + held, sizeof buffer - 1 - held)) > 0) {
        held += (size_t)got;
        char *start = buffer, *end;
        while ((end = memchr(start, '\n', (size_t)(buffer + held - start)))) {
            *end = '\0';
            if (skipping) {
                skipping = 0; /* the end of a line too long to be a row */
            } else if (header) {
                uid_column = column_of(start, "uid");
                header = 0;
            } else if (uid_column > 1) {
                remove_ipc_row(kind, start, uid, uid_column);
            }
            start = end + 1;
        }
        held = (size_t)(buffer + held - start);
        memmove(buffer, start, held);
        if (held == sizeof buffer - 1) {
            held = 0;
            skipping = 1;
        }
    }
    close(table);
}

/* Whether the caller is the only process of its user, zombies included: the kernel counts the
 * user's processes, and with a limit of 2 a fork succeeds only if the caller is the only one. */
static int alone(void) {
    struct rlimit two = {2, 2};
    if (setrlimit(RLIMIT_NPROC, &two) != 0) return 0;
    pid_t probe = vfork();
    if (probe == 0) _exit(0);
    if (probe < 0) return 0;
    waitpid(probe, NULL, 0);
    return 1;
}

/* Kills every other process of UID (the caller has become UID) and removes its IPC objects: 0
 * when nothing of UID is left but the caller, 3 when some still counts. One kill(-1) reaches
 * every process and fork of UID (a fork cannot complete with a kill pending); what it returns
 * tells nothing (it fails with EPERM from no process, and its error is the last one seen). More
 * passes only while something of UID still counts (zombies not yet reaped, kills not taken). */
static int sweep(uid_t uid) {
    kill(-1, SIGKILL);
    int left = !alone();
    for (int pass = 1; left && pass < KILL_PASSES; pass++) kill(-1, SIGKILL);
    if (left) left = !alone();
    /* Once none of UID is left (when it says so), none can make another IPC object. */
    remove_ipc("shm", uid);
    remove_ipc("msg", uid);
    remove_ipc("sem", uid);
    return left ? 3 : 0;
}

static int run_kill(int argc, char **argv) {
    if (argc != 3) return FAILED;
    long long uid = number(argv[2]);
    if (uid <= 0) return FAILED;
    become(uid);
    return sweep((uid_t)uid);
}

/* The program's parent until it ends: then nothing of UID outlives it, without a second helper. */
static int supervise(pid_t program, uid_t uid) {
    /* Only the program holds the worker's pipes now: their end is its end (or its survivors'). */
    close(0);
    close(1);
    close(2);
    int status;
    while (waitpid(program, &status, 0) < 0)
        if (errno != EINTR) return FAILED;
    report(sweep(uid) == 0 ? SWEPT : NOT_SWEPT);
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    /* Ends by the program's signal, so the worker reads the same exit (a CPU limit's SIGXCPU too). */
    int signal_number = WTERMSIG(status);
    sigset_t only;
    sigemptyset(&only);
    sigaddset(&only, signal_number);
    signal(signal_number, SIG_DFL);
    sigprocmask(SIG_UNBLOCK, &only, NULL);
    raise(signal_number);
    return FAILED;
}

/* Execs the program; on failure reports why and ends. In a vfork child: its own frame, and _exit. */
static __attribute__((noinline, noreturn)) void run_program(const char *path, char **args) {
    execv(path, args);
    char message[64];
    snprintf(message, sizeof message, "{\"exec_errno\": %d}", errno);
    report(message);
    _exit(FAILED);
}

static int run_exec(int argc, char **argv) {
    if (argc < 6) return FAILED;
    long long uid = number(argv[2]);
    report_fd = (int)number(argv[3]);
    /* The task's program must not inherit the report channel: its end is how the worker knows the exec happened. */
    if (fcntl(report_fd, F_SETFD, FD_CLOEXEC) != 0) fail("report descriptor");
    const char *filter = argv[4];
    long long limits = number(argv[5]);
    int next = 6;
    if (limits < 0 || argc < next + 3 * limits + 2) {
        errno = EINVAL;
        fail("bad arguments");
    }
    become(uid);
    for (long long i = 0; i < limits; i++, next += 3) {
        struct rlimit limit = {(rlim_t)number(argv[next + 1]), (rlim_t)number(argv[next + 2])};
        if (setrlimit((int)number(argv[next]), &limit) != 0) fail("setrlimit");
    }
    install_filter(filter);
    /* Before the fork: the program (same uid) gets no ptrace or /proc access to its supervisor. */
    if (uid >= 0 && prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) fail("PR_SET_DUMPABLE");
    /* vfork: the helper waits only until the exec, and nothing of it is copied. */
    pid_t program = uid < 0 ? 0 : vfork();
    if (program < 0) fail("vfork");
    if (program > 0) return supervise(program, (uid_t)uid);
    run_program(argv[next], argv + next + 1);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "exec") == 0) return run_exec(argc, argv);
    if (argc > 1 && strcmp(argv[1], "kill") == 0) return run_kill(argc, argv);
    fputs("usage: mistersmith-exec exec UID REPORT_FD FILTER_HEX NLIMITS [RESOURCE SOFT HARD]... EXECUTABLE ARGV...\n"
          "       mistersmith-exec kill UID\n",
          stderr);
    return 2;
}
