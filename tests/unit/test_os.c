/*
 * test_os.c - the OS layer's poll, select and dup2 (shim/os.c), built from
 * ppoll, pselect6 and dup3 so that they exist on arm64: the results,
 * errnos and side effects of the calls they stand for.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <sys/select.h>
#include <cmocka.h>

#include "hb.h"

static void test_poll(void **state)
{
	int p[2];
	struct pollfd f;

	(void)state;
	assert_int_equal(pipe(p), 0);
	f = (struct pollfd){ .fd = p[0], .events = POLLIN };
	assert_int_equal(hb_os_poll(&f, 1, 0), 0); /* empty: timeout 0 */
	assert_int_equal(hb_os_poll(&f, 1, 20), 0); /* empty: waits, then 0 */
	assert_int_equal(write(p[1], "x", 1), 1);
	assert_int_equal(hb_os_poll(&f, 1, -1), 1);
	assert_true(f.revents & POLLIN);
	f.fd = 1 << 30; /* not open: POLLNVAL, as poll reports it */
	assert_int_equal(hb_os_poll(&f, 1, 0), 1);
	assert_true(f.revents & POLLNVAL);
	errno = 1234;
	assert_int_equal(hb_os_poll(NULL, 1, 0), -EFAULT);
	assert_int_equal(errno, 1234); /* the caller's errno is kept */
	close(p[0]);
	close(p[1]);
}

static void test_select(void **state)
{
	int p[2];
	fd_set rd;
	struct timeval tv = { 0, 30000 };

	(void)state;
	assert_int_equal(pipe(p), 0);
	FD_ZERO(&rd);
	FD_SET(p[0], &rd);
	assert_int_equal(hb_os_select(p[0] + 1, &rd, NULL, NULL, &tv), 0);
	assert_false(FD_ISSET(p[0], &rd));
	/* Linux's select leaves the time not slept: all of it slept here. */
	assert_int_equal(tv.tv_sec, 0);
	assert_int_equal(tv.tv_usec, 0);
	assert_int_equal(write(p[1], "x", 1), 1);
	FD_SET(p[0], &rd);
	tv = (struct timeval){ 5, 0 };
	assert_int_equal(hb_os_select(p[0] + 1, &rd, NULL, NULL, &tv), 1);
	assert_true(FD_ISSET(p[0], &rd));
	assert_true(tv.tv_sec <= 5 && tv.tv_sec >= 4); /* not slept */
	FD_SET(p[0], &rd);
	assert_int_equal(hb_os_select(p[0] + 1, &rd, NULL, NULL, NULL), 1);
	tv = (struct timeval){ 0, 1000000 }; /* a second, as the kernel reads it */
	assert_int_equal(hb_os_select(p[0] + 1, &rd, NULL, NULL, &tv), 1);
	tv = (struct timeval){ -1, 0 };
	assert_int_equal(hb_os_select(p[0] + 1, &rd, NULL, NULL, &tv), -EINVAL);
	close(p[0]);
	close(p[1]);
}

static void test_dup2(void **state)
{
	int p[2], spare;
	char c;

	(void)state;
	assert_int_equal(pipe(p), 0);
	spare = dup(p[0]);
	assert_true(spare >= 0);
	close(spare); /* a number known to be free */
	assert_int_equal(hb_os_dup2(p[1], spare), spare);
	assert_int_equal(write(spare, "y", 1), 1);
	assert_int_equal(read(p[0], &c, 1), 1);
	assert_int_equal(c, 'y');
	/* Not close-on-exec, as dup2's copy. */
	assert_int_equal(fcntl(spare, F_GETFD) & FD_CLOEXEC, 0);
	/* Equal numbers: the number if open (dup3 would say EINVAL) ... */
	assert_int_equal(hb_os_dup2(p[0], p[0]), p[0]);
	close(spare);
	/* ... EBADF if not. */
	assert_int_equal(hb_os_dup2(spare, spare), -EBADF);
	assert_int_equal(hb_os_dup2(spare, p[0]), -EBADF);
	close(p[0]);
	close(p[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_poll),
		cmocka_unit_test(test_select),
		cmocka_unit_test(test_dup2),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
