/*
 * test_epollmap.c - the (epfd, epoll_data) -> fd map behind the epoll_wait
 * filter (shim/epollmap.c): record, MOD with the same and another data
 * value, DEL, two fds with one data value (tracked and untracked, in either
 * order), one data value in two sets, a number reused by an untracked fd,
 * the kernel's list of a real epoll set settling new entries.
 *
 * Fd numbers are not real fds except in test_check_set: the map only
 * keeps numbers (the fd table gives their connections).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <cmocka.h>

#include "hb.h"

static struct hb_conn *conn_on(int fd)
{
	struct hb_conn *c = hb_conn_alloc();

	assert_non_null(c);
	assert_int_equal(hb_fd_install(fd, c), 0);
	c->mode = HB_MODE_FRAME;
	c->kind = HB_KIND_CONNECTED;
	return c;
}

static void ctl(struct hb_conn *c, int epfd, int op, int fd, uint32_t events, uint64_t data)
{
	struct epoll_event ev = { .events = events };

	ev.data.u64 = data;
	hb_epmap_ctl(c, epfd, op, fd, op == EPOLL_CTL_DEL ? NULL : &ev);
}

static void test_record_mod_del(void **state)
{
	struct hb_conn *c = conn_on(1010);
	struct hb_epreg r;

	(void)state;
	ctl(c, 900, EPOLL_CTL_ADD, 1010, EPOLLIN, 0xaa);
	assert_int_equal(hb_epmap_find(900, 0xaa, &r), 1);
	assert_int_equal(r.fd, 1010);
	assert_int_equal(r.events, EPOLLIN);
	assert_int_equal(r.self, c->self);
	assert_int_equal(r.verified, 0);
	assert_int_equal(hb_epmap_find(901, 0xaa, &r), 0); /* another set */
	assert_int_equal(hb_epmap_find(900, 0xab, &r), 0);

	ctl(c, 900, EPOLL_CTL_MOD, 1010, EPOLLIN | EPOLLONESHOT, 0xaa);
	assert_int_equal(hb_epmap_find(900, 0xaa, &r), 1);
	assert_int_equal(r.events, EPOLLIN | EPOLLONESHOT);

	ctl(c, 900, EPOLL_CTL_MOD, 1010, EPOLLIN, 0xbb);
	assert_int_equal(hb_epmap_find(900, 0xaa, &r), 0);
	assert_int_equal(hb_epmap_find(900, 0xbb, &r), 1);
	assert_int_equal(r.fd, 1010);

	ctl(c, 900, EPOLL_CTL_DEL, 1010, 0, 0);
	assert_int_equal(hb_epmap_find(900, 0xbb, &r), 0);
	assert_int_equal(hb_load_relaxed(&hb_epmap_used), 1);
}

static void test_one_data_two_fds(void **state)
{
	struct hb_conn *a = conn_on(1020), *b = conn_on(1021);
	struct hb_epreg r;

	(void)state;
	/* Two tracked sockets. */
	ctl(a, 902, EPOLL_CTL_ADD, 1020, EPOLLIN, 7);
	ctl(b, 902, EPOLL_CTL_ADD, 1021, EPOLLIN, 7);
	assert_int_equal(hb_epmap_find(902, 7, &r), 0);
	/* A tracked socket, then an fd the shim does not track. */
	ctl(a, 903, EPOLL_CTL_ADD, 1020, EPOLLIN, 8);
	assert_int_equal(hb_epmap_find(903, 8, &r), 1);
	ctl(NULL, 903, EPOLL_CTL_ADD, 1022, EPOLLIN, 8);
	assert_int_equal(hb_epmap_find(903, 8, &r), 0);
	/* Ambiguous for good, even when the untracked fd leaves. */
	ctl(NULL, 903, EPOLL_CTL_DEL, 1022, 0, 0);
	assert_int_equal(hb_epmap_find(903, 8, &r), 0);
	/* Same data, same fd, two sets: not ambiguous. */
	ctl(a, 904, EPOLL_CTL_ADD, 1020, EPOLLIN, 9);
	ctl(a, 905, EPOLL_CTL_ADD, 1020, EPOLLIN, 9);
	assert_int_equal(hb_epmap_find(904, 9, &r), 1);
	assert_int_equal(hb_epmap_find(905, 9, &r), 1);
	/* An untracked fd MODded onto the data value. */
	ctl(NULL, 904, EPOLL_CTL_ADD, 1023, EPOLLIN, 10);
	ctl(NULL, 904, EPOLL_CTL_MOD, 1023, EPOLLIN, 9);
	assert_int_equal(hb_epmap_find(904, 9, &r), 0);
}

static void test_fd_reused_untracked(void **state)
{
	struct hb_conn *c = conn_on(1030);
	struct hb_epreg r;

	(void)state;
	ctl(c, 906, EPOLL_CTL_ADD, 1030, EPOLLIN, 11);
	assert_int_equal(hb_epmap_find(906, 11, &r), 1);
	/* The number now names a pipe the application registers anew: the
	 * socket's registration under it is gone from the kernel. */
	ctl(NULL, 906, EPOLL_CTL_ADD, 1030, EPOLLIN, 12);
	assert_int_equal(hb_epmap_find(906, 11, &r), 0);
	assert_int_equal(hb_epmap_find(906, 12, &r), 0);
}

/* Not recorded: what cannot become framed. */
static void test_not_recorded(void **state)
{
	struct hb_conn *ka = conn_on(1050), *l = conn_on(1051), *pre = conn_on(1052);
	struct hb_epreg r;

	(void)state;
	ka->mode = HB_MODE_KEEPALIVE;
	l->kind = HB_KIND_LISTENER;
	pre->mode = HB_MODE_NONE; /* before connect, no HBSHIM_FRAME rule */
	ctl(ka, 909, EPOLL_CTL_ADD, 1050, EPOLLIN, 14);
	ctl(l, 909, EPOLL_CTL_ADD, 1051, EPOLLIN, 15);
	ctl(pre, 909, EPOLL_CTL_ADD, 1052, EPOLLIN, 16);
	assert_int_equal(hb_epmap_find(909, 14, &r), 0);
	assert_int_equal(hb_epmap_find(909, 15, &r), 0);
	assert_int_equal(hb_epmap_find(909, 16, &r), 0);
	hb_cfg.nrules = 1; /* a rule: it may become framed at connect */
	ctl(pre, 909, EPOLL_CTL_MOD, 1052, EPOLLIN, 16);
	hb_cfg.nrules = 0;
	assert_int_equal(hb_epmap_find(909, 16, &r), 1);
}

/* Register fd in the real set ep under data, and record it as the
 * interposer would (a connection on fd's number). */
static struct hb_conn *reg(int ep, int fd, uint64_t data, int tracked)
{
	struct epoll_event ev = { .events = EPOLLIN };
	struct hb_conn *c = tracked ? conn_on(fd) : NULL;

	ev.data.u64 = data;
	assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev), 0);
	hb_epmap_ctl(c, ep, EPOLL_CTL_ADD, fd, &ev);
	return c;
}

/* The kernel's list of the set settles new entries (after a pause in
 * proportion to the last list read: a few hundred bytes here). */
static int check(int ep)
{
	usleep(10 * 1000);
	return hb_epmap_check_set(ep);
}

static void test_check_set(void **state)
{
	int ep = epoll_create1(EPOLL_CLOEXEC), p[2], q[2], u[2];
	struct hb_epreg r;

	(void)state;
	assert_true(ep >= 0);
	assert_int_equal(pipe(p), 0);
	assert_int_equal(pipe(q), 0);
	assert_int_equal(pipe(u), 0);
	/* An fd the shim does not track, registered before the map watched:
	 * data 0, as the socket below will be. */
	{
		struct epoll_event ev = { .events = EPOLLIN };

		assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, u[0], &ev), 0);
	}
	reg(ep, p[0], 0xfeedface12345678ull, 1);
	reg(ep, q[0], 0, 1);
	assert_int_equal(hb_epmap_find(ep, 0xfeedface12345678ull, &r), 1);
	assert_int_equal(r.verified, 0);
	assert_int_equal(hb_epmap_find(ep, 0, &r), 1); /* the map alone cannot tell */
	assert_int_equal(check(ep), 0);
	assert_int_equal(hb_epmap_find(ep, 0xfeedface12345678ull, &r), 1);
	assert_int_equal(r.verified, 1);
	assert_int_equal(r.fd, p[0]);
	assert_int_equal(hb_epmap_find(ep, 0, &r), 0); /* two lines with data 0 */

	/* A recorded registration the kernel does not have (the number names
	 * another set now): ambiguous. */
	{
		struct hb_conn *c = conn_on(q[1]);
		struct epoll_event ev = { .events = EPOLLIN };

		ev.data.u64 = 0x77;
		hb_epmap_ctl(c, ep, EPOLL_CTL_ADD, q[1], &ev);
		assert_int_equal(check(ep), 0);
		assert_int_equal(hb_epmap_find(ep, 0x77, &r), 0);
	}
	/* Not an epoll set: nothing read, its entries ambiguous. */
	{
		struct hb_conn *c = conn_on(u[1]);
		struct epoll_event ev = { .events = EPOLLIN };

		ev.data.u64 = 0x78;
		hb_epmap_ctl(c, p[1], EPOLL_CTL_ADD, u[1], &ev);
		assert_int_equal(check(p[1]), 0);
		assert_int_equal(hb_epmap_find(p[1], 0x78, &r), 0);
	}
	close(ep);
	close(p[0]);
	close(p[1]);
	close(q[0]);
	close(q[1]);
	close(u[0]);
	close(u[1]);
}

/* More registrations than a bucket holds: nothing is lost or confused, the
 * ones that do not fit are simply not found. */
static void test_many(void **state)
{
	struct hb_conn *c[64];
	struct hb_epreg r;
	int found = 0;

	(void)state;
	for (int i = 0; i < 64; i++) {
		c[i] = conn_on(2000 + i);
		ctl(c[i], 908, EPOLL_CTL_ADD, 2000 + i, EPOLLIN, 0x1000 + (uint64_t)i);
	}
	for (int i = 0; i < 64; i++)
		if (hb_epmap_find(908, 0x1000 + (uint64_t)i, &r)) {
			assert_int_equal(r.fd, 2000 + i);
			found++;
		}
	assert_int_equal(found, 64);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_record_mod_del),
		cmocka_unit_test(test_one_data_two_fds),
		cmocka_unit_test(test_fd_reused_untracked),
		cmocka_unit_test(test_not_recorded),
		cmocka_unit_test(test_check_set),
		cmocka_unit_test(test_many),
	};

	hb_enabled = 1; /* the map records framed connections of an active shim */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
