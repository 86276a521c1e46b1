/*
 * share.c - a framed connection that another process holds too.
 *
 * After fork, exec or posix_spawn each side of a shared connection is
 * owned by the process whose application uses it: the one that reads owns
 * the receive side, the one that writes the send side (rsync's receiver
 * child reads while its generator parent writes). Neither process sees the
 * other's use, so a side this process has not used since is left alone
 * (hb_may_act_on_rx, hb_may_act_on_tx in frame_int.h). This file marks the
 * connections at fork and records which side this process took over; the
 * tick (tick.c) applies the parent's pause and take-back.
 */

#include "hb.h"
#include "frame_int.h"

/* The parent's pause starts at the first fork that finds the connection
 * settled: a process forking more often than the pause (a client running
 * a command every half second) would otherwise never send a heartbeat or
 * look at its peer again, and its live connections were declared dead. */
void hb_frame_mark_shared(struct hb_conn *c, uint64_t now)
{
	if (!(hb_load_acquire(&c->flags) & HB_CF_FORKED))
		c->forked_at = hb_ms32(now);
	hb_and_acq_rel(&c->flags, ~(HB_CF_CLAIMED | HB_CF_TX_CLAIMED));
	hb_or_acq_rel(&c->flags, HB_CF_FORKED | HB_CF_SHARED);
}

static void mark_shared_in_parent(int fd, struct hb_conn *c, void *arg)
{
	if (c->mode == HB_MODE_FRAME && c->kind == HB_KIND_CONNECTED)
		hb_frame_mark_shared(c, *(uint64_t *)arg);
}

void hb_frame_atfork_prepare(void)
{
	uint64_t now = hb_os_now_ms();

	hb_fd_foreach(mark_shared_in_parent, &now);
}

/* Every connection that is or may become framed (an accepted one still
 * waiting for a hello included). The child starts owning neither side,
 * whatever the parent's flags were when it forked (a thread of the parent
 * may have used the connection after the prepare handler cleared them),
 * and the parent's take-back of the send side (FORKED) is not its own. */
static void mark_inherited_in_child(int fd, struct hb_conn *c, void *arg)
{
	(void)arg;
	if (c->mode == HB_MODE_FRAME && c->kind == HB_KIND_CONNECTED) {
		hb_and_acq_rel(&c->flags, ~(HB_CF_CLAIMED | HB_CF_TX_CLAIMED | HB_CF_FORKED));
		hb_or_acq_rel(&c->flags, HB_CF_INHERITED | HB_CF_SHARED);
	}
}

void hb_frame_atfork_child(void)
{
	hb_lock_forget_tid();
	hb_fd_foreach(mark_inherited_in_child, NULL);
}

/* This process uses one side of the connection (side: HB_CF_CLAIMED for
 * the receive side, HB_CF_TX_CLAIMED for the send side): that side's
 * background work is its job from now on. A side claimed after a fork
 * starts from the decoder or encoder state the fork copied, which is
 * where the stream is: the other process has not used that side since,
 * or it would own it. Both processes reading, or both writing, is a
 * race of the application's that the frames do not survive (README). */
void hb_take_side(struct hb_conn *c, uint32_t side)
{
	uint32_t fl;

	/* Adopted across exec: timers start with the first use. */
	if (HB_UNLIKELY(!(hb_load_relaxed(&c->flags) & HB_CF_SCHEDULED)))
		hb_thread_schedule(c);
	fl = hb_load_relaxed(&c->flags);
	if (HB_UNLIKELY(fl & (HB_CF_FORKED | HB_CF_INHERITED | HB_CF_SHARED))) {
		/* FORKED is the parent's pending take-back of the send side
		 * (hb_frame_tick): only a write settles it. */
		uint32_t clear = HB_CF_INHERITED | (side == HB_CF_TX_CLAIMED ? HB_CF_FORKED : 0);
		uint32_t set = (fl & HB_CF_SHARED) ? side : 0;

		if ((fl & clear) || (set & ~fl)) {
			if (fl & clear)
				hb_and_acq_rel(&c->flags, ~clear);
			if (set & ~fl)
				hb_or_acq_rel(&c->flags, set);
			hb_thread_ensure();
		}
	}
}
