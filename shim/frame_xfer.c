/*
 * frame_xfer.c - zero-copy transfers on a framed connection (sendfile,
 * splice: i_zcopy.c).
 *
 * Out: the frame header goes first (with MSG_MORE), then the kernel moves
 * at most that frame's payload; a frame never promises more than the
 * source can deliver. In: headers are read into scratch, never into the
 * pipe, and the kernel moves payload bytes of the current frame only.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "hb.h"
#include "frame_int.h"

long hb_frame_xfer_out(struct hb_conn *c, int fd, size_t len, size_t avail, int nb,
		       long (*xfer)(void *ctx, size_t len), void *ctx)
{
	uint8_t hdr[HB_DATA_HDR_LEN];
	long r, s;
	int sflags = MSG_NOSIGNAL | (nb ? MSG_DONTWAIT : 0);

	hb_negotiate(c, fd, HB_NEG_TX);
	if (hb_load_acquire(&c->txmode) != HB_TX_FRAMED)
		return xfer(ctx, len);
	if (!len)
		return xfer(ctx, 0);
	hb_add_acq_rel(&c->users, 1);
	hb_take_side(c, HB_CF_TX_CLAIMED);
	if ((r = hb_lock_fd(c, fd, &c->txlock, nb)) < 0) {
		hb_sub_acq_rel(&c->users, 1);
		return r;
	}
	if (HB_UNLIKELY(c->dg_sent || hb_load_relaxed(&c->dg_want))) {
		r = hb_dg_tx_downgrade(c, fd, nb ? 0 : -1);
		if (r < 0 || r == 1 || c->dg_sent) {
			hb_unlock(&c->txlock);
			hb_sub_acq_rel(&c->users, 1);
			return r == 1 ? xfer(ctx, len) : r < 0 ? r : -EAGAIN;
		}
	}
	while (c->tx.pend_len) {
		r = hb_os_send(fd, c->tx.pend, c->tx.pend_len, sflags);
		if (r < 0)
			goto out;
		memmove(c->tx.pend, c->tx.pend + r, c->tx.pend_len - (size_t)r);
		c->tx.pend_len = (uint8_t)(c->tx.pend_len - r);
	}
	if (!c->tx.remaining) {
		size_t l = len < avail ? len : avail;

		if (l > HB_MAX_FRAME)
			l = HB_MAX_FRAME;
		if (!l) {
			r = 0; /* the source is at its end: nothing to frame */
			goto out;
		}
		hb_data_hdr(hdr, (uint32_t)l);
		/* The header rides with the payload that follows (MSG_MORE). */
		r = hb_os_send(fd, hdr, sizeof(hdr), sflags | MSG_MORE);
		if (r < 0)
			goto out;
		c->tx.remaining = (uint32_t)l;
		if (r < (long)sizeof(hdr)) {
			memcpy(c->tx.pend, hdr + r, sizeof(hdr) - (size_t)r);
			c->tx.pend_len = (uint8_t)(sizeof(hdr) - (size_t)r);
			while (!nb && c->tx.pend_len) {
				r = hb_os_send(fd, c->tx.pend, c->tx.pend_len, sflags);
				if (r < 0)
					goto out;
				memmove(c->tx.pend, c->tx.pend + r, c->tx.pend_len - (size_t)r);
				c->tx.pend_len = (uint8_t)(c->tx.pend_len - r);
			}
			if (c->tx.pend_len) {
				r = -EAGAIN;
				goto out;
			}
		}
	}
	if (!hb_fd_is(c, fd)) {
		r = -EBADF; /* closed while a header waited for room */
		goto out;
	}
	s = xfer(ctx, len < c->tx.remaining ? len : c->tx.remaining);
	if (s > 0) {
		c->tx.remaining -= (uint32_t)s;
		hb_frame_app_sent(c, fd);
		if (hb_cfg.idle_timeout_ms) /* only the idle deadline reads it */
			c->last_app_ms = hb_os_now_ms();
	}
	r = s;
out:
	hb_unlock(&c->txlock);
	hb_sub_acq_rel(&c->users, 1);
	return r;
}

long hb_frame_xfer_in(struct hb_conn *c, int fd, size_t len, int nb,
		      long (*xfer)(void *ctx, size_t len), void *ctx)
{
	long r;

	hb_add_acq_rel(&c->users, 1);
	hb_take_side(c, HB_CF_CLAIMED);
	if ((r = hb_lock_fd(c, fd, &c->rxlock, nb)) < 0) {
		hb_sub_acq_rel(&c->users, 1);
		return r;
	}
	if ((r = hb_negotiate(c, fd, nb ? HB_NEG_RX : HB_NEG_RX_WAIT)) < 0)
		goto out;
	if (hb_load_relaxed(&c->rxmode) == HB_RX_RAW) {
		r = xfer(ctx, len);
		goto out;
	}
	if (hb_load_relaxed(&c->rxmode) == HB_RX_FAILED) {
		r = -EPROTO;
		goto out;
	}
	/* Consume headers (into scratch, never payload), then let the kernel
	 * move payload bytes of the current frame only. */
	for (int hdrs = 0; !c->rx.remaining; hdrs++) {
		uint8_t scratch[HB_HDR_MAX];
		size_t want = (c->rx.hdr_len < HB_DATA_HDR_LEN ? HB_DATA_HDR_LEN : HB_NOTICE_LEN) -
			      c->rx.hdr_len;

		if (HB_UNLIKELY(c->rx.raw)) {
			r = xfer(ctx, len); /* the peer downgraded: raw from here */
			goto out;
		}
		r = hb_os_recv(fd, scratch, want, nb ? MSG_DONTWAIT : 0);
		if (r <= 0)
			goto out; /* 0: end of stream */
		r = hb_frame_decode_arrived(c, fd, NULL, 0, scratch, (size_t)r, 0, (size_t)r);
		if (r < 0)
			goto out;
		if (!hb_fd_is(c, fd)) {
			r = -EBADF;
			goto out;
		}
		if (nb && hdrs >= PEEK_HDRS && !c->rx.remaining) {
			/* Control frames only, and they keep coming. */
			hb_frame_rearm(c, fd);
			r = -EAGAIN;
			goto out;
		}
	}
	r = xfer(ctx, len < c->rx.remaining ? len : c->rx.remaining);
	if (r > 0) {
		c->rx.remaining -= (uint32_t)r;
		hb_rx_seen(c);
		if (hb_cfg.idle_timeout_ms) /* only the idle deadline reads it */
			c->last_app_ms = hb_os_now_ms();
	}
out:
	if (hb_fd_is(c, fd))
		hb_frame_set_lowat(c, fd);
	hb_unlock(&c->rxlock);
	hb_sub_acq_rel(&c->users, 1);
	return r;
}
