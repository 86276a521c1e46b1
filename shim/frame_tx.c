/*
 * frame_tx.c - the framed send path: the application's send, write,
 * sendmsg and their kin on a framed connection, and shutdown.
 *
 * A whole frame (header and the application's iovecs) goes in one call in
 * the common case; otherwise the encoder plans header and payload segments
 * and keeps what a short count left (a partial header, owed payload) for
 * the next send. A due downgrade frame goes first. Negotiation is asked
 * (negotiate.c), never done here.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "hb.h"
#include "frame_int.h"

/* Append app bytes [off, off + len) of the iovec list to out[]. */
static int map_iov(struct iovec *out, int k, int max, const struct iovec *iov, size_t niov,
		   size_t off, size_t len)
{
	for (size_t i = 0; i < niov && len && k < max; i++) {
		size_t l = iov[i].iov_len;

		if (off >= l) {
			off -= l;
			continue;
		}
		{
			size_t take = l - off < len ? l - off : len;

			out[k++] = (struct iovec){ (char *)iov[i].iov_base + off, take };
			len -= take;
			off = 0;
		}
	}
	return k;
}

#define TX_IOV_MAX 64

/* The common case, one whole frame of n bytes (encoder between frames, no
 * pending bytes): its header and the application's iovecs in one call, no
 * plan. What a short count leaves (a partial header, owed payload) is the
 * encoder's state as after any other send. Returns the application bytes
 * that went, or -errno. txlock held. */
static long send_one_frame(struct hb_conn *c, int fd, const struct msghdr *m, size_t n, int flags)
{
	uint8_t hdr[HB_DATA_HDR_LEN];
	struct iovec out[TX_IOV_MAX];
	struct hb_tx_seg seg[4] = { { hdr, 0, HB_DATA_HDR_LEN }, { NULL, 0, n } };
	struct msghdr om;
	long r;

	hb_data_hdr(hdr, (uint32_t)n);
	if (n <= SMALL_FRAME && !m->msg_name && !m->msg_controllen) {
		/* Small: header and payload copied into one buffer. */
		uint8_t one[HB_DATA_HDR_LEN + SMALL_FRAME];
		size_t at = HB_DATA_HDR_LEN;

		memcpy(one, hdr, HB_DATA_HDR_LEN);
		for (size_t i = 0; i < (size_t)m->msg_iovlen; i++) {
			memcpy(one + at, m->msg_iov[i].iov_base, m->msg_iov[i].iov_len);
			at += m->msg_iov[i].iov_len;
		}
		r = hb_next_send(fd, one, at, flags | MSG_NOSIGNAL);
	} else {
		out[0] = (struct iovec){ hdr, HB_DATA_HDR_LEN };
		for (size_t i = 0; i < (size_t)m->msg_iovlen; i++)
			out[i + 1] = m->msg_iov[i];
		om = *m;
		om.msg_iov = out;
		om.msg_iovlen = m->msg_iovlen + 1;
		om.msg_flags = 0;
		r = hb_next_sendmsg(fd, &om, flags | MSG_NOSIGNAL);
	}
	if (r < 0)
		return r;
	return (long)((size_t)r == n + HB_DATA_HDR_LEN ? n : hb_tx_commit(&c->tx, seg, 2, (size_t)r));
}

/* One round's iovecs for the encoder's plan: its own segments (headers,
 * pending bytes) and the application's bytes from offset total on, at most
 * TX_IOV_MAX entries (a plan cut short there is accounted as a short
 * count). Returns the plan's segment count; *k, *planned and *app_planned
 * get the iovec count, the bytes and the application bytes planned. */
static int plan_round(struct hb_conn *c, const struct msghdr *m, size_t n, size_t total,
		      uint8_t *hdr, struct hb_tx_seg *seg, struct iovec *out, int *k,
		      size_t *planned, size_t *app_planned)
{
	int ns = hb_tx_plan(&c->tx, n - total, hdr, seg);

	*k = 0;
	*planned = *app_planned = 0;
	for (int i = 0; i < ns && *k < TX_IOV_MAX; i++) {
		if (seg[i].base) {
			out[(*k)++] = (struct iovec){ (void *)seg[i].base, seg[i].len };
			*planned += seg[i].len;
		} else {
			int k0 = *k;
			size_t mapped = 0;

			*k = map_iov(out, *k, TX_IOV_MAX, m->msg_iov, m->msg_iovlen,
				     total + seg[i].off, seg[i].len);
			for (int j = k0; j < *k; j++)
				mapped += out[j].iov_len;
			if (mapped < seg[i].len) {
				/* Too many iovecs: send what fits; the plan's
				 * accounting handles a short count. */
				seg[i].len = mapped;
				ns = i + 1;
			}
			*planned += mapped;
			*app_planned += mapped;
		}
	}
	return ns;
}

/* The general case: rounds of the encoder's plan (pending control bytes,
 * the rest of a frame, new frames) until the n bytes and the pending bytes
 * went, or a short count. *total: application bytes sent (updated). again:
 * a send on fd was made already in this call. Returns 0, 1 when fd was
 * closed between rounds, or the -errno of a send that failed before any
 * application byte went. txlock held. */
static long send_planned(struct hb_conn *c, int fd, const struct msghdr *m, size_t n, int flags,
			 int nb, int again, size_t *total)
{
	for (; *total < n || c->tx.pend_len; again = 1) {
		struct hb_tx_seg seg[4];
		uint8_t hdr[HB_DATA_HDR_LEN];
		struct iovec out[TX_IOV_MAX];
		struct msghdr om;
		size_t planned, app_planned;
		int ns, k;
		long r;

		if (again && !hb_fd_is(c, fd))
			return 1;
		ns = plan_round(c, m, n, *total, hdr, seg, out, &k, &planned, &app_planned);
		memset(&om, 0, sizeof(om));
		om.msg_iov = out;
		om.msg_iovlen = (size_t)k;
		om.msg_name = m->msg_name;
		om.msg_namelen = m->msg_namelen;
		om.msg_control = *total ? NULL : m->msg_control;
		om.msg_controllen = *total ? 0 : m->msg_controllen;
		r = hb_next_sendmsg(fd, &om, (flags | MSG_NOSIGNAL) |
						     (*total && nb ? MSG_DONTWAIT : 0));
		if (r < 0)
			return *total ? 0 : r;
		*total += hb_tx_commit(&c->tx, seg, ns, (size_t)r);
		if ((size_t)r < planned && (*total || nb || !app_planned))
			break; /* short: buffer full or a signal; report what went */
		if (!app_planned && !c->tx.pend_len && *total == n)
			break;
	}
	return 0;
}

static long frame_send(struct hb_conn *c, int fd, const struct msghdr *m, int flags)
{
	size_t n = 0, total = 0;
	int nb = hb_nonblocking(c, flags), closed = 0, again = 0;
	long r;

	hb_negotiate(c, fd, HB_NEG_TX);
	if (hb_load_acquire(&c->txmode) != HB_TX_FRAMED)
		return hb_next_sendmsg(fd, m, flags | MSG_NOSIGNAL);
	for (size_t i = 0; m->msg_iov && i < (size_t)m->msg_iovlen; i++)
		n += m->msg_iov[i].iov_len;
	if ((r = hb_lock_fd(c, fd, &c->txlock, nb)) < 0)
		return r;
	if (HB_UNLIKELY(c->dg_sent || hb_load_relaxed(&c->dg_want))) {
		/* A downgrade of our direction is due: its frame first. */
		r = hb_dg_tx_downgrade(c, fd, nb ? 0 : -1);
		if (r < 0 || r == 1 || c->dg_sent) {
			hb_unlock(&c->txlock);
			if (r == 1)
				return hb_next_sendmsg(fd, m, flags | MSG_NOSIGNAL);
			return r < 0 ? r : -EAGAIN;
		}
		/* Inside a frame: it is finished first (below). */
	}
	if (HB_LIKELY(!c->tx.pend_len && !c->tx.remaining && n && n <= HB_MAX_FRAME &&
		      m->msg_iovlen < TX_IOV_MAX)) {
		r = send_one_frame(c, fd, m, n, flags);
		if (r < 0) {
			hb_unlock(&c->txlock);
			return r;
		}
		again = 1;
		total = (size_t)r;
		if (total || nb)
			goto sent; /* whole, or short: report what went */
		/* Blocking, and only header bytes went (a signal): go on. */
	}
	r = send_planned(c, fd, m, n, flags, nb, again, &total);
	if (r < 0) {
		hb_unlock(&c->txlock);
		return r;
	}
	closed = r == 1;
sent:
	if (HB_UNLIKELY(hb_load_relaxed(&c->dg_want)) && !c->dg_sent)
		hb_dg_tx_downgrade(c, fd, 0);
	hb_unlock(&c->txlock);
	if (!total && n)
		return closed ? -EBADF : -EAGAIN;
	if (total) {
		hb_frame_app_sent(c, fd);
		if (hb_cfg.idle_timeout_ms) /* only the idle deadline reads it */
			c->last_app_ms = hb_os_now_ms();
	}
	return (long)total;
}

/* The use count keeps c alive while another thread closes fd. */
long hb_frame_send(struct hb_conn *c, int fd, const struct msghdr *m, int flags)
{
	long r;

	if ((r = hb_frame_iov_check(m)) < 0)
		return r;
	hb_add_acq_rel(&c->users, 1);
	hb_dg_follow_family(c, fd);
	hb_take_side(c, HB_CF_TX_CLAIMED);
	r = frame_send(c, fd, m, flags);
	if (HB_UNLIKELY(r == -EPIPE))
		r = hb_frame_other_verdict(c, fd, r);
	hb_sub_acq_rel(&c->users, 1);
	return r;
}

/* The kernel answers any byte that arrives after shutdown(SHUT_RD) on a
 * socket whose FIN is out (FIN_WAIT1/2) with a reset, and a reset throws
 * away our data and FIN not yet acknowledged. Without the shim nothing
 * arrives there (the peer's application is done writing); with it, the
 * peer's heartbeats do. So the kernel's SHUT_RD waits until our FIN is
 * acknowledged with everything before it (FIN_WAIT2: every heartbeat the
 * peer sent before it saw our FIN has arrived by then); the background
 * thread applies it, or after the timeout in FIN_WAIT1. Meanwhile reads
 * see the end of the stream at once, as after a real SHUT_RD. A reader
 * blocked in the kernel in another thread (the usual reason for a shutdown
 * from another thread) is woken only by the kernel's SHUT_RD: it goes at
 * once then. A heartbeat already on its way may then draw that reset; the
 * reads on this side still report the end of the stream (HB_CF_RD_DOWN),
 * as the kernel's would have. A writer blocked in the kernel is woken by
 * the kernel's SHUT_WR (EPIPE), which goes at once either way. */
int hb_frame_shutdown(struct hb_conn *c, int fd, int how)
{
	static const uint8_t hc[2] = { HB_FT_CONTROL, HB_CT_HALFCLOSE };

	if (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR)
		return how; /* EINVAL from the kernel */
	hb_dg_follow_family(c, fd);
	/* Ending our direction is a use of the send side. */
	if (how != SHUT_RD)
		hb_take_side(c, HB_CF_TX_CLAIMED);
	/* Pending control bytes go before our FIN; a half-close frame tells
	 * the peer we still read: not for SHUT_RDWR, where a plain FIN also
	 * stops the peer's heartbeats sooner. Never behind a writer in
	 * another thread: blocked in the kernel, it holds txlock until the
	 * kernel's shutdown wakes it (EPIPE), and it is inside a frame, so
	 * neither could go out anyway; the plain FIN follows its bytes. */
	if (how != SHUT_RD && hb_load_acquire(&c->txmode) == HB_TX_FRAMED &&
	    hb_lock_unless_app(&c->txlock)) {
		hb_frame_flush_pend(c, fd);
		if (how == SHUT_WR && hb_tx_at_boundary(&c->tx) &&
		    hb_load_relaxed(&c->txmode) == HB_TX_FRAMED &&
		    hb_frame_own_send(c, fd, hc, sizeof(hc), MSG_DONTWAIT | MSG_NOSIGNAL) == sizeof(hc) &&
		    hb_os_shutdown(fd, SHUT_WR) == 0) {
			/* The FIN goes under the lock: no frame (a heartbeat, a
			 * racing write) can slip in behind the half-close, which
			 * the peer takes for a protocol error. */
			hb_unlock(&c->txlock);
			return -1;
		}
		hb_unlock(&c->txlock);
	}
	if (how == SHUT_WR || hb_load_acquire(&c->rxmode) == HB_RX_RAW ||
	    hb_load_acquire(&c->rxmode) == HB_RX_FAILED || !hb_may_act_on_rx(c))
		return how;
	if (hb_lock_held_by_app(&c->rxlock)) {
		hb_or_acq_rel(&c->flags, HB_CF_RD_DOWN);
		return how;
	}
	c->shut_rd_at = (uint32_t)hb_os_now_ms();
	hb_or_acq_rel(&c->flags, HB_CF_SHUT_RD);
	hb_thread_wake();
	return how == SHUT_RDWR ? SHUT_WR : -1;
}
