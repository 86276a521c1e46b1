/*
 * outfile.c - the shim's own output: HBSHIM_LOG_FILE, HBSHIM_EVENTS, the
 * HBSHIM_STATS temporary file, and log lines on standard error.
 *
 * What any of these writes promises the application:
 *  - it never blocks: files are opened O_NONBLOCK, so a FIFO without a
 *    reader fails the open (ENXIO) and a full pipe fails the write (EAGAIN);
 *    a pipe on fd 2 is reopened non-blocking through /proc instead of
 *    changing the flags of the application's own descriptor. The line is
 *    dropped and the caller counts it.
 *  - it raises no signal of its own (hb_os_write_quiet: no SIGPIPE, no
 *    SIGXFSZ under RLIMIT_FSIZE, as in sshd's sandboxed child).
 *  - a file it creates gets mode 0600 (peer addresses are in there).
 *  - a configured path that is a symlink in a sticky, world-writable
 *    directory (/tmp) is not followed unless we or the directory's owner own
 *    the link: the rule of the kernel's fs.protected_symlinks, applied even
 *    where that sysctl is off. One warning line per kind, then nothing.
 *    Only the last path component is checked (the kernel checks them all
 *    when the sysctl is on).
 *  - it logs nothing itself: it is the sink log.c writes through. A line it
 *    could not write is an error returned to the caller, and the warning of
 *    a refused path is the caller's to write (hb_out_take_warning).
 *  - an fd it holds open is not left open in a child forked meanwhile by
 *    another thread: the fork's prepare handler waits (at most FORK_WAIT_US)
 *    for lines in flight to finish and new lines are dropped until the fork
 *    is done; the child handler closes what is still registered.
 *
 * Every line holds one of OUT_SLOTS slots while it has an fd open. Any
 * thread, async-signal-safe (raw system calls, no locks, no allocation).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/stat.h>

#include "hb.h"

#define OUT_SLOTS 32
#define FORK_WAIT_US 20000

/* Slot i: 0 free; -1 taken by a line in flight holding no fd; fd + 1 while
 * that line holds fd open. Written by the thread that took it, read by the
 * fork handlers. */
static _Atomic int slot_fd[OUT_SLOTS];
/* Forks between their prepare and parent handlers; lines are dropped while
 * it is not 0. Written by forking threads, read by every line. */
static _Atomic int forking;
/* The slots this thread holds (a fork from a signal handler that interrupted
 * one of our lines must neither wait for it nor close its fd). */
static __thread uint32_t my_slots __attribute__((tls_model("initial-exec")));
/* Per kind, a refused symlink: 0 none yet, 1 refused and its warning not
 * taken, 2 warned. */
static _Atomic int warned[3];

/* Take a free slot for a line in flight: its index, or -1 when none is
 * free or a fork is in progress (the caller then drops its line). */
static int take_slot(void)
{
	for (int i = 0; i < OUT_SLOTS; i++) {
		int expect = 0;

		if (!hb_cas_strong_acq_rel(&slot_fd[i], &expect, -1))
			continue;
		my_slots |= 1u << i;
		/* Pairs with the fence in hb_out_atfork_prepare: either the
		 * fork sees this slot taken and waits, or we see the fork. */
		hb_fence_seq_cst();
		if (hb_load_relaxed(&forking)) {
			my_slots &= ~(1u << i);
			hb_store_release(&slot_fd[i], 0);
			return -1;
		}
		return i;
	}
	return -1;
}

static void hold(int slot, long fd)
{
	hb_store_release(&slot_fd[slot], (int)fd + 1);
}

/* Close fd (if >= 0) and free the slot. The slot stops naming fd before the
 * close: a fork child never closes a number that is no longer ours. */
static void release(int slot, long fd)
{
	if (fd >= 0) {
		hb_store_release(&slot_fd[slot], -1);
		hb_os_close((int)fd);
	}
	hb_store_release(&slot_fd[slot], 0);
	my_slots &= ~(1u << slot);
}

void hb_out_atfork_prepare(void)
{
	unsigned waited = 0;

	hb_add_acq_rel(&forking, 1);
	hb_fence_seq_cst();
	for (;;) {
		int busy = 0;

		for (int i = 0; i < OUT_SLOTS; i++)
			if (!(my_slots & (1u << i)) && hb_load_acquire(&slot_fd[i]))
				busy = 1;
		if (!busy || waited >= FORK_WAIT_US)
			return;
		hb_os_sleep_us(50);
		waited += 50;
	}
}

void hb_out_atfork_parent(void)
{
	hb_sub_acq_rel(&forking, 1);
}

/* The other threads are gone: what they held open is ours to close (only
 * after a prepare that waited in vain, a slow file system). */
void hb_out_atfork_child(void)
{
	for (int i = 0; i < OUT_SLOTS; i++) {
		int v;

		if (my_slots & (1u << i))
			continue;
		v = hb_load_acquire(&slot_fd[i]);
		if (v > 0)
			hb_os_close(v - 1);
		hb_store_release(&slot_fd[i], 0);
	}
	hb_store_release(&forking, 0);
}

/* 1 when path is a symlink the kernel's protected_symlinks rule would not
 * follow for us: it sits in a sticky, world-writable directory and neither
 * we (effective uid) nor the directory's owner own it. *link: whether this
 * look saw a symlink at all (a link it allows cannot be swapped by anyone
 * else there: the sticky bit). */
static int link_refused(const char *path, int *link)
{
	char dir[HB_PATH_MAX];
	struct stat ls, ds;
	size_t n = strlen(path), cut = n;

	*link = 0;
	if (n >= sizeof(dir) || hb_os_stat(path, &ls, 1) < 0 || !S_ISLNK(ls.st_mode))
		return 0;
	*link = 1;
	while (cut > 0 && path[cut - 1] != '/')
		cut--;
	if (cut == 0) {
		dir[0] = '.';
		dir[1] = 0;
	} else {
		while (cut > 1 && path[cut - 1] == '/')
			cut--;
		memcpy(dir, path, cut);
		dir[cut] = 0;
	}
	if (hb_os_stat(dir, &ds, 0) < 0)
		return 0;
	if ((ds.st_mode & (S_ISVTX | S_IWOTH)) != (S_ISVTX | S_IWOTH))
		return 0;
	return ls.st_uid != (uid_t)hb_os_geteuid() && ls.st_uid != ds.st_uid;
}

static const char *const kind_var[] = { "HBSHIM_LOG_FILE", "HBSHIM_EVENTS", "HBSHIM_STATS" };

/* hb_out_refused, and *link as link_refused sets it. The first refusal of
 * a kind leaves its warning to be taken (hb_out_take_warning). */
static int refused(int kind, const char *path, int *link)
{
	int expect = 0;

	if (!link_refused(path, link))
		return 0;
	hb_cas_strong_acq_rel(&warned[kind], &expect, 1);
	return 1;
}

int hb_out_refused(int kind, const char *path)
{
	int link;

	return refused(kind, path, &link);
}

int hb_out_take_warning(int kind, const char *path, struct hb_buf *b)
{
	int expect = 1;

	if (hb_load_relaxed(&warned[kind]) != 1 ||
	    !hb_cas_strong_acq_rel(&warned[kind], &expect, 2))
		return 0;
	hb_buf_fmt(b, "%s=%s is a symlink in a sticky world-writable directory, owned by "
		      "neither this user nor the directory's owner: not followed, nothing "
		      "written there", kind_var[kind], path);
	return 1;
}

/* fd can take n bytes now without blocking (a tty, or a pipe when /proc is
 * not there to reopen it). Another writer can fill it between this check
 * and our write: then the write waits for the reader. */
static int writable(int fd)
{
	short rev = 0;

	return hb_os_poll1(fd, POLLOUT, 0, &rev) == 1 && (rev & POLLOUT) && !(rev & POLLERR);
}

/* Whether fd is open for writing. A number the application closed and
 * reused for reading (a pipe's read end, an input file) no longer names
 * the stream the operator chose: reopening it for writing (a FIFO through
 * /proc, /dev/stderr) would put our lines into the application's input. */
static int open_for_write(int fd)
{
	long fl = hb_os_fcntl(fd, F_GETFL, 0);

	return fl >= 0 && (fl & O_ACCMODE) != O_RDONLY;
}

/* Standard error as the library found it at load: closed, or the socket
 * it was (written by hb_out_init before any thread, read-only after). */
static int stderr_closed;
static dev_t stderr_dev;
static ino_t stderr_ino;

void hb_out_init(void)
{
	struct stat st;

	if (hb_os_fstat(2, &st) < 0) {
		stderr_closed = 1;
		return;
	}
	stderr_dev = st.st_dev;
	stderr_ino = st.st_ino;
}

/* Whether fd 2, now st, is still the operator's standard error. A program
 * started with it closed gets fd 2 back from its own next open or socket,
 * and a socket at fd 2 that is not the one found at load is the
 * application's own (its IPC stream, a datagram socket): a line there
 * would reach its peer as the application's bytes. (A file or pipe the
 * application put at fd 2 itself, such as nginx's error log, still gets
 * the lines.) */
static int stderr_ours(const struct stat *st)
{
	if (stderr_closed)
		return 0;
	return !S_ISSOCK(st->st_mode) || (st->st_dev == stderr_dev && st->st_ino == stderr_ino);
}

/* One line to descriptor fd, which the operator named (fd 2 for the log,
 * or a path such as /dev/stderr naming a socket, which open() refuses). */
static int out_fd(int fd, const char *s, size_t n)
{
	char self[48];
	struct stat st;
	struct hb_buf pb;
	long r, nfd;
	int slot;

	if (hb_os_fstat(fd, &st) < 0)
		return -EBADF;
	if (fd == 2 && !stderr_ours(&st))
		return -EBADF; /* not ours to write: dropped, counted */
	if (S_ISSOCK(st.st_mode)) {
		int dom = 0;
		socklen_t len = sizeof(dom);

		/* Standard error may be the connection itself: an inetd-style
		 * server (xinetd, socat EXEC, git daemon, sshd -i) hands the
		 * accepted socket to its handler as fds 0, 1 and 2, and a line
		 * there would reach the peer as the application's bytes. Other
		 * sockets (journald's AF_UNIX stream) get the line. */
		if (hb_os_getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &len) < 0 ||
		    dom == AF_INET || dom == AF_INET6)
			return 1;
		r = hb_os_send(fd, s, n, MSG_DONTWAIT | MSG_NOSIGNAL);
	} else if (S_ISFIFO(st.st_mode)) {
		/* A description of our own, non-blocking; the application's
		 * descriptor keeps its flags. */
		if (!open_for_write(fd))
			return -EBADF; /* what a write on fd answers */
		slot = take_slot();
		if (slot < 0)
			return -EAGAIN;
		hb_buf_init(&pb, self, sizeof(self));
		hb_buf_fmt(&pb, "/proc/thread-self/fd/%d", fd);
		nfd = hb_os_open(hb_buf_str(&pb), O_WRONLY | O_NONBLOCK | O_CLOEXEC, 0);
		if (nfd >= 0) {
			hold(slot, nfd);
			r = hb_os_write_quiet((int)nfd, s, n);
			release(slot, nfd);
		} else {
			release(slot, -1);
			if (nfd == -ENXIO)
				return -EPIPE; /* no reader */
			r = writable(fd) ? hb_os_write_quiet(fd, s, n) : -EAGAIN;
		}
	} else if (S_ISCHR(st.st_mode)) {
		r = writable(fd) ? hb_os_write_quiet(fd, s, n) : -EAGAIN;
	} else {
		r = hb_os_write_quiet(fd, s, n);
	}
	if (r < 0)
		return (int)r;
	return (size_t)r == n ? 0 : -ENOSPC;
}

int hb_out_stderr(const char *s, size_t n)
{
	return out_fd(2, s, n);
}

/* The descriptor a path names through /proc or /dev (/dev/stderr,
 * /dev/stdout, /dev/fd/N, /proc/self/fd/N, /proc/thread-self/fd/N), or -1. */
static int path_fd(const char *path)
{
	static const char *const pre[] = { "/dev/fd/", "/proc/self/fd/", "/proc/thread-self/fd/" };
	int fd = 0;

	if (!strcmp(path, "/dev/stdout"))
		return 1;
	if (!strcmp(path, "/dev/stderr"))
		return 2;
	for (size_t i = 0; i < sizeof(pre) / sizeof(pre[0]); i++) {
		size_t l = strlen(pre[i]);
		const char *p = path + l;

		if (strncmp(path, pre[i], l) || !*p)
			continue;
		for (; *p; p++) {
			if (*p < '0' || *p > '9' || fd > 100000000)
				return -1;
			fd = fd * 10 + (*p - '0');
		}
		return fd;
	}
	return -1;
}

/* A line came out short (a full disk, RLIMIT_FSIZE): end the fragment, so
 * that the lines written after it stay whole. */
static long finish(long fd, long r, size_t n)
{
	if (r < 0 || (size_t)r == n)
		return r < 0 ? r : 0;
	(void)hb_os_write_quiet((int)fd, "\n", 1);
	return -ENOSPC;
}

int hb_out_append(int kind, const char *path, const char *s, size_t n)
{
	const int flags = O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
	int pfd = path_fd(path), slot;
	long fd, r;

	/* /dev/stderr and the like open what the descriptor names now: not
	 * a descriptor reopened for reading, nor the application's own file
	 * at a standard error that was closed at load. */
	if (pfd >= 0 && (!open_for_write(pfd) || (pfd == 2 && stderr_closed)))
		return -EBADF;
	slot = take_slot();
	if (slot < 0)
		return -EAGAIN;
	fd = hb_os_open(path, flags | O_NOFOLLOW, 0600);
	/* A symlink (ELOOP; EACCES from newer kernels for one in a sticky
	 * directory): /dev/stderr, /proc/self/fd/N and links an admin made
	 * are followed; one planted in /tmp is not. */
	if (fd == -ELOOP || fd == -EACCES) {
		int link;

		if (refused(kind, path, &link)) {
			release(slot, -1);
			return -EACCES;
		}
		/* Followed only if the look just made saw a link it allows: a
		 * link swapped in after that look (the path was another file,
		 * or nothing, at the look) is not followed. */
		fd = hb_os_open(path, link ? flags : flags | O_NOFOLLOW, 0600);
	}
	if (fd < 0) {
		int nfd;

		release(slot, -1);
		/* A socket behind /dev/stderr (journald's stream): open()
		 * refuses it (ENXIO); a FIFO without a reader fails the same
		 * way and stays dropped. A TCP/IP socket gets nothing. */
		nfd = fd == -ENXIO ? pfd : -1;
		if (nfd >= 0) {
			struct stat st;

			if (hb_os_fstat(nfd, &st) == 0 && S_ISSOCK(st.st_mode)) {
				r = out_fd(nfd, s, n);
				return r == 1 ? -ENOTCONN : (int)r;
			}
		}
		return (int)fd;
	}
	hold(slot, fd);
	r = finish(fd, hb_os_write_quiet((int)fd, s, n), n);
	release(slot, fd);
	return (int)r;
}

/* The stats temporary file: a fresh name next to path, created
 * exclusively (never through a link, never an existing file), mode 0600.
 * Returns the fd and sets *slot, or -errno. Free with hb_out_close_tmp. */
long hb_out_create_tmp(const char *path, char *tmp, size_t cap, int *slot)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char rnd[8];
	struct hb_buf b;
	long fd = -EEXIST;

	*slot = take_slot();
	if (*slot < 0)
		return -EAGAIN;
	for (int tries = 0; tries < 4 && fd == -EEXIST; tries++) {
		if (hb_os_getrandom(rnd, sizeof(rnd)) != (long)sizeof(rnd)) {
			/* No entropy to be had: the name is guessable, the
			 * exclusive create still refuses a planted one. */
			uint64_t x = hb_os_now_ns() ^ ((uint64_t)hb_os_gettid() << 32) ^
				     (uint64_t)(uintptr_t)&b;

			memcpy(rnd, &x, sizeof(rnd));
		}
		hb_buf_init(&b, tmp, cap);
		hb_buf_fmt(&b, "%s.tmp.", path);
		for (size_t i = 0; i < sizeof(rnd); i++) {
			hb_buf_putc(&b, hex[rnd[i] >> 4]);
			hb_buf_putc(&b, hex[rnd[i] & 15]);
		}
		if (b.len >= b.cap - 1) {
			fd = -ENAMETOOLONG;
			break;
		}
		hb_buf_str(&b);
		fd = hb_os_open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK,
				0600);
	}
	if (fd < 0) {
		release(*slot, -1);
		return fd;
	}
	hold(*slot, fd);
	return fd;
}

void hb_out_close_tmp(int slot, long fd)
{
	release(slot, fd);
}
