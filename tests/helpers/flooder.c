/*
 * flooder - hand-written hbshim peers (no shim in this process) that load a
 * shimmed server, and the probes that measure what the load does to it
 * (tests/bats/flood.bats). Byte layout: docs/PROTOCOL.md.
 *
 *   flooder flood HOST PORT SECS [close|tail]
 *       a framed client: hello (interval 60 s, so the server never calls it
 *       dead), with "close" one data frame "q" (the test server closes a
 *       connection that sends it: a lingering close), then heartbeat frames
 *       as fast as the server takes them, for SECS seconds.
 *       Prints "FLOOD <bytes sent> <MB/s>". With "tail", then sends a data
 *       frame "end!" and waits (5 s at most) for the server's echo of it
 *       behind whatever heartbeats are still queued: "TAIL OK <ms>".
 *   flooder watch HOST PORT SECS
 *       a framed client that sends its hello and a heartbeat every 100 ms,
 *       reads the server's hello, then times the server's heartbeats for SECS
 *       seconds. Prints "WATCH <heartbeats> <largest gap ms>"; any byte that
 *       is not a heartbeat is a failure (exit 2).
 *   flooder echo HOST PORT SECS
 *       a raw client (no hello): one byte, wait for its echo, every 10 ms
 *       for SECS seconds. Prints "ECHO <round trips> <largest ms>".
 *   flooder prefix|idle HOST PORT N SECS
 *       N connections that send the first 2 bytes of the magic (prefix) or
 *       nothing (idle), held open SECS seconds. For prefix, each then must
 *       get its 2 bytes back (the server echoes a raw stream): prints
 *       "HELD <n> ECHOED <k>".
 *
 *   flooder late HOST PORT
 *       a raw client that sends e5 48 100 ms after connecting and waits
 *       (3 s at most) for the echo: "LATE ECHO <ms>".
 *
 * Exit status 0 when it ran, 2 on a setup or protocol error.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int dial(const char *host, int port)
{
	struct sockaddr_in sa;
	int fd, one = 1;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		return -1;
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int write_all(int fd, const void *b, size_t n)
{
	const uint8_t *p = b;

	while (n) {
		ssize_t r = send(fd, p, n, MSG_NOSIGNAL);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static int read_exact(int fd, void *b, size_t n)
{
	uint8_t *p = b;

	while (n) {
		ssize_t r = recv(fd, p, n, 0);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

/* Our hello: version 1, interval 60 s, timeout 180 s. */
static int send_hello(int fd)
{
	static const uint8_t h[14] = { 0xe5, 0x48, 0x42, 0x53, 1, 0, 0, 0, 0xea, 0x60, 0, 2, 0xbf, 0x20 };

	return write_all(fd, h, sizeof(h));
}

/* After the flood: a data frame "end!", then the server's direction (its
 * hello, heartbeats) read until the echo of it comes back, 5 s at most. */
static int get_tail(int fd)
{
	static const uint8_t end[9] = { 1, 0, 0, 0, 4, 'e', 'n', 'd', '!' };
	uint8_t h[14], t[5];
	double t0 = now();
	struct timeval tv = { 5, 0 };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (write_all(fd, end, sizeof(end)) < 0 || read_exact(fd, h, sizeof(h)) < 0 || h[0] != 0xe5) {
		printf("TAIL LOST (no hello)\n");
		return 2;
	}
	for (;;) {
		if (now() - t0 > 5 || read_exact(fd, t, 2) < 0) {
			printf("TAIL LOST %.0f\n", (now() - t0) * 1000);
			return 2;
		}
		if (t[0] == 0 && (t[1] == 1 || t[1] == 2))
			continue;
		if (t[0] == 1 && read_exact(fd, t + 2, 3) == 0 && t[4] == 4 && !t[1] && !t[2] && !t[3] &&
		    read_exact(fd, t, 4) == 0 && !memcmp(t, "end!", 4)) {
			printf("TAIL OK %.0f\n", (now() - t0) * 1000);
			return 0;
		}
		printf("TAIL BAD\n");
		return 2;
	}
}

static int flood(const char *host, int port, double secs, int closing, int tail)
{
	static uint8_t hb[65536];
	static const uint8_t q[6] = { 1, 0, 0, 0, 1, 'q' };
	double t0, t;
	unsigned long long sent = 0;
	int fd = dial(host, port);

	if (fd < 0 || send_hello(fd) < 0 || (closing && write_all(fd, q, sizeof(q)) < 0)) {
		perror("flood: setup");
		return 2;
	}
	for (size_t i = 0; i < sizeof(hb); i += 2) {
		hb[i] = 0;
		hb[i + 1] = 1;
	}
	t0 = now();
	while ((t = now()) - t0 < secs) {
		ssize_t r = send(fd, hb, sizeof(hb), MSG_NOSIGNAL | MSG_DONTWAIT);

		if (r > 0) {
			sent += (unsigned long long)r;
			if (r % 2)
				write_all(fd, hb + 1, 1); /* the rest of the heartbeat */
			sent += (unsigned long long)(r % 2);
		} else if (r < 0 && errno == EAGAIN) {
			struct pollfd p = { fd, POLLOUT, 0 };

			poll(&p, 1, 10);
		} else if (r < 0 && errno != EINTR) {
			break; /* the server reset a lingering socket: that is its right */
		}
	}
	printf("FLOOD %llu %.1f\n", sent, (double)sent / (now() - t0) / 1e6);
	if (tail)
		return get_tail(fd);
	close(fd);
	return 0;
}

static int watch(const char *host, int port, double secs)
{
	static const uint8_t hb[2] = { 0, 1 };
	uint8_t h[14], b[64];
	double t0, last = 0, gap = 0, sent;
	int fd = dial(host, port), beats = 0;

	if (fd < 0 || send_hello(fd) < 0 || read_exact(fd, h, sizeof(h)) < 0 || h[0] != 0xe5) {
		fprintf(stderr, "watch: no hello from the server\n");
		return 2;
	}
	t0 = sent = now();
	while (now() - t0 < secs) {
		struct pollfd p = { fd, POLLIN, 0 };
		ssize_t r;

		/* A live peer: the server declares a peer dead after its own
		 * timeout of silence, whatever our hello announced. */
		if (now() - sent >= 0.1) {
			if (write_all(fd, hb, sizeof(hb)) < 0) {
				fprintf(stderr, "watch: cannot send a heartbeat\n");
				return 2;
			}
			sent = now();
		}
		if (poll(&p, 1, 50) <= 0)
			continue;
		r = recv(fd, b, 2, 0);
		if (r == 1 && read_exact(fd, b + 1, 1) == 0)
			r = 2;
		if (r != 2 || b[0] != 0 || b[1] != 1) {
			fprintf(stderr, "watch: not a heartbeat (%zd bytes)\n", r);
			return 2;
		}
		{
			double t = now();

			if (beats && t - last > gap)
				gap = t - last;
			last = t;
			beats++;
		}
	}
	printf("WATCH %d %.0f\n", beats, gap * 1000);
	close(fd);
	return 0;
}

static int echo(const char *host, int port, double secs)
{
	double t0, worst = 0;
	int fd = dial(host, port), n = 0;

	if (fd < 0) {
		perror("echo: connect");
		return 2;
	}
	t0 = now();
	while (now() - t0 < secs) {
		char c = 'x', d = 0;
		double s = now();

		if (write_all(fd, &c, 1) < 0 || read_exact(fd, &d, 1) < 0 || d != 'x') {
			fprintf(stderr, "echo: lost the echo after %d round trips\n", n);
			return 2;
		}
		if (now() - s > worst)
			worst = now() - s;
		n++;
		usleep(10000);
	}
	printf("ECHO %d %.1f\n", n, worst * 1000);
	close(fd);
	return 0;
}

static int hold(const char *host, int port, int n, double secs, int prefix)
{
	static const uint8_t m[2] = { 0xe5, 0x48 };
	int *fds = calloc((size_t)n, sizeof(int)), echoed = 0;

	if (!fds)
		return 2;
	for (int i = 0; i < n; i++) {
		fds[i] = dial(host, port);
		if (fds[i] < 0 || (prefix && write_all(fds[i], m, 2) < 0)) {
			perror("hold: connect");
			return 2;
		}
	}
	usleep((useconds_t)(secs * 1e6));
	for (int i = 0; i < n; i++) {
		uint8_t b[2];
		struct pollfd p = { fds[i], POLLIN, 0 };

		if (prefix && poll(&p, 1, 0) == 1 && read_exact(fds[i], b, 2) == 0 && !memcmp(b, m, 2))
			echoed++;
		close(fds[i]);
	}
	printf("HELD %d ECHOED %d\n", n, echoed);
	free(fds);
	return 0;
}

/* A raw client whose data starts like the magic, sent 100 ms after connect
 * (past the accepting side's first look): how long until the echo. */
static int late(const char *host, int port)
{
	static const uint8_t m[2] = { 0xe5, 0x48 };
	uint8_t b[2];
	double t0;
	struct pollfd p;
	int fd = dial(host, port);

	if (fd < 0)
		return 2;
	usleep(100000);
	t0 = now();
	if (write_all(fd, m, 2) < 0)
		return 2;
	p = (struct pollfd){ fd, POLLIN, 0 };
	if (poll(&p, 1, 3000) != 1 || read_exact(fd, b, 2) < 0 || memcmp(b, m, 2)) {
		printf("LATE LOST\n");
		return 2;
	}
	printf("LATE ECHO %.0f\n", (now() - t0) * 1000);
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 5 && !strcmp(argv[1], "flood"))
		return flood(argv[2], atoi(argv[3]), atof(argv[4]), argc > 5 && !strcmp(argv[5], "close"),
			     argc > 5 && !strcmp(argv[5], "tail"));
	if (argc == 5 && !strcmp(argv[1], "watch"))
		return watch(argv[2], atoi(argv[3]), atof(argv[4]));
	if (argc == 5 && !strcmp(argv[1], "echo"))
		return echo(argv[2], atoi(argv[3]), atof(argv[4]));
	if (argc == 4 && !strcmp(argv[1], "late"))
		return late(argv[2], atoi(argv[3]));
	if (argc == 6 && (!strcmp(argv[1], "prefix") || !strcmp(argv[1], "idle")))
		return hold(argv[2], atoi(argv[3]), atoi(argv[4]), atof(argv[5]),
			    !strcmp(argv[1], "prefix"));
	fprintf(stderr, "usage: %s flood|watch|echo HOST PORT SECS [close] | prefix|idle HOST PORT N SECS\n",
		argv[0]);
	return 2;
}
