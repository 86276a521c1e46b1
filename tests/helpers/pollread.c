/*
 * pollread - the event-loop patterns framed mode must not break, with both
 * ends in one program (fork) so the test can run it under LD_PRELOAD:
 *
 *   poll   : the client polls a BLOCKING fd, then calls a blocking read().
 *            A poll that woke up for heartbeats alone would leave read()
 *            blocked until the next real message: a stall.
 *   select : the same with select().
 *   epoll2 : the fd sits in two epoll sets (level-triggered and
 *            edge-triggered) and in a nested set; each set returns the
 *            application's own epoll_data unchanged, and none wakes up for
 *            heartbeats alone.
 *
 * usage: pollread poll|select|epoll2 MESSAGES GAP_MS
 * The server sends MESSAGES one-byte messages GAP_MS apart (heartbeats run
 * in between when HBSHIM_INTERVAL < GAP_MS). Prints counts; exit 0 when no
 * stall, no spurious wakeup and every byte arrived in order.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "loopback.h"

static void serve(int l, int n, int gap)
{
	int c = accept(l, NULL, NULL);
	char ack;

	if (c < 0) {
		perror("accept");
		exit(2);
	}
	for (int i = 0; i < n; i++) {
		char b = (char)('a' + i % 26);

		usleep((useconds_t)gap * 1000);
		if (write(c, &b, 1) != 1) {
			perror("server write");
			exit(2);
		}
	}
	/* Wait for the client's verdict before closing. */
	if (read(c, &ack, 1) != 1)
		exit(2);
	close(c);
	exit(0);
}

/* After a readiness report: an application byte must be there at once (a
 * non-blocking peek, which is deterministic on a loaded machine: a peek that
 * finds nothing means the report came for control frames alone, and the
 * blocking read below would have stalled until the next real message).
 * Then the blocking read itself; its duration is only reported. */
static int timed_read(int s, int i, double limit_ms, int *stalls)
{
	char b;
	double t;
	ssize_t r = recv(s, &b, 1, MSG_PEEK | MSG_DONTWAIT);

	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
		fprintf(stderr, "read %d: reported readable, but no application byte was there\n", i);
		(*stalls)++;
	} else if (r != 1) {
		fprintf(stderr, "peek %d: r=%zd errno=%s\n", i, r, strerror(errno));
		return -1;
	}
	t = now_ms();
	r = read(s, &b, 1);
	if (r != 1) {
		fprintf(stderr, "read %d: r=%zd errno=%s\n", i, r, strerror(errno));
		return -1;
	}
	if (b != (char)('a' + i % 26)) {
		fprintf(stderr, "read %d: byte 0x%02x, expected '%c'\n", i, b & 0xff, 'a' + i % 26);
		return -1;
	}
	if (now_ms() - t > limit_ms)
		fprintf(stderr, "read %d: took %.0f ms (a slow machine, or a stall the peek missed)\n",
			i, now_ms() - t);
	return 0;
}

static int run_poll(int s, int n, int gap)
{
	int stalls = 0;

	for (int i = 0; i < n; i++) {
		struct pollfd p = { .fd = s, .events = POLLIN };
		int r = poll(&p, 1, 10 * gap + 5000);

		if (r != 1 || !(p.revents & POLLIN)) {
			fprintf(stderr, "poll %d: r=%d revents=0x%x\n", i, r, p.revents);
			return 1;
		}
		if (timed_read(s, i, gap * 0.75, &stalls))
			return 1;
	}
	printf("poll: %d messages, %d stalls\n", n, stalls);
	return stalls != 0;
}

static int run_select(int s, int n, int gap)
{
	int stalls = 0;

	for (int i = 0; i < n; i++) {
		fd_set rd;
		struct timeval tv = { (10 * gap + 5000) / 1000, 0 };
		int r;

		FD_ZERO(&rd);
		FD_SET(s, &rd);
		r = select(s + 1, &rd, NULL, NULL, &tv);
		if (r != 1 || !FD_ISSET(s, &rd)) {
			fprintf(stderr, "select %d: r=%d\n", i, r);
			return 1;
		}
		if (timed_read(s, i, gap * 0.75, &stalls))
			return 1;
	}
	printf("select: %d messages, %d stalls\n", n, stalls);
	return stalls != 0;
}

static int run_epoll2(int s, int n, int gap)
{
	int lt = epoll_create1(0), et = epoll_create1(0), outer = epoll_create1(0);
	static int tag_lt, tag_et, tag_outer;
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &tag_lt };
	int stalls = 0, spurious = 0;

	if (epoll_ctl(lt, EPOLL_CTL_ADD, s, &ev))
		return perror("epoll lt"), 1;
	ev = (struct epoll_event){ .events = EPOLLIN | EPOLLET, .data.ptr = &tag_et };
	if (epoll_ctl(et, EPOLL_CTL_ADD, s, &ev))
		return perror("epoll et"), 1;
	ev = (struct epoll_event){ .events = EPOLLIN, .data.ptr = &tag_outer };
	if (epoll_ctl(outer, EPOLL_CTL_ADD, lt, &ev))
		return perror("epoll nested"), 1;
	for (int i = 0; i < n; i++) {
		struct epoll_event got;
		int r;

		/* The outer set wakes when the inner one has the fd ready. */
		r = epoll_wait(outer, &got, 1, 10 * gap + 5000);
		if (r != 1 || got.data.ptr != &tag_outer) {
			fprintf(stderr, "outer epoll %d: r=%d data=%p\n", i, r, got.data.ptr);
			return 1;
		}
		r = epoll_wait(lt, &got, 1, 0);
		if (r == 0) {
			/* The outer set's report is not filtered (its fd is an
			 * epoll set); the inner one withdrew a report with only
			 * heartbeats behind it: wait again for this message. */
			fprintf(stderr, "lt epoll %d: outer set woke, inner empty\n", i);
			spurious++;
			i--;
			continue;
		}
		if (r != 1 || got.data.ptr != &tag_lt) {
			fprintf(stderr, "lt epoll %d: r=%d data=%p\n", i, r, got.data.ptr);
			return 1;
		}
		r = epoll_wait(et, &got, 1, 0);
		if (r == 1 && got.data.ptr != &tag_et) {
			fprintf(stderr, "et epoll %d: wrong data %p\n", i, got.data.ptr);
			return 1;
		}
		if (timed_read(s, i, gap * 0.75, &stalls))
			return 1;
	}
	printf("epoll2: %d messages, %d stalls, %d spurious\n", n, stalls, spurious);
	return stalls || spurious > 2;
}

int main(int argc, char **argv)
{
	int port, l, s, rc, n, gap, st;
	pid_t pid;

	if (argc != 4) {
		fprintf(stderr, "usage: pollread poll|select|epoll2 MESSAGES GAP_MS\n");
		return 2;
	}
	n = atoi(argv[2]);
	gap = atoi(argv[3]);
	l = listener(4, &port);
	pid = fork();
	if (pid == 0)
		serve(l, n, gap);
	close(l);
	s = dial(port);
	rc = !strcmp(argv[1], "poll")     ? run_poll(s, n, gap)
	     : !strcmp(argv[1], "select") ? run_select(s, n, gap)
					  : run_epoll2(s, n, gap);
	if (write(s, "k", 1) != 1)
		rc = 1;
	close(s);
	waitpid(pid, &st, 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		rc = 1;
	return rc;
}
