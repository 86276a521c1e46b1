/*
 * loopback.h - what several test helpers share: a monotonic clock in
 * milliseconds, the exit for a failed setup call, the two ends of a TCP
 * connection over 127.0.0.1, and whole writes and reads (a short read ends
 * the helper with status 4 and the bytes still missing). Header-only (static inline): each helper
 * is one .c file, built alone into build/helpers/.
 */
#ifndef HB_TEST_LOOPBACK_H
#define HB_TEST_LOOPBACK_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static inline double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* A setup call failed: "WHAT: strerror(errno)" on stderr, exit status 2. */
static inline void die(const char *what)
{
	fprintf(stderr, "%s: %s\n", what, strerror(errno));
	exit(2);
}

/* A listening socket on 127.0.0.1, an ephemeral port (in *port). */
static inline int listener(int backlog, int *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int one = 1, l = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, backlog) ||
	    getsockname(l, (struct sockaddr *)&a, &len))
		die("listen");
	*port = ntohs(a.sin_port);
	return l;
}

/* A blocking connection to 127.0.0.1:port. */
static inline int dial(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int s = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(s, (struct sockaddr *)&a, sizeof(a)))
		die("connect");
	return s;
}

/* Write all of p[0..n): a failed or empty write dies. */
static inline void write_all(int fd, const unsigned char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w <= 0)
			die("write");
		p += w;
		n -= (size_t)w;
	}
}

/* Read exactly n bytes into p. */
static inline void read_all(int fd, unsigned char *p, size_t n)
{
	while (n) {
		ssize_t r = read(fd, p, n);

		if (r <= 0) {
			fprintf(stderr, "read: %zd (%s) with %zu bytes missing\n", r,
				r ? strerror(errno) : "end of stream", n);
			exit(4);
		}
		p += r;
		n -= (size_t)r;
	}
}

#endif
