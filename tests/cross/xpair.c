/*
 * xpair.c - a client and server in C for the cross tests (tests/cross/):
 * built against musl or for arm64 with the library of the same build, so
 * that no Python or glibc program is needed where the library under test
 * runs (musl natively, arm64 under qemu-user).
 *
 *   xpair server
 *	listens on 127.0.0.1, prints "PORT n" and "PID n", serves one
 *	connection: per 8-byte request (command, length; big endian)
 *	  1 ECHO n:   reads n bytes, sends them back, then n bytes of its own
 *	  2 FREEZE:   sends "Z" and stops itself (SIGSTOP)
 *	  3 BYE:      exits 0
 *   xpair client PORT N [freeze|idle]
 *	prints "MODE m" (hbshim_fd_mode: 0 none, 1 keepalive, 2 frame),
 *	then what the kernel (under qemu-user: qemu) answers to the two
 *	requests the shim makes for itself with raw system calls (os.c):
 *	"TCP_INFO LEN bytes" (or "TCP_INFO ERR errno") and "COOKIE OK" (a
 *	non-zero SO_COOKIE) or "COOKIE ERR errno" ("COOKIE ERR 0": answered 0),
 *	sends N bytes that look like frame headers and heartbeats
 *	(0x00 0x01, lengths) in pieces of odd sizes, checks the echo and the
 *	server's own bytes byte for byte ("ECHO OK n" or "ECHO BAD ..."),
 *	then "KEEPALIVE k UTO u" (the kernel's values, read with raw system
 *	calls; waits up to 3 s for SO_KEEPALIVE, which the shim sets late). With
 *	freeze: asks the server to freeze, and after its "Z" blocks in read:
 *	"FROZEN ERR errno secs" (or "FROZEN READ r secs"), then the result of
 *	a second read ("AGAIN ERR errno"). With idle: 3.5 s of silence on both
 *	sides before the echo. Exit 0 when every step ran, 1 on a
 *	mismatch or failure.
 */
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef SO_COOKIE
#define SO_COOKIE 57 /* the same number on every architecture */
#endif

#define MAX_N (4u << 20)

static void die(const char *what)
{
	printf("FAIL %s %d %s\n", what, errno, strerror(errno));
	fflush(stdout);
	exit(1);
}

static int read_all(int fd, void *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = read(fd, (char *)buf + got, n - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r == 0 ? -EPIPE : -errno;
		got += (size_t)r;
	}
	return 0;
}

/* Writes in pieces of 1, 2, 3, ... 4099 bytes: frame boundaries fall
 * everywhere. */
static int write_all(int fd, const void *buf, size_t n)
{
	size_t done = 0, piece = 1;

	while (done < n) {
		size_t k = n - done < piece ? n - done : piece;
		ssize_t r = write(fd, (const char *)buf + done, k);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		done += (size_t)r;
		piece = piece >= 4099 ? 1 : piece * 3 + 1;
	}
	return 0;
}

/* Bytes that look like the protocol: heartbeat pairs, length headers,
 * every byte value. seed tells the two directions apart. */
static void pattern(uint8_t *p, size_t n, uint32_t seed)
{
	uint32_t x = seed;

	for (size_t i = 0; i < n; i++) {
		x = x * 1103515245u + 12345u;
		if (i % 97 == 0)
			p[i] = 0x00;
		else if (i % 97 == 1)
			p[i] = 0x01;
		else
			p[i] = (uint8_t)(x >> 16);
	}
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int server(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	int ls = socket(AF_INET, SOCK_STREAM, 0), fd;

	if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 1) < 0 ||
	    getsockname(ls, (struct sockaddr *)&a, &al) < 0)
		die("listen");
	printf("PORT %u\nPID %d\n", ntohs(a.sin_port), (int)getpid());
	fflush(stdout);
	fd = accept(ls, NULL, NULL);
	if (fd < 0)
		die("accept");
	for (;;) {
		uint8_t h[8], *buf;
		uint32_t cmd, n;
		int r = read_all(fd, h, sizeof(h));

		if (r == -EPIPE)
			return 0;
		if (r < 0) {
			errno = -r;
			die("read request");
		}
		cmd = get32(h);
		n = get32(h + 4);
		if (cmd == 1 && n <= MAX_N) {
			if (!(buf = malloc(n ? n : 1)))
				die("malloc");
			if ((r = read_all(fd, buf, n)) < 0 || (r = write_all(fd, buf, n)) < 0) {
				errno = r == -EPIPE ? EPIPE : -r;
				die("echo");
			}
			pattern(buf, n, 2);
			if ((r = write_all(fd, buf, n)) < 0) {
				errno = -r;
				die("send own");
			}
			free(buf);
		} else if (cmd == 2) {
			if (write(fd, "Z", 1) != 1)
				die("write Z");
			raise(SIGSTOP);
			return 0;
		} else {
			return cmd == 3 ? 0 : 2;
		}
	}
}

static int client(int port, uint32_t n, int freeze, int idle)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int (*fd_mode)(int) = (int (*)(int))dlsym(RTLD_DEFAULT, "hbshim_fd_mode");
	int fd = socket(AF_INET, SOCK_STREAM, 0), ka = -1, uto = -1, bad = 0;
	socklen_t l = sizeof(int);
	uint8_t h[8], *out, *in;
	int r;

	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		die("connect");
	printf("MODE %d\n", fd_mode ? fd_mode(fd) : -1);
	{
		/* As the shim asks (hb_os_tcp_info, hb_os_cookie): more room
		 * than any kernel's struct tcp_info; the answer's length says
		 * how much of it the kernel filled. */
		uint8_t ti[512];
		uint64_t cookie = 0;
		socklen_t tl = sizeof(ti), cl = sizeof(cookie);

		if (syscall(SYS_getsockopt, fd, IPPROTO_TCP, TCP_INFO, ti, &tl) < 0)
			printf("TCP_INFO ERR %d\n", errno);
		else
			printf("TCP_INFO LEN %u\n", (unsigned)tl);
		if (syscall(SYS_getsockopt, fd, SOL_SOCKET, SO_COOKIE, &cookie, &cl) < 0)
			printf("COOKIE ERR %d\n", errno);
		else
			printf(cookie ? "COOKIE OK\n" : "COOKIE ERR 0\n");
	}
	fflush(stdout);
	if (idle) /* both ends idle: only heartbeats keep the connection */
		usleep(3500 * 1000);

	out = malloc(n ? n : 1);
	in = malloc(n ? n : 1);
	if (!out || !in)
		die("malloc");
	pattern(out, n, 1);
	put32(h, 1);
	put32(h + 4, n);
	if ((r = write_all(fd, h, 8)) < 0 || (r = write_all(fd, out, n)) < 0) {
		errno = -r;
		die("send");
	}
	if ((r = read_all(fd, in, n)) < 0) {
		errno = r == -EPIPE ? EPIPE : -r;
		die("read echo");
	}
	for (uint32_t i = 0; i < n && !bad; i++)
		if (in[i] != out[i]) {
			printf("ECHO BAD echo at %u: %02x, sent %02x\n", i, in[i], out[i]);
			bad = 1;
		}
	pattern(out, n, 2);
	if ((r = read_all(fd, in, n)) < 0) {
		errno = r == -EPIPE ? EPIPE : -r;
		die("read server bytes");
	}
	for (uint32_t i = 0; i < n && !bad; i++)
		if (in[i] != out[i]) {
			printf("ECHO BAD server bytes at %u: %02x, expected %02x\n", i, in[i], out[i]);
			bad = 1;
		}
	if (bad)
		return 1;
	printf("ECHO OK %u\n", n);
	/* What the kernel holds, not what getsockopt's interposer says. The
	 * shim turns SO_KEEPALIVE on at a random offset below one interval
	 * after the connection opened: wait up to 3 s for it. */
	for (double t0 = now(); ka != 1 && now() - t0 < 3.0; usleep(20000)) {
		l = sizeof(int);
		if (syscall(SYS_getsockopt, fd, SOL_SOCKET, SO_KEEPALIVE, &ka, &l) < 0)
			ka = -errno;
	}
	l = sizeof(int);
	if (syscall(SYS_getsockopt, fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &uto, &l) < 0)
		uto = -errno;
	printf("KEEPALIVE %d UTO %d\n", ka, uto);
	fflush(stdout);
	if (freeze) {
		char z;
		double t0;
		ssize_t k;

		put32(h, 2);
		put32(h + 4, 0);
		if ((r = write_all(fd, h, 8)) < 0 || (r = read_all(fd, &z, 1)) < 0 || z != 'Z') {
			errno = r < 0 ? -r : EPROTO;
			die("freeze");
		}
		t0 = now();
		k = read(fd, &z, 1);
		if (k < 0)
			printf("FROZEN ERR %d %.3f\n", errno, now() - t0);
		else
			printf("FROZEN READ %zd %.3f\n", k, now() - t0);
		k = read(fd, &z, 1);
		printf("AGAIN %s %d\n", k < 0 ? "ERR" : "READ", k < 0 ? errno : (int)k);
	} else {
		put32(h, 3);
		put32(h + 4, 0);
		if (write_all(fd, h, 8) < 0)
			die("bye");
	}
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[1], "server"))
		return server();
	if ((argc == 4 || argc == 5) && !strcmp(argv[1], "client")) {
		unsigned long n = strtoul(argv[3], NULL, 10);

		if (n > MAX_N)
			return 2;
		return client(atoi(argv[2]), (uint32_t)n, argc == 5 && !strcmp(argv[4], "freeze"),
			      argc == 5 && !strcmp(argv[4], "idle"));
	}
	fprintf(stderr, "usage: xpair server | xpair client PORT N [freeze|idle]\n");
	return 2;
}
