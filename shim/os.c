/*
 * os.c - the shim's own system calls.
 *
 * Everything the shim does for itself (bookkeeping getsockopt, heartbeat
 * sends, shutdown of a dead connection, writing logs and events), and every
 * interposer's fallback before binding, goes through this file: no other
 * file makes a system call. Each call is a raw syscall, one that every
 * architecture has (arm64's generic table has no poll, select, dup2 or
 * epoll_wait): it cannot re-enter an interposer of ours or of another
 * preloaded library, it does not depend on symbol binding, and it is
 * async-signal-safe (the system call instruction itself, os_raw.h, where
 * the architecture is known). Results are returned as the value or
 * -errno; the caller's errno is preserved. The bottom of the library: it
 * calls no other file.
 */
#include <errno.h>
#include <sys/resource.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "hb_os.h"
#include "os_raw.h"

#ifndef SO_COOKIE
#define SO_COOKIE 57
#endif
#ifndef SYS_epoll_pwait2
#define SYS_epoll_pwait2 441 /* the same number on every architecture */
#endif

#ifdef HB_RAW_SYSCALL
/* The kernel's answer as it is: the value or -errno (os_raw.h). Every
 * argument widened to long, missing ones zero. */
#define RAW_ARGS(n, a, b, c, d, e, f, ...)                                             \
	hb_raw6((long)(n), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), (long)(f))
#define RAW(...) RAW_ARGS(__VA_ARGS__, 0, 0, 0, 0, 0, 0, 0)
#else
/* syscall() reports failure through errno; convert and restore. */
#define RAW(...)                                   \
	({                                         \
		int saved_ = errno;                \
		long r_ = syscall(__VA_ARGS__);    \
		if (r_ == -1)                      \
			r_ = -errno;               \
		errno = saved_;                    \
		r_;                                \
	})
#endif

long hb_os_getsockopt(int fd, int level, int opt, void *val, socklen_t *len)
{
	return RAW(SYS_getsockopt, fd, level, opt, val, len);
}

long hb_os_setsockopt(int fd, int level, int opt, const void *val, socklen_t len)
{
	return RAW(SYS_setsockopt, fd, level, opt, val, len);
}

long hb_os_setsockopt_int(int fd, int level, int opt, int v)
{
	return hb_os_setsockopt(fd, level, opt, &v, sizeof(v));
}

long hb_os_shutdown(int fd, int how)
{
	return RAW(SYS_shutdown, fd, how);
}

long hb_os_close(int fd)
{
	return RAW(SYS_close, fd);
}

long hb_os_write(int fd, const void *buf, size_t n)
{
	return RAW(SYS_write, fd, buf, n);
}

long hb_os_send(int fd, const void *buf, size_t n, int flags)
{
	return RAW(SYS_sendto, fd, buf, n, flags, NULL, 0);
}

long hb_os_recv(int fd, void *buf, size_t n, int flags)
{
	return RAW(SYS_recvfrom, fd, buf, n, flags, NULL, NULL);
}

long hb_os_read(int fd, void *buf, size_t n)
{
	return RAW(SYS_read, fd, buf, n);
}

long hb_os_open(const char *path, int flags, int mode)
{
	return RAW(SYS_openat, AT_FDCWD, path, flags, mode);
}

long hb_os_rename(const char *from, const char *to)
{
	return RAW(SYS_renameat2, AT_FDCWD, from, AT_FDCWD, to, 0);
}

long hb_os_connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	return RAW(SYS_connect, fd, sa, len);
}

long hb_os_epoll_ctl(int epfd, int op, int fd, void *ev)
{
	return RAW(SYS_epoll_ctl, epfd, op, fd, ev);
}

long hb_os_fcntl(int fd, int cmd, long arg)
{
	return RAW(SYS_fcntl, fd, cmd, arg);
}

long hb_os_ioctl(int fd, unsigned long req, void *arg)
{
	return RAW(SYS_ioctl, fd, req, arg);
}

long hb_os_nofile_limit(unsigned long *soft)
{
	struct rlimit rl;
	long r = RAW(SYS_prlimit64, 0, RLIMIT_NOFILE, NULL, &rl);

	if (r == 0)
		*soft = (unsigned long)rl.rlim_cur;
	return r;
}

long hb_os_poll1(int fd, short events, int timeout_ms, short *revents)
{
	struct pollfd p = { .fd = fd, .events = events };
	struct timespec ts, *tsp = NULL;
	long r;

	if (timeout_ms >= 0) {
		ts.tv_sec = timeout_ms / 1000;
		ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
		tsp = &ts;
	}
	r = RAW(SYS_ppoll, &p, 1, tsp, NULL, 0);
	if (revents)
		*revents = p.revents;
	return r;
}

/* The application's poll, select and dup2 from the system calls every
 * architecture has: arm64's generic table has no poll, select or dup2.
 * The interposers' fallbacks before binding. */
long hb_os_poll(struct pollfd *fds, unsigned long n, int timeout_ms)
{
	struct timespec ts, *tsp = NULL;

	if (timeout_ms >= 0) {
		ts.tv_sec = timeout_ms / 1000;
		ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
		tsp = &ts;
	}
	return RAW(SYS_ppoll, fds, n, tsp, NULL, 0);
}

long hb_os_select(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *tv)
{
	struct timespec ts, *tsp = NULL;
	long r;

	if (tv) {
		/* As Linux's select reads it: whole seconds of tv_usec carried
		 * into tv_sec ({0, 2500000} waits 2.5 s; the sum wraps as the
		 * kernel's does), then a negative part is EINVAL. */
		ts.tv_sec = (long)((unsigned long)tv->tv_sec + (unsigned long)(tv->tv_usec / 1000000));
		ts.tv_nsec = (tv->tv_usec % 1000000) * 1000L;
		if (ts.tv_sec < 0 || ts.tv_nsec < 0)
			return -EINVAL;
		tsp = &ts;
	}
	r = RAW(SYS_pselect6, nfds, rd, wr, ex, tsp, NULL);
	if (tv) {
		/* Linux's select leaves the time not slept in tv. */
		tv->tv_sec = ts.tv_sec;
		tv->tv_usec = ts.tv_nsec / 1000;
	}
	return r;
}

long hb_os_dup2(int oldfd, int newfd)
{
	long r;

	if (oldfd != newfd)
		return RAW(SYS_dup3, oldfd, newfd, 0);
	/* dup3 refuses equal numbers; dup2 returns the number if it is open. */
	r = RAW(SYS_fcntl, oldfd, F_GETFD, 0);
	return r < 0 ? r : newfd;
}

/* The rest of the application's calls, for the interposers' fallbacks
 * before binding (REAL in interpose.h): each the one system call every
 * architecture has, with the libc function's arguments. */
long hb_os_readv(int fd, const struct iovec *iov, int n)
{
	return RAW(SYS_readv, fd, iov, n);
}

long hb_os_writev(int fd, const struct iovec *iov, int n)
{
	return RAW(SYS_writev, fd, iov, n);
}

long hb_os_recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *sa, socklen_t *len)
{
	return RAW(SYS_recvfrom, fd, buf, n, flags, sa, len);
}

long hb_os_sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *sa,
		  socklen_t len)
{
	return RAW(SYS_sendto, fd, buf, n, flags, sa, len);
}

/* ppoll and pselect as libc's: the timeout is the caller's to keep (the
 * system calls write the time left into it). */
long hb_os_ppoll(struct pollfd *fds, unsigned long n, const struct timespec *ts,
		 const sigset_t *mask)
{
	struct timespec t;

	if (ts)
		t = *ts;
	return RAW(SYS_ppoll, fds, n, ts ? &t : NULL, mask, _NSIG / 8);
}

long hb_os_pselect(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, const struct timespec *ts,
		   const sigset_t *mask)
{
	/* the system call takes {sigset, size} */
	struct {
		const sigset_t *s;
		size_t n;
	} sm = { mask, _NSIG / 8 };
	struct timespec t;

	if (ts)
		t = *ts;
	return RAW(SYS_pselect6, nfds, rd, wr, ex, ts ? &t : NULL, mask ? &sm : NULL);
}

/* epoll_wait is epoll_pwait with no mask: arm64's table has no epoll_wait. */
long hb_os_epoll_pwait(int epfd, void *evs, int max, int ms, const sigset_t *mask)
{
	return RAW(SYS_epoll_pwait, epfd, evs, max, ms, mask, _NSIG / 8);
}

long hb_os_epoll_pwait2(int epfd, void *evs, int max, const struct timespec *ts,
			const sigset_t *mask)
{
	return RAW(SYS_epoll_pwait2, epfd, evs, max, ts, mask, _NSIG / 8);
}

long hb_os_execve(const char *path, char *const argv[], char *const env[])
{
	return RAW(SYS_execve, path, argv, env);
}

long hb_os_prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4,
		 unsigned long a5)
{
	return RAW(SYS_prctl, option, a2, a3, a4, a5);
}

long hb_os_syscall6(long n, long a, long b, long c, long d, long e, long f)
{
	return RAW(n, a, b, c, d, e, f);
}

long hb_os_dup(int fd)
{
	return RAW(SYS_dup, fd);
}

long hb_os_dup3(int oldfd, int newfd, int flags)
{
	return RAW(SYS_dup3, oldfd, newfd, flags);
}

long hb_os_close_range(unsigned first, unsigned last, int flags)
{
	return RAW(SYS_close_range, first, last, flags);
}

long hb_os_sendfile(int out, int in, off_t *off, size_t n)
{
	return RAW(SYS_sendfile, out, in, off, n);
}

long hb_os_splice(int in, loff_t *off_in, int out, loff_t *off_out, size_t n, unsigned flags)
{
	return RAW(SYS_splice, in, off_in, out, off_out, n, flags);
}

long hb_os_sendmmsg(int fd, struct mmsghdr *v, unsigned n, int flags)
{
	return RAW(SYS_sendmmsg, fd, v, n, flags);
}

long hb_os_recvmmsg(int fd, struct mmsghdr *v, unsigned n, int flags, struct timespec *timeout)
{
	return RAW(SYS_recvmmsg, fd, v, n, flags, timeout);
}

long hb_os_sigmask(int how, const uint64_t *set, uint64_t *old)
{
	return RAW(SYS_rt_sigprocmask, how, set, old, sizeof(*set));
}

long hb_os_sigpending(uint64_t *set)
{
	return RAW(SYS_rt_sigpending, set, sizeof(*set));
}

long hb_os_sigdeliver(const uint64_t *mask)
{
	struct timespec zero = { 0, 0 };

	return RAW(SYS_ppoll, NULL, 0, &zero, mask, sizeof(*mask));
}

long hb_os_getsockname(int fd, struct sockaddr *sa, socklen_t *len)
{
	return RAW(SYS_getsockname, fd, sa, len);
}

long hb_os_getpeername(int fd, struct sockaddr *sa, socklen_t *len)
{
	return RAW(SYS_getpeername, fd, sa, len);
}

long hb_os_futex_wait(_Atomic uint32_t *addr, uint32_t val, int64_t timeout_ms)
{
	struct timespec ts, *tsp = NULL;

	if (timeout_ms >= 0) {
		ts.tv_sec = timeout_ms / 1000;
		ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
		tsp = &ts;
	}
	return RAW(SYS_futex, addr, FUTEX_WAIT_PRIVATE, val, tsp, NULL, 0);
}

long hb_os_futex_wake(_Atomic uint32_t *addr)
{
	return RAW(SYS_futex, addr, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

long hb_os_kcmp(int pid1, int pid2, int type, unsigned long a, unsigned long b)
{
	return RAW(SYS_kcmp, pid1, pid2, type, a, b);
}

long hb_os_munmap(void *addr, size_t len)
{
	return RAW(SYS_munmap, addr, len);
}

void *hb_os_mmap_shared(size_t len)
{
	long r = RAW(SYS_mmap, NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (r < 0 && r > -4096)
		return NULL;
	return (void *)r;
}

long hb_os_madvise(void *addr, size_t len, int advice)
{
	return RAW(SYS_madvise, addr, len, advice);
}

void *hb_os_mmap(size_t len)
{
	long r = RAW(SYS_mmap, NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		     -1, 0);

	if (r < 0 && r > -4096)
		return NULL;
	return (void *)r;
}

uint64_t hb_os_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t hb_os_now_ms(void)
{
	return hb_os_now_ns() / 1000000ull;
}

uint64_t hb_os_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000ull + (uint64_t)ts.tv_nsec / 1000000ull;
}

int hb_os_getpid(void)
{
	return (int)RAW(SYS_getpid);
}

int hb_os_gettid(void)
{
	return (int)RAW(SYS_gettid);
}

void hb_os_sleep_us(unsigned us)
{
	struct timespec ts = { .tv_sec = us / 1000000u, .tv_nsec = (long)(us % 1000000u) * 1000L };

	RAW(SYS_nanosleep, &ts, NULL);
}

uint64_t hb_os_cookie(int fd)
{
	uint64_t cookie = 0;
	socklen_t len = sizeof(cookie);

	if (hb_os_getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &len) == 0 && cookie)
		return cookie;
	/* No SO_COOKIE (qemu-user answers EINVAL; gVisor, kernels before
	 * 4.12): the socket's inode number, its identity while it is open
	 * (sockfs numbers a socket at creation and reuses a number only
	 * after 2^32 others). Never 0; a non-socket answers 0 as before. */
	{
		struct stat st;

		if (hb_os_fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode))
			return (1ull << 63) | (uint64_t)st.st_ino;
	}
	return 0;
}

void hb_os_raise_sigpipe(void)
{
	RAW(SYS_tgkill, hb_os_getpid(), hb_os_gettid(), SIGPIPE);
}

long hb_os_recvmsg(int fd, struct msghdr *m, int flags)
{
	return RAW(SYS_recvmsg, fd, m, flags);
}

long hb_os_sendmsg(int fd, const struct msghdr *m, int flags)
{
	return RAW(SYS_sendmsg, fd, m, flags);
}

_Static_assert(sizeof(struct hb_ti) == 104 && offsetof(struct hb_ti, tcpi_last_data_recv) == 52 &&
		       offsetof(struct hb_ti, tcpi_rtt) == 68 &&
		       offsetof(struct hb_tcp_info, bytes_received) == 128 &&
		       offsetof(struct hb_tcp_info, notsent_bytes) == 144,
	       "struct hb_tcp_info must match the kernel's struct tcp_info");

_Atomic int hb_os_ti_short;

long hb_os_tcp_info(int fd, struct hb_tcp_info *x)
{
	socklen_t len = offsetof(struct hb_tcp_info, len);
	long r;

	memset(x, 0, sizeof(*x));
	r = hb_os_getsockopt(fd, IPPROTO_TCP, TCP_INFO, x, &len);
	x->len = r == 0 ? len : 0;
	if (r == 0 && !HB_TI_HAS(x, ti.tcpi_last_data_recv) && !hb_load_relaxed(&hb_os_ti_short))
		hb_store_relaxed(&hb_os_ti_short, 1);
	if (!HB_TI_HAS(x, bytes_received))
		x->bytes_received = 0; /* an older kernel: never "exactly one" */
	return r;
}

/* ---------------------------------------------------------------- sharing */

struct hb_dirent64 {
	uint64_t ino;
	int64_t off;
	unsigned short reclen;
	unsigned char type;
	char name[];
};

static size_t put_dec(char *p, unsigned long long v)
{
	char t[24];
	size_t n = 0, k = 0;

	do {
		t[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		p[k++] = t[--n];
	return k;
}

/* What hb_os_sock_shared looks for ("socket:[INODE]"), and how many more
 * fd entries it may read: a server with thousands of children holding
 * thousands of fds would make one close cost seconds. Past the budget the
 * answer is "cannot tell". */
#define SHARED_BUDGET 4096
struct look {
	char target[48];
	size_t tlen;
	long budget;
};

/* Whether process pid holds an fd naming l->target in /proc/PID/fd: 1
 * yes, 0 no (or the process is gone), -1 cannot tell (not readable:
 * another user's process, hidepid; budget spent). Raw calls only. */
static int pid_holds(unsigned long long pid, struct look *l)
{
	char buf[2048], link[64], dir[40];
	long dfd;
	size_t pl;
	int found = 0, err = 0;

	memcpy(dir, "/proc/", 6);
	pl = 6 + put_dec(dir + 6, pid);
	memcpy(dir + pl, "/fd", 4);
	dfd = RAW(SYS_openat, AT_FDCWD, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	if (dfd == -ENOENT || dfd == -ESRCH)
		/* Gone, or hidden from us (hidepid=invisible): a process that
		 * still exists is one we cannot look into. */
		return RAW(SYS_kill, (long)pid, 0) == -ESRCH ? 0 : -1;
	if (dfd < 0)
		return -1;
	for (;;) {
		long n = RAW(SYS_getdents64, dfd, buf, sizeof(buf));

		if (n <= 0) {
			err = n < 0;
			break;
		}
		for (long at = 0; at < n && !found;) {
			struct hb_dirent64 *d = (struct hb_dirent64 *)(buf + at);
			long k;

			at += d->reclen;
			if (d->name[0] < '0' || d->name[0] > '9')
				continue;
			if (--l->budget < 0) {
				err = 1;
				goto out;
			}
			k = RAW(SYS_readlinkat, dfd, d->name, link, sizeof(link));
			if (k == (long)l->tlen && !memcmp(link, l->target, l->tlen))
				found = 1;
		}
		if (found)
			break;
	}
out:
	RAW(SYS_close, dfd);
	return found ? 1 : err ? -1 : 0;
}

/* The children of one thread (/proc/self/task/TID/children, a list of
 * pids of any length, read in pieces): 1 if one of them holds target, 0
 * if none does, -1 if that cannot be told. */
static int children_hold(long tdir, const char *tid, struct look *l)
{
	char cp[96], kids[256];
	unsigned long long pid = 0;
	size_t cl = strlen(tid);
	long cfd, k;
	int digits = 0, r = 0;

	if (cl > 20)
		return -1;
	memcpy(cp, tid, cl);
	memcpy(cp + cl, "/children", 10);
	cfd = RAW(SYS_openat, tdir, cp, O_RDONLY | O_CLOEXEC, 0);
	if (cfd == -ENOENT) {
		/* The thread ended (its children went to another), or the
		 * kernel has no children lists (CONFIG_PROC_CHILDREN). */
		cfd = RAW(SYS_openat, tdir, tid, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
		if (cfd < 0)
			return 0;
		RAW(SYS_close, cfd);
		return -1;
	}
	if (cfd < 0)
		return -1;
	while (r != 1 && (k = RAW(SYS_read, cfd, kids, sizeof(kids))) != 0) {
		if (k < 0) {
			r = -1;
			break;
		}
		/* A pid may straddle two reads: carry the digits over. */
		for (long i = 0; i < k && r != 1; i++) {
			if (kids[i] >= '0' && kids[i] <= '9') {
				if (++digits > 19) {
					r = -1; /* not a pid: do not guess */
					goto out;
				}
				pid = pid * 10 + (unsigned)(kids[i] - '0');
				continue;
			}
			if (digits) {
				int h = pid_holds(pid, l);

				if (h)
					r = h > 0 ? 1 : -1;
			}
			pid = 0;
			digits = 0;
		}
	}
	if (r != 1 && digits) {
		int h = pid_holds(pid, l);

		if (h)
			r = h > 0 ? 1 : -1;
	}
out:
	RAW(SYS_close, cfd);
	return r;
}

/* Whether another process (our parent, or one of our children) still has
 * the socket fd names open: 1 yes, 0 no, -1 cannot tell (no /proc, a
 * process we may not look into, a parent outside our pid namespace). The
 * close of a connection that crossed a fork or exec asks before it shuts
 * the socket down: a shutdown acts on the socket, not on one process's
 * reference to it. The caller treats "cannot tell" as "shared". */
int hb_os_sock_shared(int fd)
{
	struct stat st;
	struct look lk = { .budget = SHARED_BUDGET };
	long ppid, tdir, n;
	int r = 0;

	if (RAW(SYS_fstat, fd, &st) < 0)
		return -1;
	memcpy(lk.target, "socket:[", 8);
	lk.tlen = 8 + put_dec(lk.target + 8, (unsigned long long)st.st_ino);
	lk.target[lk.tlen++] = ']';
	/* Children, from every thread's list; this also tells whether /proc
	 * is there at all. */
	tdir = RAW(SYS_openat, AT_FDCWD, "/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	if (tdir < 0)
		return -1;
	for (;;) {
		char buf[1024];

		n = RAW(SYS_getdents64, tdir, buf, sizeof(buf));
		if (n <= 0) {
			if (n < 0)
				r = -1;
			break;
		}
		for (long at = 0; at < n && r != 1;) {
			struct hb_dirent64 *d = (struct hb_dirent64 *)(buf + at);
			int h;

			at += d->reclen;
			if (d->name[0] < '0' || d->name[0] > '9')
				continue;
			h = children_hold(tdir, d->name, &lk);
			if (h)
				r = h;
		}
		if (r == 1)
			break;
	}
	RAW(SYS_close, tdir);
	if (r == 1)
		return 1;
	/* The parent: 0 when it lives outside our pid namespace (a
	 * container's first process), where it cannot be looked up. */
	ppid = RAW(SYS_getppid);
	if (ppid <= 0)
		return -1;
	n = pid_holds((unsigned long long)ppid, &lk);
	return n ? (int)n : r;
}

/* ------------------------------------------------------------ own output */

#define SIGBIT(s) (1ull << ((s) - 1))

/* Write to fd raising no signal of our own. SIGPIPE (a pipe or FIFO without
 * a reader) and SIGXFSZ (past RLIMIT_FSIZE) are sent by the kernel to the
 * writing thread; both are blocked for this thread around the write, and a
 * failed write consumes the one it generated, unless that signal was already
 * pending (blocked) before the write: a standard signal does not queue, so
 * the application's own stays pending and is delivered when the old mask is
 * restored. Limit: a process-directed SIGPIPE/SIGXFSZ sent by another process
 * in the same few microseconds, while ours was thread-pending, can be
 * consumed as ours (sigtimedwait takes the thread's own first, so only
 * when the two coincide). SIGTTOU (a background job writing to its terminal
 * with TOSTOP set: the kernel stops the whole process group) is blocked
 * too; the kernel then lets the write through and sends nothing. Returns
 * the write's result or -errno. */
long hb_os_write_quiet(int fd, const void *buf, size_t n)
{
	uint64_t set = SIGBIT(SIGPIPE) | SIGBIT(SIGXFSZ) | SIGBIT(SIGTTOU), old = 0, before = 0,
		 one;
	struct timespec zero = { 0, 0 };
	long r;

	RAW(SYS_rt_sigprocmask, SIG_BLOCK, &set, &old, sizeof(set));
	RAW(SYS_rt_sigpending, &before, sizeof(before));
	r = RAW(SYS_write, fd, buf, n);
	if (r == -EPIPE || r == -EFBIG) {
		one = r == -EPIPE ? SIGBIT(SIGPIPE) : SIGBIT(SIGXFSZ);
		if (!(before & one))
			RAW(SYS_rt_sigtimedwait, &one, NULL, &zero, sizeof(one));
	}
	RAW(SYS_rt_sigprocmask, SIG_SETMASK, &old, NULL, sizeof(old));
	return r;
}

long hb_os_unlink(const char *path)
{
	return RAW(SYS_unlinkat, AT_FDCWD, path, 0);
}

long hb_os_stat(const char *path, struct stat *st, int nofollow)
{
	return RAW(SYS_newfstatat, AT_FDCWD, path, st, nofollow ? AT_SYMLINK_NOFOLLOW : 0);
}

long hb_os_fstat(int fd, struct stat *st)
{
	return RAW(SYS_fstat, fd, st);
}

long hb_os_lseek(int fd, long off, int whence)
{
	return RAW(SYS_lseek, fd, off, whence);
}

int hb_os_geteuid(void)
{
	return (int)RAW(SYS_geteuid);
}

/* n bytes from the kernel's random pool without blocking; -errno when it
 * has none to give (ENOSYS, EAGAIN early at boot). */
long hb_os_getrandom(void *buf, size_t n)
{
	return RAW(SYS_getrandom, buf, n, 1 /* GRND_NONBLOCK */);
}

/* fault_io.c's private listener (the connect "timeout" fault). */
long hb_os_socket(int domain, int type, int protocol)
{
	return RAW(SYS_socket, domain, type, protocol);
}

long hb_os_bind(int fd, const struct sockaddr *sa, socklen_t len)
{
	return RAW(SYS_bind, fd, sa, len);
}

long hb_os_listen(int fd, int backlog)
{
	return RAW(SYS_listen, fd, backlog);
}

long hb_os_accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags)
{
	return RAW(SYS_accept4, fd, sa, len, flags);
}

long hb_os_chmod(const char *path, int mode)
{
	return RAW(SYS_fchmodat, AT_FDCWD, path, mode, 0);
}
