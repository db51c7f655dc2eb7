/* Compiles the sandboxes' seccomp filter (policy in _seccomp.py) to a BPF program, with libseccomp.
 *
 * Usage: seccomp OUT DENIED ABSENT NS_FLAGS. Everything is allowed except: the syscalls named in
 * DENIED (comma-separated) fail with EPERM, those in ABSENT with ENOSYS (callers fall back, as
 * glibc does from clone3 to clone), and clone/unshare with any of the NS_FLAGS bits (new
 * namespaces) fail with EPERM. Rules for every architecture the host runs (x86-64, i386, x32), so
 * 32-bit entry points are filtered alike. Names this libseccomp does not know are an error: the
 * policy must not shrink silently. Writes the program to OUT (raw struct sock_filter array).
 */
#include <errno.h>
#include <fcntl.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int add_list(scmp_filter_ctx ctx, char *names, int action) {
    for (char *name = strtok(names, ","); name; name = strtok(NULL, ",")) {
        int nr = seccomp_syscall_resolve_name(name);
        if (nr == __NR_SCMP_ERROR) {
            fprintf(stderr, "seccomp: libseccomp does not know the syscall %s\n", name);
            return -1;
        }
        int rc = seccomp_rule_add(ctx, action, nr, 0);
        if (rc < 0) {
            fprintf(stderr, "seccomp: rule for %s: %s\n", name, strerror(-rc));
            return -1;
        }
    }
    return 0;
}

static int add_namespace_rules(scmp_filter_ctx ctx, unsigned long mask) {
    const char *calls[] = {"clone", "unshare"};
    for (size_t c = 0; c < 2; c++) {
        int nr = seccomp_syscall_resolve_name(calls[c]);
        for (unsigned long bit = 1; bit && bit <= mask; bit <<= 1) {
            /* clone's low byte is the exit signal (CSIGNAL), not flags: CLONE_NEWTIME is for unshare */
            if (!(mask & bit) || (c == 0 && bit <= 0xff)) continue;
            int rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 1, SCMP_A0(SCMP_CMP_MASKED_EQ, bit, bit));
            if (rc < 0) {
                fprintf(stderr, "seccomp: rule for %s: %s\n", calls[c], strerror(-rc));
                return -1;
            }
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: seccomp OUT DENIED ABSENT NS_FLAGS\n");
        return 2;
    }
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx) return 1;
    const uint32_t arches[] = {SCMP_ARCH_X86, SCMP_ARCH_X32};
    if (seccomp_arch_native() == SCMP_ARCH_X86_64)
        for (size_t a = 0; a < 2; a++)
            if (seccomp_arch_add(ctx, arches[a]) < 0) return 1;
    unsigned long mask = strtoul(argv[4], NULL, 0);
    if (add_list(ctx, argv[2], SCMP_ACT_ERRNO(EPERM)) < 0 || add_list(ctx, argv[3], SCMP_ACT_ERRNO(ENOSYS)) < 0 ||
        add_namespace_rules(ctx, mask) < 0)
        return 1;
    int out = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
        perror(argv[1]);
        return 1;
    }
    int rc = seccomp_export_bpf(ctx, out);
    if (rc < 0) {
        fprintf(stderr, "seccomp: export: %s\n", strerror(-rc));
        return 1;
    }
    seccomp_release(ctx);
    return close(out) == 0 ? 0 : 1;
}
