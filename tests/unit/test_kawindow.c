/*
 * test_kawindow.c - the verdict on a peer while data waits (keepalive.c,
 * hb_ka_window), fed TCP_INFO timelines of the cases it must tell apart:
 * a dead path (retransmissions unanswered) is declared dead T after the last
 * ACK, at the first look from then on; a live reader whose window stays
 * shut (window probes backed off past T, one in two answers skipped by the
 * receiver's rate limit), a reader answering every backed-off retransmission
 * and a peer answering late within its allowance never are; an idle
 * connection's old last ACK does not count against a fresh write.
 * T = 1 s throughout, looks every 200 ms (the sweep's period at I = 200 ms).
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

#define T_MS 1000
#define LOOK_MS 200
#define UTO 980
#define BASE 1000000ull /* monotonic ms of the timelines' 0 */

struct rig {
	int fd;
	struct hb_conn *c;
	struct hb_tcp_info x;
};

static void rig_open(struct rig *r)
{
	r->fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(r->fd >= 0);
	r->c = calloc(1, sizeof(*r->c));
	assert_non_null(r->c);
	hb_cfg.timeout_ms = T_MS;
	hb_cfg.interval_ms = LOOK_MS;
}

static void rig_close(struct rig *r)
{
	close(r->fd);
	free(r->c);
}

/* One look at time t (ms after BASE) with the given TCP_INFO fields; data
 * waiting that was not at the last look was written at since (0: unknown). */
static int look_since(struct rig *r, uint64_t t, uint32_t unacked, uint32_t notsent,
		      uint32_t probes, uint32_t last_ack, uint32_t last_data_sent, uint64_t since)
{
	memset(&r->x, 0, sizeof(r->x));
	r->x.len = sizeof(r->x);
	r->x.ti.tcpi_state = TCP_ESTABLISHED;
	r->x.ti.tcpi_unacked = unacked;
	r->x.notsent_bytes = notsent;
	r->x.ti.tcpi_probes = (uint8_t)probes;
	r->x.ti.tcpi_last_ack_recv = last_ack;
	r->x.ti.tcpi_last_data_sent = last_data_sent;
	r->x.ti.tcpi_rtt = 100;    /* us: loopback */
	r->x.ti.tcpi_rttvar = 50;
	return hb_ka_window(r->c, r->fd, &r->x, UTO, BASE + t, since ? BASE + since : 0);
}

static int look(struct rig *r, uint64_t t, uint32_t unacked, uint32_t notsent, uint32_t probes,
		uint32_t last_ack, uint32_t last_data_sent)
{
	return look_since(r, t, unacked, notsent, probes, last_ack, last_data_sent, 0);
}

static int user_timeout(int fd)
{
	int v = -1;
	socklen_t l = sizeof(v);

	assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &v, &l), 0);
	return v;
}

/* Streaming until the drop at t = 0 (ACKs and data every ms), then the
 * kernel's retransmissions at 200, 600, 1400, 3000 ms, none answered. */
static void test_dead_path(void **state)
{
	struct rig r;
	uint64_t t, dead_at = 0;
	const uint64_t rtx[] = { 200, 600, 1400, 3000 };

	rig_open(&r);
	for (t = 0; t < 3 * LOOK_MS; t += LOOK_MS)
		assert_int_equal(look(&r, t, 40, 1 << 20, 0, 0, 0), 1);
	assert_int_equal(user_timeout(r.fd), 0); /* off while data waits */
	for (t = 3 * LOOK_MS + 37; t < 10000; t += LOOK_MS) {
		uint64_t since = t - 3 * LOOK_MS, last_tx = 0;
		int rc;

		for (size_t i = 0; i < sizeof(rtx) / sizeof(rtx[0]); i++)
			if (rtx[i] <= since)
				last_tx = rtx[i];
		rc = look(&r, t, 40, 1 << 20, 0, (uint32_t)since, (uint32_t)(since - last_tx));
		if (rc < 0) {
			dead_at = since;
			break;
		}
		assert_int_equal(rc, 1);
	}
	if (dead_at < T_MS || dead_at > T_MS + LOOK_MS)
		fail_msg("declared dead %llu ms after the last ACK, want %d..%d",
			 (unsigned long long)dead_at, T_MS, T_MS + LOOK_MS);
	assert_int_equal(user_timeout(r.fd), UTO); /* back for the kernel */
	rig_close(&r);
}

/* A young connection: written from 1000 ms on, the path dies at 1240 ms
 * (last ACK; last data out at 1250), and the first look comes at 1980 ms. The silence counts from the last
 * ACK, not from that look: dead at the first look T after it. Told nothing
 * about the writes, the look counts from itself (T later). */
static void test_first_look_late(void **state)
{
	for (int told = 1; told >= 0; told--) {
		struct rig r;
		uint64_t t, dead_at = 0;

		rig_open(&r);
		for (t = 1980; t < 8000; t += LOOK_MS) {
			int rc = look_since(&r, t, 40, 1 << 20, 0, (uint32_t)(t - 1240),
					    (uint32_t)(t - 1250), told ? 1000 : 0);

			if (rc < 0) {
				dead_at = t;
				break;
			}
		}
		if (told && (dead_at < 1240 + T_MS || dead_at > 1240 + T_MS + LOOK_MS))
			fail_msg("told: dead at %llu, want %d..%d", (unsigned long long)dead_at,
				 1240 + T_MS, 1240 + T_MS + LOOK_MS);
		if (!told && (dead_at < 1980 + T_MS || dead_at > 1980 + T_MS + LOOK_MS))
			fail_msg("not told: dead at %llu, want %d..%d", (unsigned long long)dead_at,
				 1980 + T_MS, 1980 + T_MS + LOOK_MS);
		rig_close(&r);
	}
}

/* A reader's window shut at 0 for 30 s: window probes at 200 ms, 600 ms,
 * 1.4 s, 3 s, 6.2 s... (the kernel's backoff), each answered 1 ms later
 * unless it came within 500 ms of the last such answer (Linux's
 * tcp_invalid_ratelimit): the one at 600 ms goes unanswered, and nothing
 * comes from the reader for 1.2 s. */
static void test_shut_window_probes(void **state)
{
	for (uint64_t phase = 0; phase < LOOK_MS; phase += 50) {
		struct rig r;
		uint64_t next = 200, gap = 200, ack = 0, t;
		uint64_t oow = 0, pending = 0; /* last out-of-window answer; one due */
		uint32_t unanswered = 0;

		rig_open(&r);
		for (t = 0; t < 30000; t += 1) {
			if (t == next) {
				if (!oow || t - oow >= 500)
					pending = t + 1;
				else
					unanswered++;
				gap *= 2;
				next = t + gap;
			}
			if (pending && t == pending) {
				ack = oow = t;
				unanswered = 0;
				pending = 0;
			}
			if (t % LOOK_MS == phase)
				assert_int_equal(look(&r, t, 0, 1 << 20, unanswered + (pending ? 1 : 0),
						      (uint32_t)(t - ack), 5000),
						 1);
		}
		rig_close(&r);
	}
}

/* Data out into a shut window: the kernel's retransmissions back off
 * (200 ms doubling) and each is answered RTT later by a duplicate ACK. The
 * looks come every 200 ms and inside every RTT window too, or (sparse) only
 * inside the RTT windows: every look then finds something unanswered, but
 * never the same thing twice. */
static void test_answered_retransmissions(void **state)
{
	const uint64_t rtts[] = { 1, 150, 400 };

	for (int sparse = 0; sparse < 2; sparse++)
		for (size_t k = 0; k < sizeof(rtts) / sizeof(rtts[0]); k++) {
			struct rig r;
			uint64_t rtt = rtts[k], next = 200, gap = 200, tx = 0, ack = 0, t;

			rig_open(&r);
			for (t = 0; t < 30000; t++) {
				if (t == next) {
					tx = t;
					gap *= 2;
					next = t + gap;
				}
				if (tx && t == tx + rtt)
					ack = t;
				if ((!sparse && t % LOOK_MS == 0) || (tx && t == tx + rtt / 2))
					assert_int_equal(look(&r, t, 10, 1 << 20, 0,
							      (uint32_t)(t - ack), (uint32_t)(t - tx)),
							 1);
			}
			rig_close(&r);
		}
}

/* An idle connection (last ACK 60 s old) writes at 0: the silence counts
 * from the first look that saw data waiting, not from the old ACK. An
 * answer 300 ms later keeps it; none at all is dead T after that look. */
static void test_idle_then_write(void **state)
{
	struct rig r;
	uint64_t t;
	int rc = 1;

	rig_open(&r);
	assert_int_equal(look(&r, 10, 1, 0, 0, 60010, 10), 1);
	assert_int_equal(look(&r, 210, 1, 0, 0, 60210, 210), 1);
	assert_int_equal(look(&r, 410, 0, 0, 0, 110, 410), 0); /* answered at 300 */
	rig_close(&r);

	rig_open(&r);
	for (t = 10; t < 5000 && rc > 0; t += LOOK_MS) {
		rc = look(&r, t, 1, 0, 0, (uint32_t)(60000 + t), (uint32_t)(t - (t >= 210 ? 210 : 0)));
		if (rc < 0 && t < 10 + T_MS)
			fail_msg("declared dead %llu ms after the write, before T", (unsigned long long)t);
	}
	assert_int_equal(rc, -1);
	assert_true(t - LOOK_MS <= 10 + T_MS + LOOK_MS);
	rig_close(&r);
}

/* Everything acknowledged: no verdict, the user timeout back; an
 * application's own TCP_USER_TIMEOUT: no look at all. */
static void test_acked_and_app_choice(void **state)
{
	struct rig r;

	rig_open(&r);
	assert_int_equal(look(&r, 0, 5, 0, 0, 0, 0), 1);
	assert_int_equal(user_timeout(r.fd), 0);
	assert_int_equal(look(&r, 200, 0, 0, 0, 100, 150), 0);
	assert_int_equal(user_timeout(r.fd), UTO);
	assert_int_equal(r.c->ka_wait_at, 0);
	rig_close(&r);

	rig_open(&r);
	hb_store_relaxed(&r.c->flags, HB_APP_USERTIMEOUT);
	for (uint64_t t = 0; t < 5000; t += LOOK_MS)
		assert_int_equal(look(&r, t, 5, 0, 0, (uint32_t)t, 0), 0);
	rig_close(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dead_path),
		cmocka_unit_test(test_first_look_late),
		cmocka_unit_test(test_shut_window_probes),
		cmocka_unit_test(test_answered_retransmissions),
		cmocka_unit_test(test_idle_then_write),
		cmocka_unit_test(test_acked_and_app_choice),
	};

	hb_log_level = HB_LOG_OFF;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
