/* A static do-nothing process (runs in a root with no libc), or, with an argument:
 *   sleeper thread TIDFILE          a second thread writes its tid to TIDFILE; both sleep
 *   sleeper thread-ns TIDFILE DIR   that thread first unshare(CLONE_FS|CLONE_NEWNS) and mounts
 *                                   a tmpfs on DIR (a thread in another mount ns than its leader)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

static const char *tidfile, *dir;
static int ns_mode;

static void *worker(void *arg) {
    (void)arg;
    if (ns_mode) {
        if (unshare(CLONE_FS | CLONE_NEWNS) != 0) { perror("unshare"); _exit(3); }
        mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
        if (mount("none", dir, "tmpfs", 0, "mode=0755") != 0) { perror("mount"); _exit(4); }
    }
    FILE *f = fopen(tidfile, "w");
    if (!f) _exit(5);
    fprintf(f, "%ld\n", (long)syscall(SYS_gettid));
    fclose(f);
    for (;;) pause();
    return NULL;
}

int main(int argc, char **argv) {
    if (argc >= 3 && (!strcmp(argv[1], "thread") || !strcmp(argv[1], "thread-ns"))) {
        pthread_t t;
        tidfile = argv[2];
        ns_mode = !strcmp(argv[1], "thread-ns");
        if (ns_mode && argc < 4) return 2;
        dir = ns_mode ? argv[3] : NULL;
        pthread_create(&t, NULL, worker, NULL);
    }
    for (;;) pause();
}
