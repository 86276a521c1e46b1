/*
 * real.c - binding the next definition of every interposed function.
 *
 * With os.c it is the OS layer, the bottom of the library: it calls only
 * os.c (its raw system calls) and fmt.c, never a file above, and no file
 * of the OS layer calls an interposer. os.c is below it and knows nothing
 * of binding.
 *
 * Pointers are resolved once with dlsym(RTLD_NEXT) from the library
 * constructor (or from the first interposed call that runs before it, e.g.
 * from another library's constructor). Resolution can recurse: dlsym may
 * call malloc, and an allocator such as jemalloc or ASan may call read or
 * open while initialising. A recursive or concurrent caller never waits: it
 * finds the pointer still NULL and falls back to os.c's raw system call.
 * close-like paths never bind, they only read the pointer: binding from
 * close could run close -> dlsym -> malloc -> close, a deadlock.
 * A next definition that lies in this very library (dladdr says so) is
 * fatal: the interposer would call itself.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>

#include "hb_os.h"

struct hb_real hb_real;

/* 0 = not started, 1 = binding (by some thread), 2 = done. */
static _Atomic int bind_state;

/* The load address of this library, which every definition of ours
 * shares: dladdr of a function of this file. */
static void *own_base(void)
{
	Dl_info me;

	if (!dladdr((void *)own_base, &me))
		return NULL;
	return me.dli_fbase;
}

static void die_self(const char *name)
{
	char line[160];
	struct hb_buf b;

	hb_buf_init(&b, line, sizeof(line));
	hb_buf_fmt(&b, "hbshim[%d]: fatal: dlsym(RTLD_NEXT, \"%s\") returned hbshim's own "
		   "definition; is libhbshim.so loaded twice?\n", hb_os_getpid(), name);
	hb_os_write(2, line, b.len);
	abort();
}

/* The next definition of name; our own (a definition in the object that
 * loaded at self) is fatal: calling it would recurse into us forever. */
static void *bind1(const char *name, void *self)
{
	void *p = dlsym(RTLD_NEXT, name);
	Dl_info at;

	if (p && self && dladdr(p, &at) && at.dli_fbase == self)
		die_self(name);
	return p;
}

#define BIND(field, sym) \
	do { \
		void *p_ = bind1(#sym, self); \
		__atomic_store_n((void **)&hb_real.field, p_, __ATOMIC_RELEASE); \
	} while (0)

void hb_real_bind(void)
{
	void *self;
	int expect = 0;

	if (hb_load_acquire(&bind_state) == 2)
		return;
	if (!hb_cas_strong_acq_rel(&bind_state, &expect, 1))
		return; /* someone (maybe this thread, recursively) is binding */
	self = own_base();
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
	BIND(syscall, syscall);
	BIND(epoll_ctl, epoll_ctl);
	BIND(epoll_wait, epoll_wait);
	BIND(epoll_pwait, epoll_pwait);
	BIND(epoll_pwait2, epoll_pwait2);
	BIND(execve, execve);
	BIND(execvpe, execvpe);
	BIND(fexecve, fexecve);
	BIND(posix_spawn, posix_spawn);
	BIND(posix_spawnp, posix_spawnp);
	BIND(system, system);
	BIND(clone, clone);
	BIND(capset, capset);
	/* close last: once it is set, close-like paths stop using raw syscalls. */
	BIND(close, close);
	hb_store_release(&bind_state, 2);
}

/* The next definitions (libc, or a library preloaded after us) for the
 * application's own bytes in framed mode, so that tools which intercept
 * them (sanitizers, other shims) still see them; os.c's raw system calls
 * until bound.
 * Return the result or -errno; errno preserved. */
long hb_next_recvmsg(int fd, struct msghdr *m, int flags)
{
	ssize_t (*fn)(int, struct msghdr *, int) =
		__atomic_load_n(&hb_real.recvmsg, __ATOMIC_ACQUIRE);
	int saved = errno;
	long r;

	if (!fn)
		return hb_os_recvmsg(fd, m, flags);
	r = fn(fd, m, flags);
	if (r < 0)
		r = -errno;
	errno = saved;
	return r;
}

long hb_next_sendmsg(int fd, const struct msghdr *m, int flags)
{
	ssize_t (*fn)(int, const struct msghdr *, int) =
		__atomic_load_n(&hb_real.sendmsg, __ATOMIC_ACQUIRE);
	int saved = errno;
	long r;

	if (!fn)
		return hb_os_sendmsg(fd, m, flags);
	r = fn(fd, m, flags);
	if (r < 0)
		r = -errno;
	errno = saved;
	return r;
}

/* The same for one contiguous buffer: the framed paths copy a small frame
 * into one buffer, which the kernel imports more cheaply than an iovec
 * array (sendto/recvfrom against sendmsg/recvmsg). */
long hb_next_recv(int fd, void *buf, size_t n, int flags)
{
	ssize_t (*fn)(int, void *, size_t, int, struct sockaddr *, socklen_t *) =
		__atomic_load_n(&hb_real.recvfrom, __ATOMIC_ACQUIRE);
	int saved = errno;
	long r;

	if (!fn)
		return hb_os_recv(fd, buf, n, flags);
	r = fn(fd, buf, n, flags, NULL, NULL);
	if (r < 0)
		r = -errno;
	errno = saved;
	return r;
}

long hb_next_send(int fd, const void *buf, size_t n, int flags)
{
	ssize_t (*fn)(int, const void *, size_t, int, const struct sockaddr *, socklen_t) =
		__atomic_load_n(&hb_real.sendto, __ATOMIC_ACQUIRE);
	int saved = errno;
	long r;

	if (!fn)
		return hb_os_send(fd, buf, n, flags);
	r = fn(fd, buf, n, flags, NULL, 0);
	if (r < 0)
		r = -errno;
	errno = saved;
	return r;
}
