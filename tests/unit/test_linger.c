/*
 * test_linger.c - the lingering close (shim/linger.c) against the background
 * thread's control frames. The encoder's pending bytes (c->tx) belong to
 * whoever holds txlock; the close's last flush of them (our hello, queued
 * and not yet sent) runs while another thread sends notices under txlock,
 * as the background thread does with heartbeats. Under SAN=thread a flush
 * outside txlock is a data race report (and a non-zero exit); in the other
 * builds the test checks what the peer receives.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <cmocka.h>

#include "hb.h"

struct notices {
	struct hb_conn *c;
	int fd;
	_Atomic int stop;
	int sent;
};

/* The background thread's part: control frames under txlock, every
 * 200 us, until told to stop. */
static void *notice_thread(void *arg)
{
	struct notices *n = arg;

	while (!hb_load_relaxed(&n->stop)) {
		hb_frame_notice(n->c, n->fd, 1, 0);
		n->sent++;
		usleep(200);
	}
	return NULL;
}

static void test_linger_flush_under_txlock(void **state)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	struct timeval tv = { .tv_sec = 2 };
	struct notices n;
	struct hb_conn *c;
	pthread_t t;
	uint8_t buf[4096];
	ssize_t got = 0, r;
	int lfd, cfd, sfd;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(lfd, 1), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &len), 0);
	cfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(connect(cfd, (struct sockaddr *)&a, sizeof(a)), 0);
	sfd = accept(lfd, NULL, NULL);
	assert_true(sfd >= 0);
	assert_int_equal(setsockopt(sfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);

	hb_enabled = 1;
	hb_cfg.interval_ms = 1000;
	hb_cfg.timeout_ms = 3000;
	hb_cfg.log_level = -1;
	hb_log_level = -1;
	c = hb_conn_alloc();
	assert_non_null(c);
	c->kind = HB_KIND_SOCKET;
	c->family = AF_INET;
	assert_int_equal(hb_fd_install(cfd, c), 0);
	/* A framed client whose hello is queued, not sent. */
	hb_frame_client(cfd, c, 0);
	assert_int_equal(c->tx.pend_len, HB_HELLO_LEN);

	memset(&n, 0, sizeof(n));
	n.c = c;
	n.fd = cfd;
	assert_int_equal(pthread_create(&t, NULL, notice_thread, &n), 0);
	usleep(20 * 1000);
	/* The application's close: the socket lingers, our hello goes first. */
	assert_int_equal(hb_frame_linger(c, cfd), 1);
	usleep(20 * 1000);
	hb_store_relaxed(&n.stop, 1);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_true(n.sent > 0);
	assert_int_equal(c->tx.pend_len, 0);

	/* The peer gets our hello (the notices of before the close are not
	 * sent: not at a frame boundary while the hello is pending), then
	 * notices, then our FIN. */
	while ((r = recv(sfd, buf + got, sizeof(buf) - (size_t)got, 0)) > 0)
		got += r;
	assert_int_equal(r, 0);
	assert_true(got >= HB_HELLO_LEN);
	assert_int_equal(hb_hello_classify(buf, (size_t)got, NULL), 1);
	hb_fd_forget(cfd);
	close(cfd);
	close(sfd);
	close(lfd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_linger_flush_under_txlock),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
