/*
 * Isolation probes: each asks the kernel for one permission a tenant must not
 * have, without using it to change anything, and prints one line:
 *
 *     <probe> DENIED  <why>      the permission is absent
 *     <probe> ALLOWED <detail>   the permission is there
 *
 * Built statically by the tests (gcc -static) so it runs in any container.
 * Every probe is harmless where it is ALLOWED: system calls get arguments
 * the kernel rejects right after its permission check (so EPERM means "not
 * permitted" and any other error means "permitted, bad arguments"), files
 * are opened for writing but never written, and anything created is removed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <dirent.h>
#include <linux/bpf.h>
#include <linux/perf_event.h>
#include <linux/keyctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>

static void report(const char *name, int allowed, const char *detail) {
    printf("%s %s %s\n", name, allowed ? "ALLOWED" : "DENIED", detail);
}

/* A syscall's answer: EPERM/EACCES/ENOSYS = denied; anything else = it got past the check. */
static void syscall_probe(const char *name, long ret) {
    char buf[128];
    int e = errno;
    if (ret != -1) {
        snprintf(buf, sizeof buf, "returned %ld", ret);
        report(name, 1, buf);
    } else if (e == EPERM || e == EACCES || e == ENOSYS) {
        report(name, 0, strerror(e));
    } else {
        snprintf(buf, sizeof buf, "past the permission check: %s", strerror(e));
        report(name, 1, buf);
    }
}

static void probe_modules(void) {
    /* init_module with an empty image: EPERM without CAP_SYS_MODULE, else ENOEXEC/EINVAL */
    errno = 0;
    syscall_probe("load-module", syscall(SYS_init_module, "", 0UL, ""));
    errno = 0;
    syscall_probe("delete-module", syscall(SYS_delete_module, "corral_no_such_module", O_NONBLOCK));
}

static void probe_kexec(void) {
    /* invalid flags: EPERM comes first, EINVAL only past the capability check */
    errno = 0;
    syscall_probe("kexec", syscall(SYS_kexec_load, 0UL, 0UL, NULL, 0xffff0000UL));
}

static void probe_bpf(void) {
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.map_type = 0xffff; /* no such map type: EINVAL once permitted */
    errno = 0;
    syscall_probe("bpf", syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr));
}

static void probe_perf(void) {
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.size = sizeof attr;
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_CPU_CLOCK;
    attr.exclude_kernel = 1;
    errno = 0;
    long fd = syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0);
    syscall_probe("perf-event", fd);
    if (fd >= 0) close(fd);
}

static void probe_userfaultfd(void) {
    errno = 0;
    long fd = syscall(SYS_userfaultfd, O_CLOEXEC);
    syscall_probe("userfaultfd", fd);
    if (fd >= 0) close(fd);
}

static void probe_keyctl(void) {
    errno = 0;
    syscall_probe("keyctl", syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0));
}

static void probe_mknod(void) {
    /* a block device node for the first disk: created in /tmp and removed at once */
    char path[] = "/tmp/.corral-probe-blk";
    unlink(path);
    if (mknod(path, S_IFBLK | 0600, makedev(8, 0)) == 0) {
        unlink(path);
        report("mknod-block", 1, "created a block device node");
    } else {
        report("mknod-block", 0, strerror(errno));
    }
}

static void probe_raw_disk(void) {
    /* any block device the container can open */
    const char *candidates[] = {"/dev/sda", "/dev/vda", "/dev/nvme0n1", "/dev/xvda", "/dev/loop0", NULL};
    for (int i = 0; candidates[i]; i++) {
        int fd = open(candidates[i], O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            close(fd);
            report("raw-disk", 1, candidates[i]);
            return;
        }
    }
    report("raw-disk", 0, "no disk device to open");
}

static void probe_mount_disk(void) {
    /* mounting a host block device needs one and CAP_SYS_ADMIN in the initial namespace */
    const char *candidates[] = {"/dev/vda", "/dev/sda", "/dev/nvme0n1", "/dev/xvda", NULL};
    mkdir("/tmp/.corral-probe-mnt", 0700);
    for (int i = 0; candidates[i]; i++) {
        if (mount(candidates[i], "/tmp/.corral-probe-mnt", "ext4", MS_RDONLY, NULL) == 0) {
            umount("/tmp/.corral-probe-mnt");
            rmdir("/tmp/.corral-probe-mnt");
            report("mount-host-disk", 1, candidates[i]);
            return;
        }
    }
    rmdir("/tmp/.corral-probe-mnt");
    report("mount-host-disk", 0, "no host disk could be mounted");
}

static void probe_writable(const char *name, const char *path) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);  /* opened, never written */
    if (fd >= 0) {
        close(fd);
        report(name, 1, path);
    } else {
        char buf[256];
        snprintf(buf, sizeof buf, "%s: %s", path, strerror(errno));
        report(name, 0, buf);
    }
}

static void probe_readable(const char *name, const char *path) {
    char c;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0 && read(fd, &c, 1) == 1) {
        close(fd);
        report(name, 1, path);
        return;
    }
    if (fd >= 0) close(fd);
    report(name, 0, path);
}

static void probe_release_agent(void) {
    DIR *d = opendir("/sys/fs/cgroup");
    struct dirent *e;
    if (!d) { report("cgroup-release-agent", 0, "no /sys/fs/cgroup"); return; }
    while ((e = readdir(d))) {
        char path[512];
        snprintf(path, sizeof path, "/sys/fs/cgroup/%s/release_agent", e->d_name);
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
            close(fd);
            closedir(d);
            report("cgroup-release-agent", 1, path);
            return;
        }
    }
    closedir(d);
    report("cgroup-release-agent", 0, "no writable release_agent");
}

static void probe_hostname(void) {
    /* the UTS namespace's hostname may change; the host's must not: set the same name */
    char name[256];
    gethostname(name, sizeof name);
    if (sethostname(name, strlen(name)) == 0)
        report("set-own-hostname", 1, "own UTS namespace (expected)");
    else
        report("set-own-hostname", 0, strerror(errno));
}

static void probe_clock(void) {
    errno = 0;
    /* settimeofday(NULL, NULL): the capability check, then nothing to set */
    syscall_probe("set-clock", syscall(SYS_settimeofday, NULL, NULL));
}

static void probe_userns(void) {
    pid_t pid = fork();
    if (pid == 0) {
        _exit(unshare(CLONE_NEWUSER) == 0 ? 0 : errno);
    }
    int status;
    waitpid(pid, &status, 0);
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 255;
    report("new-user-namespace", code == 0, code == 0 ? "unshare(CLONE_NEWUSER) worked" : strerror(code));
}

static void probe_host_pids(const char *host_pid) {
    /* a host PID the tests give us, e.g. the test runner's own: its /proc entry must not exist */
    char path[64];
    snprintf(path, sizeof path, "/proc/%s/comm", host_pid);
    char comm[64] = "";
    int fd = open(path, O_RDONLY);
    if (fd >= 0) {
        read(fd, comm, sizeof comm - 1);
        close(fd);
    }
    int count = 0;
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] >= '1' && e->d_name[0] <= '9') count++;
    if (d) closedir(d);
    char buf[128];
    snprintf(buf, sizeof buf, "%d processes visible", count);
    /* allowed = the host's process is visible under its host PID with the same comm */
    report("host-processes", fd >= 0 && strstr(comm, "python") != NULL, buf);
}

static void probe_abstract_socket(const char *abstract) {
    /* an abstract unix socket the host listens on: reachable only in its network namespace */
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    size_t len = strlen(abstract);
    if (len > sizeof sa.sun_path - 2) len = sizeof sa.sun_path - 2;
    memcpy(sa.sun_path + 1, abstract, len);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int ok = connect(fd, (struct sockaddr *)&sa, offsetof(struct sockaddr_un, sun_path) + 1 + len) == 0;
    char buf[128];
    snprintf(buf, sizeof buf, "@%s: %s", abstract, ok ? "connected" : strerror(errno));
    close(fd);
    report("host-abstract-socket", ok, buf);
}

static void probe_host_loopback(const char *port) {
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)atoi(port));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    char buf[128];
    snprintf(buf, sizeof buf, "127.0.0.1:%s: %s", port, ok ? "connected" : strerror(errno));
    close(fd);
    report("host-loopback", ok, buf);
}

static void probe_path(const char *name, const char *path) {
    struct stat st;
    report(name, stat(path, &st) == 0, path);
}

int main(int argc, char **argv) {
    const char *host_pid = argc > 1 ? argv[1] : "1";
    const char *state_root = argc > 2 ? argv[2] : "/var/lib/corral";
    const char *abstract = argc > 3 ? argv[3] : "corral-probe";
    const char *port = argc > 4 ? argv[4] : "1";
    probe_modules();
    probe_kexec();
    probe_bpf();
    probe_perf();
    probe_userfaultfd();
    probe_keyctl();
    probe_mknod();
    probe_raw_disk();
    probe_mount_disk();
    probe_writable("proc-sys-write", "/proc/sys/kernel/hostname");
    probe_writable("sysrq-trigger", "/proc/sysrq-trigger");
    probe_writable("sys-write", "/sys/kernel/uevent_helper");
    probe_readable("kcore", "/proc/kcore");
    probe_readable("kmsg", "/proc/kmsg");
    probe_release_agent();
    probe_hostname();
    probe_clock();
    probe_userns();
    probe_host_pids(host_pid);
    probe_path("state-root", state_root);
    probe_path("runtime-sockets", "/run/corral/console");
    probe_abstract_socket(abstract);
    probe_host_loopback(port);
    fflush(stdout);
    return 0;
}
