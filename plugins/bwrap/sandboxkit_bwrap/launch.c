/* Starts a sandbox's supervisor in a private mount namespace holding the sandbox's root.
 *
 * Usage: launch LOWER UPPER WORK MERGED PROGRAM [ARG...]. Run by the client as root: it makes a
 * mount namespace of its own (private propagation, so nothing reaches the host's), mounts the
 * overlay (LOWER read-only, UPPER and WORK the sandbox's writable layer) on MERGED and execs
 * PROGRAM (the supervisor), so the mount exists only there and vanishes with it. One process
 * start instead of unshare(1) and mount(8). On failure it prints the supervisor's error line,
 * {"error": "..."}, and exits 1.
 *
 * launch --disk IMAGE DIR LOWER UPPER WORK MERGED PROGRAM [ARG...]: the same, after attaching the
 * filesystem image IMAGE (ext4, the sandbox's disk cap; UPPER and WORK are in it) to a free loop
 * device and mounting it on DIR, in that mount namespace too. The device detaches itself
 * (autoclear) once the mount is gone, with the namespace's last process.
 *
 * launch --as ID PROGRAM [ARG...]: drop every group and switch to uid and gid ID (the sandbox's
 * root's host ids), then exec PROGRAM (bwrap, which must run unprivileged). The supervisor uses
 * it instead of unshare(1) -S/-G: one process start that does not load util-linux's libraries.
 *
 * launch --userns NEWUIDMAP NEWGIDMAP UID SUBUID GID SUBGID [--run PROGRAM [ARG...] | LOWER UPPER
 * WORK MERGED PROGRAM [ARG...]]: the same, for a non-root client (rootless). It forks; the child
 * makes a user namespace and a mount namespace and waits while this process maps the namespace
 * with NEWUIDMAP/NEWGIDMAP (setuid helpers checking /etc/subuid and /etc/subgid): 0 is UID (the
 * user), 1..65536 are SUBUID.. (its subordinate ids), likewise for gids. The child then becomes
 * uid and gid 0 there and either runs PROGRAM as that root (--run: chown, rm of files owned by
 * the subordinate ids), or gives UPPER to the sandbox's root (id 1 there), mounts the overlay
 * (userxattr: Linux 5.11+) and execs the supervisor as above. This process waits for the child
 * and exits with its status.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/loop.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#define SUBIDS "65536" /* the subordinate ids a rootless namespace maps (the sandbox's 0..65535) */

static int fail(const char *what) {
    printf("{\"error\": \"%s: %s\"}\n", what, strerror(errno));
    fflush(stdout);
    return 1;
}

static int run_as(char **argv) {
    char *end;
    unsigned long id = strtoul(argv[2], &end, 10);
    if (*argv[2] == '\0' || *end != '\0' || id == 0 || id > 0xfffffffeUL) {
        fprintf(stderr, "launch --as: %s is not a uid\n", argv[2]);
        return 2;
    }
    if (setgroups(0, NULL) < 0 || setresgid((gid_t)id, (gid_t)id, (gid_t)id) < 0 ||
        setresuid((uid_t)id, (uid_t)id, (uid_t)id) < 0) {
        fprintf(stderr, "launch --as %lu: %s\n", id, strerror(errno));
        return 1;
    }
    execv(argv[3], &argv[3]);
    fprintf(stderr, "launch --as: %s: %s\n", argv[3], strerror(errno));
    return 127;
}

/* Attach IMAGE to a free loop device (autoclear) and mount its ext4 on DIR; -1 with errno on failure. */
static int mount_disk(const char *image, const char *dir) {
    int img = open(image, O_RDWR | O_CLOEXEC);
    int ctl = img < 0 ? -1 : open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    int rc = -1;
    for (int tries = 0; ctl >= 0 && tries < 100; tries++) {
        int n = ioctl(ctl, LOOP_CTL_GET_FREE);
        if (n < 0) break;
        char dev[32];
        snprintf(dev, sizeof dev, "/dev/loop%d", n);
        int loop = open(dev, O_RDWR | O_CLOEXEC);
        if (loop < 0) break;
        struct loop_config config;
        memset(&config, 0, sizeof config);
        config.fd = (unsigned)img;
        config.info.lo_flags = LO_FLAGS_AUTOCLEAR;
        if (ioctl(loop, LOOP_CONFIGURE, &config) == 0) {  /* the mount holds the device; closing ours leaves it */
            rc = mount(dev, dir, "ext4", 0, "noinit_itable");
            int saved = errno;
            close(loop);
            errno = saved;
            break;
        }
        int saved = errno;
        close(loop);
        errno = saved;
        if (errno != EBUSY) break;  /* another create took it first: ask for another */
    }
    int saved = errno;
    if (ctl >= 0) close(ctl);
    if (img >= 0) close(img);
    errno = saved;
    return rc;
}

/* Run NEWxIDMAP PID 0 ID 1 1 SUBID 65536; 0 when it succeeded. */
static int map_ids(const char *helper, pid_t pid, const char *id, const char *subid) {
    char target[32];
    snprintf(target, sizeof target, "%d", (int)pid);
    pid_t helper_pid = fork();
    if (helper_pid == 0) {
        execl(helper, helper, target, "0", id, "1", "1", subid, SUBIDS, (char *)NULL);
        _exit(127);
    }
    int status;
    if (helper_pid < 0 || waitpid(helper_pid, &status, 0) < 0) return -1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* The rootless path: returns in the child, as root of a mapped user namespace; the parent exits. */
static int enter_userns(char **argv) {
    int ready[2], go[2];
    if (pipe(ready) < 0 || pipe(go) < 0) return fail("making the user namespace failed");
    pid_t pid = fork();
    if (pid < 0) return fail("making the user namespace failed");
    if (pid == 0) {
        char c = 0;
        close(ready[0]);
        close(go[1]);
        if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0) _exit(fail("making the user namespace failed (are unprivileged user namespaces allowed?)"));
        if (write(ready[1], "1", 1) != 1 || read(go[0], &c, 1) != 1) _exit(1);
        close(ready[1]);
        close(go[0]);
        if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0 || setgroups(0, NULL) < 0)
            _exit(fail("becoming root of the user namespace failed"));
        return 0;
    }
    /* what the client passed on is the supervisor's alone: an end held here would delay its EOFs */
    int keep[2] = {ready[0] < go[1] ? ready[0] : go[1], ready[0] < go[1] ? go[1] : ready[0]};
    close_range(3, (unsigned)keep[0] - 1, 0);
    close_range((unsigned)keep[0] + 1, (unsigned)keep[1] - 1, 0);
    close_range((unsigned)keep[1] + 1, ~0U, 0);
    char c = 0;
    int ok = read(ready[0], &c, 1) == 1;
    close(ready[0]);
    if (ok && map_ids(argv[2], pid, argv[4], argv[5]) == 0 && map_ids(argv[3], pid, argv[6], argv[7]) == 0) {
        ok = write(go[1], "1", 1) == 1;
    } else if (ok) {
        errno = EPERM;
        printf("{\"error\": \"mapping the user namespace with %s and %s failed (see supervisor.log); /etc/subuid "
               "and /etc/subgid must give this user 65536 ids\"}\n", argv[2], argv[3]);
        fflush(stdout);
        kill(pid, SIGKILL);
    }
    close(go[1]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    exit(!ok ? 1 : WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
}

int main(int argc, char **argv) {
    if (argc >= 4 && strcmp(argv[1], "--as") == 0) return run_as(argv);
    int rootless = argc >= 10 && strcmp(argv[1], "--userns") == 0;
    if (rootless) {
        if (enter_userns(argv) != 0) return 1;
        argv += 7;
        argc -= 7;
        if (strcmp(argv[1], "--run") == 0) {
            execv(argv[2], &argv[2]);
            fprintf(stderr, "launch --run: %s: %s\n", argv[2], strerror(errno));
            return 127;
        }
    }
    const char *disk = NULL, *disk_dir = NULL;
    if (argc >= 4 && strcmp(argv[1], "--disk") == 0) {
        disk = argv[2];
        disk_dir = argv[3];
        argv += 3;
        argc -= 3;
    }
    if (argc < 6) {
        fprintf(stderr, "usage: launch [--disk IMAGE DIR] LOWER UPPER WORK MERGED PROGRAM [ARG...]\n");
        return 2;
    }
    if ((!rootless && unshare(CLONE_NEWNS) < 0) || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return fail("making the supervisor's mount namespace failed");
    if (disk && mount_disk(disk, disk_dir) < 0) return fail("mounting the sandbox's capped writable layer failed");
    size_t size = strlen(argv[1]) + strlen(argv[2]) + strlen(argv[3]) + 64;
    char *options = malloc(size);
    if (!options) return fail("out of memory");
    snprintf(options, size, "lowerdir=%s,upperdir=%s,workdir=%s%s", argv[1], argv[2], argv[3], rootless ? ",userxattr" : "");
    if (rootless && chown(argv[2], 1, 1) < 0) return fail("giving the writable layer to the sandbox's root failed");
    if (mount("overlay", argv[4], "overlay", 0, options) < 0) return fail("mounting the copy-on-write root failed");
    execv(argv[5], &argv[5]);
    return fail("starting the supervisor failed");
}
