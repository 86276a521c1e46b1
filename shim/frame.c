/*
 * frame.c - the framed core: what every framed path shares.
 *
 * Each direction of a connection is raw or framed on its own (PROTOCOL.md);
 * negotiate.c decides which. This file holds the pieces the receive path,
 * the send path, the tick and the lingering close all use: the shim's own
 * send and recv (which keep a connection error for the application), the
 * encoder's pending control bytes, the SO_RCVLOWAT mark that keeps lone
 * heartbeats from waking a poller, the protocol error that fails a
 * connection, notice frames, the kernel's iovec checks and the verdict
 * another process holding the connection reached. It calls no other
 * framed file (frame_int.h lists the layers).
 */
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <linux/sockios.h>

#include "hb.h"
#include "frame_int.h"

/* A framed stream broke the protocol: fail the connection. */
void hb_frame_protocol_error(struct hb_conn *c, int fd, int err, const char *what)
{
	int expect = 0;

	hb_store_relaxed(&c->rxmode, HB_RX_FAILED);
	if (!hb_cas_strong_acq_rel(&c->dead, &expect, err))
		return;
	hb_frame_notice(c, fd, HB_NR_PROTOCOL, 0);
	hb_os_shutdown(fd, SHUT_RDWR);
	hb_stat_add(HB_ST_PROTO_ERR, 1);
	hb_event_conn("protocol_error", fd, c, NULL, 0, HB_EV_FIELDS(HB_EV_STR("reason", what)));
	hb_log(HB_LOG_WARN, "fd %d: protocol error from peer (%s): connection failed", fd, what);
}

/* The shim's own send/recv. The kernel reports a connection's error
 * (a reset, its own timeout) to the first call that asks, and takes it
 * back then: when that call is ours, the application's next read would
 * see a plain end of stream. Keep it for the application (conn_io.c). */
static void keep_err(struct hb_conn *c, long r)
{
	if (r == -ECONNRESET && (hb_load_relaxed(&c->flags) & HB_CF_RD_DOWN))
		return; /* drawn by a heartbeat after our SHUT_RD (hb_frame_shutdown) */
	if (r == -ECONNRESET || r == -ETIMEDOUT || r == -EHOSTUNREACH || r == -ENETUNREACH ||
	    r == -ECONNREFUSED || r == -ECONNABORTED)
		hb_store_relaxed(&c->stolen_err, (uint8_t)-r);
}

long hb_frame_own_send(struct hb_conn *c, int fd, const void *b, size_t n, int flags)
{
	long r = hb_os_send(fd, b, n, flags);

	if (r < 0)
		keep_err(c, r);
	return r;
}

long hb_frame_own_recv(struct hb_conn *c, int fd, void *b, size_t n, int flags)
{
	long r = hb_os_recv(fd, b, n, flags);

	if (r < 0)
		keep_err(c, r);
	return r;
}

/* Try to push pending control bytes without blocking (txlock held). */
void hb_frame_flush_pend(struct hb_conn *c, int fd)
{
	long r;

	if (!c->tx.pend_len)
		return;
	r = hb_frame_own_send(c, fd, c->tx.pend, c->tx.pend_len, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (r > 0) {
		memmove(c->tx.pend, c->tx.pend + r, c->tx.pend_len - (size_t)r);
		c->tx.pend_len = (uint8_t)(c->tx.pend_len - r);
	}
	if (HB_UNLIKELY(c->dg_sent) && !c->tx.pend_len)
		hb_store_release(&c->txmode, HB_TX_RAW); /* our downgrade frame is out */
}

/* Delayed ACKs. A send soon after a receive (within the kernel's ACK
 * timeout, 40 ms or more) puts the socket in "interactive" mode, where it
 * delays ACKs; without the shim, a connection's first sends follow no
 * received data and leave it in quick-ACK mode. Our hello exchange is
 * received data: the server's hello answering the client's, or the
 * application's first bytes after the peer's hello, would make the peer's
 * small writes without TCP_NODELAY wait up to 40 ms for the ACK of their
 * first piece (Nagle). Once per connection, after such a send, give the
 * mode back. Harmless if the application already set TCP_QUICKACK: it
 * asks for the same thing. */
void hb_frame_quickack(int fd)
{
	hb_os_setsockopt_int(fd, IPPROTO_TCP, TCP_QUICKACK, 1);
}

void hb_frame_app_sent(struct hb_conn *c, int fd)
{
	if (HB_UNLIKELY(hb_load_relaxed(&c->flags) & HB_CF_QUICKACK)) {
		hb_and_acq_rel(&c->flags, ~HB_CF_QUICKACK);
		if (hb_fd_is(c, fd))
			hb_frame_quickack(fd);
	}
}

static uint32_t partial_mark(int fd)
{
	int inq = 0;

	if (hb_os_ioctl(fd, SIOCINQ, &inq) < 0 || inq <= 0 || inq >= HB_HELLO_LEN)
		return 1;
	return (uint32_t)inq + 1;
}

void hb_frame_set_lowat(struct hb_conn *c, int fd)
{
	uint32_t want;

	if (hb_load_relaxed(&c->flags) & HB_APP_RCVLOWAT)
		return;
	if (hb_load_relaxed(&c->rxmode) == HB_RX_DETECT && !c->handed_undecided &&
	    (c->client || hb_os_now_ms() < c->opened_ms + ACCEPT_HELLO_WAIT_MS))
		/* A client waiting for the server's hello, or a server in the
		 * first moments after accept: the hello alone must not wake the
		 * application; the background thread looks for it every
		 * millisecond or so while it is due (hb_frame_tick). Not once
		 * handed over undecided: nobody may be looking then. */
		want = HB_HELLO_LEN + 1;
	else if (hb_load_relaxed(&c->rxmode) == HB_RX_DETECT && c->partial_at)
		/* A prefix of the magic is queued and may be a raw stream's
		 * first bytes: the application hears of it when a byte more
		 * arrives (which may decide), or when the background thread
		 * decides "raw" at the end of the wait (the mark drops to 1),
		 * never over and over while nothing changes. */
		want = partial_mark(fd);
	else if (hb_load_relaxed(&c->rxmode) != HB_RX_FRAMED)
		want = 1;
	else if (c->rx.remaining)
		want = c->rx.remaining < FRAME_LOWAT ? c->rx.remaining : FRAME_LOWAT;
	else if (c->rx.hdr_len)
		want = 1;
	else
		want = FRAME_LOWAT;
	if (want == (c->lowat ? c->lowat : 1u))
		return;
	if (hb_os_setsockopt_int(fd, SOL_SOCKET, SO_RCVLOWAT, (int)want) == 0)
		c->lowat = (uint8_t)want;
}

_Atomic int hb_frame_seen;

/* The kernel's checks of a message's iovec array, made before the shim
 * reads or sums it: more than IOV_MAX entries is EMSGSIZE (readv and writev
 * answer EINVAL before calling here); a length above SSIZE_MAX, or lengths
 * whose sum passes SSIZE_MAX, is EINVAL. (Linux answers EFAULT for such a
 * sum, as no buffer that long can exist; POSIX names EINVAL.) This check
 * bounds every sum of the lengths the framed paths make. */
long hb_frame_iov_check(const struct msghdr *m)
{
	size_t t = 0;

	if ((size_t)m->msg_iovlen > IOV_MAX) /* an int on musl: negative is too many */
		return -EMSGSIZE;
	if (!m->msg_iovlen)
		return 0;
	if (!m->msg_iov)
		return -EFAULT;
	for (size_t i = 0; i < (size_t)m->msg_iovlen; i++) {
		size_t l = m->msg_iov[i].iov_len;

		if (l > (size_t)SSIZE_MAX || l > (size_t)SSIZE_MAX - t)
			return -EINVAL;
		t += l;
	}
	return 0;
}

/* A call on a connection another process holds too ended with the end of
 * the stream (r == 0) or a broken pipe, while the peer has sent nothing
 * for our timeout and no FIN of its own (the socket is in FIN_WAIT: our
 * side was shut, here or in the other process): the other process's
 * background thread found the peer dead and shut the socket down, which
 * only its own memory records. Each process holds its own view of the
 * connection: report the same verdict here, never a clean end. */
__attribute__((noinline, cold)) long hb_frame_other_verdict(struct hb_conn *c, int fd, long r)
{
	struct hb_tcp_info x;
	uint32_t fl = hb_load_relaxed(&c->flags);

	/* A writer that never read here may not have seen the peer's hello
	 * (the reader did): undecided counts, a raw peer never heartbeats. */
	if (HB_LIKELY(!(fl & HB_CF_SHARED)) || (fl & (HB_CF_SHUT_RD | HB_CF_RD_DOWN)) ||
	    hb_load_acquire(&c->rxmode) == HB_RX_RAW || hb_load_acquire(&c->rxmode) == HB_RX_FAILED ||
	    hb_load_relaxed(&c->dead) || hb_os_tcp_info(fd, &x) < 0)
		return r;
	if ((x.ti.tcpi_state != TCP_FIN_WAIT1 && x.ti.tcpi_state != TCP_FIN_WAIT2) ||
	    !HB_TI_HAS(&x, ti.tcpi_last_data_recv) || x.ti.tcpi_last_data_recv < hb_rx_limit(c))
		return r;
	hb_conn_declare_dead(c, fd, HB_DEAD_HEARTBEAT, x.ti.tcpi_last_data_recv);
	return -(long)hb_load_acquire(&c->dead);
}

void hb_frame_notice(struct hb_conn *c, int fd, uint8_t reason, uint32_t silent)
{
	uint8_t n[HB_NOTICE_LEN];

	if (hb_load_acquire(&c->txmode) != HB_TX_FRAMED || !hb_may_act_on_tx(c) || !hb_trylock(&c->txlock))
		return;
	if (hb_tx_at_boundary(&c->tx)) {
		hb_notice_encode(n, reason, silent);
		hb_frame_own_send(c, fd, n, sizeof(n), MSG_DONTWAIT | MSG_NOSIGNAL);
	}
	hb_unlock(&c->txlock);
}
