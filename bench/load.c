/*
 * load.c - the load programs of the benchmark suite, one binary with a mode
 * argument so that client and server are always separate processes:
 *
 *   load tput-server portfile=F          accept one connection, read to EOF
 *   load tput-client port=P size=S secs=D  write S-byte chunks for D seconds,
 *                                        print "tput BYTES SECS MBPS"
 *   load rtt-server  portfile=F          echo 1 byte at a time until EOF
 *   load rtt-client  port=P n=N warm=W   N timed 1-byte ping-pongs,
 *                                        print "rtt N P50_US P99_US MEAN_US CPU_S"
 *   load scale-server portfile=F ports=K expect=N interval_ms=I jsecs=S
 *   load scale-client portfile=F n=N busy=B
 *   load detect-server portfile=F
 *   load detect-client port=P n=N window=SECS
 *   load freeport                        print a free loopback port
 *   load sched-probe secs=S              how late 10 ms sleeps wake up
 *   load cpu-of CMD ARGS...              run CMD, print "child_cpu SECS"
 *
 * Nothing here knows about hbshim: the driver (run.sh) runs the same
 * binary with and without LD_PRELOAD. Every program talks plain blocking
 * sockets, or non-blocking ones under epoll, like the legacy programs
 * hbshim is meant for. (Blocking sockets under epoll would hang under
 * hbshim: a lone hello or heartbeat can make a socket readable before the
 * shim raises SO_RCVLOWAT, and a blocking read then waits for real data.)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>

/* ------------------------------------------------------------ helpers */

static int g_argc;
static char **g_argv;

static const char *arg_str(const char *key, const char *def)
{
	size_t kl = strlen(key);

	for (int i = 2; i < g_argc; i++)
		if (!strncmp(g_argv[i], key, kl) && g_argv[i][kl] == '=')
			return g_argv[i] + kl + 1;
	return def;
}

static long arg_long(const char *key, long def)
{
	const char *s = arg_str(key, NULL);

	return s ? strtol(s, NULL, 0) : def;
}

static double arg_double(const char *key, double def)
{
	const char *s = arg_str(key, NULL);

	return s ? strtod(s, NULL) : def;
}

static void die(const char *what)
{
	fprintf(stderr, "load: %s: %s\n", what, strerror(errno));
	exit(2);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t now_ms(void)
{
	return now_ns() / 1000000ull;
}

/* Listen on 127.0.0.1, port 0 (the kernel picks); return the fd. */
static int listen_any(int *port)
{
	struct sockaddr_in a;
	socklen_t al = sizeof(a);
	int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0)
		die("socket");
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		die("bind");
	if (listen(fd, 4096) < 0)
		die("listen");
	if (getsockname(fd, (struct sockaddr *)&a, &al) < 0)
		die("getsockname");
	*port = ntohs(a.sin_port);
	return fd;
}

/* Write the ports to F.tmp and rename: the driver never sees half a file. */
static void write_ports(const char *file, const int *ports, int n)
{
	char tmp[4096];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", file);
	f = fopen(tmp, "w");
	if (!f)
		die("portfile");
	for (int i = 0; i < n; i++)
		fprintf(f, "%d\n", ports[i]);
	fclose(f);
	if (rename(tmp, file) < 0)
		die("rename portfile");
}

static int read_ports(const char *file, int *ports, int max)
{
	FILE *f = fopen(file, "r");
	int n = 0;

	if (!f)
		die("portfile");
	while (n < max && fscanf(f, "%d", &ports[n]) == 1)
		n++;
	fclose(f);
	return n;
}

static int connect_to(int port)
{
	struct sockaddr_in a;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0)
		die("socket");
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons((uint16_t)port);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		die("connect");
	return fd;
}

static void nodelay(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static int accept_one(int lfd)
{
	int fd;

	do
		fd = accept(lfd, NULL, NULL);
	while (fd < 0 && errno == EINTR);
	if (fd < 0)
		die("accept");
	return fd;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static uint64_t pct(const uint64_t *sorted, size_t n, double p)
{
	size_t i = (size_t)(p * (double)(n - 1) + 0.5);

	return n ? sorted[i < n ? i : n - 1] : 0;
}

static long vmrss_kb(void)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmRSS:", 6))
			kb = strtol(line + 6, NULL, 10);
	fclose(f);
	return kb;
}

/* CPU seconds (user + system, all threads) this process used so far. */
static double cpu_self(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
	       (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static volatile sig_atomic_t got_usr1, got_usr2, got_term;

static void on_sig(int s)
{
	if (s == SIGUSR1)
		got_usr1++;
	else if (s == SIGUSR2)
		got_usr2++;
	else
		got_term = 1;
}

static void catch_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sig; /* no SA_RESTART: epoll_wait returns EINTR */
	sigaction(SIGUSR1, &sa, NULL);
	sigaction(SIGUSR2, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

/* ------------------------------------------------------------ throughput */

/* The server reads to EOF, then closes: the client's final read returning 0
 * proves every byte was delivered (through a relay too). */
static int tput_server(void)
{
	int port, lfd = listen_any(&port), fd;
	size_t bufsz = 256 * 1024;
	char *buf = malloc(bufsz);
	uint64_t total = 0;

	write_ports(arg_str("portfile", "port"), &port, 1);
	fd = accept_one(lfd);
	for (;;) {
		ssize_t r = read(fd, buf, bufsz);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			die("read");
		if (r == 0)
			break;
		total += (uint64_t)r;
	}
	close(fd);
	printf("received %llu %.6f\n", (unsigned long long)total, cpu_self());
	return 0;
}

/* Write S-byte chunks for D seconds, half-close, wait for the server's
 * close; throughput = bytes / (first write .. server's EOF seen). */
static int tput_client(void)
{
	int fd = connect_to((int)arg_long("port", 0));
	size_t size = (size_t)arg_long("size", 65536);
	double secs = arg_double("secs", 1.0);
	char *buf = malloc(size), c;
	uint64_t t0, end, sent = 0, t1;
	unsigned i = 0;

	memset(buf, 'x', size);
	t0 = now_ns();
	end = t0 + (uint64_t)(secs * 1e9);
	for (;; i++) {
		if ((i & 15) == 0 && now_ns() >= end)
			break;
		if (write_all(fd, buf, size) < 0)
			die("write");
		sent += size;
	}
	shutdown(fd, SHUT_WR);
	while (read(fd, &c, 1) > 0)
		;
	t1 = now_ns();
	close(fd);
	printf("tput %llu %.6f %.2f %.6f\n", (unsigned long long)sent, (t1 - t0) / 1e9,
	       sent / ((t1 - t0) / 1e9) / 1e6, cpu_self());
	return 0;
}

/* ------------------------------------------------------------ ping-pong */

static int rtt_server(void)
{
	int port, lfd = listen_any(&port), fd;
	char c;

	write_ports(arg_str("portfile", "port"), &port, 1);
	fd = accept_one(lfd);
	nodelay(fd);
	for (;;) {
		ssize_t r = read(fd, &c, 1);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		if (write_all(fd, &c, 1) < 0)
			break;
	}
	printf("served %.6f\n", cpu_self());
	return 0;
}

static int rtt_client(void)
{
	int fd = connect_to((int)arg_long("port", 0));
	long n = arg_long("n", 20000), warm = arg_long("warm", 2000);
	uint64_t *s = calloc((size_t)n, sizeof(*s)), sum = 0;
	char c = 'p';

	nodelay(fd);
	for (long i = -warm; i < n; i++) {
		uint64_t t0 = now_ns();

		if (write_all(fd, &c, 1) < 0)
			die("write");
		for (;;) {
			ssize_t r = read(fd, &c, 1);

			if (r == 1)
				break;
			if (r < 0 && errno == EINTR)
				continue;
			die("read");
		}
		if (i >= 0) {
			s[i] = now_ns() - t0;
			sum += s[i];
		}
	}
	close(fd);
	qsort(s, (size_t)n, sizeof(*s), cmp_u64);
	printf("rtt %ld %.2f %.2f %.2f %.6f\n", n, pct(s, (size_t)n, 0.50) / 1e3,
	       pct(s, (size_t)n, 0.99) / 1e3, (double)sum / (double)n / 1e3, cpu_self());
	return 0;
}

/* ------------------------------------------------------------ scale */

/*
 * The server accepts on K ports (the kernel's connect() port search slows to
 * a crawl past ~14k connections to one destination), echoes whatever
 * arrives, and on SIGUSR2 samples heartbeat inter-arrival times for jsecs
 * seconds: every 20 ms it reads TCP_INFO of up to 1000 connections that
 * never carried application data; tcpi_last_data_recv (jiffy resolution)
 * dates the last segment, which on an idle framed connection is the peer's
 * last heartbeat.
 */
#define JMAX 1000

static void jitter_sample(const int *fds, const uint8_t *had_data, int nfds, double secs,
			  long interval_ms)
{
	int sel[JMAX], ns = 0;
	int64_t last[JMAX];
	size_t cap = 64 * JMAX, n = 0;
	uint64_t *iv = malloc(cap * sizeof(*iv)), end = now_ms() + (uint64_t)(secs * 1000);
	double sum = 0, sq = 0;
	long late = 0;

	/* Spread the sample over the whole connection set. */
	for (int i = 0; i < nfds && ns < JMAX; i += (nfds / JMAX > 1 ? nfds / JMAX : 1))
		if (!had_data[i])
			sel[ns++] = i;
	for (int i = 0; i < ns; i++)
		last[i] = -1;
	while (now_ms() < end) {
		for (int i = 0; i < ns; i++) {
			struct tcp_info ti;
			socklen_t l = sizeof(ti);
			int64_t arr;

			if (had_data[sel[i]])
				continue;
			if (getsockopt(fds[sel[i]], IPPROTO_TCP, TCP_INFO, &ti, &l) < 0)
				continue;
			/* Dated right after the call: a sweep can be preempted. */
			arr = (int64_t)now_ms() - (int64_t)ti.tcpi_last_data_recv;
			if (last[i] >= 0 && arr - last[i] > 50 && n < cap) {
				iv[n++] = (uint64_t)(arr - last[i]);
			}
			if (last[i] < 0 || arr - last[i] > 50)
				last[i] = arr;
		}
		usleep(20000);
	}
	if (!n) {
		printf("jitter 0 0 0 0 0 0 0\n");
		free(iv);
		return;
	}
	qsort(iv, n, sizeof(*iv), cmp_u64);
	for (size_t i = 0; i < n; i++) {
		sum += (double)iv[i];
		sq += (double)iv[i] * (double)iv[i];
		if ((long)iv[i] > interval_ms + 50)
			late++;
	}
	/* n p1 p50 p99 max stddev late(>I+50ms) */
	printf("jitter %zu %llu %llu %llu %llu %.1f %ld\n", n,
	       (unsigned long long)pct(iv, n, 0.01), (unsigned long long)pct(iv, n, 0.5),
	       (unsigned long long)pct(iv, n, 0.99), (unsigned long long)iv[n - 1],
	       n > 1 ? sqrt((sq - sum * sum / (double)n) / (double)(n - 1)) : 0.0, late);
	fflush(stdout);
	free(iv);
}

static int scale_server(void)
{
	int k = (int)arg_long("ports", 1), expect = (int)arg_long("expect", 0);
	long interval_ms = arg_long("interval_ms", 1000);
	double jsecs = arg_double("jsecs", 4);
	int ports[64], lfds[64], ep = epoll_create1(0), nfds = 0, cap = 1 << 20;
	int *fds = calloc((size_t)cap, sizeof(int));
	uint8_t *had = calloc((size_t)cap, 1);
	struct epoll_event ev, evs[256];
	char buf[4096];
	uint64_t t0 = 0;
	int announced = 0;

	memset(fds, 0, (size_t)cap * sizeof(int));
	catch_signals();
	for (int i = 0; i < k && i < 64; i++) {
		lfds[i] = listen_any(&ports[i]);
		fcntl(lfds[i], F_SETFL, O_NONBLOCK);
		ev.events = EPOLLIN;
		ev.data.u64 = (uint64_t)1 << 40 | (uint64_t)i;
		epoll_ctl(ep, EPOLL_CTL_ADD, lfds[i], &ev);
	}
	printf("rss_base_kb %ld\n", vmrss_kb());
	fflush(stdout);
	write_ports(arg_str("portfile", "ports"), ports, k);
	while (!got_term) {
		int n = epoll_wait(ep, evs, 256, 100);

		if (got_usr2) {
			got_usr2 = 0;
			jitter_sample(fds, had, nfds, jsecs, interval_ms);
		}
		for (int i = 0; i < n; i++) {
			uint64_t d = evs[i].data.u64;

			if (d >> 40) {
				int l = (int)(d & 0xff);

				for (;;) {
					int fd = accept4(lfds[l], NULL, NULL, SOCK_NONBLOCK);

					if (fd < 0)
						break;
					if (!t0)
						t0 = now_ns();
					if (nfds < cap)
						fds[nfds] = fd;
					ev.events = EPOLLIN;
					ev.data.u64 = (uint64_t)(uint32_t)nfds;
					epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
					nfds++;
				}
				if (expect && nfds >= expect && !announced) {
					announced = 1;
					printf("accepted %d %.3f\n", nfds, (now_ns() - t0) / 1e9);
					fflush(stdout);
				}
			} else {
				int idx = (int)d, fd = fds[idx];
				ssize_t r = read(fd, buf, sizeof(buf));

				if (r > 0) {
					had[idx] = 1;
					write_all(fd, buf, (size_t)r);
				} else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
					epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
				}
			}
		}
	}
	return 0;
}

/* The client connects n connections round-robin over the server's ports,
 * then idles; SIGUSR2 starts closed-loop 1-byte ping-pong on the first
 * `busy` connections; SIGUSR1 prints the ping-pongs completed so far. */
static int scale_client(void)
{
	int ports[64], k = read_ports(arg_str("portfile", "ports"), ports, 64);
	int n = (int)arg_long("n", 1000), busy = (int)arg_long("busy", 0);
	int *fds = calloc((size_t)n, sizeof(int)), ep = epoll_create1(0), active = 0;
	struct epoll_event ev, evs[256];
	uint64_t t0, pongs = 0;
	char c = 'b';

	memset(fds, 0, (size_t)n * sizeof(int));
	catch_signals();
	printf("rss_base_kb %ld\n", vmrss_kb());
	fflush(stdout);
	t0 = now_ns();
	for (int i = 0; i < n; i++) {
		fds[i] = connect_to(ports[i % k]);
		fcntl(fds[i], F_SETFL, O_NONBLOCK);
		ev.events = EPOLLIN | EPOLLRDHUP;
		ev.data.u32 = (uint32_t)i;
		epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
	}
	printf("connected %d %.3f\n", n, (now_ns() - t0) / 1e9);
	fflush(stdout);
	while (!got_term) {
		int m = epoll_wait(ep, evs, 256, 100);

		if (got_usr1) {
			got_usr1 = 0;
			printf("pongs %llu %.3f\n", (unsigned long long)pongs, now_ns() / 1e9);
			fflush(stdout);
		}
		if (got_usr2 && !active) {
			active = 1;
			for (int i = 0; i < busy && i < n; i++) {
				nodelay(fds[i]);
				write_all(fds[i], &c, 1);
			}
		}
		for (int i = 0; i < m; i++) {
			int idx = (int)evs[i].data.u32;
			ssize_t r = read(fds[idx], &c, 1);

			if (r == 1) {
				pongs++;
				write_all(fds[idx], &c, 1);
			} else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
				printf("lost %d %s\n", idx, r == 0 ? "eof" : strerror(errno));
				fflush(stdout);
				epoll_ctl(ep, EPOLL_CTL_DEL, fds[idx], NULL);
			}
		}
	}
	/* Abort (RST) rather than close: no TIME_WAIT left to slow down the
	 * ephemeral port search of the next run. */
	for (int i = 0; i < n; i++) {
		struct linger lg = { 1, 0 };

		setsockopt(fds[i], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(fds[i]);
	}
	printf("closed %d\n", n);
	return 0;
}

/* ------------------------------------------------------------ detection */

static int detect_server(void)
{
	int port, lfd = listen_any(&port), ep = epoll_create1(0);
	struct epoll_event ev, evs[64];
	char buf[4096];

	catch_signals();
	fcntl(lfd, F_SETFL, O_NONBLOCK);
	ev.events = EPOLLIN;
	ev.data.fd = lfd;
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	write_ports(arg_str("portfile", "port"), &port, 1);
	while (!got_term) {
		int n = epoll_wait(ep, evs, 64, 200);

		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;

			if (fd == lfd) {
				int c;

				while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
					ev.events = EPOLLIN;
					ev.data.fd = c;
					epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
				}
				continue;
			}
			{
				ssize_t r = read(fd, buf, sizeof(buf));

				if (r > 0)
					write_all(fd, buf, (size_t)r);
				else if (r == 0 || errno != EINTR)
					epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
			}
		}
	}
	return 0;
}

/*
 * The client opens n idle connections, prints "connected", and waits in
 * epoll_wait for any of them to report something. The driver injects a
 * failure and immediately sends SIGUSR1: that instant is t0. Each
 * connection's read result (EOF, ETIMEDOUT, ...) is dated against t0.
 * After `window` seconds past t0 the rest is reported as undetected.
 */
static int detect_client(void)
{
	int n = (int)arg_long("n", 10), ep = epoll_create1(0), left;
	double window = arg_double("window", 5);
	int *fds = calloc((size_t)n, sizeof(int));
	uint64_t *lat = calloc((size_t)n, sizeof(*lat)), t0 = 0;
	int nlat = 0, how_to = 0, how_eof = 0, how_other = 0, pre = 0;
	struct epoll_event ev, evs[256];
	char buf[256];

	catch_signals();
	for (int i = 0; i < n; i++) {
		fds[i] = connect_to((int)arg_long("port", 0));
		fcntl(fds[i], F_SETFL, O_NONBLOCK);
		ev.events = EPOLLIN | EPOLLRDHUP;
		ev.data.u32 = (uint32_t)i;
		epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
	}
	printf("connected %d\n", n);
	fflush(stdout);
	left = n;
	while (left > 0 && !got_term) {
		int m, tmo = 100;

		if (got_usr1 && !t0)
			t0 = now_ns();
		if (t0 && now_ns() > t0 + (uint64_t)(window * 1e9))
			break;
		m = epoll_wait(ep, evs, 256, tmo);
		if (got_usr1 && !t0)
			t0 = now_ns();
		for (int i = 0; i < m; i++) {
			int idx = (int)evs[i].data.u32;
			ssize_t r = read(fds[idx], buf, sizeof(buf));
			uint64_t t = now_ns();

			if (r > 0)
				continue; /* the server never writes; ignore */
			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			epoll_ctl(ep, EPOLL_CTL_DEL, fds[idx], NULL);
			left--;
			if (!t0) {
				pre++; /* died before the failure was injected */
				continue;
			}
			lat[nlat++] = t - t0;
			if (r == 0)
				how_eof++;
			else if (errno == ETIMEDOUT)
				how_to++;
			else
				how_other++;
		}
	}
	qsort(lat, (size_t)nlat, sizeof(*lat), cmp_u64);
	/* detect N DETECTED MEDIAN_MS MAX_MS UNDETECTED TIMEDOUT EOF OTHER PRE */
	printf("detect %d %d %.1f %.1f %d %d %d %d %d\n", n, nlat,
	       nlat ? pct(lat, (size_t)nlat, 0.5) / 1e6 : 0.0,
	       nlat ? lat[nlat - 1] / 1e6 : 0.0, n - nlat - pre, how_to, how_eof, how_other, pre);
	return 0;
}

/* ------------------------------------------------------------ machine noise */

/* How late a 10 ms sleep wakes up: on a shared or oversubscribed machine
 * this, not hbshim, bounds every timer (heartbeats included). */
static int sched_probe(void)
{
	double secs = arg_double("secs", 2);
	size_t cap = 100000, n = 0;
	uint64_t *o = malloc(cap * sizeof(*o)), end = now_ns() + (uint64_t)(secs * 1e9), sum = 0;

	while (now_ns() < end && n < cap) {
		struct timespec d = { 0, 10 * 1000 * 1000 };
		uint64_t t0 = now_ns(), late;

		nanosleep(&d, NULL);
		late = now_ns() - t0;
		late = late > 10000000ull ? late - 10000000ull : 0;
		o[n++] = late;
		sum += late;
	}
	qsort(o, n, sizeof(*o), cmp_u64);
	printf("sched_late_ms mean %.2f p50 %.2f p99 %.2f max %.1f (n=%zu)\n", n ? sum / 1e6 / (double)n : 0.0,
	       pct(o, n, 0.5) / 1e6, pct(o, n, 0.99) / 1e6, n ? o[n - 1] / 1e6 : 0.0, n);
	return 0;
}

/* ------------------------------------------------------------ main */

/* Run a command (socat) and report the CPU it used: "child_cpu SECS". */
static int cpu_of(void)
{
	pid_t pid = fork();
	int st;
	struct rusage ru;

	if (pid < 0)
		die("fork");
	if (pid == 0) {
		execvp(g_argv[2], g_argv + 2);
		_exit(127);
	}
	if (wait4(pid, &st, 0, &ru) < 0)
		die("wait4");
	printf("child_cpu %.6f\n", ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
					   (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
	return 0;
}

static int freeport(void)
{
	int port, fd = listen_any(&port);

	close(fd);
	printf("%d\n", port);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(void);
	} modes[] = {
		{ "tput-server", tput_server },     { "tput-client", tput_client },
		{ "rtt-server", rtt_server },       { "rtt-client", rtt_client },
		{ "scale-server", scale_server },   { "scale-client", scale_client },
		{ "detect-server", detect_server }, { "detect-client", detect_client },
		{ "freeport", freeport },           { "sched-probe", sched_probe },
		{ "cpu-of", cpu_of },
	};

	g_argc = argc;
	g_argv = argv;
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2) {
		fprintf(stderr, "usage: load MODE [key=value ...]\n");
		return 2;
	}
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
		if (!strcmp(argv[1], modes[i].name))
			return modes[i].fn();
	fprintf(stderr, "load: unknown mode %s\n", argv[1]);
	return 2;
}
