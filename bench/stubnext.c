/*
 * stubnext.c - a stand-in for the next library's read and write, so that the
 * interposer's own cost can be timed without a system call around it.
 *
 * Preloaded after hbshim (LD_PRELOAD="libhbshim.so stubnext.so"), it is what
 * hbshim's dlsym(RTLD_NEXT) finds; preloaded alone, it is what the program
 * calls directly. On fds STUB_FD and STUB_FD + 1 (which `calls stub` points
 * at /dev/null) read returns 0 and write returns n at once, so the
 * difference between the two set-ups is the interposer's path and nothing
 * else. Every other fd gets the real system call.
 */
#define _GNU_SOURCE
#include <unistd.h>
#include <sys/syscall.h>

#define STUB_FD 900

__attribute__((visibility("default"))) ssize_t read(int fd, void *buf, size_t n)
{
	if ((unsigned)(fd - STUB_FD) < 2)
		return 0;
	return syscall(SYS_read, fd, buf, n);
}

__attribute__((visibility("default"))) ssize_t write(int fd, const void *buf, size_t n)
{
	if ((unsigned)(fd - STUB_FD) < 2)
		return (ssize_t)n;
	return syscall(SYS_write, fd, buf, n);
}
