/*
 * splitrw.c - the classic Unix full-duplex pattern on one TCP connection:
 * fork a reader child, the parent writes (rsync's receiver and generator,
 * cu/tip). For tests/bats/split_owner.bats.
 *
 *   splitrw server PORT NBYTES
 *       Listens on 127.0.0.1:PORT, accepts one connection, checks that the
 *       bytes it reads are the pattern (byte-exact, offset by offset) and
 *       echoes them. Once NBYTES came and went back it prints
 *       "FREEZE <monotonic s>" and stops itself (SIGSTOP): a frozen peer
 *       whose kernel still ACKs everything. A wrong byte prints
 *       "SERVER BAD <offset>" and exits 1. Prints "PID n" and "LISTEN"
 *       first.
 *
 *   splitrw client PORT NBYTES
 *       Connects, then forks. The child only reads: it checks the echo
 *       against the pattern, prints "RECV OK n <monotonic s>" once all
 *       NBYTES came, then blocks in read() again and prints how that
 *       ended: "READ ERR <errno> <name> <monotonic s>". The parent only
 *       writes: NBYTES of the pattern in chunks of varied sizes with
 *       pauses of up to 150 ms between them (about 1.5 s in all, so that
 *       heartbeats and background drains interleave with the data both
 *       ways), prints "SENT n", waits until the child has everything,
 *       then writes more until a write fails and prints
 *       "WRITE ERR <errno> <name> <monotonic s>". Exit status: 0 when
 *       both processes got that far, 1 otherwise. SIGPIPE keeps its
 *       default action: a broken pipe where the contract says ETIMEDOUT
 *       shows as a missing WRITE line.
 *
 * Every read and write is a plain libc call on the one socket; the two
 * processes never share a byte of memory after the fork.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* The byte at stream offset i: no short period, so a byte lost, doubled or
 * moved shows at its offset. */
static uint8_t pat(uint64_t i)
{
	uint64_t x = (i + 1) * 0x9e3779b97f4a7c15ull;

	return (uint8_t)(x >> 56 ^ x >> 29);
}

static const char *errname(int e)
{
	switch (e) {
	case ETIMEDOUT:
		return "ETIMEDOUT";
	case ECONNRESET:
		return "ECONNRESET";
	case EPIPE:
		return "EPIPE";
	case EPROTO:
		return "EPROTO";
	case ENOTCONN:
		return "ENOTCONN";
	default:
		return "E?";
	}
}

static int write_all(int fd, const uint8_t *b, size_t n)
{
	while (n) {
		ssize_t w = write(fd, b, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

static int server(int port, uint64_t total)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	static uint8_t buf[65536];
	uint64_t off = 0;
	int one = 1, l, c;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	l = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 1) < 0) {
		perror("listen");
		return 2;
	}
	printf("PID %d\nLISTEN\n", (int)getpid());
	fflush(stdout);
	c = accept(l, NULL, NULL);
	if (c < 0) {
		perror("accept");
		return 2;
	}
	while (off < total) {
		/* Never more than the test's bytes: what the client writes
		 * after them must stay unread (we freeze). */
		size_t want = total - off < sizeof(buf) ? (size_t)(total - off) : sizeof(buf);
		ssize_t r = read(c, buf, want);

		if (r <= 0) {
			printf("SERVER READ %zd %d %s at %llu\n", r, errno, errname(errno),
			       (unsigned long long)off);
			return 1;
		}
		for (ssize_t i = 0; i < r; i++) {
			if (buf[i] != pat(off + (uint64_t)i)) {
				printf("SERVER BAD %llu\n", (unsigned long long)(off + (uint64_t)i));
				return 1;
			}
		}
		if (write_all(c, buf, (size_t)r) < 0) {
			printf("SERVER WRITE %d %s\n", errno, errname(errno));
			return 1;
		}
		off += (uint64_t)r;
	}
	printf("FREEZE %.6f\n", now());
	fflush(stdout);
	raise(SIGSTOP);
	return 0;
}

static int reader(int s, uint64_t total, int done_fd)
{
	static uint8_t buf[65536];
	uint64_t off = 0;
	ssize_t r;

	while (off < total) {
		r = read(s, buf, sizeof(buf));
		if (r <= 0) {
			printf("RECV ERR %zd %d %s at %llu\n", r, errno, errname(errno),
			       (unsigned long long)off);
			return 1;
		}
		for (ssize_t i = 0; i < r; i++) {
			if (buf[i] != pat(off + (uint64_t)i)) {
				printf("RECV BAD %llu\n", (unsigned long long)(off + (uint64_t)i));
				return 1;
			}
		}
		off += (uint64_t)r;
	}
	printf("RECV OK %llu %.6f\n", (unsigned long long)off, now());
	fflush(stdout);
	if (write(done_fd, "k", 1) != 1)
		return 1;
	r = read(s, buf, sizeof(buf));
	if (r < 0)
		printf("READ ERR %d %s %.6f\n", errno, errname(errno), now());
	else
		printf("READ RET %zd %.6f\n", r, now());
	return r < 0 ? 0 : 1;
}

static int writer(int s, uint64_t total, int done_fd)
{
	static uint8_t buf[65536];
	uint64_t off = 0, more;
	uint32_t seed = 12345;
	char k;

	for (int chunk = 0; off < total; chunk++) {
		size_t n;

		seed = seed * 1103515245u + 12345u;
		n = 1 + (seed >> 8) % sizeof(buf);
		if (n > total - off)
			n = (size_t)(total - off);
		for (size_t i = 0; i < n; i++)
			buf[i] = pat(off + i);
		if (write_all(s, buf, n) < 0) {
			printf("SEND ERR %d %s at %llu\n", errno, errname(errno), (unsigned long long)off);
			return 1;
		}
		off += n;
		/* Pauses around the heartbeat interval: idle spells both ways. */
		usleep((useconds_t)((seed >> 4) % 150000));
	}
	printf("SENT %llu\n", (unsigned long long)off);
	fflush(stdout);
	if (read(done_fd, &k, 1) != 1) {
		printf("CHILD GONE\n");
		return 1;
	}
	/* The peer is frozen now: fill its window, then block. */
	for (more = 0;; more += sizeof(buf)) {
		for (size_t i = 0; i < sizeof(buf); i++)
			buf[i] = pat(off + more + i);
		if (write_all(s, buf, sizeof(buf)) < 0)
			break;
	}
	printf("WRITE ERR %d %s %.6f\n", errno, errname(errno), now());
	return 0;
}

static int client(int port, uint64_t total)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int s, p[2], st = 0, r;
	pid_t kid;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	s = socket(AF_INET, SOCK_STREAM, 0);
	if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a)) < 0) {
		perror("connect");
		return 2;
	}
	if (pipe(p) < 0)
		return 2;
	printf("PID %d\n", (int)getpid());
	fflush(stdout);
	kid = fork();
	if (kid < 0)
		return 2;
	if (kid == 0) {
		close(p[0]);
		r = reader(s, total, p[1]);
		fflush(stdout);
		_exit(r);
	}
	close(p[1]);
	r = writer(s, total, p[0]);
	fflush(stdout);
	if (waitpid(kid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st))
		r = 1;
	return r;
}

int main(int argc, char **argv)
{
	uint64_t n;
	int port;

	if (argc != 4 || (strcmp(argv[1], "server") && strcmp(argv[1], "client"))) {
		fprintf(stderr, "usage: splitrw server|client PORT NBYTES\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	port = atoi(argv[2]);
	n = strtoull(argv[3], NULL, 10);
	if (port <= 0 || port > 65535 || !n) {
		fprintf(stderr, "splitrw: bad PORT or NBYTES\n");
		return 2;
	}
	return strcmp(argv[1], "server") ? client(port, n) : server(port, n);
}
