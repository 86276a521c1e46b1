/*
 * real.c - binding the next definition of every interposed function.
 *
 * Pointers are resolved once with dlsym(RTLD_NEXT) from the library
 * constructor (or from the first interposed call that runs before it, e.g.
 * from another library's constructor). Resolution can recurse: dlsym may
 * call malloc, and an allocator such as jemalloc or ASan may call read or
 * open while initialising. A recursive or concurrent caller never waits: it
 * finds the pointer still NULL and the os.c wrappers fall back to a raw
 * syscall. close-like paths never bind (proxychains-ng learnt that
 * close -> dlsym -> malloc -> close deadlocks), they only read the pointer.
 */
#include <dlfcn.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "hb.h"

struct hb_real hb_real;

/* 0 = not started, 1 = binding (by some thread), 2 = done. */
static _Atomic int bind_state;

#include <stdio.h>
#include <stdlib.h>

static void die_self(const char *name)
{
	char line[160];
	struct hb_buf b;

	hb_buf_init(&b, line, sizeof(line));
	hb_buf_fmt(&b, "hbshim[%d]: fatal: dlsym(RTLD_NEXT, \"%s\") returned hbshim's own "
		   "definition; is libhbshim.so loaded twice?\n", hb_os_getpid(), name);
	syscall(SYS_write, 2, line, b.len);
	abort();
}

static void *bind1(const char *name, void *self)
{
	void *p = dlsym(RTLD_NEXT, name);

	if (p && p == self)
		die_self(name);
	return p;
}

/* The addresses of our own interposers (defined in i_*.c). */
extern int socket(int, int, int);
extern int connect(int, const struct sockaddr *, socklen_t);
extern int accept(int, struct sockaddr *, socklen_t *);
extern int accept4(int, struct sockaddr *, socklen_t *, int);
extern int listen(int, int);
extern int setsockopt(int, int, int, const void *, socklen_t);
extern int getsockopt(int, int, int, void *, socklen_t *);
extern int close(int);
extern int shutdown(int, int);
extern int dup(int);
extern int dup2(int, int);
extern int dup3(int, int, int);
extern int fcntl(int, int, ...);
extern int fcntl64(int, int, ...);
extern int ioctl(int, hb_ioctl_req_t, ...);
extern int close_range(unsigned, unsigned, int);
extern void closefrom(int);
extern int fclose(FILE *);
extern ssize_t sendfile(int, int, off_t *, size_t);
#ifdef __GLIBC__
extern ssize_t sendfile64(int, int, off_t *, size_t);
#endif
extern ssize_t splice(int, loff_t *, int, loff_t *, size_t, unsigned int);
extern int sendmmsg(int, struct mmsghdr *, unsigned int, hb_mmsg_flags_t);
extern int recvmmsg(int, struct mmsghdr *, unsigned int, hb_mmsg_flags_t, struct timespec *);
extern int execve(const char *, char *const[], char *const[]);
extern int execvpe(const char *, char *const[], char *const[]);
extern int fexecve(int, char *const[], char *const[]);
extern int posix_spawn(pid_t *, const char *, const void *, const void *, char *const[],
		       char *const[]);
extern int posix_spawnp(pid_t *, const char *, const void *, const void *, char *const[],
			char *const[]);

#ifndef __GLIBC__
/* Defined by i_epoll.c; musl 1.2.3's headers do not declare it (the next
 * definition is then absent and the interposer makes the system call). */
struct epoll_event;
extern int epoll_pwait2(int, struct epoll_event *, int, const struct timespec *,
			const sigset_t *);
#endif

#define BIND(field, sym) \
	do { \
		void *p_ = bind1(#sym, (void *)&sym); \
		__atomic_store_n((void **)&hb_real.field, p_, __ATOMIC_RELEASE); \
	} while (0)

void hb_real_bind(void)
{
	int expect = 0;

	if (hb_load_acquire(&bind_state) == 2)
		return;
	if (!hb_cas_strong_acq_rel(&bind_state, &expect, 1))
		return; /* someone (maybe this thread, recursively) is binding */
	BIND(socket, socket);
	BIND(connect, connect);
	BIND(accept, accept);
	BIND(accept4, accept4);
	BIND(listen, listen);
	BIND(setsockopt, setsockopt);
	BIND(getsockopt, getsockopt);
	BIND(poll, poll);
	BIND(ppoll, ppoll);
	BIND(select, select);
	BIND(pselect, pselect);
	BIND(shutdown, shutdown);
	BIND(dup, dup);
	BIND(dup2, dup2);
	BIND(dup3, dup3);
	BIND(fcntl, fcntl);
	BIND(fcntl64, fcntl64);
	BIND(ioctl, ioctl);
	BIND(close_range, close_range);
	BIND(closefrom, closefrom);
	BIND(fclose, fclose);
	BIND(fdopen, fdopen);
	BIND(read, read);
	BIND(write, write);
	BIND(readv, readv);
	BIND(writev, writev);
	BIND(recv, recv);
	BIND(recvfrom, recvfrom);
	BIND(recvmsg, recvmsg);
	BIND(send, send);
	BIND(sendto, sendto);
	BIND(sendmsg, sendmsg);
	BIND(sendfile, sendfile);
#ifdef __GLIBC__
	BIND(sendfile64, sendfile64);
#endif
	BIND(splice, splice);
	BIND(sendmmsg, sendmmsg);
	BIND(recvmmsg, recvmmsg);
	BIND(prctl, prctl);
	BIND(epoll_ctl, epoll_ctl);
	BIND(epoll_wait, epoll_wait);
	BIND(epoll_pwait, epoll_pwait);
	BIND(epoll_pwait2, epoll_pwait2);
	BIND(execve, execve);
	BIND(execvpe, execvpe);
	BIND(fexecve, fexecve);
	BIND(posix_spawn, posix_spawn);
	BIND(posix_spawnp, posix_spawnp);
	/* close last: once it is set, close-like paths stop using raw syscalls. */
	BIND(close, close);
	hb_store_release(&bind_state, 2);
}
