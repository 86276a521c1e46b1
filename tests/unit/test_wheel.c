/*
 * test_wheel.c - the hierarchical timer wheel (shim/wheel.c): exact firing
 * at every distance (level boundaries, cascades, past times), deletion of
 * heads, middles and tails of slot lists (also while a cascade is pending),
 * re-adding from inside the fire callback, hb_wheel_next never late, and a
 * randomized run against a reference model.
 *
 * The wheel only touches wprev/wnext/wexpires/wlinked, so connections come
 * from a plain calloc'ed array and are identified by their index.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "hb.h"

#define L0_SIZE (1u << HB_WHEEL_L0_BITS)
#define LN_SIZE (1u << HB_WHEEL_LN_BITS)

/* ------------------------------------------------------------ harness */

struct rec {
	uint64_t want;      /* expected firing tick; UINT64_MAX = must not fire */
	uint64_t fired_at;  /* tick it fired at (w->now - 1 inside fire) */
	uint64_t call_now;  /* now_ms of the advance call that fired it */
	uint64_t pass;      /* pass counter when it fired */
	unsigned fires;     /* how many times fire() saw it */
	unsigned readd;     /* re-add plan, consumed by fire (see re_add) */
	uint64_t readd_off[4];
	unsigned nreadd;
};

struct harness {
	struct hb_wheel w;
	struct hb_conn *conns;
	struct rec *recs;
	uint64_t *pend;         /* model tick of each linked timer, else MAX */
	size_t n;
	uint64_t call_now;      /* now_ms of the current advance call */
	uint64_t pass;          /* bumped around every advance call */
	uint64_t last_tick;     /* ticks must never go backwards */
	uint64_t nfired;
	uint64_t *order;        /* fired ticks in firing order (optional) */
	size_t norder, cap_order;
};

static struct harness *h_new(size_t n, uint64_t now)
{
	struct harness *h = calloc(1, sizeof(*h));

	assert_non_null(h);
	h->conns = calloc(n, sizeof(*h->conns));
	h->recs = calloc(n, sizeof(*h->recs));
	h->pend = calloc(n, sizeof(*h->pend));
	assert_non_null(h->conns);
	assert_non_null(h->recs);
	assert_non_null(h->pend);
	h->n = n;
	for (size_t i = 0; i < n; i++)
		h->recs[i].want = h->pend[i] = UINT64_MAX;
	hb_wheel_init(&h->w, now);
	assert_int_equal(h->w.now, now);
	assert_int_equal(h->w.count, 0);
	return h;
}

static void h_free(struct harness *h)
{
	free(h->conns);
	free(h->recs);
	free(h->pend);
	free(h->order);
	free(h);
}

static size_t idx_of(struct harness *h, struct hb_conn *c)
{
	assert_true(c >= h->conns && c < h->conns + h->n);
	return (size_t)(c - h->conns);
}

/* Add conn i to fire at expires; the model says it fires at the first tick
 * not yet processed if expires is already past. */
static void h_add(struct harness *h, size_t i, uint64_t expires)
{
	struct hb_conn *c = &h->conns[i];
	uint32_t before = h->w.count;

	assert_int_equal(c->wlinked, 0);
	hb_wheel_add(&h->w, c, expires);
	assert_int_equal(c->wlinked, 1);
	assert_int_equal(c->wexpires, expires);
	assert_int_equal(h->w.count, before + 1);
	h->recs[i].want = expires > h->w.now ? expires : h->w.now;
	h->pend[i] = h->recs[i].want;
}

static void fire_cb(struct hb_conn *c, void *arg)
{
	struct harness *h = arg;
	size_t i = idx_of(h, c);
	struct rec *r = &h->recs[i];
	uint64_t tick = h->w.now - 1;

	/* Unlinked before the call. */
	assert_int_equal(c->wlinked, 0);
	assert_null(c->wprev);
	assert_null(c->wnext);
	if (tick < h->last_tick)
		fail_msg("timer %zu fired at tick %llu after tick %llu", i,
			 (unsigned long long)tick, (unsigned long long)h->last_tick);
	h->last_tick = tick;
	if (tick > h->call_now)
		fail_msg("timer %zu fired at tick %llu during advance(%llu)", i,
			 (unsigned long long)tick, (unsigned long long)h->call_now);
	if (r->want == UINT64_MAX)
		fail_msg("timer %zu fired at %llu but was not expected to fire", i,
			 (unsigned long long)tick);
	if (tick != r->want)
		fail_msg("timer %zu (expires %llu) fired at tick %llu, want %llu", i,
			 (unsigned long long)c->wexpires, (unsigned long long)tick,
			 (unsigned long long)r->want);
	r->fires++;
	r->fired_at = tick;
	r->call_now = h->call_now;
	r->pass = h->pass;
	r->want = UINT64_MAX; /* a second firing is an error unless re-added */
	h->pend[i] = UINT64_MAX;
	h->nfired++;
	if (h->order) {
		assert_true(h->norder < h->cap_order);
		h->order[h->norder++] = tick;
	}
	if (r->readd < r->nreadd) {
		uint64_t off = r->readd_off[r->readd++];

		/* off is relative to the tick being processed. */
		h_add(h, i, tick + off);
	}
}

static void h_advance(struct harness *h, uint64_t now)
{
	h->call_now = now;
	h->pass++;
	hb_wheel_advance(&h->w, now, fire_cb, h);
	h->pass++;
}

/* Walk every slot list: links consistent, every node linked, total count. */
static void h_check_lists(struct harness *h)
{
	uint32_t total = 0;
	struct hb_conn **slots[1 + HB_WHEEL_LEVELS - 1];
	unsigned sizes[1 + HB_WHEEL_LEVELS - 1];

	slots[0] = h->w.l0;
	sizes[0] = L0_SIZE;
	for (int k = 0; k < HB_WHEEL_LEVELS - 1; k++) {
		slots[k + 1] = h->w.ln[k];
		sizes[k + 1] = LN_SIZE;
	}
	for (int lv = 0; lv < HB_WHEEL_LEVELS; lv++) {
		for (unsigned s = 0; s < sizes[lv]; s++) {
			struct hb_conn *prev = NULL;

			for (struct hb_conn *c = slots[lv][s]; c; prev = c, c = c->wnext) {
				idx_of(h, c);
				if (c->wprev != prev)
					fail_msg("level %d slot %u: bad wprev at timer %zu", lv, s,
						 idx_of(h, c));
				if (!c->wlinked)
					fail_msg("level %d slot %u: unlinked timer %zu on a list",
						 lv, s, idx_of(h, c));
				total++;
				assert_true(total <= h->n);
			}
		}
	}
	assert_int_equal(total, h->w.count);
}

static int h_on_any_list(struct harness *h, struct hb_conn *c)
{
	for (unsigned s = 0; s < L0_SIZE; s++)
		for (struct hb_conn *x = h->w.l0[s]; x; x = x->wnext)
			if (x == c)
				return 1;
	for (int k = 0; k < HB_WHEEL_LEVELS - 1; k++)
		for (unsigned s = 0; s < LN_SIZE; s++)
			for (struct hb_conn *x = h->w.ln[k][s]; x; x = x->wnext)
				if (x == c)
					return 1;
	return 0;
}

static void h_del(struct harness *h, size_t i)
{
	struct hb_conn *c = &h->conns[i];
	uint32_t before = h->w.count;

	assert_int_equal(c->wlinked, 1);
	hb_wheel_del(&h->w, c);
	assert_int_equal(c->wlinked, 0);
	assert_int_equal(h->w.count, before - 1);
	assert_false(h_on_any_list(h, c));
	h->recs[i].want = h->pend[i] = UINT64_MAX;
	h_check_lists(h);
}

/* Earliest tick any pending timer is due (its model firing tick). */
static uint64_t h_min_pending(struct harness *h)
{
	uint64_t m = UINT64_MAX;

	for (size_t i = 0; i < h->n; i++)
		if (h->pend[i] < m)
			m = h->pend[i];
	return m;
}

static void h_check_next(struct harness *h)
{
	uint64_t next = hb_wheel_next(&h->w), m = h_min_pending(h);

	if (m == UINT64_MAX) {
		assert_int_equal(h->w.count, 0);
		if (next != UINT64_MAX)
			fail_msg("empty wheel: next %llu, want UINT64_MAX",
				 (unsigned long long)next);
		return;
	}
	if (next > m)
		fail_msg("hb_wheel_next %llu is later than the earliest pending tick %llu "
			 "(wheel now %llu)",
			 (unsigned long long)next, (unsigned long long)m,
			 (unsigned long long)h->w.now);
	if (next < h->w.now)
		fail_msg("hb_wheel_next %llu is before the wheel's now %llu",
			 (unsigned long long)next, (unsigned long long)h->w.now);
}

/* ------------------------------------------------------------ distances */

static const uint64_t dists[] = {
	0, 1, 2, 254, 255, 256, 257, 511, 512, 1000, 16383, 16384, 16385, 20000,
	65535, 65536, (1u << 20) - 1, 1u << 20, (1u << 20) + 1, 1000000,
};
#define NDISTS (sizeof(dists) / sizeof(dists[0]))

static void add_distances(struct harness *h, uint64_t now0, size_t *n)
{
	size_t i = 0;

	for (size_t d = 0; d < NDISTS; d++)
		h_add(h, i++, now0 + dists[d]);
	/* Past times fire at the first tick processed. */
	h_add(h, i++, now0 - 1);
	h_add(h, i++, now0 >= 300 ? now0 - 300 : 0);
	h_add(h, i++, 0);
	/* Two timers with the same expiry share a list. */
	h_add(h, i++, now0 + 16384);
	h_add(h, i++, now0 + 255);
	*n = i;
	h_check_lists(h);
}

static void run_steps(uint64_t now0)
{
	size_t n;
	struct harness *h = h_new(64, now0);
	uint64_t want[64];
	uint64_t end = now0 + (1u << 20) + 2;

	add_distances(h, now0, &n);
	for (size_t i = 0; i < n; i++)
		want[i] = h->recs[i].want;
	for (uint64_t t = now0; t <= end; t++) {
		/* hb_wheel_next is O(slots): check it densely near the start and
		 * at every level-0 wrap, sparsely elsewhere. */
		if (t < now0 + 70000 || (t & 0xff) == 0xff || (t & 0xff) == 0 || t % 97 == 0)
			h_check_next(h);
		h_advance(h, t);
	}
	for (size_t i = 0; i < n; i++) {
		struct rec *r = &h->recs[i];

		if (r->fires != 1)
			fail_msg("timer %zu (expires %llu): fired %u times", i,
				 (unsigned long long)h->conns[i].wexpires, r->fires);
		/* 1 ms steps: the call that fires it is the expiry tick itself. */
		assert_int_equal(r->fired_at, want[i]);
		assert_int_equal(r->call_now, want[i]);
	}
	assert_int_equal(h->nfired, n);
	assert_int_equal(h->w.count, 0);
	assert_int_equal(hb_wheel_next(&h->w), UINT64_MAX);
	h_free(h);
}

static void test_distances_1ms(void **state)
{
	run_steps(5000);  /* unaligned start */
}

static void test_distances_1ms_aligned(void **state)
{
	run_steps(1u << 14); /* start on a level-0 and level-1 wrap */
}

static void test_distances_1ms_odd(void **state)
{
	run_steps(((uint64_t)1 << 32) + 16383); /* just before a level-1 wrap */
}

static void run_jumps(uint64_t now0, uint64_t step, int far)
{
	size_t n;
	struct harness *h = h_new(64, now0);
	uint64_t want[64];
	uint64_t t = now0, prev = now0 - 1;

	add_distances(h, now0, &n);
	/* Far levels too (big jumps only: per-tick stepping would be slow). */
	if (far) {
		h_add(h, n++, now0 + (1u << 26) - 1);
		h_add(h, n++, now0 + (1u << 26));
		h_add(h, n++, now0 + (1u << 26) + 12345);
	}
	for (size_t i = 0; i < n; i++)
		want[i] = h->recs[i].want;
	for (;;) {
		h_check_next(h);
		h_advance(h, t);
		h_check_lists(h);
		for (size_t i = 0; i < n; i++) {
			struct rec *r = &h->recs[i];

			/* Fired in the call whose range covers it, never before. */
			if (want[i] <= t && want[i] > prev) {
				if (r->fires != 1 || r->call_now != t)
					fail_msg("timer %zu (tick %llu): fires %u, call %llu, want "
						 "one in advance(%llu)",
						 i, (unsigned long long)want[i], r->fires,
						 (unsigned long long)r->call_now,
						 (unsigned long long)t);
			} else if (want[i] > t) {
				assert_int_equal(r->fires, 0);
			}
		}
		if (!h->w.count)
			break;
		prev = t;
		t += step;
	}
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(h->recs[i].fires, 1);
		/* Cascading makes even a jump fire each timer at its own tick. */
		assert_int_equal(h->recs[i].fired_at, want[i]);
	}
	assert_int_equal(h->nfired, n);
	assert_int_equal(hb_wheel_next(&h->w), UINT64_MAX);
	h_free(h);
}

static void test_distances_jumps(void **state)
{
	run_jumps(5000, 1000, 0);
	run_jumps(5000, 65536, 0);
	run_jumps(123456789, 1000003, 1);
	run_jumps(1u << 20, 1u << 22, 0);
	run_jumps(77, 1u << 30, 0); /* one jump past everything */
}

/* A single huge jump fires everything once, in tick order. */
static void test_single_jump_order(void **state)
{
	struct harness *h = h_new(64, 1000);
	size_t n;

	h->cap_order = 64;
	h->order = calloc(h->cap_order, sizeof(uint64_t));
	add_distances(h, 1000, &n);
	h_advance(h, 1000 + 2000000);
	assert_int_equal(h->nfired, n);
	for (size_t i = 1; i < h->norder; i++)
		assert_true(h->order[i - 1] <= h->order[i]);
	/* The wheel's now moved past the call's now_ms. */
	assert_true(h->w.now > 1000 + 2000000);
	h_free(h);
}

/* A timer added after a jump over an empty wheel fires at its tick. */
static void test_empty_jump_then_add(void **state)
{
	struct harness *h = h_new(8, 0);

	h_advance(h, 1000000);
	assert_int_equal(h->nfired, 0);
	assert_int_equal(hb_wheel_next(&h->w), UINT64_MAX);
	h_add(h, 0, 1000000 + 300);
	h_add(h, 1, 1000000 + 5);
	h_add(h, 2, 999999); /* past */
	h_check_next(h);
	for (uint64_t t = 1000000; t <= 1000000 + 300; t++) {
		h_check_next(h);
		h_advance(h, t);
	}
	assert_int_equal(h->recs[0].fires, 1);
	assert_int_equal(h->recs[0].fired_at, 1000300);
	assert_int_equal(h->recs[1].fired_at, 1000005);
	assert_int_equal(h->recs[2].fires, 1);
	assert_true(h->recs[2].fired_at <= 1000001);
	assert_int_equal(h->w.count, 0);
	h_free(h);
}

/* ------------------------------------------------------------ delete */

/* Three timers on one list (link_head order: c, b, a), delete one of them. */
static void del_one_of_three(uint64_t now0, uint64_t expires, int which)
{
	struct harness *h = h_new(4, now0);

	h_add(h, 0, expires); /* tail */
	h_add(h, 1, expires); /* middle */
	h_add(h, 2, expires); /* head */
	h_add(h, 3, expires + 1); /* a neighbour, on the same or another list */
	h_check_lists(h);
	h_del(h, (size_t)which);
	/* Deleting an unlinked timer is a no-op. */
	hb_wheel_del(&h->w, &h->conns[which]);
	assert_int_equal(h->w.count, 3);
	h_check_lists(h);
	for (uint64_t t = now0; t <= expires + 2; t += 1 + (expires - now0) / 5000)
		h_advance(h, t);
	h_advance(h, expires + 2);
	for (int i = 0; i < 4; i++)
		assert_int_equal(h->recs[i].fires, i == which ? 0 : 1);
	assert_int_equal(h->recs[(which + 1) % 3].fired_at, expires);
	assert_int_equal(h->recs[3].fired_at, expires + 1);
	assert_int_equal(h->w.count, 0);
	h_free(h);
}

static void test_del_head_middle_tail(void **state)
{
	static const uint64_t dist[] = { 0, 10, 255, 300, 20000, 2000000, 70000000 };

	for (size_t d = 0; d < sizeof(dist) / sizeof(dist[0]); d++)
		for (int which = 0; which < 3; which++)
			del_one_of_three(4242, 4242 + dist[d], which);
}

/* Delete a higher-level timer after time moved but before its cascade:
 * slot_for now points elsewhere, the head must still be found. */
static void test_del_cascade_pending(void **state)
{
	for (int which = 0; which < 3; which++) {
		struct harness *h = h_new(4, 0);

		h_add(h, 0, 300); /* level 1, slot 1: list 2, 1, 0 */
		h_add(h, 1, 310);
		h_add(h, 2, 320);
		h_add(h, 3, 40000); /* level 2 */
		for (uint64_t t = 0; t <= 100; t++)
			h_advance(h, t);
		h_check_lists(h);
		h_del(h, (size_t)which);
		h_check_next(h);
		for (uint64_t t = 101; t <= 400; t++) {
			h_check_next(h);
			h_advance(h, t);
		}
		for (int i = 0; i < 3; i++)
			assert_int_equal(h->recs[i].fires, i == which ? 0 : 1);
		/* Level-2 timer: delete it while its cascade is pending too
		 * (it is the only one, so the head of its list). */
		assert_int_equal(h->w.count, 1);
		for (uint64_t t = 401; t <= 30000; t += 13)
			h_advance(h, t);
		h_del(h, 3);
		assert_int_equal(h->w.count, 0);
		assert_int_equal(hb_wheel_next(&h->w), UINT64_MAX);
		h_advance(h, 50000);
		assert_int_equal(h->recs[3].fires, 0);
		h_free(h);
	}
}

/* After a cascade moved a list down, delete from its new home. */
static void test_del_after_cascade(void **state)
{
	struct harness *h = h_new(4, 0);

	h_add(h, 0, 600); /* level 1 slot 2, cascaded to level 0 at 512 */
	h_add(h, 1, 600);
	h_add(h, 2, 600);
	h_add(h, 3, 601);
	for (uint64_t t = 0; t <= 520; t++)
		h_advance(h, t);
	h_check_lists(h);
	h_del(h, 0); /* cascade reverses the order: whichever is head now */
	h_del(h, 2);
	for (uint64_t t = 521; t <= 700; t++)
		h_advance(h, t);
	assert_int_equal(h->recs[0].fires, 0);
	assert_int_equal(h->recs[1].fires, 1);
	assert_int_equal(h->recs[1].fired_at, 600);
	assert_int_equal(h->recs[2].fires, 0);
	assert_int_equal(h->recs[3].fired_at, 601);
	h_free(h);
}

/* A timer beyond the wheel's span (parked on the last level). */
static void test_beyond_span(void **state)
{
	struct harness *h = h_new(4, 1000);
	uint64_t far = 1000 + ((uint64_t)1 << 34);

	h_add(h, 0, far);
	h_add(h, 1, far + 1);
	h_check_lists(h);
	h_check_next(h);
	for (uint64_t t = 1000; t < 1000 + 4 * 65536; t += 4097) {
		h_advance(h, t);
		h_check_next(h);
	}
	h_del(h, 1);
	h_del(h, 0);
	assert_int_equal(hb_wheel_next(&h->w), UINT64_MAX);
	assert_int_equal(h->nfired, 0);
	h_free(h);
}

/* ------------------------------------------------------------ re-add */

/* Re-adding from fire: at tick + 256 the timer lands in the very slot being
 * processed and must fire 256 ms later, not in the same pass. */
static void test_readd_from_fire(void **state)
{
	struct harness *h = h_new(4, 1000);

	h->recs[0].nreadd = 4;
	h->recs[0].readd_off[0] = 256; /* the slot being processed */
	h->recs[0].readd_off[1] = 0;   /* "now": the next tick */
	h->recs[0].readd_off[2] = 1;
	h->recs[0].readd_off[3] = 16384;
	h_add(h, 0, 1010);
	h->recs[1].nreadd = 1;
	h->recs[1].readd_off[0] = 256;
	h_add(h, 1, 1010); /* same slot, same pass */

	/* One big advance: each re-add fires later in the same call, at its
	 * own tick, never twice in the same tick. */
	h->cap_order = 16;
	h->order = calloc(h->cap_order, sizeof(uint64_t));
	h_advance(h, 1010);
	assert_int_equal(h->recs[0].fires, 1);
	assert_int_equal(h->recs[1].fires, 1);
	assert_int_equal(h->w.count, 2);
	assert_int_equal(h->recs[0].want, 1010 + 256);
	h_check_next(h);
	for (uint64_t t = 1011; t <= 1010 + 256 - 1; t++)
		h_advance(h, t);
	assert_int_equal(h->recs[0].fires, 1);
	h_advance(h, 1266);
	assert_int_equal(h->recs[0].fires, 2);
	assert_int_equal(h->recs[0].fired_at, 1266);
	assert_int_equal(h->recs[1].fires, 2);
	assert_int_equal(h->recs[1].fired_at, 1266);
	/* offset 0 from tick 1266 -> 1267 (next tick, not this pass). */
	assert_int_equal(h->recs[0].want, 1267);
	h_advance(h, 1266);
	assert_int_equal(h->recs[0].fires, 2);
	h_advance(h, 1267);
	assert_int_equal(h->recs[0].fires, 3);
	assert_int_equal(h->recs[0].fired_at, 1267);
	h_advance(h, 1268);
	assert_int_equal(h->recs[0].fires, 4);
	assert_int_equal(h->recs[0].fired_at, 1268);
	h_advance(h, 1268 + 20000);
	assert_int_equal(h->recs[0].fires, 5);
	assert_int_equal(h->recs[0].fired_at, 1268 + 16384);
	assert_int_equal(h->w.count, 0);
	h_free(h);
}

/* Re-add at +256 inside a big advance across many slot reuses. */
static void test_readd_chain(void **state)
{
	struct harness *h = h_new(1, 0);
	struct rec *r = &h->recs[0];

	r->nreadd = 4;
	for (int i = 0; i < 4; i++)
		r->readd_off[i] = 256;
	h_add(h, 0, 7);
	h->cap_order = 8;
	h->order = calloc(h->cap_order, sizeof(uint64_t));
	h_advance(h, 5000);
	assert_int_equal(r->fires, 5);
	assert_int_equal(h->norder, 5);
	for (int i = 0; i < 5; i++)
		assert_int_equal(h->order[i], 7 + 256 * (uint64_t)i);
	h_free(h);
}

/* ------------------------------------------------------------ next */

static void test_next_empty_and_levels(void **state)
{
	struct harness *h = h_new(4, 0);

	assert_int_equal(hb_wheel_next(&h->w), UINT64_MAX);
	h_add(h, 0, 100);
	assert_int_equal(hb_wheel_next(&h->w), 100);
	h_del(h, 0);
	assert_int_equal(hb_wheel_next(&h->w), UINT64_MAX);
	/* Past timer: due at once. */
	h_add(h, 0, 0);
	assert_int_equal(hb_wheel_next(&h->w), 0);
	h_advance(h, 0);
	assert_int_equal(hb_wheel_next(&h->w), UINT64_MAX);
	h_add(h, 1, 50000); /* level 2 */
	assert_true(hb_wheel_next(&h->w) <= 50000);
	assert_true(hb_wheel_next(&h->w) >= h->w.now);
	h_free(h);
}

/* The level-1 slot cascaded at an aligned tick that is not processed yet
 * holds timers due within the next 256 ms: next must not skip it. */
static void test_next_cascade_pending_at_now(void **state)
{
	struct harness *h = h_new(4, 0);

	h_add(h, 0, 300); /* level 1 slot 1, cascaded when tick 256 runs */
	for (uint64_t t = 0; t <= 255; t++) {
		h_check_next(h);
		h_advance(h, t);
	}
	assert_int_equal(h->w.now, 256);
	h_check_next(h); /* next <= 300 */
	h_advance(h, 256);
	assert_int_equal(hb_wheel_next(&h->w), 300);

	/* Same one level up: a level-2 timer whose slot cascades at 2^15. */
	h_add(h, 1, 32768 + 100);
	for (uint64_t t = 257; t < 32768; t += 251)
		h_advance(h, t);
	h_advance(h, 32767);
	assert_int_equal(h->w.now, 32768);
	h_check_next(h);
	h_advance(h, 32768 + 100);
	assert_int_equal(h->recs[1].fired_at, 32768 + 100);
	h_free(h);
}

/* ------------------------------------------------------------ random */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	/* xorshift64* */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

static uint64_t rnd_dist(void)
{
	switch (rnd() % 8) {
	case 0: return rnd() % 300;
	case 1: return rnd() % 20000;
	case 2: return 250 + rnd() % 12;               /* around the l0 span */
	case 3: return 16380 + rnd() % 10;             /* around level 1 */
	case 4: return rnd() % 2000000;
	case 5: return (1u << 20) - 4 + rnd() % 8;     /* around level 2 */
	case 6: return rnd() % 5000;
	default: return rnd() % 100000;
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void random_run(uint64_t seed, uint64_t now0, int step_mode)
{
	enum { N = 10000 };
	struct harness *h = h_new(N, now0);
	uint64_t *expect = calloc(2 * N, sizeof(uint64_t));
	size_t nexpect = 0, ndeleted = 0, added = 0;
	uint64_t t = now0;

	rng_state = seed;
	h->cap_order = 2 * N;
	h->order = calloc(h->cap_order, sizeof(uint64_t));
	assert_non_null(expect);
	/* Most timers at the start, some of them past. */
	for (size_t i = 0; i < N / 2; i++, added++) {
		uint64_t d = rnd_dist();

		if (rnd() % 50 == 0)
			h_add(h, i, now0 > d ? now0 - d : 0);
		else
			h_add(h, i, now0 + d);
		/* A few re-add themselves once from fire. */
		if (rnd() % 10 == 0) {
			h->recs[i].nreadd = 1;
			h->recs[i].readd_off[0] = rnd() % 4 == 0 ? 256 : rnd_dist();
		}
	}
	h_check_lists(h);
	while (h->w.count || added < N) {
		uint64_t step;

		/* Sometimes add, sometimes delete, before advancing. */
		for (int k = 0; k < 16 && added < N; k++, added++) {
			if (rnd() % 4 == 0)
				break;
			h_add(h, added, t + rnd_dist());
		}
		if (rnd() % 4 == 0) {
			size_t i = rnd() % added;

			if (h->conns[i].wlinked) {
				hb_wheel_del(&h->w, &h->conns[i]);
				assert_int_equal(h->conns[i].wlinked, 0);
				h->recs[i].want = h->pend[i] = UINT64_MAX;
				h->recs[i].nreadd = 0;
				ndeleted++;
			}
		}
		h_check_next(h);
		switch (step_mode) {
		case 0: step = 1 + rnd() % 700; break;
		case 1: step = rnd() % 2 ? 1 : 1 + rnd() % 70000; break;
		default:
			/* Land right before level-0 wraps a lot (next's edge). */
			step = ((t | 0xff) + 1) - t - 1;
			if (step == 0)
				step = 1 + (rnd() % 3) * 256;
			break;
		}
		t += step;
		h_advance(h, t);
	}
	h_check_lists(h);
	/* Model: every firing happened at its exact tick (checked in fire_cb);
	 * collect the expected multiset from the records. */
	for (size_t i = 0; i < N; i++) {
		struct rec *r = &h->recs[i];

		assert_true(r->fires <= 1 + r->nreadd);
		assert_int_equal(r->want, UINT64_MAX); /* nothing left pending */
		nexpect += r->fires;
	}
	assert_int_equal(nexpect, h->norder);
	assert_int_equal(h->nfired, h->norder);
	/* Every timer not deleted fired at least once. */
	{
		size_t never = 0;

		for (size_t i = 0; i < N; i++)
			if (!h->recs[i].fires)
				never++;
		assert_true(never <= ndeleted);
		assert_true(h->norder + ndeleted >= N);
	}
	/* Firing order equals the sorted order of firing ticks. */
	memcpy(expect, h->order, h->norder * sizeof(uint64_t));
	qsort(expect, h->norder, sizeof(uint64_t), cmp_u64);
	for (size_t i = 0; i < h->norder; i++)
		if (expect[i] != h->order[i])
			fail_msg("firing %zu at %llu out of order (sorted %llu)", i,
				 (unsigned long long)h->order[i], (unsigned long long)expect[i]);
	assert_int_equal(h->w.count, 0);
	assert_int_equal(hb_wheel_next(&h->w), UINT64_MAX);
	free(expect);
	h_free(h);
}

/* Pure model check without deletes/re-adds: the firing sequence is exactly
 * the sorted list of expiries (clamped to the start for past ones). */
static void test_random_sorted_model(void **state)
{
	enum { N = 10000 };
	struct harness *h = h_new(N, 777);
	uint64_t *sorted = calloc(N, sizeof(uint64_t));
	uint64_t t = 777;

	assert_non_null(sorted);
	rng_state = 12345;
	h->cap_order = N;
	h->order = calloc(N, sizeof(uint64_t));
	for (size_t i = 0; i < N; i++) {
		uint64_t d = rnd_dist();

		h_add(h, i, rnd() % 100 == 0 ? 777 - (d % 777) : 777 + d);
		sorted[i] = h->recs[i].want;
	}
	qsort(sorted, N, sizeof(uint64_t), cmp_u64);
	while (h->w.count) {
		h_check_next(h);
		t += 1 + rnd() % 3000;
		h_advance(h, t);
	}
	assert_int_equal(h->norder, N);
	for (size_t i = 0; i < N; i++) {
		assert_int_equal(h->order[i], sorted[i]);
		assert_int_equal(h->recs[i].fires, 1);
	}
	free(sorted);
	h_free(h);
}

static void test_random_mixed(void **state)
{
	random_run(1, 1000, 0);
	random_run(2, 0, 1);
	random_run(3, ((uint64_t)1 << 33) + 100, 2);
	random_run(4, 65535, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_distances_1ms),
		cmocka_unit_test(test_distances_1ms_aligned),
		cmocka_unit_test(test_distances_1ms_odd),
		cmocka_unit_test(test_distances_jumps),
		cmocka_unit_test(test_single_jump_order),
		cmocka_unit_test(test_empty_jump_then_add),
		cmocka_unit_test(test_del_head_middle_tail),
		cmocka_unit_test(test_del_cascade_pending),
		cmocka_unit_test(test_del_after_cascade),
		cmocka_unit_test(test_beyond_span),
		cmocka_unit_test(test_readd_from_fire),
		cmocka_unit_test(test_readd_chain),
		cmocka_unit_test(test_next_empty_and_levels),
		cmocka_unit_test(test_next_cascade_pending_at_now),
		cmocka_unit_test(test_random_sorted_model),
		cmocka_unit_test(test_random_mixed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
