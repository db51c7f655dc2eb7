/* The command agent of one bwrap sandbox; the contract is in _agent.py.
 *
 * Usage: agent INIT_PID SOCKET_PATH READY_FD SECCOMP_BPF. Started by the supervisor (host root, in
 * the host's namespaces) once the sandbox runs. It enters the sandbox's pid namespace for its
 * children only (setns: it stays in the host's pid namespace itself, so nothing in the sandbox can
 * see, signal or ptrace it), listens on SOCKET_PATH (a host directory the sandbox does not mount;
 * mode 0600) and writes "1" to READY_FD. Per connection: one request (a length, then NUL-terminated
 * fields: what to do, uid, gid, the capabilities root keeps (a hex mask), cwd, the cgroup.procs
 * files to join, argv, env) with the command's stdin, stdout and stderr as SCM_RIGHTS; it forks
 * once, and the child joins the cgroups, makes a cgroup namespace rooted there, enters the
 * sandbox's ipc, uts, net, mount and user namespaces and root, loads the sandboxes' seccomp filter
 * (SECCOMP_BPF, compiled by _seccomp.py; bwrap gives PID 1 the same), reduces its capabilities to
 * the mask (bounding, permitted, effective; none inheritable or ambient; no_new_privs), takes the
 * ids (a user other than root keeps none), changes directory and execs the command ("x"), or
 * copies a file to stdout ("r", read_file) or stdin to a file ("w", write_file) itself, with no
 * exec at all. When the command exits the agent writes its wait status ("%d\n") to the connection
 * and closes it. It dies with the supervisor (PR_SET_PDEATHSIG).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_REQUEST (16u << 20)
#define MAX_RUNNING 4096

extern char **environ;

static const struct { const char *name; int type; } NAMESPACES[] = {
    {"ipc", CLONE_NEWIPC}, {"uts", CLONE_NEWUTS}, {"net", CLONE_NEWNET}, {"mnt", CLONE_NEWNS}, {"user", CLONE_NEWUSER},
};
#define N_NS (sizeof NAMESPACES / sizeof NAMESPACES[0])

static int ns_fd[N_NS], root_fd, lfd, sfd;
static struct sock_fprog seccomp_filter;
static struct { pid_t pid; int conn; } running[MAX_RUNNING];

static void die(const char *what) {
    fprintf(stderr, "sandboxkit agent: %s: %s\n", what, strerror(errno));
    exit(1);
}

static int open_proc(const char *pid, const char *what, int flags) {
    char path[128];
    snprintf(path, sizeof path, "/proc/%s/%s", pid, what);
    int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0) die(path);
    return fd;
}

/* In the child: report why the command could not start (on its stderr) and exit with CODE. */
static void fail(int code, const char *what, const char *arg) {
    dprintf(2, "sandboxkit: %s%s%s: %s\n", what, arg ? " " : "", arg ? arg : "", strerror(errno));
    _exit(code);
}

static int write_all(const char *path) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    int ok = write(fd, "0", 1) == 1;
    close(fd);
    return ok ? 0 : -1;
}

/* Copy IN to OUT to the end; 0, or -1 with errno set. */
static int copy(int in, int out) {
    char buf[65536];
    for (;;) {
        ssize_t got = read(in, buf, sizeof buf);
        if (got == 0) return 0;
        if (got < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        for (ssize_t done = 0; done < got;) {
            ssize_t put = write(out, buf + done, (size_t)(got - done));
            if (put < 0 && errno != EINTR) return -1;
            if (put > 0) done += put;
        }
    }
}

/* In the child, in the sandbox's user namespace (where it holds every capability): keep only the
 * capabilities in MASK in the bounding set (so nothing it execs, setuid or with file capabilities,
 * gets more), none inheritable or ambient, and set no_new_privs, as Docker's `no-new-privileges`.
 * The permitted and effective sets follow in keep_caps, once the ids are taken. */
static void bound_caps(uint64_t mask) {
    for (int cap = 0; cap < 64; cap++)
        if (!(mask >> cap & 1) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
            fail(125, "cannot drop the command's capabilities", NULL);
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        fail(125, "cannot clear the ambient capabilities", NULL);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) fail(125, "cannot set no_new_privs", NULL);
}

/* Root's permitted and effective sets: MASK; inheritable: none (capset(2), no libcap). */
static void keep_caps(uint64_t mask) {
    struct __user_cap_header_struct head = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2] = {{(uint32_t)mask, (uint32_t)mask, 0}, {(uint32_t)(mask >> 32), (uint32_t)(mask >> 32), 0}};
    if (syscall(SYS_capset, &head, data) < 0) fail(125, "cannot drop the command's capabilities", NULL);
}

/* read_file/write_file in the sandbox, as the command's user: the file to stdout, or stdin to the
 * file (its missing parents made). Exit codes: 3 a directory, 4 missing, 6 bad parent, 7 denied. */
static int read_file(const char *path) {
    struct stat st;
    if (stat(path, &st) < 0) return errno == ENOENT || errno == ENOTDIR ? 4 : (dprintf(2, "%s: %s\n", path, strerror(errno)), 1);
    if (S_ISDIR(st.st_mode)) return 3;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || copy(fd, 1) < 0) {
        dprintf(2, "%s: %s\n", path, strerror(errno));
        return errno == EACCES || errno == EPERM ? 7 : 1;
    }
    return 0;
}

static int write_file(char *path) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return 3;
    for (char *p = path + 1; (p = strchr(p, '/')); *p++ = '/') { /* mkdir -p of the parents */
        *p = '\0';
        if (mkdir(path, 0777) < 0 && errno != EEXIST) return 6;
        if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode)) return 6;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) {
        dprintf(2, "%s: %s\n", path, strerror(errno));
        return errno == EISDIR ? 3 : 7;
    }
    if (copy(0, fd) < 0 || close(fd) < 0) {
        dprintf(2, "%s: %s\n", path, strerror(errno));
        return 1;
    }
    return 0;
}

/* The child: everything between fork and exec. `fields` are the request's strings. */
static void start(char **fields, int n, int io[3]) {
    int i = 0;
    close(lfd); /* what the command must never hold (all close on exec too) */
    close(sfd);
    for (int k = 0; k < MAX_RUNNING; k++)
        if (running[k].pid) close(running[k].conn);
    if (n < 7) _exit(125);
    char op = fields[i++][0];
    uid_t uid = (uid_t)strtoul(fields[i++], NULL, 10);
    gid_t gid = (gid_t)strtoul(fields[i++], NULL, 10);
    uint64_t caps = strtoull(fields[i++], NULL, 16);
    const char *cwd = fields[i++];
    int ncg = atoi(fields[i++]);
    for (int k = 0; k < 3; k++)
        if (dup2(io[k], k) < 0) _exit(125);
    for (int k = 0; k < ncg && i < n; k++, i++)
        if (write_all(fields[i]) < 0) fail(125, "cannot join the command's cgroup", fields[i]);
    if (i >= n) _exit(125);
    int argc = atoi(fields[i++]);
    if (argc < 1 || i + argc >= n) _exit(125);
    char **argv = &fields[i];
    i += argc;
    int envc = atoi(fields[i]);
    fields[i++] = NULL; /* ends argv */
    if (envc < 0 || i + envc > n) _exit(125);
    char **envp = &fields[i];
    fields[i + envc] = NULL; /* the spare slot after the last field */

    /* A cgroup namespace of its own, rooted at the command's cgroups; made here, as host root, so it
     * belongs to the host's user namespace and nothing inside can enter another one. */
    if (unshare(CLONE_NEWCGROUP) < 0) fail(125, "cannot make the command's cgroup namespace", NULL);
    for (size_t k = 0; k < N_NS; k++)
        if (setns(ns_fd[k], NAMESPACES[k].type) < 0) fail(125, "cannot enter the sandbox's namespace", NAMESPACES[k].name);
    if (fchdir(root_fd) < 0 || chroot(".") < 0) fail(125, "cannot enter the sandbox's root", NULL);
    /* root of the sandbox's user namespace here, so no no_new_privs is needed to load it */
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &seccomp_filter) < 0) fail(125, "cannot load the seccomp filter", NULL);
    bound_caps(caps);
    /* ids: first the namespace's root, so that a switch to another user drops every capability */
    if (setgroups(0, NULL) < 0 || setresgid(gid, gid, gid) < 0 || setresuid(0, 0, 0) < 0 || setresuid(uid, uid, uid) < 0)
        fail(125, "cannot switch to the command's user", NULL);
    if (uid == 0) keep_caps(caps);
    if (chdir(cwd) < 0) fail(1, "cannot change to directory", cwd);
    if (op == 'r') _exit(read_file(argv[0]));
    if (op == 'w') _exit(write_file(argv[0]));
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    environ = envp;
    execvp(argv[0], argv);
    fail(errno == ENOENT ? 127 : 126, "cannot run", argv[0]);
}

/* Read one request from CONN (blocking, bounded by SO_RCVTIMEO) and fork its command. */
static void serve(int conn) {
    struct timeval tv = {5, 0};
    setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    uint32_t len = 0;
    int io[3] = {-1, -1, -1};
    char control[CMSG_SPACE(3 * sizeof(int))];
    struct iovec iov = {&len, sizeof len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control};
    char *buf = NULL, **fields = NULL;
    if (recvmsg(conn, &msg, MSG_WAITALL | MSG_CMSG_CLOEXEC) != sizeof len) goto done;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(3 * sizeof(int)))
            memcpy(io, CMSG_DATA(c), sizeof io);
    if (io[0] < 0 || len == 0 || len > MAX_REQUEST) goto done;
    buf = malloc(len);
    if (!buf || recv(conn, buf, len, MSG_WAITALL) != (ssize_t)len || buf[len - 1] != '\0') goto done;
    int n = 0;
    for (uint32_t k = 0; k < len; k++) n += buf[k] == '\0';
    fields = calloc((size_t)n + 1, sizeof *fields);
    if (!fields) goto done;
    for (uint32_t k = 0, f = 0; k < len; f++) {
        fields[f] = buf + k;
        k += (uint32_t)strlen(buf + k) + 1;
    }
    int slot = 0;
    while (slot < MAX_RUNNING && running[slot].pid) slot++;
    pid_t pid = slot < MAX_RUNNING ? fork() : -1;
    if (pid == 0) start(fields, n, io);
    if (pid < 0) { /* the sandbox's pid namespace is gone (its PID 1 died), or too many commands */
        dprintf(conn, "-1\n");
        goto done;
    }
    running[slot].pid = pid;
    running[slot].conn = conn;
    conn = -1;
done:
    free(buf);
    free(fields);
    for (int k = 0; k < 3; k++)
        if (io[k] >= 0) close(io[k]);
    if (conn >= 0) close(conn);
}

static void reap(void) {
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
        for (int k = 0; k < MAX_RUNNING; k++)
            if (running[k].pid == pid) {
                char line[32];
                int m = snprintf(line, sizeof line, "%d\n", status);
                send(running[k].conn, line, (size_t)m, MSG_NOSIGNAL | MSG_DONTWAIT);
                close(running[k].conn);
                running[k].pid = 0;
                break;
            }
}

/* Read the compiled seccomp filter (a struct sock_filter array) once; every child loads it. */
static void load_filter(const char *path) {
    static struct sock_filter program[BPF_MAXINSNS];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) die(path);
    ssize_t got = read(fd, program, sizeof program);
    char extra;
    if (got <= 0 || got % (ssize_t)sizeof program[0] != 0 || read(fd, &extra, 1) != 0) {
        errno = EINVAL;
        die(path);
    }
    close(fd);
    seccomp_filter.len = (unsigned short)(got / (ssize_t)sizeof program[0]);
    seccomp_filter.filter = program;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: agent INIT_PID SOCKET_PATH READY_FD SECCOMP_BPF\n");
        return 2;
    }
    pid_t parent = getppid();
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent) return 1;
    for (size_t k = 0; k < N_NS; k++) {
        char what[32];
        snprintf(what, sizeof what, "ns/%s", NAMESPACES[k].name);
        ns_fd[k] = open_proc(argv[1], what, O_RDONLY);
    }
    root_fd = open_proc(argv[1], "root", O_RDONLY | O_DIRECTORY);
    load_filter(argv[4]);
    int pid_ns = open_proc(argv[1], "ns/pid", O_RDONLY);
    if (setns(pid_ns, CLONE_NEWPID) < 0) die("entering the sandbox's pid namespace");
    close(pid_ns);

    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0) die("signalfd");

    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(argv[2]) >= sizeof addr.sun_path) {
        errno = ENAMETOOLONG;
        die(argv[2]);
    }
    strcpy(addr.sun_path, argv[2]);
    lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    unlink(argv[2]);
    mode_t mask = umask(077); /* the socket: the host's root only */
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(lfd, 512) < 0) die(argv[2]);
    umask(mask);
    int ready = atoi(argv[3]);
    if (write(ready, "1", 1) != 1) die("ready fd");
    close(ready);

    struct pollfd fds[2] = {{lfd, POLLIN, 0}, {sfd, POLLIN, 0}};
    for (;;) {
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            die("poll");
        }
        if (fds[1].revents) {
            struct signalfd_siginfo info;
            while (read(sfd, &info, sizeof info) == sizeof info) {
            }
            reap();
        }
        if (fds[0].revents) {
            int conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
            if (conn >= 0) serve(conn);
        }
    }
}
