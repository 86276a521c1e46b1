/*
 * frame_client.c - a blocking TCP client on plain libc calls, for the
 * framed-mode tests (tests/bats/frozen_peer.bats). It moves its bytes with
 * read() and write(), not recv() and send(), so that the shim's read/write
 * interposers are exercised by a C program as well as Python's recv/send.
 *
 *   frame_client HOST PORT NBYTES
 *
 * Speaks the protocol of the tests' frozen.py server: writes NBYTES of a
 * pattern, reads them back (echo), writes "done", reads "bye!", then blocks
 * in read() and reports how that ended, then a second read() and a write():
 *
 *   PID 1234
 *   ECHO OK 1000
 *   WAITING
 *   READ1 ERR 110 ETIMEDOUT 1.012     (errno number and name, seconds since
 *   READ2 ERR 110 ETIMEDOUT 1.013      "bye!" arrived)
 *   WRITE ERR 110 ETIMEDOUT 1.013
 *
 * Exit status 0 once it got that far, 2 on a setup or protocol error.
 * SIGPIPE keeps its default action: a shim that raised it where the contract
 * says ETIMEDOUT would show as a missing WRITE line and status 141.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const struct {
	int err;
	const char *name;
} names[] = {
	{ ETIMEDOUT, "ETIMEDOUT" },	  { ECONNRESET, "ECONNRESET" }, { EPIPE, "EPIPE" },
	{ EPROTO, "EPROTO" },		  { ENOTCONN, "ENOTCONN" },	{ EAGAIN, "EAGAIN" },
	{ ECONNREFUSED, "ECONNREFUSED" }, { EINTR, "EINTR" },		{ EBADF, "EBADF" },
	{ ECONNABORTED, "ECONNABORTED" }, { EHOSTUNREACH, "EHOSTUNREACH" },
};

static const char *errname(int e)
{
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].err == e)
			return names[i].name;
	return "E?";
}

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fflush(stdout);
}

/* Read exactly n bytes; 0 on success, -1 with errno (0 at end of stream). */
static int read_exact(int fd, char *buf, size_t n)
{
	while (n) {
		ssize_t r = read(fd, buf, n);

		if (r == 0)
			errno = 0;
		if (r <= 0) {
			if (r < 0 && errno == EINTR)
				continue;
			return -1;
		}
		buf += r;
		n -= (size_t)r;
	}
	return 0;
}

static int write_all(int fd, const char *buf, size_t n)
{
	while (n) {
		ssize_t r = write(fd, buf, n);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf += r;
		n -= (size_t)r;
	}
	return 0;
}

/* One call's outcome as "DATA n", "EOF" or "ERR errno NAME", plus seconds. */
static void report(const char *label, ssize_t r, int err, double t0)
{
	if (r > 0)
		say("%s DATA %zd %.3f\n", label, r, now() - t0);
	else if (r == 0)
		say("%s EOF %.3f\n", label, now() - t0);
	else
		say("%s ERR %d %s %.3f\n", label, err, errname(err), now() - t0);
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa;
	char *out, *in, c;
	size_t n;
	double t0;
	ssize_t r;
	int fd;

	if (argc != 4) {
		fprintf(stderr, "usage: %s HOST PORT NBYTES\n", argv[0]);
		return 2;
	}
	n = strtoul(argv[3], NULL, 10);
	say("PID %d\n", (int)getpid());
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)atoi(argv[2]));
	if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1) {
		fprintf(stderr, "bad address %s\n", argv[1]);
		return 2;
	}
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("connect");
		return 2;
	}
	out = malloc(n + 1);
	in = malloc(n + 1);
	if (!out || !in)
		return 2;
	for (size_t i = 0; i < n; i++)
		out[i] = (char)(i * 131 + (i >> 8));
	if (write_all(fd, out, n) < 0 || read_exact(fd, in, n) < 0) {
		say("EXCHANGE %s\n", errno ? errname(errno) : "EOF");
		return 2;
	}
	if (memcmp(in, out, n)) {
		say("MISMATCH\n");
		return 2;
	}
	say("ECHO OK %zu\n", n);
	if (write_all(fd, "done", 4) < 0 || read_exact(fd, in, 4) < 0 || memcmp(in, "bye!", 4)) {
		say("BYE missing\n");
		return 2;
	}
	t0 = now();
	say("WAITING\n");
	r = read(fd, &c, 1);
	report("READ1", r, errno, t0);
	r = read(fd, &c, 1);
	report("READ2", r, errno, t0);
	r = write(fd, "x", 1);
	if (r > 0)
		r = 0; /* "EOF" would read oddly: a written byte is reported as such */
	if (r == 0)
		say("WRITE OK %.3f\n", now() - t0);
	else
		report("WRITE", r, errno, t0);
	close(fd);
	free(out);
	free(in);
	return 0;
}
