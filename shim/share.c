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
 * tick (tick.c) applies the parent's pause and take-back. It also keeps
 * the fork family's record of peer hellos taken (below).
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

/* The peer's hello, as the process of the fork family that took it saw it.
 * The hello is in the stream once: after a fork or a raw clone that went
 * ahead with the peer's direction undecided (an accepted connection whose
 * client's hello had not arrived: hand-overs do not wait for those), the
 * copy that reads first takes it, and a copy made later from a process
 * that never read (vsftpd's session process, which clones the pre-login
 * and then the post-login process) would take the frames behind it for a
 * raw stream's first bytes, and answer raw into a framed stream. A page
 * shared across fork and clone lists, by socket cookie (unique per boot),
 * the connections whose hello a process of the family took, with what the
 * hello said; a copy still undecided that finds its cookie there is framed
 * as that process decided, without a byte read or sent (hb_negotiate).
 * Only connections that crossed a fork or exec are listed. A ring: an
 * entry goes 256 decisions later, long after the copies of one connection
 * decided (an entry gone leaves a copy to look at the stream, as before).
 * A downgrade of the connection, ours or the peer's, takes its entry out
 * (hb_share_hello_forget): the stream is raw from there, and a copy that
 * looks at it sees raw bytes. A writer claims its slot by changing the
 * cookie it finds to SLOT_BUSY (it gives up, leaving nothing listed, when
 * another writer holds the slot) and writes the cookie last; a reader
 * takes the figures only when the slot held its cookie before and after
 * reading them: no copy takes another connection's figures for its own. */
#define HELLO_REC_MAX 256
#define SLOT_BUSY UINT64_MAX
struct hello_rec {
	_Atomic uint64_t cookie; /* 0: empty; SLOT_BUSY: being written */
	_Atomic uint32_t peer_interval_ms, peer_timeout_ms;
	_Atomic uint8_t peer_dg, txmode;
};
static struct {
	_Atomic uint32_t next;
	struct hello_rec e[HELLO_REC_MAX];
} *hello_recs;

void hb_share_record_init(void)
{
	if (!hello_recs)
		hello_recs = hb_os_mmap_shared(sizeof(*hello_recs));
}

int hb_share_hello_find(uint64_t cookie, struct hb_share_hello *h)
{
	if (!hello_recs || !cookie || cookie == SLOT_BUSY)
		return 0;
	for (int i = 0; i < HELLO_REC_MAX; i++) {
		struct hello_rec *e = &hello_recs->e[i];

		if (hb_load_acquire(&e->cookie) != cookie)
			continue;
		h->peer_interval_ms = hb_load_relaxed(&e->peer_interval_ms);
		h->peer_timeout_ms = hb_load_relaxed(&e->peer_timeout_ms);
		h->peer_dg = hb_load_relaxed(&e->peer_dg);
		h->txmode = hb_load_relaxed(&e->txmode);
		hb_fence_seq_cst();
		if (hb_load_relaxed(&e->cookie) == cookie)
			return 1;
	}
	return 0;
}

void hb_share_hello_publish(const struct hb_conn *c)
{
	struct hb_share_hello old;
	struct hello_rec *e;
	uint64_t was;

	if (!hello_recs || !c->cookie || c->cookie == SLOT_BUSY ||
	    !(hb_load_relaxed(&c->flags) & HB_CF_SHARED) || hb_share_hello_find(c->cookie, &old))
		return;
	e = &hello_recs->e[hb_add_acq_rel(&hello_recs->next, 1) % HELLO_REC_MAX];
	was = hb_load_acquire(&e->cookie);
	/* The claim is an acquire: the figures below are not written before it. */
	if (was == SLOT_BUSY || !hb_cas_strong_acq_rel(&e->cookie, &was, SLOT_BUSY))
		return;
	hb_store_relaxed(&e->peer_interval_ms, c->peer_interval_ms);
	hb_store_relaxed(&e->peer_timeout_ms, c->peer_timeout_ms);
	hb_store_relaxed(&e->peer_dg, c->peer_dg);
	hb_store_relaxed(&e->txmode, hb_load_relaxed(&c->txmode));
	hb_store_release(&e->cookie, c->cookie);
}

void hb_share_hello_forget(uint64_t cookie)
{
	if (!hello_recs || !cookie || cookie == SLOT_BUSY)
		return;
	for (int i = 0; i < HELLO_REC_MAX; i++) {
		uint64_t was = cookie;

		(void)hb_cas_strong_acq_rel(&hello_recs->e[i].cookie, &was, 0);
	}
}
