/*
 * Storage faults for tests, injected at the C library: preloaded (LD_PRELOAD) into a server
 * process, it makes fsync/fdatasync, pwrite or pread fail with EIO for files under FAULT_TARGET
 * while a switch file (fail-fsync, fail-write, fail-read) exists in FAULT_DIR. Everything else,
 * and everything while no switch is on, goes to the real call. Built by test/helpers/faults.ts.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/types.h>

static const char *dir(void) { return getenv("FAULT_DIR"); }
static const char *target(void) { return getenv("FAULT_TARGET"); }

/* Whether `mode` is switched on (a file of that name in FAULT_DIR) and fd is under FAULT_TARGET. */
static int failing(const char *mode, int fd) {
  const char *d = dir(), *t = target();
  if (!d || !t) return 0;
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", d, mode);
  if (access(path, F_OK) != 0) return 0;
  char link[64], where[4096];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, where, sizeof where - 1);
  if (n < 0) return 0;
  where[n] = 0;
  return strncmp(where, t, strlen(t)) == 0;
}

#define REAL(name, ret, ...) static ret (*real_##name)(__VA_ARGS__); if (!real_##name) real_##name = dlsym(RTLD_NEXT, #name)

int fsync(int fd) { REAL(fsync, int, int); if (failing("fail-fsync", fd)) { errno = EIO; return -1; } return real_fsync(fd); }
int fdatasync(int fd) { REAL(fdatasync, int, int); if (failing("fail-fsync", fd)) { errno = EIO; return -1; } return real_fdatasync(fd); }
ssize_t pwrite64(int fd, const void *b, size_t c, off_t o) { REAL(pwrite64, ssize_t, int, const void *, size_t, off_t); if (failing("fail-write", fd)) { errno = EIO; return -1; } return real_pwrite64(fd, b, c, o); }
ssize_t pwrite(int fd, const void *b, size_t c, off_t o) { REAL(pwrite, ssize_t, int, const void *, size_t, off_t); if (failing("fail-write", fd)) { errno = EIO; return -1; } return real_pwrite(fd, b, c, o); }
ssize_t pread64(int fd, void *b, size_t c, off_t o) { REAL(pread64, ssize_t, int, void *, size_t, off_t); if (failing("fail-read", fd)) { errno = EIO; return -1; } return real_pread64(fd, b, c, o); }
ssize_t pread(int fd, void *b, size_t c, off_t o) { REAL(pread, ssize_t, int, void *, size_t, off_t); if (failing("fail-read", fd)) { errno = EIO; return -1; } return real_pread(fd, b, c, o); }
