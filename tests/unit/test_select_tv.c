/*
 * test_select_tv.c - hb_os_select (the select fallback built on pselect6)
 * reads a timeval as Linux's select(2) does, compared call by call with the
 * kernel's own select on the same arguments: microseconds of a second or
 * more (or less than minus one) carry into the seconds, then a negative
 * part is EINVAL.
 */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <cmocka.h>

#include "hb.h"

/* select on a readable pipe with tv: ours and the kernel's (-errno). */
static void both(const struct timeval *tv, long *ours, long *kernel)
{
	int p[2];
	fd_set rd;
	struct timeval t;

	assert_int_equal(pipe(p), 0);
	assert_int_equal(write(p[1], "x", 1), 1);
	FD_ZERO(&rd);
	FD_SET(p[0], &rd);
	t = *tv;
	*ours = hb_os_select(p[0] + 1, &rd, NULL, NULL, &t);
	FD_ZERO(&rd);
	FD_SET(p[0], &rd);
	t = *tv;
#ifdef SYS_select
	*kernel = syscall(SYS_select, p[0] + 1, &rd, NULL, NULL, &t);
#else
	*kernel = -ENOSYS;
#endif
	if (*kernel < 0)
		*kernel = -errno;
	close(p[0]);
	close(p[1]);
}

static void test_as_the_kernel(void **state)
{
	static const struct timeval cases[] = {
		{ 0, 0 },        { 0, 999999 },       { 0, 1000000 },  { 0, 2500000 },
		{ 3, 1999999 },  { 0, LONG_MAX },     { 0, -1 },       { -1, 0 },
		{ -1, 1000000 }, { LONG_MAX, 999999 }, { LONG_MAX, 1000000 },
		{ LONG_MAX - 5, 7000000 }, { 2, -1000000 }, { 2, -1000001 }, { LONG_MIN, -1000000 },
		{ -5, 5000000 },
	};

	(void)state;
#ifndef SYS_select
	/* arm64 has no select system call to compare with: each libc
	 * converts the timeval itself there, and so does hb_os_select. */
	skip();
#endif
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		long ours, kernel;

		both(&cases[i], &ours, &kernel);
		print_message("{%ld, %ld}: ours %ld, kernel %ld\n", (long)cases[i].tv_sec,
			      (long)cases[i].tv_usec, ours, kernel);
		assert_int_equal(ours, kernel);
	}
}

/* A carried-over second is waited for: {0, 1200000} on an empty pipe
 * sleeps 1.2 s, all of it, and leaves {0, 0}. */
static void test_waits_the_carried_time(void **state)
{
	int p[2];
	fd_set rd;
	struct timeval tv = { 0, 1200000 };
	struct timespec a, b;
	long ms;

	(void)state;
	assert_int_equal(pipe(p), 0);
	FD_ZERO(&rd);
	FD_SET(p[0], &rd);
	clock_gettime(CLOCK_MONOTONIC, &a);
	assert_int_equal(hb_os_select(p[0] + 1, &rd, NULL, NULL, &tv), 0);
	clock_gettime(CLOCK_MONOTONIC, &b);
	ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
	assert_true(ms >= 1190);
	assert_int_equal(tv.tv_sec, 0);
	assert_int_equal(tv.tv_usec, 0);
	close(p[0]);
	close(p[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_as_the_kernel),
		cmocka_unit_test(test_waits_the_carried_time),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
