/* Starts a sandbox's supervisor in a private mount namespace holding the sandbox's root.
 *
 * Usage: launch LOWER UPPER WORK MERGED PROGRAM [ARG...]. Run by the client as root: it makes a
 * mount namespace of its own (private propagation, so nothing reaches the host's), mounts the
 * overlay (LOWER read-only, UPPER and WORK the sandbox's writable layer) on MERGED and execs
 * PROGRAM (the supervisor), so the mount exists only there and vanishes with it. One process
 * start instead of unshare(1) and mount(8). On failure it prints the supervisor's error line,
 * {"error": "..."}, and exits 1.
 *
 * launch --as ID PROGRAM [ARG...]: drop every group and switch to uid and gid ID (the sandbox's
 * root's host ids), then exec PROGRAM (bwrap, which must run unprivileged). The supervisor uses
 * it instead of unshare(1) -S/-G: one process start that does not load util-linux's libraries.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

static int fail(const char *what) {
    printf("{\"error\": \"%s: %s\"}\n", what, strerror(errno));
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

int main(int argc, char **argv) {
    if (argc >= 4 && strcmp(argv[1], "--as") == 0) return run_as(argv);
    if (argc < 6) {
        fprintf(stderr, "usage: launch LOWER UPPER WORK MERGED PROGRAM [ARG...]\n");
        return 2;
    }
    if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return fail("making the supervisor's mount namespace failed");
    size_t size = strlen(argv[1]) + strlen(argv[2]) + strlen(argv[3]) + 64;
    char *options = malloc(size);
    if (!options) return fail("out of memory");
    snprintf(options, size, "lowerdir=%s,upperdir=%s,workdir=%s", argv[1], argv[2], argv[3]);
    if (mount("overlay", argv[4], "overlay", 0, options) < 0) return fail("mounting the copy-on-write root failed");
    execv(argv[5], &argv[5]);
    return fail("starting the supervisor failed");
}
