/*
 * forkstorm - faults around process and thread lifetimes, on a framed
 * connection to an echo server (a forked child of this program; run the
 * whole program under LD_PRELOAD with HBSHIM_FRAME='127.0.0.1:*' and a small
 * HBSHIM_INTERVAL so that heartbeats are due all the time):
 *
 *   storm N     : two threads stream 2 MB through the echo server and check
 *                 every byte, while the main thread forks N children that
 *                 inherit the socket: a third exit at once, a third hold it
 *                 for 20 ms (heartbeats due meanwhile) and exit, a third exec
 *                 /bin/true. Nothing may corrupt the stream.
 *   closeblocked: a thread blocks in read(); another closes the fd under it
 *                 and at once takes the number for a pipe; the server then
 *                 answers. No byte may land in the pipe, and what the
 *                 blocked read returns (if anything) is application bytes.
 *   sighandler  : SIGALRM every 200 us; the handler calls wrapped functions
 *                 (write/read on a pipe, a non-blocking MSG_PEEK recv on the
 *                 framed socket) while the main thread streams 1 MB through
 *                 the echo server. A constructor also calls them before
 *                 main(). Bytes exact, no deadlock.
 *
 * Prints one result line; exit 0 when everything held.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "loopback.h"

static int ctor_ok;

/* Wrapped calls before main(), from the application's own constructor. */
__attribute__((constructor)) static void early(void)
{
	int p[2], s = socket(AF_INET, SOCK_STREAM, 0);
	char b;

	if (s < 0 || close(s) != 0 || pipe(p) != 0)
		return;
	ctor_ok = write(p[1], "c", 1) == 1 && read(p[0], &b, 1) == 1 && b == 'c';
	close(p[0]);
	close(p[1]);
}

static void sleep_ms(int ms)
{
	struct timespec t = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&t, &t) && errno == EINTR)
		;
}

/* The echo server: one connection; "delay" mode waits 300 ms, then sends
 * 10 'Z' bytes and echoes nothing. */
static void serve(int l, int delay)
{
	int c = accept(l, NULL, NULL);
	char b[65536];
	ssize_t r;

	if (c < 0)
		_exit(3);
	signal(SIGALRM, SIG_IGN);
	if (delay) {
		sleep_ms(300);
		(void)!write(c, "ZZZZZZZZZZ", 10);
		while (read(c, b, sizeof(b)) > 0)
			;
		_exit(0);
	}
	while ((r = read(c, b, sizeof(b))) > 0 || (r < 0 && errno == EINTR)) {
		if (r < 0)
			continue;
		for (ssize_t o = 0; o < r;) {
			ssize_t w = write(c, b + o, (size_t)(r - o));

			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				fprintf(stderr, "echo server: write: %s\n", strerror(errno));
				_exit(4);
			}
			o += w;
		}
	}
	if (r < 0)
		fprintf(stderr, "echo server: read: %s\n", strerror(errno));
	_exit(r < 0 ? 5 : 0);
}

/* The byte at offset i of the test stream. */
static unsigned char pat(uint64_t i)
{
	uint64_t x = i * 0x9e3779b97f4a7c15ull;

	return (unsigned char)(x >> 56);
}

struct stream {
	int s;
	size_t total; /* at least this much, then until stop is set */
	atomic_int stop;
	atomic_long bad, got, sent;
};

static void *writer(void *arg)
{
	struct stream *st = arg;
	unsigned char b[9000];
	size_t off = 0;
	unsigned seed = 7;

	while (off < st->total || !atomic_load(&st->stop)) {
		size_t n = 1 + (size_t)(rand_r(&seed) % (int)sizeof(b));
		ssize_t w;

		for (size_t i = 0; i < n; i++)
			b[i] = pat(off + i);
		w = write(st->s, b, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			fprintf(stderr, "write: %s\n", strerror(errno));
			atomic_fetch_add(&st->bad, 1);
			break;
		}
		off += (size_t)w;
	}
	atomic_store(&st->sent, (long)off);
	shutdown(st->s, SHUT_WR);
	return NULL;
}

static void *reader(void *arg)
{
	struct stream *st = arg;
	unsigned char b[7000];
	size_t off = 0;

	for (;;) {
		ssize_t r = read(st->s, b, sizeof(b));

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (r < 0)
				fprintf(stderr, "read: %s\n", strerror(errno));
			break;
		}
		for (ssize_t i = 0; i < r; i++)
			if (b[i] != pat(off + (size_t)i) && atomic_fetch_add(&st->bad, 1) == 0)
				fprintf(stderr, "byte %zu: 0x%02x, expected 0x%02x\n", off + (size_t)i,
					b[i], pat(off + (size_t)i));
		off += (size_t)r;
	}
	atomic_store(&st->got, (long)off);
	return NULL;
}

static int echo_check(struct stream *st, const char *what)
{
	if (atomic_load(&st->bad) || atomic_load(&st->got) != atomic_load(&st->sent)) {
		printf("%s: FAILED: %ld bad, %ld of %ld bytes back\n", what, atomic_load(&st->bad),
		       atomic_load(&st->got), atomic_load(&st->sent));
		return 1;
	}
	return 0;
}

static int run_storm(int s, int n)
{
	struct stream st = { .s = s, .total = 2u << 20 };
	pthread_t w, r;
	int kids = 0, badkids = 0;
	pid_t *pids = calloc((size_t)n + 1, sizeof(pid_t));

	pthread_create(&r, NULL, reader, &st);
	pthread_create(&w, NULL, writer, &st);
	for (int i = 0; i < n; i++) {
		pid_t p = fork();

		if (p == 0) {
			if (i % 3 == 1)
				sleep_ms(20);
			if (i % 3 == 2)
				execl("/bin/true", "true", (char *)NULL);
			_exit(0);
		}
		if (p > 0)
			pids[kids++] = p;
		sleep_ms(2);
	}
	atomic_store(&st.stop, 1);
	for (int i = 0; i < kids; i++) {
		int stt;

		if (waitpid(pids[i], &stt, 0) < 0 || !WIFEXITED(stt) || WEXITSTATUS(stt))
			badkids++;
	}
	pthread_join(w, NULL);
	pthread_join(r, NULL);
	if (echo_check(&st, "storm"))
		return 1;
	printf("storm: %d forks (%d failed) during the stream, %ld bytes echoed exactly\n", kids,
	       badkids, atomic_load(&st.sent));
	return badkids != 0;
}

static atomic_long blocked_ret = -100, blocked_bad;

static void *blocked_reader(void *arg)
{
	int s = *(int *)arg;
	char b[64];
	ssize_t r = read(s, b, sizeof(b));

	for (ssize_t i = 0; i < r; i++)
		if (b[i] != 'Z')
			atomic_fetch_add(&blocked_bad, 1);
	atomic_store(&blocked_ret, r < 0 ? -errno : r);
	return NULL;
}

static int run_closeblocked(int s)
{
	pthread_t t;
	int p[2] = { -1, -1 }, stray = 0, same = 0;
	char b[64];

	pthread_create(&t, NULL, blocked_reader, &s);
	sleep_ms(100);
	close(s);
	/* The number is free now: take it at once. */
	if (pipe(p))
		return perror("pipe"), 1;
	same = p[0] == s || p[1] == s;
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	sleep_ms(600); /* the server answers at 300 ms; heartbeats every ms */
	for (;;) {
		ssize_t r = read(p[0], b, sizeof(b));

		if (r <= 0)
			break;
		stray += (int)r;
	}
	/* The blocked read got the answer (the kernel kept the socket for it),
	 * or is still waiting; it never sees frame bytes. */
	pthread_detach(t);
	printf("closeblocked: number reused by the pipe: %s; %d stray bytes; blocked read returned "
	       "%ld with %ld non-application bytes\n",
	       same ? "yes" : "no", stray, atomic_load(&blocked_ret), atomic_load(&blocked_bad));
	return stray != 0 || atomic_load(&blocked_bad) != 0;
}

static int sig_s = -1, sig_p[2];
static atomic_long sig_calls, sig_bad;

static void on_alarm(int sig)
{
	int e = errno;
	char b[4];

	if (write(sig_p[1], "s", 1) != 1 || read(sig_p[0], b, 1) != 1 || b[0] != 's')
		atomic_fetch_add(&sig_bad, 1);
	if (sig_s >= 0)
		(void)!recv(sig_s, b, 1, MSG_PEEK | MSG_DONTWAIT);
	atomic_fetch_add(&sig_calls, 1);
	errno = e;
	(void)sig;
}

static int run_sighandler(int s)
{
	struct stream st = { .s = s, .total = 1u << 20 };
	struct sigaction sa = { 0 };
	struct itimerval it = { { 0, 200 }, { 0, 200 } };
	pthread_t w;

	if (pipe(sig_p))
		return perror("pipe"), 1;
	sig_s = s;
	sa.sa_handler = on_alarm;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGALRM, &sa, NULL);
	setitimer(ITIMER_REAL, &it, NULL);
	pthread_create(&w, NULL, writer, &st);
	{
		pthread_t r;
		struct timespec t0, t1;

		pthread_create(&r, NULL, reader, &st);
		clock_gettime(CLOCK_MONOTONIC, &t0);
		do {
			sleep_ms(10);
			clock_gettime(CLOCK_MONOTONIC, &t1);
		} while (atomic_load(&sig_calls) < 2000 && t1.tv_sec - t0.tv_sec < 20);
		atomic_store(&st.stop, 1);
		pthread_join(w, NULL);
		pthread_join(r, NULL);
	}
	memset(&it, 0, sizeof(it));
	setitimer(ITIMER_REAL, &it, NULL);
	if (echo_check(&st, "sighandler"))
		return 1;
	printf("sighandler: %ld handler runs (%ld bad), constructor %s, %ld bytes echoed exactly\n",
	       atomic_load(&sig_calls), atomic_load(&sig_bad), ctor_ok ? "ok" : "FAILED",
	       atomic_load(&st.sent));
	return atomic_load(&sig_bad) != 0 || !ctor_ok || atomic_load(&sig_calls) == 0;
}

int main(int argc, char **argv)
{
	int port, l, s, rc, st = 0;
	pid_t srv;

	if (argc < 2) {
		fprintf(stderr, "usage: forkstorm storm N | closeblocked | sighandler\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	l = listener(8, &port);
	srv = fork();
	if (srv == 0)
		serve(l, !strcmp(argv[1], "closeblocked"));
	close(l);
	s = dial(port);
	if (!strcmp(argv[1], "storm"))
		rc = run_storm(s, argc > 2 ? atoi(argv[2]) : 100);
	else if (!strcmp(argv[1], "closeblocked"))
		rc = run_closeblocked(s);
	else
		rc = run_sighandler(s);
	if (strcmp(argv[1], "closeblocked"))
		close(s);
	else
		kill(srv, SIGTERM);
	if (waitpid(srv, &st, 0) < 0)
		st = -1;
	if (strcmp(argv[1], "closeblocked") && (!WIFEXITED(st) || WEXITSTATUS(st))) {
		printf("echo server: status 0x%x\n", st);
		rc = 1;
	}
	return rc;
}
