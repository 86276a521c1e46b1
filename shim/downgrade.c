/*
 * downgrade.c - what outlives framing when a process leaves it
 * (docs/PROTOCOL.md, Downgrade).
 *
 * Two pieces, both for a connection whose frames one process can no longer
 * write or read:
 *
 *  - The leaving reader. A process that installs a seccomp filter (sshd's
 *    pre-authentication child) sent its downgrade frame before the filter;
 *    the peer's frames already in flight still arrive until the peer's own
 *    downgrade frame. The shim stepped aside (every fd forgotten), so the
 *    read path here is a separate one that makes no system call but read
 *    and close, which every sandbox that reads a socket allows: the
 *    pointers of the real read, recvfrom and close are swapped for the
 *    functions below, so an fd of another kind still costs the interposer's
 *    one table load and a branch. Once the peer's downgrade frame is
 *    decoded the fd is plain raw and leaves the table. Single reader per fd
 *    (the decoder state is not locked), as in the processes that sandbox.
 *
 *  - The shared record. The other processes of a fork family (sshd's
 *    monitor, and the post-authentication child it forks later) hold copies
 *    of the connection with the framed state of the moment they forked; the
 *    stream went raw behind them. A page shared across fork lists the
 *    cookies (unique per boot) of connections a process of the family
 *    downgraded; a copy that finds its cookie there is raw too, before it
 *    sends a heartbeat or decodes a byte (frame.c).
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

#include "hb.h"

/* ---------------------------------------------------------------- shared record */

#define DG_SHARED_MAX 256
struct dg_shared {
	_Atomic uint32_t next;                 /* ring position of the next entry */
	_Atomic uint64_t cookie[DG_SHARED_MAX]; /* 0 = empty */
};
static struct dg_shared *shared;

static ssize_t (*next_sendmsg)(int, const struct msghdr *, int);

/* sendmsg with SCM_RIGHTS: a framed connection among the fds leaves
 * framing before it leaves the process (hb_frame_pass). The real sendmsg
 * pointer is swapped for this one at start-up (the AF_UNIX socket that
 * carries the fds is not tracked, so its call never reaches the
 * interposer's slow path); every other sendmsg pays one test of
 * msg_controllen. */
static void pass_fds(const struct msghdr *m)
{
	for (struct cmsghdr *h = CMSG_FIRSTHDR(m); h; h = CMSG_NXTHDR((struct msghdr *)m, h)) {
		size_t n;

		if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS ||
		    h->cmsg_len < CMSG_LEN(0))
			continue;
		n = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++) {
			int x;
			struct hb_conn *c;

			memcpy(&x, CMSG_DATA(h) + i * sizeof(int), sizeof(x));
			c = hb_fd_conn(x);
			if (c)
				hb_frame_pass(c, x);
		}
	}
}

static ssize_t dg_sendmsg(int fd, const struct msghdr *m, int flags)
{
	if (HB_UNLIKELY(m && m->msg_control && m->msg_controllen >= sizeof(struct cmsghdr) &&
			hb_load_relaxed(&hb_frame_seen)))
		pass_fds(m);
	return next_sendmsg(fd, m, flags);
}

void hb_dg_init(void)
{
	if (!shared)
		shared = hb_os_mmap_shared(sizeof(*shared));
	if (!next_sendmsg) {
		next_sendmsg = __atomic_load_n(&hb_real.sendmsg, __ATOMIC_ACQUIRE);
		if (next_sendmsg)
			__atomic_store_n(&hb_real.sendmsg, dg_sendmsg, __ATOMIC_RELEASE);
	}
}

/* A ring: the oldest entry goes when it is full (a family that downgraded
 * more than DG_SHARED_MAX connections, and still holds the oldest copy). */
void hb_dg_publish(uint64_t cookie)
{
	if (!shared || !cookie || hb_dg_published(cookie))
		return;
	hb_store_release(&shared->cookie[hb_add_acq_rel(&shared->next, 1) % DG_SHARED_MAX], cookie);
}

int hb_dg_published(uint64_t cookie)
{
	if (!shared || !cookie)
		return 0;
	for (int i = 0; i < DG_SHARED_MAX; i++)
		if (hb_load_acquire(&shared->cookie[i]) == cookie)
			return 1;
	return 0;
}

const char *hb_dg_reason_name(uint8_t reason)
{
	switch (reason) {
	case HB_DR_SECCOMP:
		return "seccomp";
	case HB_DR_FDPASS:
		return "fd_passed";
	case HB_DR_HELLO:
		return "hello";
	case HB_DR_SHARED:
		return "shared";
	case HB_DR_ANSWER:
		return "requested";
	default:
		return "other";
	}
}

/* ---------------------------------------------------------------- leaving reader */

#define DG_LEAVE_MAX 8
static struct {
	_Atomic int fd1; /* fd + 1, 0 = free */
	struct hb_rx rx;
} leaving[DG_LEAVE_MAX];

static ssize_t (*next_read)(int, void *, size_t);
static ssize_t (*next_recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
static int (*next_close)(int);

static int find(int fd)
{
	for (int i = 0; i < DG_LEAVE_MAX; i++)
		if (hb_load_acquire(&leaving[i].fd1) == fd + 1)
			return i;
	return -1;
}

/* got bytes of slot i's stream arrived in buf: decode them in place. The
 * application's bytes (>= 0), or -1 with EPROTO (a broken stream: nothing
 * behind the bad bytes is delivered, and every later read fails too). */
static ssize_t decode(int i, void *buf, ssize_t got)
{
	struct hb_rx_info info = { 0 };
	ssize_t a = hb_rx_decode(&leaving[i].rx, buf, (size_t)got, &info);

	if (a < 0) {
		leaving[i].rx.halfclosed = 1; /* stays: any data frame fails again */
		errno = EPROTO;
		return -1;
	}
	if (leaving[i].rx.raw)
		hb_store_release(&leaving[i].fd1, 0); /* the rest is raw: plain fd */
	return a;
}

/* A read that got only control frames (the peer's heartbeats or its
 * downgrade frame) waits for application bytes and reads again, also on a
 * non-blocking fd: the application was told the fd is readable, and
 * OpenSSH takes a read that fails with EAGAIN after its poll for a broken
 * connection. The window is short: the peer was asked to downgrade, and
 * sends only raw bytes after its answer. */
static void wait_bytes(int fd)
{
	short rev = 0;

	while (hb_os_poll1(fd, POLLIN, -1, &rev) == -EINTR)
		;
}

static ssize_t dg_read(int fd, void *buf, size_t n)
{
	for (;;) {
		int i = find(fd);
		ssize_t r;

		if (i < 0 || !n)
			return next_read(fd, buf, n);
		r = next_read(fd, buf, n);
		if (r <= 0)
			return r;
		r = decode(i, buf, r);
		if (r != 0)
			return r;
		wait_bytes(fd);
	}
}

static ssize_t dg_recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *sa,
			   socklen_t *sl)
{
	for (;;) {
		int i = find(fd);
		ssize_t r;

		/* A peek would show frame headers: it waits for the end of
		 * the leaving state (none of the sandboxed programs peeks). */
		if (i < 0 || !n || (flags & MSG_PEEK))
			return next_recvfrom(fd, buf, n, flags, sa, sl);
		r = next_recvfrom(fd, buf, n, flags & ~MSG_WAITALL, sa, sl);
		if (r <= 0)
			return r;
		r = decode(i, buf, r);
		if (r != 0)
			return r;
		wait_bytes(fd);
	}
}

static int dg_close(int fd)
{
	int i = find(fd);

	if (i >= 0)
		hb_store_release(&leaving[i].fd1, 0);
	return next_close(fd);
}

int hb_dg_leave_reader(int fd, const struct hb_rx *rx)
{
	int i;

	if (rx->raw)
		return 0;
	hb_real_bind();
	if (!next_read) {
		next_read = __atomic_load_n(&hb_real.read, __ATOMIC_ACQUIRE);
		next_recvfrom = __atomic_load_n(&hb_real.recvfrom, __ATOMIC_ACQUIRE);
		next_close = __atomic_load_n(&hb_real.close, __ATOMIC_ACQUIRE);
		if (!next_read || !next_recvfrom || !next_close)
			return -ENOSPC;
	}
	for (i = 0; i < DG_LEAVE_MAX; i++)
		if (!hb_load_acquire(&leaving[i].fd1))
			break;
	if (i == DG_LEAVE_MAX)
		return -ENOSPC;
	leaving[i].rx = *rx;
	hb_store_release(&leaving[i].fd1, fd + 1);
	__atomic_store_n(&hb_real.read, dg_read, __ATOMIC_RELEASE);
	__atomic_store_n(&hb_real.recvfrom, dg_recvfrom, __ATOMIC_RELEASE);
	__atomic_store_n(&hb_real.close, dg_close, __ATOMIC_RELEASE);
	return 0;
}
