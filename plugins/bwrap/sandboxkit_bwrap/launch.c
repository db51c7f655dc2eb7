/* Starts a sandbox's supervisor in a private mount namespace holding the sandbox's root.
 *
 * Usage: launch LOWER UPPER WORK MERGED PROGRAM [ARG...]. Run by the client as root: it makes a
 * mount namespace of its own (private propagation, so nothing reaches the host's), mounts the
 * overlay (LOWER read-only, UPPER and WORK the sandbox's writable layer) on MERGED and execs
 * PROGRAM (the supervisor), so the mount exists only there and vanishes with it. One process
 * start instead of unshare(1) and mount(8). On failure it prints the supervisor's error line,
 * {"error": "..."}, and exits 1.
 */
#define _GNU_SOURCE
#include <errno.h>
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

int main(int argc, char **argv) {
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
