/*
 * test_keepalive.c - keepalive mode (shim/keepalive.c): the derivation of
 * TCP_KEEPIDLE / TCP_KEEPINTVL / TCP_KEEPCNT / TCP_USER_TIMEOUT and the
 * SO_KEEPALIVE jitter from HBSHIM_INTERVAL and HBSHIM_TIMEOUT (exact values
 * and invariants over a grid), and applying them to a real TCP socket while
 * respecting what the application set itself.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <cmocka.h>

#include "hb.h"

/* ------------------------------------------------------------ derive */

struct want {
	uint32_t interval_ms, timeout_ms;
	int idle_s, intvl_s, cnt;
	unsigned user_timeout_ms, jitter_ms;
};

static void check_exact(const struct want *w)
{
	struct hb_ka k;

	memset(&k, 0xa5, sizeof(k));
	hb_ka_derive(w->interval_ms, w->timeout_ms, &k);
	if (k.idle_s != w->idle_s || k.intvl_s != w->intvl_s || k.cnt != w->cnt ||
	    k.user_timeout_ms != w->user_timeout_ms || k.jitter_ms != w->jitter_ms)
		fail_msg("derive(%u, %u) = idle %d intvl %d cnt %d user_timeout %u jitter %u, "
			 "want %d %d %d %u %u",
			 w->interval_ms, w->timeout_ms, k.idle_s, k.intvl_s, k.cnt,
			 k.user_timeout_ms, k.jitter_ms, w->idle_s, w->intvl_s, w->cnt,
			 w->user_timeout_ms, w->jitter_ms);
}

static void test_derive_exact(void **state)
{
	static const struct want cases[] = {
		/* The defaults: I = 5 s, T = 3 I. Probes at 5, 10, 15 s; U is
		 * 2 % under the last firing. */
		{ 5000, 15000, 5, 5, 2, 14700, 1000 },
		{ 1000, 3000, 1, 1, 2, 2940, 250 },
		/* Sub-second I and T: the probe schedule rounds up to 1 s, U
		 * keeps millisecond precision. */
		{ 100, 300, 1, 1, 1, 300, 250 },
		{ 250, 750, 1, 1, 1, 750, 250 },
		{ 60000, 180000, 60, 60, 2, 176400, 1000 },
		/* T < 2 I: one probe, 1 s after the first one-interval idle. */
		{ 3000, 4000, 3, 1, 1, 3920, 750 },
		/* T shorter than I: U = T. */
		{ 5000, 1000, 5, 1, 1, 1000, 1000 },
		/* Non-integer seconds round up. */
		{ 1500, 4500, 2, 2, 2, 4500, 500 },
		/* 127 probes exactly fit (TCP_KEEPCNT's maximum). */
		{ 1000, 128000, 1, 1, 127, 125440, 250 },
		/* One more would not: wider spacing, the remainder goes into
		 * the first idle; the last firing stays at T. */
		{ 1000, 129000, 1, 2, 64, 126420, 250 },
		{ 1000, 200000, 2, 2, 99, 196000, 250 },
		{ 1000, 3600000, 4, 29, 124, 3528000, 250 },
		/* 32-bit extremes: every kernel field at its maximum, and no
		 * overflow in the rounding. */
		{ UINT32_MAX, UINT32_MAX, 32767, 32767, 127, 4110292480u, 1000 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_exact(&cases[i]);
}

static uint64_t max_u64(uint64_t a, uint64_t b)
{
	return a > b ? a : b;
}

/* The invariants of the derivation (DESIGN.md "Keepalive mode"). */
static void check_invariants(uint32_t I, uint32_t T)
{
	struct hb_ka k;
	uint64_t last, bound;

	hb_ka_derive(I, T, &k);
	last = ((uint64_t)k.idle_s + (uint64_t)k.intvl_s * (uint64_t)k.cnt) * 1000;
	/* Sub-second I or T count as 1 s (the kernel options are whole
	 * seconds; keepalive.c says so), plus 1 s of rounding slack. */
	bound = max_u64(I, 1000) + max_u64(T, 1000) + 1000;
#define INV(cond)                                                                       \
	do {                                                                            \
		if (!(cond))                                                            \
			fail_msg("derive(%u, %u) = idle %d intvl %d cnt %d user_timeout %u " \
				 "jitter %u: violates %s",                              \
				 I, T, k.idle_s, k.intvl_s, k.cnt, k.user_timeout_ms,    \
				 k.jitter_ms, #cond);                                   \
	} while (0)
	INV(k.idle_s >= 1 && k.idle_s <= 32767);
	INV(k.intvl_s >= 1 && k.intvl_s <= 32767);
	INV(k.cnt >= 1 && k.cnt <= 127);
	INV(k.user_timeout_ms <= T);
	INV(k.user_timeout_ms > 0 || T == 0);
	INV(k.user_timeout_ms < last);
	/* A silent peer is detected within I + T. */
	INV(last <= bound);
	/* ...but not before T, unless TCP_KEEPIDLE hit its maximum (T of
	 * several weeks). */
	INV(last >= T || k.idle_s == 32767);
	/* The first probe waits one whole interval. */
	INV((uint64_t)k.idle_s * 1000 >= I || k.idle_s == 32767);
	INV(k.jitter_ms <= 1000);
	INV(k.jitter_ms > 0 && k.jitter_ms <= (unsigned)k.idle_s * 1000 / 4);
#undef INV
}

static void test_derive_grid(void **state)
{
	static const uint32_t v[] = {
		1, 50, 100, 250, 500, 999, 1000, 1001, 1500, 1999, 2000, 2001, 2500,
		3000, 4000, 4999, 5000, 5001, 7000, 10000, 15000, 20000, 30000, 60000,
		90000, 120000, 127000, 128000, 129000, 180000, 200000, 300000, 600000,
		1000000, 3600000, 7200000, 86400000, 100000000, 1000000000u,
		4000000000u, 4194176000u, 4194176001u, UINT32_MAX - 1000, UINT32_MAX,
	};
	const size_t n = sizeof(v) / sizeof(v[0]);
	uint64_t rs = 0x243f6a8885a308d3ull;

	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < n; j++)
			check_invariants(v[i], v[j]);
	/* Dense: every (I, T) in whole and half seconds up to 40 s / 200 s. */
	for (uint32_t I = 500; I <= 40000; I += 500)
		for (uint32_t T = 500; T <= 200000; T += 500)
			check_invariants(I, T);
	/* Random, log-uniform-ish. */
	for (int r = 0; r < 200000; r++) {
		uint32_t I, T;

		rs ^= rs << 13;
		rs ^= rs >> 7;
		rs ^= rs << 17;
		I = (uint32_t)(rs >> (32 + (rs & 31)));
		T = (uint32_t)((rs >> 5) & 0xffffffffu) >> ((rs >> 40) & 31);
		check_invariants(I ? I : 1, T ? T : 1);
	}
}

/* The derivation is pure: same input, same output, nothing else written. */
static void test_derive_pure(void **state)
{
	struct hb_ka a, b, saved = hb_ka_cfg;

	hb_ka_derive(5000, 15000, &a);
	hb_ka_derive(5000, 15000, &b);
	assert_memory_equal(&a, &b, sizeof(a));
	assert_memory_equal(&saved, &hb_ka_cfg, sizeof(saved));
}

/* ------------------------------------------------------------ apply / arm */

static int tcp_socket(void)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(s >= 0);
	return s;
}

static int get_int(int fd, int level, int opt)
{
	int v = -12345;
	socklen_t len = sizeof(v);

	assert_int_equal(getsockopt(fd, level, opt, &v, &len), 0);
	return v;
}

static void set_int(int fd, int level, int opt, int v)
{
	assert_int_equal(setsockopt(fd, level, opt, &v, sizeof(v)), 0);
}

/* What the application set before: distinct from every derived value. */
#define APP_IDLE 77
#define APP_INTVL 33
#define APP_CNT 9
#define APP_UTO 4321

static void apply_with(uint32_t app)
{
	int s = tcp_socket();
	struct hb_conn *c = calloc(1, sizeof(*c));
	const struct hb_ka *k = &hb_ka_cfg;

	assert_non_null(c);
	set_int(s, IPPROTO_TCP, TCP_KEEPIDLE, APP_IDLE);
	set_int(s, IPPROTO_TCP, TCP_KEEPINTVL, APP_INTVL);
	set_int(s, IPPROTO_TCP, TCP_KEEPCNT, APP_CNT);
	set_int(s, IPPROTO_TCP, TCP_USER_TIMEOUT, APP_UTO);
	hb_store_relaxed(&c->flags, app);
	hb_ka_apply(s, c);
	assert_int_equal(get_int(s, IPPROTO_TCP, TCP_KEEPIDLE),
			 app & HB_APP_KEEPIDLE ? APP_IDLE : k->idle_s);
	assert_int_equal(get_int(s, IPPROTO_TCP, TCP_KEEPINTVL),
			 app & HB_APP_KEEPINTVL ? APP_INTVL : k->intvl_s);
	assert_int_equal(get_int(s, IPPROTO_TCP, TCP_KEEPCNT),
			 app & HB_APP_KEEPCNT ? APP_CNT : k->cnt);
	assert_int_equal(get_int(s, IPPROTO_TCP, TCP_USER_TIMEOUT),
			 app & HB_APP_USERTIMEOUT ? APP_UTO : (int)k->user_timeout_ms);
	/* Timing only: SO_KEEPALIVE is the background thread's business. */
	assert_int_equal(get_int(s, SOL_SOCKET, SO_KEEPALIVE), 0);
	assert_int_equal(hb_load_relaxed(&c->flags), app);
	free(c);
	close(s);
}

static void test_apply(void **state)
{
	static const uint32_t flags[] = {
		0, HB_APP_KEEPIDLE, HB_APP_KEEPINTVL, HB_APP_KEEPCNT, HB_APP_USERTIMEOUT,
		HB_APP_KEEPIDLE | HB_APP_KEEPCNT, HB_APP_KEEPINTVL | HB_APP_USERTIMEOUT,
		HB_APP_KEEPIDLE | HB_APP_KEEPINTVL | HB_APP_KEEPCNT | HB_APP_USERTIMEOUT,
		/* unrelated app flags change nothing */
		HB_APP_KEEPALIVE | HB_APP_RCVTIMEO | HB_APP_SNDTIMEO | HB_CF_NONBLOCK,
	};
	struct hb_ka saved = hb_ka_cfg;

	hb_ka_derive(5000, 15000, &hb_ka_cfg);
	assert_int_equal(hb_ka_cfg.idle_s, 5);
	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
		apply_with(flags[i]);
	/* Other settings reach the socket the same way. */
	hb_ka_derive(1000, 200000, &hb_ka_cfg);
	apply_with(0);
	apply_with(HB_APP_KEEPCNT);
	hb_ka_derive(60000, 180000, &hb_ka_cfg);
	apply_with(0);
	{
		int s = tcp_socket();
		struct hb_conn c;

		memset(&c, 0, sizeof(c));
		hb_ka_apply(s, &c);
		assert_int_equal(get_int(s, IPPROTO_TCP, TCP_KEEPIDLE), 60);
		assert_int_equal(get_int(s, IPPROTO_TCP, TCP_KEEPINTVL), 60);
		assert_int_equal(get_int(s, IPPROTO_TCP, TCP_KEEPCNT), 2);
		assert_int_equal(get_int(s, IPPROTO_TCP, TCP_USER_TIMEOUT), 176400);
		close(s);
	}
	hb_ka_cfg = saved;
}

static void test_arm(void **state)
{
	int s = tcp_socket();
	struct hb_conn c;

	memset(&c, 0, sizeof(c));
	assert_int_equal(get_int(s, SOL_SOCKET, SO_KEEPALIVE), 0);
	hb_ka_arm(s, &c);
	assert_int_equal(get_int(s, SOL_SOCKET, SO_KEEPALIVE), 1);
	assert_int_equal(hb_load_relaxed(&c.flags), HB_CF_KA_ARMED);
	/* Armed already: not again (even if the option was switched off). */
	set_int(s, SOL_SOCKET, SO_KEEPALIVE, 0);
	hb_ka_arm(s, &c);
	assert_int_equal(get_int(s, SOL_SOCKET, SO_KEEPALIVE), 0);
	assert_int_equal(hb_load_relaxed(&c.flags), HB_CF_KA_ARMED);
	close(s);

	/* The application chose SO_KEEPALIVE itself (here: off): left alone. */
	s = tcp_socket();
	memset(&c, 0, sizeof(c));
	hb_store_relaxed(&c.flags, HB_APP_KEEPALIVE | HB_CF_SCHEDULED);
	hb_ka_arm(s, &c);
	assert_int_equal(get_int(s, SOL_SOCKET, SO_KEEPALIVE), 0);
	assert_int_equal(hb_load_relaxed(&c.flags), HB_APP_KEEPALIVE | HB_CF_SCHEDULED);
	close(s);

	/* Other app options do not stop it; other flags are preserved. */
	s = tcp_socket();
	memset(&c, 0, sizeof(c));
	hb_store_relaxed(&c.flags, HB_APP_KEEPIDLE | HB_APP_USERTIMEOUT | HB_CF_SCHEDULED);
	hb_ka_arm(s, &c);
	assert_int_equal(get_int(s, SOL_SOCKET, SO_KEEPALIVE), 1);
	assert_int_equal(hb_load_relaxed(&c.flags),
			 HB_APP_KEEPIDLE | HB_APP_USERTIMEOUT | HB_CF_SCHEDULED | HB_CF_KA_ARMED);
	close(s);

	/* A failed setsockopt does not claim the connection armed. */
	memset(&c, 0, sizeof(c));
	hb_ka_arm(-1, &c);
	assert_int_equal(hb_load_relaxed(&c.flags), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_derive_exact),
		cmocka_unit_test(test_derive_grid),
		cmocka_unit_test(test_derive_pure),
		cmocka_unit_test(test_apply),
		cmocka_unit_test(test_arm),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
