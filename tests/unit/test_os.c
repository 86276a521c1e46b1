/*
 * test_os.c - the OS layer's poll, select and dup2 (shim/os.c), built from
 * ppoll, pselect6 and dup3 so that they exist on arm64: the results,
 * errnos and side effects of the calls they stand for; and the calls the
 * interposers fall back to before binding (bytes, errnos, the caller's
 * errno and timeout kept).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/uio.h>
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

/* ppoll and pselect wait as long as asked and leave the caller's timeout
 * as it was (the system calls write the time left into it). */
static void test_ppoll_pselect(void **state)
{
	int p[2];
	struct pollfd f;
	struct timespec ts = { 0, 20000000 };
	sigset_t none;
	fd_set rd;

	(void)state;
	sigemptyset(&none);
	assert_int_equal(pipe(p), 0);
	f = (struct pollfd){ .fd = p[0], .events = POLLIN };
	assert_int_equal(hb_os_ppoll(&f, 1, &ts, NULL), 0);
	assert_int_equal(hb_os_ppoll(&f, 1, &ts, &none), 0);
	assert_int_equal(ts.tv_sec, 0);
	assert_int_equal(ts.tv_nsec, 20000000);
	FD_ZERO(&rd);
	FD_SET(p[0], &rd);
	assert_int_equal(hb_os_pselect(p[0] + 1, &rd, NULL, NULL, &ts, &none), 0);
	assert_int_equal(ts.tv_nsec, 20000000);
	assert_int_equal(write(p[1], "x", 1), 1);
	assert_int_equal(hb_os_ppoll(&f, 1, NULL, NULL), 1);
	assert_true(f.revents & POLLIN);
	FD_SET(p[0], &rd);
	assert_int_equal(hb_os_pselect(p[0] + 1, &rd, NULL, NULL, NULL, NULL), 1);
	assert_true(FD_ISSET(p[0], &rd));
	errno = 1234;
	ts.tv_nsec = -1;
	assert_int_equal(hb_os_ppoll(&f, 1, &ts, NULL), -EINVAL);
	assert_int_equal(errno, 1234);
	close(p[0]);
	close(p[1]);
}

/* The byte calls on a stream pair and a datagram pair. */
static void test_bytes(void **state)
{
	int s[2], d[2];
	char a[8] = { 0 }, b[8] = { 0 };
	struct iovec out[2] = { { "ab", 2 }, { "cde", 3 } }, in[2] = { { a, 1 }, { a + 1, 7 } };
	struct msghdr m = { .msg_iov = in, .msg_iovlen = 2 };
	struct mmsghdr mm[2];
	struct iovec mi[2] = { { "one", 3 }, { "three", 5 } }, mo[2] = { { a, 8 }, { b, 8 } };

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, s), 0);
	assert_int_equal(hb_os_writev(s[0], out, 2), 5);
	assert_int_equal(hb_os_readv(s[1], in, 2), 5);
	assert_memory_equal(a, "abcde", 5);
	assert_int_equal(hb_os_sendto(s[0], "fg", 2, 0, NULL, 0), 2);
	assert_int_equal(hb_os_recvfrom(s[1], b, sizeof(b), 0, NULL, NULL), 2);
	assert_memory_equal(b, "fg", 2);
	m.msg_iov = out;
	assert_int_equal(hb_os_sendmsg(s[0], &m, 0), 5);
	memset(a, 0, sizeof(a));
	m.msg_iov = in;
	assert_int_equal(hb_os_recvmsg(s[1], &m, 0), 5);
	assert_memory_equal(a, "abcde", 5);
	errno = 1234;
	assert_int_equal(hb_os_recvfrom(s[1], b, sizeof(b), MSG_DONTWAIT, NULL, NULL), -EAGAIN);
	assert_int_equal(hb_os_readv(-1, in, 2), -EBADF);
	assert_int_equal(errno, 1234);

	assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM, 0, d), 0);
	memset(mm, 0, sizeof(mm));
	mm[0].msg_hdr = (struct msghdr){ .msg_iov = &mi[0], .msg_iovlen = 1 };
	mm[1].msg_hdr = (struct msghdr){ .msg_iov = &mi[1], .msg_iovlen = 1 };
	assert_int_equal(hb_os_sendmmsg(d[0], mm, 2, 0), 2);
	memset(mm, 0, sizeof(mm));
	memset(a, 0, sizeof(a));
	memset(b, 0, sizeof(b));
	mm[0].msg_hdr = (struct msghdr){ .msg_iov = &mo[0], .msg_iovlen = 1 };
	mm[1].msg_hdr = (struct msghdr){ .msg_iov = &mo[1], .msg_iovlen = 1 };
	assert_int_equal(hb_os_recvmmsg(d[1], mm, 2, MSG_DONTWAIT, NULL), 2);
	assert_int_equal(mm[0].msg_len, 3);
	assert_int_equal(mm[1].msg_len, 5);
	assert_string_equal(a, "one");
	assert_string_equal(b, "three");
	close(s[0]);
	close(s[1]);
	close(d[0]);
	close(d[1]);
}

/* dup, dup3 (O_CLOEXEC kept), close_range; sendfile and splice. */
static void test_fds(void **state)
{
	char path[] = "/tmp/hb_test_osXXXXXX", got[16] = { 0 };
	int p[2], s[2], f, a, b;
	off_t off = 2;

	(void)state;
	assert_int_equal(pipe(p), 0);
	a = (int)hb_os_dup(p[1]);
	assert_true(a > p[1]);
	assert_int_equal(fcntl(a, F_GETFD) & FD_CLOEXEC, 0);
	b = (int)hb_os_dup3(p[1], a + 1, O_CLOEXEC);
	assert_int_equal(b, a + 1);
	assert_true(fcntl(b, F_GETFD) & FD_CLOEXEC);
	assert_int_equal(hb_os_dup3(p[1], p[1], 0), -EINVAL);
	assert_int_equal(hb_os_close_range((unsigned)a, (unsigned)b, 0), 0);
	assert_int_equal(fcntl(a, F_GETFD), -1);
	assert_int_equal(fcntl(b, F_GETFD), -1);

	f = mkstemp(path);
	assert_true(f >= 0);
	unlink(path);
	assert_int_equal(write(f, "0123456789", 10), 10);
	assert_int_equal(hb_os_sendfile(p[1], f, &off, 4), 4);
	assert_int_equal(off, 6);
	assert_int_equal(read(p[0], got, sizeof(got)), 4);
	assert_string_equal(got, "2345");
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, s), 0);
	assert_int_equal(write(p[1], "spliced", 7), 7);
	assert_int_equal(hb_os_splice(p[0], NULL, s[0], NULL, 64, 0), 7);
	memset(got, 0, sizeof(got));
	assert_int_equal(read(s[1], got, sizeof(got)), 7);
	assert_string_equal(got, "spliced");
	assert_int_equal(hb_os_splice(f, NULL, s[0], NULL, 4, 0), -EINVAL); /* no pipe */
	close(f);
	close(s[0]);
	close(s[1]);
	close(p[0]);
	close(p[1]);
}

static void test_epoll_prctl_execve(void **state)
{
	int p[2], ep;
	struct epoll_event ev = { .events = EPOLLIN }, got[2];
	struct timespec zero = { 0, 0 };
	char *const argv[] = { "none", NULL };
	sigset_t none;

	(void)state;
	sigemptyset(&none);
	assert_int_equal(pipe(p), 0);
	ep = epoll_create1(EPOLL_CLOEXEC);
	assert_true(ep >= 0);
	ev.data.u64 = 77;
	assert_int_equal(hb_os_epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev), 0);
	assert_int_equal(hb_os_epoll_pwait(ep, got, 2, 0, NULL), 0);
	assert_int_equal(write(p[1], "x", 1), 1);
	assert_int_equal(hb_os_epoll_pwait(ep, got, 2, -1, &none), 1);
	assert_int_equal(got[0].data.u64, 77);
	{
		long r = hb_os_epoll_pwait2(ep, got, 2, &zero, NULL);

		/* kernels before 5.11 have no epoll_pwait2 */
		assert_true(r == 1 || r == -ENOSYS);
	}
	assert_int_equal(hb_os_epoll_pwait(ep, got, 0, 0, NULL), -EINVAL);
	assert_int_equal(hb_os_prctl(PR_GET_DUMPABLE, 0, 0, 0, 0),
			 prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));
	assert_int_equal(hb_os_prctl(-1, 0, 0, 0, 0), -EINVAL);
	errno = 1234;
	assert_int_equal(hb_os_execve("/nonexistent/hb_test_os", argv, argv + 1), -ENOENT);
	assert_int_equal(errno, 1234);
	close(ep);
	close(p[0]);
	close(p[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_poll),
		cmocka_unit_test(test_select),
		cmocka_unit_test(test_dup2),
		cmocka_unit_test(test_ppoll_pselect),
		cmocka_unit_test(test_bytes),
		cmocka_unit_test(test_fds),
		cmocka_unit_test(test_epoll_prctl_execve),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
