/* A hostile FUSE file system (libfuse3, high-level API), started by the tests:
 *   fusefs MODE BACKDIR MOUNTPOINT [fuse options...]
 * MODE hang-read: a root directory holding one file "cc" (0600, 4 KiB, owned by BACKDIR's
 *                 owner) whose READ is never answered.
 * MODE passthrough: a read-only view of BACKDIR (opened before mounting, so a later pivot_root
 *                 does not move it), used as a caller's root file system.
 * The server stays in the foreground; the tests kill it and lazily unmount the mount point.
 */
#define FUSE_USE_VERSION 31
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int hang;
static int backfd = -1;
static uid_t owner_uid;  /* hang-read: the file's owner is BACKDIR's (the tests make it alice) */
static gid_t owner_gid;

static const char *rel(const char *p) { return p[1] ? p + 1 : "."; }

static int x_getattr(const char *p, struct stat *st, struct fuse_file_info *fi) {
    (void)fi;
    if (hang) {
        memset(st, 0, sizeof *st);
        st->st_uid = owner_uid;
        st->st_gid = owner_gid;
        if (!strcmp(p, "/")) { st->st_mode = S_IFDIR | 0755; st->st_nlink = 2; return 0; }
        if (!strcmp(p, "/cc")) { st->st_mode = S_IFREG | 0600; st->st_nlink = 1; st->st_size = 4096; return 0; }
        return -ENOENT;
    }
    return fstatat(backfd, rel(p), st, AT_SYMLINK_NOFOLLOW) ? -errno : 0;
}

static int x_readlink(const char *p, char *buf, size_t n) {
    ssize_t m = readlinkat(backfd, rel(p), buf, n - 1);
    if (m < 0) return -errno;
    buf[m] = 0;
    return 0;
}

static int x_readdir(const char *p, void *buf, fuse_fill_dir_t fill, off_t off,
                     struct fuse_file_info *fi, enum fuse_readdir_flags fl) {
    (void)off; (void)fi; (void)fl;
    if (hang) {
        fill(buf, ".", NULL, 0, 0); fill(buf, "..", NULL, 0, 0); fill(buf, "cc", NULL, 0, 0);
        return 0;
    }
    int fd = openat(backfd, rel(p), O_RDONLY | O_DIRECTORY);
    if (fd < 0) return -errno;
    DIR *d = fdopendir(fd);
    struct dirent *de;
    while ((de = readdir(d))) fill(buf, de->d_name, NULL, 0, 0);
    closedir(d);
    return 0;
}

static int x_open(const char *p, struct fuse_file_info *fi) {
    if (hang) return strcmp(p, "/cc") ? -ENOENT : 0;
    if ((fi->flags & O_ACCMODE) != O_RDONLY) return -EROFS;
    int fd = openat(backfd, rel(p), O_RDONLY);
    if (fd < 0) return -errno;
    fi->fh = fd;
    return 0;
}

static int x_read(const char *p, char *buf, size_t n, off_t off, struct fuse_file_info *fi) {
    (void)p;
    if (hang) { for (;;) pause(); }
    ssize_t m = pread(fi->fh, buf, n, off);
    return m < 0 ? -errno : (int)m;
}

static int x_release(const char *p, struct fuse_file_info *fi) {
    (void)p;
    if (!hang) close(fi->fh);
    return 0;
}

static int x_access(const char *p, int mask) { (void)p; (void)mask; return 0; }

static const struct fuse_operations ops = {
    .getattr = x_getattr, .readlink = x_readlink, .readdir = x_readdir, .open = x_open,
    .read = x_read, .release = x_release, .access = x_access,
};

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: fusefs MODE BACKDIR MOUNTPOINT [opts]\n"); return 2; }
    hang = !strcmp(argv[1], "hang-read");
    backfd = open(argv[2], O_RDONLY | O_DIRECTORY);
    if (backfd < 0) { perror(argv[2]); return 2; }
    struct stat bst;
    if (fstat(backfd, &bst) != 0) { perror(argv[2]); return 2; }
    owner_uid = bst.st_uid;
    owner_gid = bst.st_gid;
    char *fargv[16];
    int n = 0;
    fargv[n++] = argv[0];
    fargv[n++] = "-f";
    fargv[n++] = argv[3];
    for (int i = 4; i < argc && n < 15; i++) fargv[n++] = argv[i];
    fargv[n] = NULL;
    return fuse_main(n, fargv, &ops, NULL);
}
