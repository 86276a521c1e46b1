/*
 * frame_drain.c - the framed receive side between the application's reads.
 *
 * Control frames that wait unread at the head of the queue are drained
 * (by the tick, before a close, at exit) so heartbeats never pile up or
 * turn a close into a reset; the poll family asks whether the application
 * may read (control frames alone do not count); FIONREAD counts the
 * application's bytes only.
 */
#include <errno.h>
#include <sys/socket.h>
#include <sys/ioctl.h>
#include <linux/sockios.h>

#include "hb.h"
#include "frame_int.h"

/* For the poll family: may the application read now? Control frames at the
 * head are consumed first. 1 when application bytes (or the end of the
 * stream, or an error) are there, 0 when only control frames were. Any
 * doubt (another thread reading) says 1: a readiness report is never
 * withheld wrongly. An application that waits here for the connection to
 * become readable is its reader: it claims the receive side as its read
 * would (a parent that forked a command and polls its connection again
 * is not woken by heartbeats into a read that blocks). */
int hb_frame_app_readable(struct hb_conn *c, int fd)
{
	uint8_t p[2];
	int inq = 0, ready = 1;
	long r;

	hb_dg_follow_family(c, fd);
	if (HB_UNLIKELY(hb_load_relaxed(&c->flags) & HB_CF_SHARED))
		hb_take_side(c, HB_CF_CLAIMED);
	if (hb_load_acquire(&c->rxmode) == HB_RX_RAW || hb_load_relaxed(&c->dead) || !hb_may_act_on_rx(c) ||
	    !hb_lock_unless_app(&c->rxlock))
		return 1;
	if (hb_load_relaxed(&c->rxmode) == HB_RX_DETECT) {
		/* The peer's hello (and heartbeats behind it) may be all there
		 * is: decide now. Still undecided = nothing, or a prefix of
		 * the magic that the background thread resolves in time. */
		if (hb_negotiate(c, fd, HB_NEG_RX) == -EAGAIN) {
			hb_unlock(&c->rxlock);
			return 0;
		}
		hb_frame_set_lowat(c, fd);
	}
	if (hb_load_relaxed(&c->rxmode) != HB_RX_FRAMED) {
		hb_unlock(&c->rxlock);
		return 1;
	}
	if (!hb_rx_at_boundary(&c->rx)) {
		hb_unlock(&c->rxlock);
		return 1; /* inside a data frame: what is queued is the application's */
	}
	for (int round = 0; round < 4; round++) {
		hb_frame_drain(c, fd);
		if (hb_load_relaxed(&c->rxmode) != HB_RX_FRAMED) {
			/* Downgraded by what the drain took: whatever is queued
			 * behind it is the application's (or the end of the
			 * stream). */
			r = hb_frame_own_recv(c, fd, p, 1, MSG_PEEK | MSG_DONTWAIT);
			ready = r != -EAGAIN;
			break;
		}
		if (hb_os_ioctl(fd, SIOCINQ, &inq) != 0)
			break;
		if (inq == 0) {
			/* Nothing queued: the end of the stream, or no reason. */
			r = hb_frame_own_recv(c, fd, p, 1, MSG_PEEK | MSG_DONTWAIT);
			ready = r != -EAGAIN;
			break;
		}
		/* A control frame at the head: the start of one still arriving
		 * (below the mark), or whole ones that arrived after the
		 * drain's peek (a peer's heartbeats held back by Nagle come
		 * three at once): drain again. */
		r = hb_frame_own_recv(c, fd, p, 1, MSG_PEEK | MSG_DONTWAIT);
		ready = !(r == 1 && p[0] == HB_FT_CONTROL);
		if (ready || inq < FRAME_LOWAT)
			break;
		ready = 1;
	}
	hb_unlock(&c->rxlock);
	return ready;
}

void hb_frame_close(struct hb_conn *c, int fd)
{
	/* Control frames left unread would make the kernel answer our close
	 * with a reset instead of a FIN, and a reset throws away what we
	 * still have to send: drop them first. Application bytes left unread
	 * reset the connection exactly as they would without the shim. Not
	 * behind a reader blocked in the kernel (another thread): the close
	 * returns at once, as the kernel's does, and the socket stays open
	 * until that read returns (hb_frame_linger leaves it alone then). */
	hb_dg_follow_family(c, fd);
	if (hb_load_acquire(&c->rxmode) == HB_RX_RAW || !hb_may_act_on_rx(c) || !hb_lock_unless_app(&c->rxlock))
		return;
	if (hb_load_relaxed(&c->rxmode) == HB_RX_DETECT)
		hb_negotiate(c, fd, HB_NEG_RX);
	if (hb_load_relaxed(&c->rxmode) == HB_RX_FRAMED)
		hb_frame_drain(c, fd);
	hb_unlock(&c->rxlock);
}

int hb_frame_inq(struct hb_conn *c, int fd, int *out)
{
	int inq = 0;
	uint8_t p[256];
	struct hb_rx copy;
	long r;
	long app;

	if (hb_load_acquire(&c->rxmode) == HB_RX_DETECT && hb_may_act_on_rx(c) && hb_trylock(&c->rxlock)) {
		hb_negotiate(c, fd, HB_NEG_RX);
		hb_unlock(&c->rxlock);
	}
	if (hb_os_ioctl(fd, SIOCINQ, &inq) < 0)
		return -1;
	/* Another process reads it: our decoder's position is stale there,
	 * the kernel's count (headers included) is all we know. */
	if (hb_load_acquire(&c->rxmode) != HB_RX_FRAMED || !hb_may_act_on_rx(c)) {
		*out = inq;
		return 0;
	}
	if (!hb_lock_unless_app(&c->rxlock))
		return -1; /* a reader is blocked: the kernel's count, headers included */
	copy = c->rx;
	if (copy.remaining && (uint32_t)inq <= copy.remaining) {
		*out = inq;
	} else {
		r = hb_frame_own_recv(c, fd, p, sizeof(p) < (size_t)inq ? sizeof(p) : (size_t)inq,
			       MSG_PEEK | MSG_DONTWAIT);
		app = r > 0 ? hb_rx_decode(&copy, p, (size_t)r, NULL) : 0;
		if (app < 0)
			app = 0;
		if (r > 0 && inq > r && copy.remaining)
			app += (inq - r) < (long)copy.remaining ? (inq - r) : (long)copy.remaining;
		*out = (int)app;
	}
	hb_unlock(&c->rxlock);
	return 0;
}

/* Drop control frames waiting at the head of the receive queue while the
 * application is not reading, so heartbeats never pile up. rxlock held. */
void hb_frame_drain(struct hb_conn *c, int fd)
{
	/* Another process may be reading this stream (fork, exec): our
	 * decoder's idea of the frame boundary can be stale there, and bytes
	 * taken here would be taken from it. */
	if (!hb_may_act_on_rx(c))
		return;
	/* One peek, then one read of exactly the complete control frames at
	 * the head (two system calls however many heartbeats piled up). */
	for (int rounds = 0; rounds < 16 && hb_rx_at_boundary(&c->rx) && !c->rx.raw; rounds++) {
		uint8_t p[64];
		long r = hb_frame_own_recv(c, fd, p, sizeof(p), MSG_PEEK | MSG_DONTWAIT);
		size_t take = 0;

		while (r > 0 && take + 2 <= (size_t)r && p[take] == HB_FT_CONTROL) {
			size_t need = p[take + 1] == HB_CT_NOTICE	 ? HB_NOTICE_LEN
				      : p[take + 1] == HB_CT_DOWNGRADE ? HB_DOWNGRADE_LEN
									 : 2;

			if (take + need > (size_t)r)
				break;
			take += need;
			if (p[take - need + 1] == HB_CT_DOWNGRADE)
				break; /* raw bytes behind it: the application's */
		}
		if (!take)
			break;
		r = hb_frame_own_recv(c, fd, p, take, MSG_DONTWAIT);
		if (r != (long)take || hb_frame_decode_arrived(c, fd, NULL, 0, p, take, 0, take) < 0)
			return;
		if (take + HB_NOTICE_LEN < sizeof(p))
			break; /* the peek saw everything there was */
	}
	c->drained_at = hb_ms32(hb_os_now_ms());
	hb_frame_set_lowat(c, fd);
}
