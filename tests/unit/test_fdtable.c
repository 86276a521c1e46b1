/*
 * test_fdtable.c - the per-fd table and its close guard (shim/fdtable.c)
 * with the connection pool (shim/conn.c): install/forget in and beyond the
 * first chunk and out of range, dup'd fds sharing one connection, stale
 * entry purge, the split dup2 protocol, range forget across chunks,
 * generations, pinning (stale generation, SO_COOKIE mismatch), the close
 * guard, fork repair, and a multi-threaded install/forget vs. pin stress.
 *
 * Test fd numbers are mostly not real fds: the table only cares about
 * numbers, except where pinning checks SO_COOKIE (real sockets there).
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "hb.h"

/* ------------------------------------------------------------ helpers */

static uint64_t word_of(int fd)
{
	struct hb_fdent *e = hb_fd_entry(fd, 0);

	assert_non_null(e);
	return hb_load_acquire(&e->word);
}

static struct hb_conn *new_conn(void)
{
	struct hb_conn *c = hb_conn_alloc();

	assert_non_null(c);
	assert_int_equal(hb_load_relaxed(&c->refs), 0);
	for (int i = 0; i < HB_CONN_FDS; i++)
		assert_int_equal(hb_load_relaxed(&c->fds[i]), -1);
	assert_int_equal(hb_load_relaxed(&c->flags), 0);
	return c;
}

/* Slot of c holding fd, or -1. */
static int slot_of(struct hb_conn *c, int fd)
{
	for (int i = 0; i < HB_CONN_FDS; i++)
		if (hb_load_relaxed(&c->fds[i]) == fd)
			return i;
	return -1;
}

/* fd is ACTIVE with conn c, not busy, and c records it with the entry's gen. */
static void assert_active(int fd, struct hb_conn *c)
{
	uint64_t w = word_of(fd);
	int s = slot_of(c, fd);

	assert_int_equal(HB_FD_STATE(w), HB_FD_ACTIVE);
	assert_int_equal(HB_FD_BUSY(w), 0);
	assert_ptr_equal(hb_fd_conn(fd), c);
	if (s < 0)
		fail_msg("fd %d not in the connection's fd slots", fd);
	assert_int_equal(hb_load_relaxed(&c->fdgens[s]), HB_FD_GEN(w));
}

static void assert_empty(int fd, uint32_t gen)
{
	uint64_t w = word_of(fd);

	assert_int_equal(HB_FD_STATE(w), HB_FD_EMPTY);
	assert_int_equal(HB_FD_BUSY(w), 0);
	assert_int_equal(HB_FD_GEN(w), gen);
	assert_null(hb_fd_conn(fd));
}

/* Install c on fd, which must be untracked; returns the generation. */
static uint32_t install_ok(int fd, struct hb_conn *c)
{
	uint32_t refs = hb_load_relaxed(&c->refs);
	struct hb_fdent *e = hb_fd_entry(fd, 0);
	uint32_t gen = e ? HB_FD_GEN(hb_load_acquire(&e->word)) : 0;

	if (e)
		assert_int_equal(HB_FD_STATE(hb_load_acquire(&e->word)), HB_FD_EMPTY);
	assert_int_equal(hb_fd_install(fd, c), 0);
	assert_int_equal(hb_load_relaxed(&c->refs), refs + 1);
	assert_active(fd, c);
	assert_int_equal(HB_FD_GEN(word_of(fd)), gen);
	return gen;
}

/* Empty the reap stack, returning how many were on it; frees them. */
static unsigned drain_reap(struct hb_conn *want)
{
	unsigned n = 0, found = 0;
	struct hb_conn *c, *next;

	for (c = hb_conn_take_reap(); c; c = next) {
		next = hb_conn_at(c->reap_next);
		if (c == want)
			found = 1;
		hb_conn_free(c);
		n++;
	}
	if (want)
		assert_true(found);
	return n;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int tcp_socket(void)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(s >= 0);
	return s;
}

/* ------------------------------------------------------------ basics */

static void test_install_forget(void **state)
{
	static const int fds[] = { 3, 4095, 4096, 5000, 1048575 };

	for (size_t k = 0; k < sizeof(fds) / sizeof(fds[0]); k++) {
		int fd = fds[k];
		struct hb_conn *c = new_conn();
		uint32_t inuse = hb_conn_in_use(), cgen = hb_load_relaxed(&c->gen), gen;

		gen = install_ok(fd, c);
		assert_non_null(hb_load_acquire(&hb_fd_chunks[fd >> HB_FD_CHUNK_SHIFT]));
		assert_ptr_equal(hb_fd_entry(fd, 0), hb_fd_entry(fd, 1));
		assert_int_equal(slot_of(c, fd), 0);
		assert_int_equal(hb_conn_in_use(), inuse);

		assert_int_equal(hb_fd_forget(fd), 1);
		assert_empty(fd, gen + 1);
		assert_int_equal(hb_load_relaxed(&c->refs), 0);
		assert_int_equal(slot_of(c, fd), -1);
		/* Last fd, not scheduled: straight back to the pool. */
		assert_true(hb_load_relaxed(&c->flags) & HB_CF_RELEASED);
		assert_int_equal(hb_conn_in_use(), inuse - 1);
		assert_int_equal(hb_load_relaxed(&c->gen), cgen + 1);

		/* Forgetting again: untracked, nothing changes. */
		assert_int_equal(hb_fd_forget(fd), 0);
		assert_empty(fd, gen + 1);
		assert_int_equal(hb_conn_in_use(), inuse - 1);
	}
}

static void test_out_of_range(void **state)
{
	struct hb_conn *c = new_conn();
	uint32_t inuse = hb_conn_in_use();

	assert_null(hb_fd_entry(1 << 20, 1));
	assert_null(hb_fd_entry(-1, 1));
	assert_null(hb_fd_entry(INT_MAX, 1));
	assert_int_equal(hb_fd_install(1 << 20, c), -ENOMEM);
	assert_int_equal(hb_fd_install(-1, c), -ENOMEM);
	assert_int_equal(hb_fd_install(INT_MAX, c), -ENOMEM);
	assert_int_equal(hb_load_relaxed(&c->refs), 0);
	assert_int_equal(slot_of(c, 1 << 20), -1);
	assert_null(hb_fd_conn(1 << 20));
	assert_null(hb_fd_conn(-1));
	assert_int_equal(hb_fd_forget(1 << 20), 0);
	assert_int_equal(hb_fd_forget(-1), 0);
	assert_int_equal(hb_fd_forget_begin(1 << 20), 0);
	hb_fd_forget_end(1 << 20, 1);
	assert_int_equal(hb_conn_in_use(), inuse);
	/* Never published: the caller frees it. */
	hb_conn_free(c);
	assert_int_equal(hb_conn_in_use(), inuse - 1);

	/* Looking up an fd of an unmapped chunk maps nothing. */
	assert_null(hb_load_acquire(&hb_fd_chunks[700000 >> HB_FD_CHUNK_SHIFT]));
	assert_null(hb_fd_entry(700000, 0));
	assert_null(hb_fd_conn(700000));
	assert_int_equal(hb_fd_forget(700000), 0);
	assert_int_equal(hb_fd_forget_begin(700000), 0);
	hb_fd_forget_range(700000, 700100);
	assert_null(hb_load_acquire(&hb_fd_chunks[700000 >> HB_FD_CHUNK_SHIFT]));
}

static void test_dup_shares_conn(void **state)
{
	struct hb_conn *c = new_conn();
	uint32_t inuse = hb_conn_in_use();
	int fds[] = { 6000, 6001, 9000, 6003 };

	for (int i = 0; i < 4; i++) {
		install_ok(fds[i], c);
		assert_int_equal(hb_load_relaxed(&c->refs), (uint32_t)i + 1);
		assert_int_equal(slot_of(c, fds[i]), i);
	}
	/* Forget a middle one: the others keep the connection. */
	assert_int_equal(hb_fd_forget(6001), 1);
	assert_int_equal(hb_load_relaxed(&c->refs), 3);
	assert_int_equal(hb_load_relaxed(&c->fds[1]), -1);
	assert_false(hb_load_relaxed(&c->flags) & HB_CF_RELEASED);
	assert_int_equal(hb_conn_in_use(), inuse);
	assert_active(6000, c);
	assert_active(9000, c);
	assert_active(6003, c);
	/* A new dup reuses the free slot. */
	install_ok(6002, c);
	assert_int_equal(slot_of(c, 6002), 1);
	assert_int_equal(hb_load_relaxed(&c->refs), 4);
	/* A fifth fd has no slot but still holds a reference. */
	assert_int_equal(hb_fd_install(6004, c), 0);
	assert_int_equal(hb_load_relaxed(&c->refs), 5);
	assert_ptr_equal(hb_fd_conn(6004), c);
	assert_int_equal(slot_of(c, 6004), -1);

	assert_int_equal(hb_fd_forget(6000), 1);
	assert_int_equal(hb_fd_forget(6004), 1);
	assert_int_equal(hb_fd_forget(9000), 1);
	assert_int_equal(hb_fd_forget(6002), 1);
	assert_int_equal(hb_load_relaxed(&c->refs), 1);
	assert_false(hb_load_relaxed(&c->flags) & HB_CF_RELEASED);
	assert_int_equal(hb_conn_in_use(), inuse);
	assert_active(6003, c);
	assert_int_equal(hb_fd_forget(6003), 1);
	assert_int_equal(hb_load_relaxed(&c->refs), 0);
	assert_true(hb_load_relaxed(&c->flags) & HB_CF_RELEASED);
	assert_int_equal(hb_conn_in_use(), inuse - 1);
	for (int i = 0; i < HB_CONN_FDS; i++)
		assert_int_equal(hb_load_relaxed(&c->fds[i]), -1);
}

/* A scheduled connection goes to the reap stack, not the pool. */
static void test_release_scheduled(void **state)
{
	struct hb_conn *c = new_conn();
	uint32_t inuse = hb_conn_in_use();

	drain_reap(NULL);
	hb_or_acq_rel(&c->flags, HB_CF_SCHEDULED);
	install_ok(6100, c);
	install_ok(6101, c);
	assert_int_equal(hb_fd_forget(6100), 1);
	assert_null(hb_conn_take_reap());
	assert_int_equal(hb_fd_forget(6101), 1);
	assert_true(hb_load_relaxed(&c->flags) & HB_CF_RELEASED);
	assert_int_equal(hb_conn_in_use(), inuse);
	assert_int_equal(drain_reap(c), 1);
	assert_int_equal(hb_conn_in_use(), inuse - 1);
}

/* An ACTIVE entry left by a close we did not see is purged on install. */
static void test_stale_purge(void **state)
{
	struct hb_conn *a = new_conn(), *b = new_conn(), *d = new_conn();
	uint32_t inuse = hb_conn_in_use(), gen;

	gen = install_ok(6200, a);
	install_ok(6201, d);
	install_ok(6202, d);
	/* 6200 reused behind our back: a's only fd. */
	assert_int_equal(hb_fd_install(6200, b), 0);
	assert_int_equal(HB_FD_GEN(word_of(6200)), gen + 1);
	assert_active(6200, b);
	assert_int_equal(hb_load_relaxed(&a->refs), 0);
	assert_true(hb_load_relaxed(&a->flags) & HB_CF_RELEASED);
	assert_int_equal(hb_conn_in_use(), inuse - 1);
	assert_int_equal(hb_load_relaxed(&b->refs), 1);
	/* 6201 reused behind our back: d keeps 6202. */
	assert_int_equal(hb_fd_install(6201, b), 0);
	assert_int_equal(hb_load_relaxed(&d->refs), 1);
	assert_false(hb_load_relaxed(&d->flags) & HB_CF_RELEASED);
	assert_int_equal(slot_of(d, 6201), -1);
	assert_active(6202, d);
	assert_active(6201, b);
	assert_int_equal(hb_load_relaxed(&b->refs), 2);

	assert_int_equal(hb_fd_forget(6200), 1);
	assert_int_equal(hb_fd_forget(6201), 1);
	assert_int_equal(hb_fd_forget(6202), 1);
	assert_int_equal(hb_conn_in_use(), inuse - 3);
}

static void test_forget_begin_end(void **state)
{
	struct hb_conn *c = new_conn();
	uint32_t inuse = hb_conn_in_use(), gen;

	gen = install_ok(6300, c);
	/* dup2 onto 6300 fails: the entry is restored as it was. */
	assert_int_equal(hb_fd_forget_begin(6300), 1);
	assert_int_equal(HB_FD_STATE(word_of(6300)), HB_FD_CLOSING);
	assert_int_equal(HB_FD_GEN(word_of(6300)), gen);
	/* A second begin (or forget) on a CLOSING entry is a no-op. */
	assert_int_equal(hb_fd_forget_begin(6300), 0);
	hb_fd_forget_end(6300, 0);
	assert_active(6300, c);
	assert_int_equal(HB_FD_GEN(word_of(6300)), gen);
	assert_int_equal(hb_load_relaxed(&c->refs), 1);
	assert_false(hb_load_relaxed(&c->flags) & HB_CF_RELEASED);
	/* end on an ACTIVE entry (no begin) does nothing. */
	hb_fd_forget_end(6300, 1);
	assert_active(6300, c);
	/* dup2 succeeds: cleared, reference dropped. */
	assert_int_equal(hb_fd_forget_begin(6300), 1);
	hb_fd_forget_end(6300, 1);
	assert_empty(6300, gen + 1);
	assert_int_equal(hb_load_relaxed(&c->refs), 0);
	assert_true(hb_load_relaxed(&c->flags) & HB_CF_RELEASED);
	assert_int_equal(hb_conn_in_use(), inuse - 1);
	/* Untracked target. */
	assert_int_equal(hb_fd_forget_begin(6300), 0);
	hb_fd_forget_end(6300, 0);
	assert_empty(6300, gen + 1);
}

static void test_forget_range(void **state)
{
	/* Around the chunk boundaries at 8192 and 12288 (chunks 2 and 3). */
	static const int in[] = { 8192, 8193, 10000, 12287, 12288, 12289, 16000 };
	static const int out[] = { 8191, 16001 };
	struct hb_conn *cin[7], *cout[2], *dup = new_conn();
	uint32_t inuse, gens[7];

	for (int i = 0; i < 7; i++) {
		cin[i] = new_conn();
		gens[i] = install_ok(in[i], cin[i]);
	}
	for (int i = 0; i < 2; i++) {
		cout[i] = new_conn();
		install_ok(out[i], cout[i]);
	}
	/* One connection with a dup in range and one outside. */
	install_ok(9999, dup);
	install_ok(16002, dup);
	inuse = hb_conn_in_use();
	hb_fd_forget_range(8192, 16000);
	for (int i = 0; i < 7; i++) {
		assert_empty(in[i], gens[i] + 1);
		assert_true(hb_load_relaxed(&cin[i]->flags) & HB_CF_RELEASED);
	}
	for (int i = 0; i < 2; i++)
		assert_active(out[i], cout[i]);
	assert_active(16002, dup);
	assert_int_equal(hb_load_relaxed(&dup->refs), 1);
	assert_int_equal(hb_conn_in_use(), inuse - 7);

	/* hi beyond the table clamps; lo beyond it is a no-op. */
	install_ok(1048575, cin[0] = new_conn());
	install_ok(1048000, cin[1] = new_conn());
	hb_fd_forget_range(1 << 20, UINT_MAX);
	assert_active(1048575, cin[0]);
	hb_fd_forget_range(1048001, UINT_MAX);
	assert_int_equal(HB_FD_STATE(word_of(1048575)), HB_FD_EMPTY);
	assert_active(1048000, cin[1]);
	hb_fd_forget_range(1048000, 1048000);
	assert_int_equal(HB_FD_STATE(word_of(1048000)), HB_FD_EMPTY);
	/* Inverted range: nothing. */
	hb_fd_forget_range(16002, 8191);
	assert_active(8191, cout[0]);
	hb_fd_forget_range(0, UINT_MAX); /* closefrom(0) */
	assert_int_equal(HB_FD_STATE(word_of(8191)), HB_FD_EMPTY);
	assert_int_equal(HB_FD_STATE(word_of(16001)), HB_FD_EMPTY);
	assert_int_equal(HB_FD_STATE(word_of(16002)), HB_FD_EMPTY);
	assert_int_equal(hb_load_relaxed(&dup->refs), 0);
	assert_true(hb_load_relaxed(&dup->flags) & HB_CF_RELEASED);
}

static void test_generations(void **state)
{
	uint32_t gen0 = 0;

	for (int i = 0; i < 100; i++) {
		struct hb_conn *c = new_conn();
		uint32_t gen = install_ok(6400, c);

		if (i == 0)
			gen0 = gen;
		assert_int_equal(gen, gen0 + (uint32_t)i);
		if (i % 3 == 0) {
			/* A failed dup2 does not count as a close. */
			assert_int_equal(hb_fd_forget_begin(6400), 1);
			hb_fd_forget_end(6400, 0);
			assert_int_equal(HB_FD_GEN(word_of(6400)), gen);
		}
		if (i % 2)
			assert_int_equal(hb_fd_forget(6400), 1);
		else
			hb_fd_forget_range(6400, 6400);
		assert_empty(6400, gen + 1);
	}
}

static void count_visit(int fd, struct hb_conn *c, void *arg)
{
	int *seen = arg;

	if (fd >= 6500 && fd < 6510) {
		if (hb_fd_conn(fd) != c)
			seen[10] = -1;
		seen[fd - 6500]++;
	}
}

static void test_foreach(void **state)
{
	struct hb_conn *c = new_conn(), *d = new_conn();
	int seen[11] = { 0 };

	install_ok(6500, c);
	install_ok(6503, c);
	install_ok(6509, d);
	hb_fd_foreach(count_visit, seen);
	for (int i = 0; i < 10; i++)
		assert_int_equal(seen[i], i == 0 || i == 3 || i == 9);
	assert_int_equal(seen[10], 0);
	hb_fd_forget_range(6500, 6509);
}

/* ------------------------------------------------------------ pinning */

static void test_pin_basic(void **state)
{
	int s = tcp_socket();
	struct hb_conn *c = new_conn();
	struct hb_fdent *ent = NULL;
	uint32_t gen;

	c->cookie = hb_os_cookie(s);
	assert_true(c->cookie != 0);
	gen = install_ok(s, c);
	assert_int_equal(hb_fd_pin(c, &ent), s);
	assert_ptr_equal(ent, hb_fd_entry(s, 0));
	assert_int_equal(HB_FD_BUSY(word_of(s)), 1);
	assert_int_equal(HB_FD_STATE(word_of(s)), HB_FD_ACTIVE);
	hb_fd_unpin(ent);
	assert_int_equal(HB_FD_BUSY(word_of(s)), 0);
	assert_int_equal(HB_FD_GEN(word_of(s)), gen);
	assert_false(hb_load_relaxed(&c->flags) & HB_CF_LOST);
	/* Pin, unpin, pin again. */
	assert_int_equal(hb_fd_pin(c, &ent), s);
	hb_fd_unpin(ent);

	/* Hold the connection alive through another reference (so that the
	 * pointer stays ours) and forget s: pin fails. */
	hb_add_acq_rel(&c->refs, 1);
	assert_int_equal(hb_fd_forget(s), 1);
	ent = NULL;
	assert_int_equal(hb_fd_pin(c, &ent), -1);
	assert_null(ent);
	/* Same, as a background thread that read the fd slot before release
	 * cleared it: the entry is EMPTY now. */
	hb_store_relaxed(&c->fds[0], s);
	hb_store_relaxed(&c->fdgens[0], gen);
	assert_int_equal(hb_fd_pin(c, &ent), -1);
	assert_int_equal(HB_FD_BUSY(word_of(s)), 0);
	assert_false(hb_load_relaxed(&c->flags) & HB_CF_LOST);
	hb_store_relaxed(&c->fds[0], -1);
	hb_sub_acq_rel(&c->refs, 1);
	hb_conn_free(c);
	close(s);
}

/* The slot says (fd, gen) but fd was closed and re-installed since: gen
 * mismatch, the pin falls through to the connection's other fd. */
static void test_pin_stale_generation(void **state)
{
	int s = tcp_socket(), s2 = dup(s);
	struct hb_conn *c = new_conn(), *other = new_conn();
	struct hb_fdent *ent = NULL;
	uint32_t gen;

	assert_true(s2 >= 0);
	c->cookie = hb_os_cookie(s);
	assert_int_equal(hb_os_cookie(s2), c->cookie);
	gen = install_ok(s, c);
	install_ok(s2, c);
	assert_int_equal(hb_fd_forget(s), 1);
	/* The number gets a new connection (new generation). */
	other->cookie = c->cookie;
	assert_int_equal(install_ok(s, other), gen + 1);
	/* Race emulation: the slot still names s with the old generation. */
	hb_store_relaxed(&c->fdgens[0], gen);
	hb_store_relaxed(&c->fds[0], s);
	assert_int_equal(hb_fd_pin(c, &ent), s2);
	assert_ptr_equal(ent, hb_fd_entry(s2, 0));
	assert_int_equal(HB_FD_BUSY(word_of(s)), 0);
	assert_int_equal(HB_FD_BUSY(word_of(s2)), 1);
	/* A stale generation is an ordinary race, not a reused fd. */
	assert_false(hb_load_relaxed(&c->flags) & HB_CF_LOST);
	hb_fd_unpin(ent);
	hb_store_relaxed(&c->fds[0], -1);
	/* Generation of the live entry but another connection: LOST. */
	hb_store_relaxed(&c->fdgens[0], gen + 1);
	hb_store_relaxed(&c->fds[0], s);
	assert_int_equal(hb_fd_pin(c, &ent), s2);
	assert_true(hb_load_relaxed(&c->flags) & HB_CF_LOST);
	assert_int_equal(HB_FD_BUSY(word_of(s)), 0);
	hb_fd_unpin(ent);
	hb_store_relaxed(&c->fds[0], -1);
	assert_int_equal(hb_fd_forget(s2), 1);
	assert_int_equal(hb_fd_pin(c, &ent), -1);
	assert_int_equal(hb_fd_forget(s), 1);
	close(s);
	close(s2);
}

/* fd closed behind our back and the number reused by another socket: the
 * entry still looks right, SO_COOKIE tells. */
static void test_pin_cookie_mismatch(void **state)
{
	int s = tcp_socket(), s2;
	struct hb_conn *c = new_conn();
	struct hb_fdent *ent = NULL;

	c->cookie = hb_os_cookie(s);
	assert_true(c->cookie != 0);
	install_ok(s, c);
	close(s); /* a raw close the shim did not see */
	s2 = tcp_socket();
	if (s2 != s) {
		assert_int_equal(dup2(s2, s), s);
		close(s2);
		s2 = s;
	}
	assert_true(hb_os_cookie(s) != c->cookie);
	assert_int_equal(hb_fd_pin(c, &ent), -1);
	assert_true(hb_load_relaxed(&c->flags) & HB_CF_LOST);
	assert_int_equal(HB_FD_BUSY(word_of(s)), 0);
	assert_int_equal(HB_FD_STATE(word_of(s)), HB_FD_ACTIVE);
	assert_int_equal(hb_fd_forget(s), 1);
	close(s);
}

struct forgetter {
	int fd;
	int begin; /* use forget_begin/end(1) instead of forget */
	_Atomic int done;
	int ret;
};

static void *forget_thread(void *arg)
{
	struct forgetter *f = arg;

	if (f->begin) {
		f->ret = hb_fd_forget_begin(f->fd);
		if (f->ret)
			hb_fd_forget_end(f->fd, 1);
	} else {
		f->ret = hb_fd_forget(f->fd);
	}
	hb_store_release(&f->done, 1);
	return NULL;
}

static void close_guard(int begin)
{
	int s = tcp_socket();
	struct hb_conn *c = new_conn();
	struct hb_fdent *ent;
	struct forgetter f = { .fd = s, .begin = begin };
	pthread_t t;
	uint64_t t0;

	c->cookie = hb_os_cookie(s);
	install_ok(s, c);
	assert_int_equal(hb_fd_pin(c, &ent), s);
	assert_int_equal(pthread_create(&t, NULL, forget_thread, &f), 0);
	/* Wait for the forgetter to start (a loaded machine may take a
	 * while): it marks the entry CLOSING, then must block. */
	t0 = mono_ms();
	while (HB_FD_STATE(word_of(s)) != HB_FD_CLOSING && mono_ms() - t0 < 5000)
		usleep(100);
	assert_int_equal(HB_FD_STATE(word_of(s)), HB_FD_CLOSING);
	usleep(50000);
	assert_int_equal(hb_load_acquire(&f.done), 0);
	/* Still CLOSING, still pinned: no new pin, no clearing. */
	assert_int_equal(HB_FD_STATE(word_of(s)), HB_FD_CLOSING);
	assert_int_equal(HB_FD_BUSY(word_of(s)), 1);
	assert_ptr_equal(hb_fd_conn(s), c);
	hb_fd_unpin(ent);
	t0 = mono_ms();
	while (!hb_load_acquire(&f.done) && mono_ms() - t0 < 5000)
		usleep(100);
	assert_int_equal(hb_load_acquire(&f.done), 1);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(f.ret, 1);
	assert_int_equal(HB_FD_STATE(word_of(s)), HB_FD_EMPTY);
	assert_true(hb_load_relaxed(&c->flags) & HB_CF_RELEASED);
	assert_int_equal(hb_fd_pin(c, &ent), -1);
	close(s);
}

static void test_close_guard(void **state)
{
	close_guard(0);
}

static void test_close_guard_dup2(void **state)
{
	close_guard(1);
}

/* A child forked while the background thread held a pin clears it. */
static void test_after_fork_child(void **state)
{
	int s = tcp_socket(), st;
	struct hb_conn *c = new_conn();
	struct hb_fdent *ent;
	pid_t pid;

	c->cookie = hb_os_cookie(s);
	install_ok(s, c);
	assert_int_equal(hb_fd_pin(c, &ent), s);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		uint64_t w;

		hb_fd_after_fork_child();
		w = hb_load_acquire(&hb_fd_entry(s, 0)->word);
		if (HB_FD_BUSY(w) != 0 || HB_FD_STATE(w) != HB_FD_ACTIVE)
			_exit(2);
		alarm(5); /* a forget that waits forever dies here */
		_exit(hb_fd_forget(s) == 1 ? 0 : 3);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	/* The parent's pin is untouched. */
	assert_int_equal(HB_FD_BUSY(word_of(s)), 1);
	hb_fd_unpin(ent);
	assert_int_equal(hb_fd_forget(s), 1);
	close(s);
}

/* ------------------------------------------------------------ stress */

#define ST_BASE 20460          /* crosses the chunk boundary at 20480 */
#define ST_WORKERS 4
#define ST_PRIV 8              /* private numbers per worker */
#define ST_SHARED 24
#define ST_NFD (ST_WORKERS * ST_PRIV + ST_SHARED)
#define ST_CYCLES 200000
#define ST_LIMIT_MS 30000      /* stop early on a very slow machine */
#define ST_STALL_MS 10000      /* no progress this long: deadlock */
#define ST_MIN_CYCLES 10000

struct st_fd {
	_Atomic int owner;                   /* kernel emulation: who holds the number */
	_Atomic(struct hb_conn *) conn;      /* set before install, cleared after forget */
	_Atomic(struct hb_conn *) pinned;    /* set by the pinner while pinned */
	_Atomic uint64_t forgets;
};

static struct st_fd st_fds[ST_NFD];
static _Atomic uint64_t st_cycles, st_viol, st_pins, st_pin_fail, st_restores;
static _Atomic int st_stop;
static _Atomic int st_first_viol_line;

static void st_violation(int line)
{
	int expect = 0;

	hb_add_acq_rel(&st_viol, 1);
	hb_cas_strong_acq_rel(&st_first_viol_line, &expect, line);
}
#define ST_CHECK(cond)                               \
	do {                                         \
		if (!(cond))                         \
			st_violation(__LINE__);      \
	} while (0)

static uint64_t st_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Acquire a free number: a private one or any shared one. */
static int st_take(int id, uint64_t *rs)
{
	for (;;) {
		int i, expect = 0;

		if (st_rand(rs) % 2)
			i = id * ST_PRIV + (int)(st_rand(rs) % ST_PRIV);
		else
			i = ST_WORKERS * ST_PRIV + (int)(st_rand(rs) % ST_SHARED);
		if (hb_cas_strong_acq_rel(&st_fds[i].owner, &expect, id + 1))
			return i;
		if (hb_load_acquire(&st_stop))
			return -1;
	}
}

static void st_forget(int i, uint64_t *rs)
{
	int fd = ST_BASE + i;
	uint64_t w;

	switch (st_rand(rs) % 4) {
	case 0:
		hb_fd_forget_range((unsigned)fd, (unsigned)fd);
		break;
	case 1:
		ST_CHECK(hb_fd_forget_begin(fd) == 1);
		hb_fd_forget_end(fd, 1);
		break;
	default:
		ST_CHECK(hb_fd_forget(fd) == 1);
		break;
	}
	/* Forget returned: nobody may hold a pin on it. */
	ST_CHECK(hb_load_acquire(&st_fds[i].pinned) == NULL);
	w = hb_load_acquire(&hb_fd_entry(fd, 0)->word);
	ST_CHECK(HB_FD_STATE(w) == HB_FD_EMPTY && HB_FD_BUSY(w) == 0);
	ST_CHECK(hb_fd_conn(fd) == NULL);
	hb_add_acq_rel(&st_fds[i].forgets, 1);
	hb_store_release(&st_fds[i].conn, NULL);
}

static void *st_worker(void *arg)
{
	int id = (int)(intptr_t)arg;
	uint64_t rs = 0x1234567ull * (uint64_t)(id + 1);

	while (!hb_load_acquire(&st_stop)) {
		int a = st_take(id, &rs), b = -1;
		struct hb_conn *c;

		if (a < 0)
			break;
		c = hb_conn_alloc();
		if (!c) {
			st_violation(__LINE__);
			hb_store_release(&st_fds[a].owner, 0);
			break;
		}
		hb_or_acq_rel(&c->flags, HB_CF_SCHEDULED); /* only the pinner frees */
		hb_store_release(&st_fds[a].conn, c);
		ST_CHECK(hb_fd_install(ST_BASE + a, c) == 0);
		if (st_rand(&rs) % 3 == 0) {
			/* dup onto a second number */
			b = st_take(id, &rs);
			if (b >= 0) {
				hb_store_release(&st_fds[b].conn, c);
				ST_CHECK(hb_fd_install(ST_BASE + b, c) == 0);
			}
		}
		if (st_rand(&rs) % 8 == 0)
			sched_yield(); /* let the pinner find it */
		if (st_rand(&rs) % 5 == 0) {
			/* failed dup2 onto a: restored, pinnable again */
			if (hb_fd_forget_begin(ST_BASE + a)) {
				ST_CHECK(hb_load_acquire(&st_fds[a].pinned) == NULL);
				hb_fd_forget_end(ST_BASE + a, 0);
				hb_add_acq_rel(&st_restores, 1);
			} else {
				st_violation(__LINE__);
			}
		}
		st_forget(a, &rs);
		hb_store_release(&st_fds[a].owner, 0);
		if (b >= 0) {
			st_forget(b, &rs);
			hb_store_release(&st_fds[b].owner, 0);
		}
		if (hb_add_acq_rel(&st_cycles, 1) + 1 >= ST_CYCLES)
			hb_store_release(&st_stop, 1);
	}
	return NULL;
}

/* The "background thread": pins whatever it finds, checks the pinned
 * connection stays the entry's connection while pinned, and is the only
 * one to free reaped connections (so the pointers it reads stay valid). */
static void *st_pinner(void *arg)
{
	uint64_t rs = 0xfeedfaceull;

	while (!hb_load_acquire(&st_stop)) {
		int i = (int)(st_rand(&rs) % ST_NFD), fd;
		struct hb_conn *c = hb_fd_conn(ST_BASE + i), *x, *nx;
		struct hb_fdent *ent = NULL;

		if (c) {
			fd = hb_fd_pin(c, &ent);
			if (fd >= 0) {
				int j = fd - ST_BASE;
				uint64_t forgets;

				ST_CHECK(j >= 0 && j < ST_NFD);
				if (j < 0 || j >= ST_NFD) {
					hb_fd_unpin(ent);
					continue;
				}
				ST_CHECK(ent == hb_fd_entry(fd, 0));
				hb_store_release(&st_fds[j].pinned, c);
				forgets = hb_load_acquire(&st_fds[j].forgets);
				ST_CHECK(hb_load_acquire(&st_fds[j].conn) == c);
				for (int k = 0; k < 64; k++)
					hb_cpu_relax();
				if (st_rand(&rs) % 16 == 0)
					sched_yield(); /* hold it while a forget waits */
				ST_CHECK(hb_load_acquire(&st_fds[j].conn) == c);
				ST_CHECK(hb_load_acquire(&st_fds[j].forgets) == forgets);
				ST_CHECK(hb_load_acquire(&ent->conn) == c);
				ST_CHECK(HB_FD_BUSY(hb_load_acquire(&ent->word)) == 1);
				ST_CHECK(!(hb_load_acquire(&c->flags) & HB_CF_RELEASED));
				hb_store_release(&st_fds[j].pinned, NULL);
				hb_fd_unpin(ent);
				hb_add_acq_rel(&st_pins, 1);
			} else {
				hb_add_acq_rel(&st_pin_fail, 1);
			}
		}
		for (x = hb_conn_take_reap(); x; x = nx) {
			nx = hb_conn_at(x->reap_next);
			ST_CHECK(hb_load_acquire(&x->flags) & HB_CF_RELEASED);
			ST_CHECK(hb_load_acquire(&x->refs) == 0);
			hb_conn_free(x);
		}
	}
	return NULL;
}

static void test_stress_pin_vs_forget(void **state)
{
	pthread_t w[ST_WORKERS], p;
	uint32_t inuse;
	uint64_t t0;
	int joined = 0;

	drain_reap(NULL);
	inuse = hb_conn_in_use();
	assert_int_equal(pthread_create(&p, NULL, st_pinner, NULL), 0);
	for (int i = 0; i < ST_WORKERS; i++)
		assert_int_equal(pthread_create(&w[i], NULL, st_worker, (void *)(intptr_t)i), 0);
	t0 = mono_ms();
	{
		uint64_t last = 0, last_ms = t0;

		while (!hb_load_acquire(&st_stop) && mono_ms() - t0 < ST_LIMIT_MS) {
			uint64_t n = hb_load_acquire(&st_cycles), now = mono_ms();

			usleep(10000);
			if (n != last) {
				last = n;
				last_ms = now;
			} else if (now - last_ms > ST_STALL_MS) {
				hb_store_release(&st_stop, 1);
				fail_msg("stress: no progress for %d ms at %llu cycles (deadlock)",
					 ST_STALL_MS, (unsigned long long)n);
			}
		}
	}
	hb_store_release(&st_stop, 1);
	/* Bounded join: a deadlock fails the test instead of hanging. */
	for (int i = 0; i < ST_WORKERS; i++) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 10;
		if (pthread_timedjoin_np(w[i], NULL, &ts) == 0)
			joined++;
	}
	{
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 10;
		if (pthread_timedjoin_np(p, NULL, &ts) == 0)
			joined++;
	}
	if (joined != ST_WORKERS + 1)
		fail_msg("stress: %d of %d threads did not finish (deadlock?)",
			 ST_WORKERS + 1 - joined, ST_WORKERS + 1);
	if (hb_load_acquire(&st_viol))
		fail_msg("stress: %llu violations, first at line %d",
			 (unsigned long long)hb_load_acquire(&st_viol),
			 hb_load_acquire(&st_first_viol_line));
	print_message("stress: %llu cycles in %llu ms, %llu pins, %llu failed pins, "
		      "%llu restores\n",
		      (unsigned long long)hb_load_acquire(&st_cycles),
		      (unsigned long long)(mono_ms() - t0),
		      (unsigned long long)hb_load_acquire(&st_pins),
		      (unsigned long long)hb_load_acquire(&st_pin_fail),
		      (unsigned long long)hb_load_acquire(&st_restores));
	if (hb_load_acquire(&st_cycles) < ST_MIN_CYCLES)
		fail_msg("stress: only %llu cycles in %d ms",
			 (unsigned long long)hb_load_acquire(&st_cycles), ST_LIMIT_MS);
	assert_true(hb_load_acquire(&st_pins) > 0);
	/* Everything forgotten, every connection back in the pool. */
	for (int i = 0; i < ST_NFD; i++) {
		uint64_t wd = word_of(ST_BASE + i);

		assert_int_equal(HB_FD_STATE(wd), HB_FD_EMPTY);
		assert_int_equal(HB_FD_BUSY(wd), 0);
	}
	drain_reap(NULL);
	assert_int_equal(hb_conn_in_use(), inuse);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_install_forget),
		cmocka_unit_test(test_out_of_range),
		cmocka_unit_test(test_dup_shares_conn),
		cmocka_unit_test(test_release_scheduled),
		cmocka_unit_test(test_stale_purge),
		cmocka_unit_test(test_forget_begin_end),
		cmocka_unit_test(test_forget_range),
		cmocka_unit_test(test_generations),
		cmocka_unit_test(test_foreach),
		cmocka_unit_test(test_pin_basic),
		cmocka_unit_test(test_pin_stale_generation),
		cmocka_unit_test(test_pin_cookie_mismatch),
		cmocka_unit_test(test_close_guard),
		cmocka_unit_test(test_close_guard_dup2),
		cmocka_unit_test(test_after_fork_child),
		cmocka_unit_test(test_stress_pin_vs_forget),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
