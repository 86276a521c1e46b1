/*
 * wheel.c - hierarchical timer wheel with cascading (the classic Linux
 * design): one level of 256 one-millisecond slots, then four levels of 64
 * slots, each slot 64 times wider than a slot of the level below.
 *
 * A timer goes to the finest level whose span covers its distance; when the
 * level-0 index wraps, the next slot of level 1 is re-distributed
 * (cascaded) downwards, and so on up. Every timer therefore fires exactly at
 * its millisecond, and a tick costs O(1) plus the timers that fire or
 * cascade: idle connections sitting on the higher levels cost nothing per
 * tick. Lists are intrusive and doubly linked, so cancelling (when the last
 * fd of a connection closes) is O(1) and done by the background thread when
 * it reaps; close() itself never walks a timer list.
 */
#include <string.h>

#include "hb.h"

#define L0_SIZE (1u << HB_WHEEL_L0_BITS)
#define LN_SIZE (1u << HB_WHEEL_LN_BITS)
#define L0_MASK (L0_SIZE - 1)
#define LN_MASK (LN_SIZE - 1)

static inline unsigned level_shift(int k) /* k >= 1 */
{
	return HB_WHEEL_L0_BITS + (unsigned)(k - 1) * HB_WHEEL_LN_BITS;
}

void hb_wheel_init(struct hb_wheel *w, uint64_t now_ms)
{
	memset(w, 0, sizeof(*w));
	w->now = now_ms;
}

static void link_head(struct hb_conn **head, struct hb_conn *c)
{
	c->wprev = NULL;
	c->wnext = *head;
	if (*head)
		(*head)->wprev = c;
	*head = c;
}

static struct hb_conn **slot_for(struct hb_wheel *w, uint64_t expires)
{
	uint64_t delta;

	if (expires <= w->now)
		return &w->l0[w->now & L0_MASK];
	delta = expires - w->now;
	if (delta < L0_SIZE)
		return &w->l0[expires & L0_MASK];
	for (int k = 1; k < HB_WHEEL_LEVELS; k++) {
		unsigned sh = level_shift(k) + HB_WHEEL_LN_BITS;

		if (delta < (1ull << sh) || k == HB_WHEEL_LEVELS - 1) {
			if (k == HB_WHEEL_LEVELS - 1 && delta >= (1ull << sh)) {
				/* Beyond the span (~49 days): park at the far end; it
				 * is cascaded again when that slot comes round. */
				expires = w->now + (1ull << sh) - 1;
			}
			return &w->ln[k - 1][(expires >> level_shift(k)) & LN_MASK];
		}
	}
	return NULL; /* not reached */
}

void hb_wheel_add(struct hb_wheel *w, struct hb_conn *c, uint64_t expires)
{
	c->wexpires = expires;
	c->wlinked = 1;
	link_head(slot_for(w, expires), c);
	w->count++;
}

/* Unlink c from whichever list holds it; head pointer found via prev==NULL. */
void hb_wheel_del(struct hb_wheel *w, struct hb_conn *c)
{
	if (!c->wlinked)
		return;
	if (c->wnext)
		c->wnext->wprev = c->wprev;
	if (c->wprev) {
		c->wprev->wnext = c->wnext;
	} else {
		/* c is a list head: find the slot that points at it. */
		struct hb_conn **s = slot_for(w, c->wexpires);

		if (*s != c) {
			/* The slot moved with time (cascade pending): search. */
			s = NULL;
			for (unsigned i = 0; i < L0_SIZE && !s; i++)
				if (w->l0[i] == c)
					s = &w->l0[i];
			for (int k = 0; k < HB_WHEEL_LEVELS - 1 && !s; k++)
				for (unsigned i = 0; i < LN_SIZE && !s; i++)
					if (w->ln[k][i] == c)
						s = &w->ln[k][i];
		}
		if (s)
			*s = c->wnext;
	}
	c->wprev = c->wnext = NULL;
	c->wlinked = 0;
	w->count--;
}

/* Move every timer of level k's slot idx to where it belongs now. */
static unsigned cascade(struct hb_wheel *w, int k, unsigned idx)
{
	struct hb_conn *c = w->ln[k - 1][idx], *next;

	w->ln[k - 1][idx] = NULL;
	for (; c; c = next) {
		next = c->wnext;
		link_head(slot_for(w, c->wexpires), c);
	}
	return idx;
}

void hb_wheel_advance(struct hb_wheel *w, uint64_t now_ms,
		      void (*fire)(struct hb_conn *c, void *arg), void *arg)
{
	if (!w->count) {
		if (now_ms > w->now)
			w->now = now_ms;
		return;
	}
	while (w->now <= now_ms) {
		unsigned idx = w->now & L0_MASK;
		struct hb_conn *c;

		if (!idx) {
			for (int k = 1; k < HB_WHEEL_LEVELS; k++)
				if (cascade(w, k, (w->now >> level_shift(k)) & LN_MASK))
					break;
		}
		/* Detach the slot first: fire() may re-add timers, and one due
		 * 256 ms from now lands in this very slot. */
		c = w->l0[idx];
		w->l0[idx] = NULL;
		w->now++;
		while (c) {
			struct hb_conn *next = c->wnext;

			c->wprev = c->wnext = NULL;
			c->wlinked = 0;
			w->count--;
			fire(c, arg);
			c = next;
		}
		if (!w->count) {
			if (now_ms >= w->now)
				w->now = now_ms + 1;
			break;
		}
	}
}

uint64_t hb_wheel_next(const struct hb_wheel *w)
{
	uint64_t best = UINT64_MAX;

	if (!w->count)
		return UINT64_MAX;
	for (unsigned d = 0; d < L0_SIZE; d++) {
		if (w->l0[(w->now + d) & L0_MASK]) {
			best = w->now + d;
			break;
		}
	}
	for (int k = 1; k < HB_WHEEL_LEVELS; k++) {
		unsigned sh = level_shift(k);
		uint64_t base = w->now >> sh;
		/* On a boundary of this level the slot at base is cascaded when
		 * the tick now runs, so it is still pending; otherwise it was
		 * cascaded already and what it holds is due a full turn later. */
		unsigned d0 = (w->now & ((1ull << sh) - 1)) ? 1 : 0;

		for (unsigned d = d0; d < d0 + LN_SIZE; d++) {
			if (w->ln[k - 1][(base + d) & LN_MASK]) {
				uint64_t t = (base + d) << sh;

				if (t < best)
					best = t;
				break;
			}
		}
	}
	return best;
}
