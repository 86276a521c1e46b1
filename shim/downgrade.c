/*
 * downgrade.c - what outlives framing when a process leaves it
 * (docs/PROTOCOL.md, Downgrade).
 *
 * Three pieces, for a connection whose frames one process can no longer
 * write or read (the entry points that start a downgrade, hb_frame_leave and
 * hb_frame_pass, are in leave.c, above the framed paths that call this
 * file):
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
 *    sends a heartbeat or decodes a byte (hb_dg_follow_family).
 *
 *  - The downgrade frames in the stream: ours, sent at our direction's next
 *    frame boundary (hb_dg_tx_downgrade, called by the send path and the
 *    tick), and the peer's, decoded by the receive path
 *    (hb_dg_rx_downgraded).
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

#include "hb.h"
#include "frame_int.h"

/* ---------------------------------------------------------------- shared record */

#define DG_SHARED_MAX 256
struct dg_shared {
	_Atomic uint32_t next;                 /* ring position of the next entry */
	_Atomic uint64_t cookie[DG_SHARED_MAX]; /* 0 = empty */
};
static struct dg_shared *shared;

void hb_dg_record_init(void)
{
	if (!shared)
		shared = hb_os_mmap_shared(sizeof(*shared));
}

/* A ring: the oldest entry goes when it is full (a family that downgraded
 * more than DG_SHARED_MAX connections, and still holds the oldest copy). */
void hb_dg_publish(uint64_t cookie)
{
	hb_share_hello_forget(cookie);
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

/* ---------------------------------------------------------------- in the stream */

/* The downgraded event and log line (by: "local", "peer" or "family", a
 * process of this fork family that left framing). */
void hb_dg_event(struct hb_conn *c, int fd, const char *by, uint8_t reason)
{
	hb_log(HB_LOG_INFO, "fd %d: downgraded to raw (%s, %s): no heartbeats from here", fd, by,
	       hb_dg_reason_name(reason));
	hb_event_conn("downgraded", fd, c, NULL, 0,
		      HB_EV_FIELDS(HB_EV_STR("by", by), HB_EV_STR("reason", hb_dg_reason_name(reason)),
				   HB_EV_NUM("code", reason)));
}

/* The peer's downgrade frame was decoded (rxlock held): its direction is
 * raw from the next byte on, and heartbeats are no longer expected in it.
 * Asked to, ours follows at its next frame boundary: now if the writer is
 * free and between frames, else from the next write or tick. */
void hb_dg_rx_downgraded(struct hb_conn *c, int fd, const struct hb_rx_info *info)
{
	hb_store_release(&c->rxmode, HB_RX_RAW);
	hb_share_hello_forget(c->cookie);
	/* Our low-water mark of 6 would hold a short raw answer back from a
	 * read that goes on right after this frame. */
	if (hb_fd_is(c, fd))
		hb_frame_set_lowat(c, fd);
	hb_dg_event(c, fd, "peer", info->dg_reason);
	if ((info->dg_flags & HB_DF_REQUEST) && hb_load_acquire(&c->txmode) == HB_TX_FRAMED) {
		hb_store_release(&c->dg_want, HB_DR_ANSWER);
		if (hb_trylock(&c->txlock)) {
			hb_dg_tx_downgrade(c, fd, 0);
			hb_unlock(&c->txlock);
		}
	}
}

/* Our direction's downgrade (txlock held). Due (dg_want) and at a frame
 * boundary, the frame goes into tx.pend; tx.pend is then sent, waiting up
 * to wait_ms for room (-1: as long as the kernel's own blocking write
 * would; 0: never). Returns 1 when our direction is raw now, 0 when not
 * yet (nothing due, inside a frame, or the frame still pending), or the
 * -errno of a failed send. */
int hb_dg_tx_downgrade(struct hb_conn *c, int fd, int wait_ms)
{
	uint8_t want = hb_load_acquire(&c->dg_want);

	if (hb_load_relaxed(&c->txmode) != HB_TX_FRAMED)
		return hb_load_relaxed(&c->txmode) == HB_TX_RAW;
	if (!c->dg_sent) {
		hb_frame_flush_pend(c, fd);
		if (!want || !hb_tx_at_boundary(&c->tx))
			return 0;
		/* A heartbeat first: 7 bytes reach the receiver's low-water
		 * mark of 6 (hb_frame_set_lowat), so a reader blocked in the kernel
		 * wakes and answers at once. */
		c->tx.pend[0] = HB_FT_CONTROL;
		c->tx.pend[1] = HB_CT_HEARTBEAT;
		hb_downgrade_encode(c->tx.pend + 2, want, want == HB_DR_ANSWER ? 0 : HB_DF_REQUEST);
		c->tx.pend_len = 2 + HB_DOWNGRADE_LEN;
		c->dg_sent = 1;
		if (want == HB_DR_ANSWER)
			hb_log(HB_LOG_DEBUG, "fd %d: our direction follows the peer's to raw", fd);
	}
	while (c->tx.pend_len) {
		long r = hb_frame_own_send(c, fd, c->tx.pend, c->tx.pend_len, MSG_DONTWAIT | MSG_NOSIGNAL);
		short rev = 0;

		if (r > 0) {
			memmove(c->tx.pend, c->tx.pend + r, c->tx.pend_len - (size_t)r);
			c->tx.pend_len = (uint8_t)(c->tx.pend_len - r);
			continue;
		}
		if (r != -EAGAIN)
			return r < 0 ? (int)r : 0;
		if (!wait_ms)
			return 0;
		r = hb_os_poll1(fd, POLLOUT, wait_ms < 0 ? 1000 : wait_ms, &rev);
		if (r < 0 && r != -EINTR)
			return (int)r;
		if (wait_ms > 0 && r == 0)
			return 0;
	}
	hb_store_release(&c->txmode, HB_TX_RAW);
	/* Both directions raw now (the peer asked, this was our answer): the
	 * other copies of a shared connection follow (hb_dg_follow_family),
	 * as they do when a process of the family leaves framing. */
	if (hb_load_relaxed(&c->rxmode) == HB_RX_RAW && (hb_load_relaxed(&c->flags) & HB_CF_SHARED))
		hb_dg_publish(c->cookie);
	return 1;
}

/* Another process of this fork family downgraded the connection (sshd's
 * pre-authentication child, seen from the monitor and the children it forks
 * later): this copy's framed state is stale, the stream is raw both ways.
 * Only shared connections can be in that record. Taken only with both locks
 * free (a thread of ours inside a framed call would be a reader here, which
 * the leaving process excluded); looked at again at the next call. */
void hb_dg_follow_family(struct hb_conn *c, int fd)
{
	if (HB_LIKELY(!(hb_load_relaxed(&c->flags) & HB_CF_SHARED)) || c->mode != HB_MODE_FRAME ||
	    (hb_load_relaxed(&c->rxmode) == HB_RX_RAW && hb_load_relaxed(&c->txmode) == HB_TX_RAW) ||
	    !hb_dg_published(c->cookie))
		return;
	if (!hb_trylock(&c->rxlock))
		return;
	if (hb_trylock(&c->txlock)) {
		hb_store_release(&c->rxmode, HB_RX_RAW);
		hb_store_release(&c->txmode, HB_TX_RAW);
		c->tx.pend_len = 0;
		c->tx.remaining = 0;
		hb_unlock(&c->txlock);
		if (hb_fd_is(c, fd))
			hb_frame_set_lowat(c, fd);
		hb_dg_event(c, fd, "family", 0);
	}
	hb_unlock(&c->rxlock);
}
