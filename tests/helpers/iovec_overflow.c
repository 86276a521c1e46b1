/*
 * iovec_overflow.c - bad iovec arrays on a framed connection get the
 * kernel's answer (tests/bats/hardening.bats).
 *
 *   iovec_overflow [CALL]      (CALL: only that one, e.g. readv)
 *
 * Run with HBSHIM_FRAME='*': opens a framed TCP connection to itself on
 * 127.0.0.1 and, as the reference, an AF_UNIX socket pair the shim does not
 * track. Each case calls writev, sendmsg, sendmmsg, readv, recvmsg and
 * recvmmsg with one bad iovec array on both and prints
 *
 *   CASE <call> <array> kernel=<errno> shim=<errno>
 *
 * The arrays: {16, 2^64-8} (lengths whose sum wraps), {16, 2^63} (one
 * length above SSIZE_MAX), 1025 entries (above IOV_MAX), 2^30 entries
 * given for an array of 2 at the end of a mapping (nothing past it may be
 * read), and {2^62, 2^62}
 * (a sum above SSIZE_MAX; Linux answers EFAULT, the shim EINVAL, which POSIX
 * names). Then it checks that the framed stream still carries bytes intact
 * both ways. Prints "MODE 2" first (the connection is framed), "OK" last;
 * exit status 0 when every answer was the expected one, 1 otherwise, 2 on a
 * setup error.
 */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define NBIG 1025

static char a[16] = "0123456789abcdef", b[16];
static struct iovec big[NBIG], *edge;
static int bad;

static void die(const char *what)
{
	printf("SETUP %s: %s\n", what, strerror(errno));
	fflush(stdout);
	_exit(2);
}

/* One call on fd with iovec array v[n]: its errno, 0 if it succeeded. */
static int call(const char *op, int fd, struct iovec *v, size_t n)
{
	struct msghdr m;
	struct mmsghdr mm;
	long r = 0;

	memset(&m, 0, sizeof(m));
	m.msg_iov = v;
	m.msg_iovlen = n;
	memset(&mm, 0, sizeof(mm));
	mm.msg_hdr = m;
	errno = 0;
	if (!strcmp(op, "writev"))
		r = writev(fd, v, (int)n);
	else if (!strcmp(op, "sendmsg"))
		r = sendmsg(fd, &m, MSG_DONTWAIT);
	else if (!strcmp(op, "sendmmsg"))
		r = sendmmsg(fd, &mm, 1, MSG_DONTWAIT);
	else if (!strcmp(op, "readv"))
		r = readv(fd, v, (int)n);
	else if (!strcmp(op, "recvmsg"))
		r = recvmsg(fd, &m, MSG_DONTWAIT);
	else if (!strcmp(op, "recvmmsg"))
		r = recvmmsg(fd, &mm, 1, MSG_DONTWAIT, NULL);
	return r < 0 ? errno : 0;
}

static void check(const char *op, const char *name, int ref, int fr, struct iovec *v, size_t n,
		  int want)
{
	int k = call(op, ref, v, n), s = call(op, fr, v, n);

	printf("CASE %s %s kernel=%s shim=%s\n", op, name, k ? strerrorname_np(k) : "0",
	       s ? strerrorname_np(s) : "0");
	if (s != (want ? want : k) || !s)
		bad = 1;
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	int ls, cl, sv, pair[2], (*mode)(int);
	char buf[64];
	static const char *ops[] = { "writev", "sendmsg", "sendmmsg", "readv", "recvmsg",
				     "recvmmsg" };

	setvbuf(stdout, NULL, _IOLBF, 0);
	alarm(10); /* a read that ignored a bad entry could wait forever */
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((ls = socket(AF_INET, SOCK_STREAM, 0)) < 0 || bind(ls, (void *)&sa, sizeof(sa)) ||
	    listen(ls, 1) || getsockname(ls, (void *)&sa, &sl))
		die("listen");
	if ((cl = socket(AF_INET, SOCK_STREAM, 0)) < 0 || connect(cl, (void *)&sa, sizeof(sa)))
		die("connect");
	if ((sv = accept(ls, NULL, NULL)) < 0)
		die("accept");
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair))
		die("socketpair");
	/* Settle the framing both ways before the bad calls. */
	if (write(cl, "hello", 5) != 5 || read(sv, buf, sizeof(buf)) != 5 ||
	    write(sv, "x", 1) != 1 || read(cl, buf, sizeof(buf)) != 1)
		die("exchange");
	mode = (int (*)(int))dlsym(RTLD_DEFAULT, "hbshim_fd_mode");
	printf("MODE %d\n", mode ? mode(cl) : -1);

	for (int i = 0; i < NBIG; i++)
		big[i] = (struct iovec){ a, 1 };
	{
		char *p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (p == MAP_FAILED || munmap(p + 4096, 4096))
			die("mmap");
		edge = (struct iovec *)(p + 4096) - 2;
		edge[0] = (struct iovec){ b, 8 };
		edge[1] = (struct iovec){ b + 8, 8 };
	}
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		const char *op = ops[i];
		int rx = op[0] == 'r';

		if (argc > 1 && strcmp(argv[1], op))
			continue;
		struct iovec wrap[2] = { { rx ? b : a, 16 }, { rx ? b : a, (size_t)-8 } };
		struct iovec over[2] = { { rx ? b : a, 16 }, { rx ? b : a, (size_t)1 << 63 } };
		struct iovec sum[2] = { { rx ? b : a, (size_t)1 << 62 },
					{ rx ? b : a, (size_t)1 << 62 } };
		/* Bytes queued for the reads, so that a read that ignored
		 * the bad entry would return them instead of failing. */
		if (rx && (write(sv, "q", 1) != 1 || write(pair[1], "q", 1) != 1))
			die("queue");
		check(op, "{16,2^64-8}", pair[0], cl, wrap, 2, 0);
		check(op, "{16,2^63}", pair[0], cl, over, 2, 0);
		check(op, "1025-entries", pair[0], cl, big, NBIG, 0);
		check(op, "2^30-entries", pair[0], cl, edge, (size_t)1 << 30, 0);
		check(op, "{2^62,2^62}", pair[0], cl, sum, 2, EINVAL);
		if (rx && (read(cl, buf, 1) != 1 || buf[0] != 'q' || read(pair[0], buf, 1) != 1))
			die("drain");
	}

	/* The stream is intact: nothing of the failed calls went out. */
	{
		struct iovec v[2] = { { "af", 2 }, { "ter", 3 } };
		ssize_t n1, n2;

		n1 = writev(cl, v, 2);
		n2 = read(sv, buf, sizeof(buf));
		if (n1 != 5 || n2 != 5 || memcmp(buf, "after", 5)) {
			printf("STREAM c->s %zd %zd\n", n1, n2);
			bad = 1;
		}
		n1 = write(sv, "back", 4);
		n2 = readv(cl, (struct iovec[]){ { buf, sizeof(buf) } }, 1);
		if (n1 != 4 || n2 != 4 || memcmp(buf, "back", 4)) {
			printf("STREAM s->c %zd %zd\n", n1, n2);
			bad = 1;
		}
	}
	printf("%s\n", bad ? "FAIL" : "OK");
	return bad;
}
