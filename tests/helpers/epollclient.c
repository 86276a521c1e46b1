/*
 * epollclient - epoll event loops that framed mode must not stall, with all
 * ends in one program (fork) so the test can run it under LD_PRELOAD.
 *
 *   epollclient client MODE RUNS MESSAGES GAP_MS STOP_MS
 *     MODE: lt | et | oneshot (a BLOCKING socket: after each report one
 *     blocking recv) | excl (lt with EPOLLEXCLUSIVE) | inout (oneshot
 *     EPOLLIN|EPOLLOUT: a report with only heartbeats behind it must come
 *     as EPOLLOUT alone) | nb (a non-blocking socket: recv, EAGAIN counted) |
 *     pipe-first | pipe-after (a pipe shares the socket's data value; see
 *     pipe_run) | timeout (no messages; see timeout_run).
 *     Each run: a server child sends MESSAGES one-byte messages GAP_MS
 *     apart. With STOP_MS > 0 the server stops the client process
 *     (SIGSTOP) for STOP_MS in the middle of each gap: the shim's thread
 *     cannot drain the heartbeats arriving meanwhile, so the kernel reports
 *     the socket readable with nothing but heartbeats queued.
 *   epollclient server CLIENTS MESSAGES GAP_MS STOP_MS
 *     A single-threaded epoll server: BLOCKING accepted sockets registered
 *     (data.ptr) as soon as accepted, one recv per report, echo. CLIENTS
 *     child processes each send MESSAGES bytes GAP_MS apart and wait for the
 *     echo. STOP_MS > 0: client 0 stops the server for STOP_MS in each gap.
 *
 * EPOLL_CALL=pwait|pwait2 in the environment uses epoll_pwait or
 * epoll_pwait2 instead of epoll_wait.
 *
 * After every report the program peeks (non-blocking) before its read: a
 * report with no application byte behind it is counted as "empty". Every
 * recv is timed. Prints one line:
 *   MODE: N messages, E empty, A eagain, max recv X ms, S recv over 50 ms, I eintr
 * and exits 0 when every byte arrived in order and nothing timed out (the
 * test judges the counts).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "loopback.h"

#define SLOW_MS 50.0

static int empty, eagain, slow, total, eintr;
static double worst;

static void msleep(double ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)((ms - (time_t)(ms / 1000) * 1000) * 1e6) };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* Sleep one gap; stop `victim` for stop ms in its middle. */
static void gap_sleep(int gap, int stop, pid_t victim)
{
	if (stop <= 0 || stop >= gap) {
		msleep(gap);
		return;
	}
	msleep((gap - stop) / 2.0);
	kill(victim, SIGSTOP);
	msleep(stop);
	kill(victim, SIGCONT);
	msleep((gap - stop) / 2.0);
}

/* EPOLL_CALL=pwait|pwait2 picks the call (default epoll_wait). */
static int wait_call(int ep, struct epoll_event *got, int ms)
{
	const char *c = getenv("EPOLL_CALL");
	sigset_t none;
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	sigemptyset(&none);
	if (c && !strcmp(c, "pwait"))
		return epoll_pwait(ep, got, 1, ms, &none);
	if (c && !strcmp(c, "pwait2"))
		return epoll_pwait2(ep, got, 1, &ts, &none);
	return epoll_wait(ep, got, 1, ms);
}

static int wait_one(int ep, struct epoll_event *got, int ms)
{
	int r;

	/* SIGSTOP/SIGCONT makes epoll_wait fail with EINTR (signal(7)). */
	while ((r = wait_call(ep, got, ms)) < 0 && errno == EINTR)
		eintr++;
	return r;
}

/* After a report: peek, then the mode's read; returns the byte or -1. */
static int read_one(int s, int nb)
{
	char b;
	double t;
	ssize_t r;

	r = recv(s, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		empty++;
	t = now_ms();
	for (;;) {
		r = recv(s, &b, 1, 0);
		if (r == 1)
			break;
		if (r < 0 && nb && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			eagain++;
			return -2; /* back to epoll_wait */
		}
		fprintf(stderr, "recv: r=%zd %s\n", r, r < 0 ? strerror(errno) : "EOF");
		return -1;
	}
	t = now_ms() - t;
	if (t > worst)
		worst = t;
	if (t > SLOW_MS) {
		slow++;
		fprintf(stderr, "recv took %.0f ms\n", t);
	}
	return (unsigned char)b;
}

static void serve_one(int l, int n, int gap, int stop, pid_t client)
{
	int c = accept(l, NULL, NULL);
	char ack;

	if (c < 0)
		die("accept");
	for (int i = 0; i < n; i++) {
		char b = (char)('a' + i % 26);

		gap_sleep(gap, stop, client);
		if (write(c, &b, 1) != 1)
			die("server write");
	}
	if (read(c, &ack, 1) != 1)
		exit(2);
	close(c);
	exit(0);
}

/* pipe-first / pipe-after: a pipe and the socket share one data value in
 * an edge-triggered set (the pipe registered before or after the socket).
 * The server child writes one byte to the pipe while the client is
 * stopped; the socket carries heartbeats only. Each byte must wake the
 * client: its report must not be taken for the socket's. */
static void pipe_writer(int l, int wr, int n, int gap, int stop, pid_t client)
{
	int c = accept(l, NULL, NULL);
	char ack;

	if (c < 0)
		die("accept");
	for (int i = 0; i < n; i++) {
		msleep((gap - stop) / 2.0);
		kill(client, SIGSTOP);
		if (write(wr, "p", 1) != 1)
			die("pipe write");
		msleep(stop);
		kill(client, SIGCONT);
		msleep((gap - stop) / 2.0);
	}
	if (read(c, &ack, 1) != 1)
		exit(2);
	exit(0);
}

/* The end of a client run: the byte that lets the peer child exit, then
 * its exit status. 1 when either failed. */
static int finish(int s, int ep, pid_t peer)
{
	int st, rc = 0;

	if (write(s, "k", 1) != 1)
		rc = 1;
	close(s);
	close(ep);
	waitpid(peer, &st, 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		rc = 1;
	return rc;
}

static int pipe_run(const char *mode, int n, int gap, int stop)
{
	int port, l, s, ep, rc = 0, p[2], got_bytes = 0;
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET, .data.u64 = 0 };
	pid_t pid, me = getpid();

	if (pipe2(p, O_NONBLOCK))
		die("pipe");
	l = listener(16, &port);
	pid = fork();
	if (pid == 0)
		pipe_writer(l, p[1], n, gap, stop, me);
	close(l);
	close(p[1]);
	ep = epoll_create1(0);
	if (!strcmp(mode, "pipe-first") && epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev))
		die("epoll_ctl pipe");
	s = dial(port);
	if (epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev))
		die("epoll_ctl socket");
	if (strcmp(mode, "pipe-first") && epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev))
		die("epoll_ctl pipe");
	while (got_bytes < n) {
		struct epoll_event got;
		char b[16];
		ssize_t r;

		if (wait_one(ep, &got, 10 * gap + 5000) != 1) {
			fprintf(stderr, "%s: no report for pipe byte %d (lost wake-up)\n", mode, got_bytes);
			rc = 1;
			break;
		}
		while ((r = read(p[0], b, sizeof(b))) > 0)
			got_bytes += (int)r;
	}
	total += got_bytes;
	close(p[0]);
	return finish(s, ep, pid) | rc;
}

/* timeout: the server sends nothing and stops the client in each gap;
 * the client waits N times GAP_MS for a report. Each wait must end with 0
 * reports, at its deadline: a heartbeat-only report withdrawn, the rest of
 * the timeout waited. */
static void silent_server(int l, int n, int gap, int stop, pid_t client)
{
	int c = accept(l, NULL, NULL);
	char ack;

	if (c < 0)
		die("accept");
	for (int i = 0; i < n; i++)
		gap_sleep(gap, stop, client);
	if (read(c, &ack, 1) != 1)
		exit(2);
	exit(0);
}

static int timeout_run(int n, int gap, int stop)
{
	int port, l, s, ep, rc = 0;
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 42 };
	pid_t pid, me = getpid();

	l = listener(16, &port);
	pid = fork();
	if (pid == 0)
		silent_server(l, n, gap, stop, me);
	close(l);
	s = dial(port);
	ep = epoll_create1(0);
	if (epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev))
		die("epoll_ctl");
	for (int i = 0; i < n; i++) {
		double deadline = now_ms() + gap, left;
		struct epoll_event got;
		int r;

		/* EINTR (the stop): wait again for what is left. */
		while ((r = wait_call(ep, &got, (int)(deadline - now_ms() + 0.999))) < 0 &&
		       errno == EINTR && deadline - now_ms() > 0)
			eintr++;
		left = deadline - now_ms();
		if (r == 1) {
			fprintf(stderr, "timeout %d: a report %.0f ms before the deadline\n", i, left);
			empty++;
		} else if (r < 0 && errno != EINTR) {
			die("epoll_wait");
		} else if (left > 1) {
			fprintf(stderr, "timeout %d: 0 reports %.0f ms before the deadline\n", i, left);
			rc = 1;
		}
	}
	return finish(s, ep, pid) | rc;
}

static int client_run(const char *mode, int n, int gap, int stop)
{
	int nb = !strcmp(mode, "nb"), port, l, s, ep, rc = 0, next = 0;

	if (!strncmp(mode, "pipe-", 5))
		return pipe_run(mode, n, gap, stop);
	if (!strcmp(mode, "timeout"))
		return timeout_run(n, gap, stop);
	struct epoll_event ev = { .events = EPOLLIN };
	pid_t pid, me = getpid();

	l = listener(16, &port);
	pid = fork();
	if (pid == 0)
		serve_one(l, n, gap, stop, me);
	close(l);
	s = dial(port);
	if (nb)
		fcntl(s, F_SETFL, fcntl(s, F_GETFL) | O_NONBLOCK);
	if (!strcmp(mode, "et"))
		ev.events |= EPOLLET;
	if (!strcmp(mode, "oneshot"))
		ev.events |= EPOLLONESHOT;
	if (!strcmp(mode, "excl"))
		ev.events |= EPOLLEXCLUSIVE;
	if (!strcmp(mode, "inout"))
		ev.events |= EPOLLOUT | EPOLLONESHOT;
	ev.data.u64 = 0x5eed0000u + (unsigned)s; /* not the fd: the map must find it */
	ep = epoll_create1(0);
	if (epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev))
		die("epoll_ctl");
	while (next < n) {
		struct epoll_event got;
		int r = wait_one(ep, &got, 10 * gap + 5000);

		if (r != 1 || got.data.u64 != ev.data.u64) {
			fprintf(stderr, "%s: epoll_wait r=%d data=%llx at message %d (lost wake-up)\n",
				mode, r, (unsigned long long)got.data.u64, next);
			rc = 1;
			break;
		}
		if (!(got.events & EPOLLIN)) {
			/* inout: writable only; look again a little later. */
			msleep(2);
			if (epoll_ctl(ep, EPOLL_CTL_MOD, s, &ev))
				die("epoll_ctl MOD");
			continue;
		}
		for (;;) {
			int b = read_one(s, nb);

			if (b == -2)
				break;
			if (b < 0 || b != 'a' + next % 26) {
				fprintf(stderr, "message %d: byte %d\n", next, b);
				rc = 1;
				goto out;
			}
			total++;
			/* Drain what else is there (an edge comes once). */
			if (++next == n || recv(s, &(char){ 0 }, 1, MSG_PEEK | MSG_DONTWAIT) != 1)
				break;
		}
		if ((ev.events & EPOLLONESHOT) && epoll_ctl(ep, EPOLL_CTL_MOD, s, &ev))
			die("epoll_ctl MOD");
	}
out:
	return finish(s, ep, pid) | rc;
}

/* ---- the single-threaded server */

struct peer {
	int fd;
};

static void client_proc(int port, int n, int gap, int stop, pid_t server)
{
	int s = dial(port);
	char b;

	for (int i = 0; i < n; i++) {
		gap_sleep(gap, stop, server);
		b = (char)('a' + i % 26);
		if (write(s, &b, 1) != 1 || recv(s, &b, 1, MSG_WAITALL) != 1 || b != 'a' + i % 26)
			die("client exchange");
	}
	close(s);
	exit(0);
}

static int server_run(int clients, int n, int gap, int stop)
{
	int port, l = listener(16, &port), ep = epoll_create1(0), open_ = 0, done = 0, rc = 0, st;
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	pid_t me = getpid();

	for (int i = 0; i < clients; i++)
		if (fork() == 0)
			client_proc(port, n, gap, i == 0 ? stop : 0, me);
	if (epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev))
		die("epoll_ctl listener");
	while (done < clients) {
		struct epoll_event got;
		struct peer *p;
		char b[64];
		ssize_t r;
		double t;

		if (wait_one(ep, &got, 10 * gap + 5000) != 1) {
			fprintf(stderr, "server: epoll_wait timed out (lost wake-up)\n");
			rc = 1;
			break;
		}
		if (!got.data.ptr) {
			int c = accept(l, NULL, NULL);

			if (c < 0)
				die("accept");
			p = malloc(sizeof(*p));
			p->fd = c;
			ev = (struct epoll_event){ .events = EPOLLIN, .data.ptr = p };
			if (epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev))
				die("epoll_ctl add");
			open_++;
			continue;
		}
		p = got.data.ptr;
		if (recv(p->fd, b, 1, MSG_PEEK | MSG_DONTWAIT) < 0 &&
		    (errno == EAGAIN || errno == EWOULDBLOCK))
			empty++;
		t = now_ms();
		r = recv(p->fd, b, sizeof(b), 0);
		t = now_ms() - t;
		if (t > worst)
			worst = t;
		if (t > SLOW_MS) {
			slow++;
			fprintf(stderr, "server recv took %.0f ms\n", t);
		}
		if (r <= 0) {
			epoll_ctl(ep, EPOLL_CTL_DEL, p->fd, NULL);
			close(p->fd);
			free(p);
			done++;
			open_--;
			continue;
		}
		total += (int)r;
		if (write(p->fd, b, (size_t)r) != r)
			die("server echo");
	}
	while (wait(&st) > 0)
		if (!WIFEXITED(st) || WEXITSTATUS(st))
			rc = 1;
	return rc;
}

int main(int argc, char **argv)
{
	int rc = 0;

	if (argc == 7 && !strcmp(argv[1], "client")) {
		int runs = atoi(argv[3]);

		for (int i = 0; i < runs && !rc; i++)
			rc = client_run(argv[2], atoi(argv[4]), atoi(argv[5]), atoi(argv[6]));
		printf("%s: %d messages, %d empty, %d eagain, max recv %.0f ms, %d recv over %.0f ms, "
		       "%d eintr\n", argv[2], total, empty, eagain, worst, slow, SLOW_MS, eintr);
	} else if (argc == 6 && !strcmp(argv[1], "server")) {
		rc = server_run(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
		printf("server: %d messages, %d empty, %d eagain, max recv %.0f ms, %d recv over %.0f ms, "
		       "%d eintr\n", total, empty, eagain, worst, slow, SLOW_MS, eintr);
	} else {
		fprintf(stderr, "usage: epollclient client lt|et|oneshot|excl|inout|nb|pipe-first|pipe-after|timeout RUNS MESSAGES GAP_MS STOP_MS\n"
				"       epollclient server CLIENTS MESSAGES GAP_MS STOP_MS\n");
		return 2;
	}
	return rc;
}
