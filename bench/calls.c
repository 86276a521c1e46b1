/*
 * calls.c - the cost of one interposed call.
 *
 *   calls [iters]      prints "TEST MIN_NS MEDIAN_NS" per call for each test,
 *                      over 15 batches of `iters` calls each. On a shared
 *                      machine the minimum is the figure to compare: a
 *                      batch that was never preempted.
 *
 * Tests: 1-byte write and read on /dev/null, 1-byte write+read on a pipe,
 * 1-byte writes and (already queued, never blocking) 1-byte reads on a
 * loopback TCP pair (tracked by hbshim in keepalive mode: socketpair()
 * would not be), and a 2-byte non-blocking send on a
 * loopback TCP socket: the syscall a heartbeat costs, for comparison with
 * the background thread's CPU per heartbeat.
 *
 * The driver runs this binary with and without LD_PRELOAD, alternating, and
 * subtracts; all tests run in the same process so they see the same shim.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <pthread.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#define BATCHES 15

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void die(const char *what)
{
	fprintf(stderr, "calls: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void tcp_pair(int *cfd, int *sfd)
{
	struct sockaddr_in a;
	socklen_t al = sizeof(a);
	int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	if (lfd < 0)
		die("socket");
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 1) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&a, &al) < 0)
		die("listen");
	*cfd = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(*cfd, (struct sockaddr *)&a, sizeof(a)) < 0)
		die("connect");
	*sfd = accept(lfd, NULL, NULL);
	if (*sfd < 0)
		die("accept");
	setsockopt(*cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	close(lfd);
}

enum { T_NULL_W, T_NULL_R, T_PIPE, T_TCP_W, T_TCP_R, T_SEND2 };

static void drain(int fd, long want, char *buf, size_t len)
{
	for (long got = 0; got < want;) {
		ssize_t r = read(fd, buf, len);

		if (r <= 0)
			die("drain");
		got += r;
	}
}

/* One batch of `iters` operations; returns ns per libc call. */
static double batch(int test, long iters, int a, int b)
{
	char c = 'x', buf[4096];
	uint64_t t0 = 0, spent = 0;
	long calls = iters;

	switch (test) {
	case T_NULL_W:
		t0 = now_ns();
		for (long i = 0; i < iters; i++)
			if (write(a, &c, 1) != 1)
				die("write /dev/null");
		spent = now_ns() - t0;
		break;
	case T_NULL_R:
		t0 = now_ns();
		for (long i = 0; i < iters; i++)
			if (read(a, &c, 1) != 0)
				die("read /dev/null");
		spent = now_ns() - t0;
		break;
	case T_PIPE:
		/* write then read the same byte: two calls per iteration */
		calls = 2 * iters;
		t0 = now_ns();
		for (long i = 0; i < iters; i++) {
			if (write(a, &c, 1) != 1)
				die("write");
			if (read(b, &c, 1) != 1)
				die("read");
		}
		spent = now_ns() - t0;
		break;
	case T_TCP_W:
		/* time 1-byte writes only; drain the receiver between bursts */
		for (long i = 0; i < iters; i += 256) {
			long k = iters - i < 256 ? iters - i : 256;

			t0 = now_ns();
			for (long j = 0; j < k; j++)
				if (write(a, &c, 1) != 1)
					die("write tcp");
			spent += now_ns() - t0;
			drain(b, k, buf, sizeof(buf));
		}
		break;
	case T_TCP_R:
		/* queue bytes first, then time 1-byte reads that never block */
		for (long i = 0; i < iters; i += 256) {
			long k = iters - i < 256 ? iters - i : 256;
			int q = 0;

			memset(buf, 'y', (size_t)k);
			if (write(a, buf, (size_t)k) != k)
				die("write tcp");
			while (ioctl(b, FIONREAD, &q) == 0 && q < k)
				sched_yield();
			t0 = now_ns();
			for (long j = 0; j < k; j++)
				if (read(b, &c, 1) != 1)
					die("read tcp");
			spent += now_ns() - t0;
		}
		break;
	case T_SEND2:
		/* time the sends only; drain the receiver between bursts */
		for (long i = 0; i < iters; i += 256) {
			long k = iters - i < 256 ? iters - i : 256;

			t0 = now_ns();
			for (long j = 0; j < k; j++)
				if (send(a, "\0\1", 2, MSG_DONTWAIT | MSG_NOSIGNAL) != 2)
					die("send");
			spent += now_ns() - t0;
			drain(b, 2 * k, buf, sizeof(buf));
		}
		break;
	}
	return (double)spent / (double)calls;
}

/*
 * The system calls one heartbeat tick costs hbshim's background thread, as
 * strace -c shows them (bench/results/hb_syscalls.csv): getsockopt
 * (SO_COOKIE, the proof that the fd is still the connection), getsockopt
 * (TCP_INFO: state, last send, bytes received), the 2-byte send, and the
 * 2-byte recv of the heartbeat the peer sent. Issued here without hbshim
 * over 1000 idle loopback pairs (cold sockets, like the real thread's),
 * each side ticking once per round, against a bare 2-byte send on each
 * side. The minimum batch is immune to the machine's pauses, which inflate
 * the per-thread CPU counters the scale test reads. Prints "hb_seq NS"
 * and "hb_bare_send NS" (per tick, per send).
 */
#define HB_PAIRS 1000
static void hb_tick(int fd)
{
	struct tcp_info ti;
	socklen_t l = sizeof(ti);
	uint64_t ck;
	socklen_t cl = sizeof(ck);
	char buf[8];

	getsockopt(fd, SOL_SOCKET, SO_COOKIE, &ck, &cl);
	getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &l);
	if (send(fd, "\0\1", 2, MSG_DONTWAIT | MSG_NOSIGNAL) != 2)
		die("send");
	if (recv(fd, buf, 2, MSG_DONTWAIT) != 2)
		die("recv");
}

static void hb_seq(void)
{
	static int a[HB_PAIRS], b[HB_PAIRS];
	double seq[BATCHES], bare[BATCHES];
	char buf[64];

	/* Invariant between batches: a[i] has one heartbeat queued, b[i] none. */
	for (int i = 0; i < HB_PAIRS; i++) {
		tcp_pair(&a[i], &b[i]);
		if (send(b[i], "\0\1", 2, MSG_NOSIGNAL) != 2)
			die("send");
	}
	usleep(10000);
	for (int r = 0; r < BATCHES; r++) {
		uint64_t t0 = now_ns();

		for (int i = 0; i < HB_PAIRS; i++) {
			hb_tick(a[i]);
			hb_tick(b[i]);
		}
		seq[r] = (double)(now_ns() - t0) / (2 * HB_PAIRS);
		t0 = now_ns();
		for (int i = 0; i < HB_PAIRS; i++) {
			if (send(a[i], "\0\1", 2, MSG_DONTWAIT | MSG_NOSIGNAL) != 2 ||
			    send(b[i], "\0\1", 2, MSG_DONTWAIT | MSG_NOSIGNAL) != 2)
				die("send");
		}
		bare[r] = (double)(now_ns() - t0) / (2 * HB_PAIRS);
		for (int i = 0; i < HB_PAIRS; i++) {
			drain(a[i], 4, buf, 4);
			drain(b[i], 2, buf, 2);
			if (send(b[i], "\0\1", 2, MSG_NOSIGNAL) != 2)
				die("send");
		}
		usleep(10000);
	}
	qsort(seq, BATCHES, sizeof(seq[0]), cmp_d);
	qsort(bare, BATCHES, sizeof(bare[0]), cmp_d);
	printf("hb_seq %.2f %.2f\nhb_bare_send %.2f %.2f\n", seq[0], seq[BATCHES / 2], bare[0],
	       bare[BATCHES / 2]);
}

/*
 * "calls ITERS stub [thread]": the interposer alone. Run with bench's
 * stubnext.so preloaded (after hbshim, or alone for the baseline), whose
 * read and write return at once on fds 900 and 901: ns per 1-byte write and
 * read with no system call behind them, before any TCP socket exists and
 * again (_mt) after one does (hbshim's table chunk and thread exist then).
 */
static double stub_batch(int w, long iters)
{
	char c = 'x';
	uint64_t t0 = now_ns();

	if (w) {
		for (long i = 0; i < iters; i++)
			if (write(900, &c, 1) != 1)
				die("stub write (is stubnext.so preloaded?)");
	} else {
		for (long i = 0; i < iters; i++)
			if (read(901, &c, 1) != 0)
				die("stub read (is stubnext.so preloaded?)");
	}
	return (double)(now_ns() - t0) / (double)iters;
}

static void stub_run(const char *suffix, long iters)
{
	static const char *names[] = { "stub_read", "stub_write" };
	double r[BATCHES];

	for (int w = 1; w >= 0; w--) {
		stub_batch(w, iters / 10);
		for (int i = 0; i < BATCHES; i++)
			r[i] = stub_batch(w, iters);
		qsort(r, BATCHES, sizeof(r[0]), cmp_d);
		printf("%s%s %.3f %.3f\n", names[w], suffix, r[0], r[BATCHES / 2]);
	}
}

static void *idle_thread(void *arg)
{
	for (;;)
		pause();
	return arg;
}

static void run(int t, const char *suffix, long iters, int nul, const int *p, int cfd, int sfd)
{
	static const char *names[] = { "devnull_write", "devnull_read", "pipe_rw", "tcp_write",
				       "tcp_read", "tcp_send2" };
	double r[BATCHES];
	/* TCP calls cost several times a /dev/null call: fewer per batch. */
	long it = t >= T_TCP_W ? iters / 10 : iters;
	int a = t <= T_NULL_R ? nul : t == T_PIPE ? p[1] : cfd;
	int b = t == T_PIPE ? p[0] : sfd;

	batch(t, it / 10, a, b); /* warm-up */
	for (int i = 0; i < BATCHES; i++)
		r[i] = batch(t, it, a, b);
	qsort(r, BATCHES, sizeof(r[0]), cmp_d);
	printf("%s%s %.2f %.2f\n", names[t], suffix, r[0], r[BATCHES / 2]);
}

/*
 * Phase 1 runs before the process has any TCP socket: under hbshim no
 * background thread exists yet, so this is the interposer's fast path
 * alone. Phase 2 runs after a loopback TCP pair was connected: hbshim has
 * started its background thread by then, and glibc, seeing a second
 * thread, takes the slower multi-threaded path of every cancellable call.
 * "calls ITERS thread" starts a plain idle pthread before phase 2 instead,
 * to show that cost without hbshim. "calls ITERS ir" only does ITERS
 * write+read pairs on /dev/null (for instruction counts under callgrind).
 * "calls ITERS hbseq" adds the heartbeat system-call model (hb_seq).
 */
int main(int argc, char **argv)
{
	long iters = argc > 1 ? strtol(argv[1], NULL, 0) : 10000;
	int nul = open("/dev/null", O_RDWR), p[2], cfd, sfd;
	struct timespec ts = { 0, 100 * 1000 * 1000 };

	if (nul < 0 || pipe(p) < 0)
		die("setup");
	if (argc > 2 && !strcmp(argv[2], "ir")) {
		/* For valgrind --tool=callgrind: only ITERS 1-byte writes and
		 * reads on /dev/null, so that instruction counts can be
		 * subtracted between runs. */
		char c = 'x';

		for (long i = 0; i < iters; i++)
			if (write(nul, &c, 1) != 1 || read(nul, &c, 1) != 0)
				die("/dev/null");
		return 0;
	}
	if (argc > 2 && !strcmp(argv[2], "stub")) {
		if (dup2(nul, 900) != 900 || dup2(nul, 901) != 901)
			die("dup2");
		stub_run("", iters);
		if (argc > 3 && !strcmp(argv[3], "thread")) {
			pthread_t tid;

			pthread_create(&tid, NULL, idle_thread, NULL);
		}
		tcp_pair(&cfd, &sfd);
		nanosleep(&ts, NULL);
		stub_run("_mt", iters);
		return 0;
	}
	for (int t = T_NULL_W; t <= T_PIPE; t++)
		run(t, "", iters, nul, p, -1, -1);
	if (argc > 2 && !strcmp(argv[2], "thread")) {
		pthread_t tid;

		pthread_create(&tid, NULL, idle_thread, NULL);
	}
	tcp_pair(&cfd, &sfd);
	nanosleep(&ts, NULL); /* let a background thread start */
	for (int t = T_NULL_W; t <= T_SEND2; t++)
		run(t, t <= T_PIPE ? "_mt" : "", iters, nul, p, cfd, sfd);
	if (argc > 2 && !strcmp(argv[2], "hbseq"))
		hb_seq();
	return 0;
}
