/*
 * abortcall - aborting a blocked call from another thread: a client thread
 * blocks in send (to a peer that never reads) or in recv (from a peer that
 * never writes), and after 300 ms the main thread calls shutdown(SHUT_RDWR)
 * or close() on the same fd. Prints how long that call took and what the
 * blocked call returned, so a run under the shim can be compared with the
 * plain kernel. The peer is in the same process (accepted socket).
 *
 * usage: abortcall send-shutdown|sendsig-shutdown|send-shutwr|recv-shutdown|
 *                  send-close|recv-close|recv2-close
 *   *-shutdown  shutdown(SHUT_RDWR); send-shutwr: shutdown(SHUT_WR);
 *   send-*      thread A sends 1 MiB chunks until a send fails (MSG_NOSIGNAL,
 *               except sendsig-*, which counts SIGPIPE with a handler);
 *   recv-*      thread A does one recv of up to 4096 bytes;
 *   *-close     900 ms after the start the peer writes "x" (recv) or
 *               resets the connection (send: close with SO_LINGER 0),
 *               which ends the call in the kernel: until then A must
 *               still be blocked, as without the shim.
 *               For recv-close a UNIX socket takes the closed number at
 *               once, with one byte queued that nobody but this program
 *               may read (the shim must not touch the number again).
 *               recv2-close: a second reader waits behind the first
 *               (framed: for its lock); its outcome is printed as
 *               second=none (still blocked), x, or -1/ERRNO.
 * Output, one line:
 *   op_ms=N woke_ms=M blocked_after=0|1 result=R errno=NAME sigpipe=K reused=ok|lost
 * (data=D instead of errno= when a recv got bytes; result=count: a send's
 * short count). op_ms: duration of shutdown/close; woke_ms: from that call
 * to A's return; blocked_after: A still blocked 200 ms after a close;
 * reused: the byte on the socket that took the closed number is intact.
 * op_ms=-1: the shutdown/close itself was still blocked after 3 s.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (1 << 20)

static int cli, srv, is_send, with_sig, by_close, how = SHUT_RDWR;
static atomic_int done, sigpipes;
static atomic_long done_ms;
static long result;
static int result_errno;
static char rbuf[4096];
static int two;
static atomic_int done2;
static long result2;
static int errno2;

static void *blocked2(void *arg)
{
	char b[16];

	(void)arg;
	result2 = recv(cli, b, sizeof(b), 0);
	errno2 = errno;
	if (result2 == 1 && b[0] != 'x')
		result2 = -2; /* a byte that was not the peer's */
	atomic_store(&done2, 1);
	return NULL;
}


static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void on_pipe(int sig)
{
	(void)sig;
	atomic_fetch_add(&sigpipes, 1);
}

/* The shutdown or close itself never returned: say so, and end. */
static void on_alarm(int sig)
{
	static const char line[] = "op_ms=-1 (shutdown/close still blocked after 3 s)\n";

	(void)sig;
	(void)!write(1, line, sizeof(line) - 1);
	_exit(0);
}

static void *blocked(void *arg)
{
	(void)arg;
	if (is_send) {
		static char buf[CHUNK];

		memset(buf, 'a', sizeof(buf));
		for (;;) {
			result = send(cli, buf, sizeof(buf), with_sig ? 0 : MSG_NOSIGNAL);
			result_errno = errno;
			/* Once aborted, a count short of the chunk ends it too:
			 * the kernel returns what it copied before the wake-up. */
			if (result < 0 || (by_close && result < CHUNK))
				break;
		}
	} else {
		result = recv(cli, rbuf, sizeof(rbuf), 0);
		result_errno = errno;
	}
	atomic_store(&done_ms, now_ms());
	atomic_store(&done, 1);
	return NULL;
}

/* The peer resets the connection, at once, with and without the shim
 * (and nothing is left queued for an exit to wait for). */
static void reset_peer(void)
{
	struct linger lg = { 1, 0 };

	setsockopt(srv, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(srv);
}

/* The peer's move that ends a call blocked across a close. */
static void *peer(void *arg)
{
	(void)arg;
	usleep(900 * 1000);
	if (is_send)
		reset_peer();
	else
		(void)!write(srv, "x", 1);
	return NULL;
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t al = sizeof(a);
	pthread_t ta, tp;
	int l, one = 1, blocked_after = 1, pfd[2] = { -1, -1 }, reused_ok = 1;
	long t0, op_ms, woke_ms;
	char sec[64] = "";
	const char *m = argc > 1 ? argv[1] : "";

	if (!strcmp(m, "send-shutdown") || !strcmp(m, "sendsig-shutdown") || !strcmp(m, "send-close"))
		is_send = 1;
	else if (!strcmp(m, "send-shutwr"))
		is_send = 1, how = SHUT_WR;
	else if (!strcmp(m, "recv2-close"))
		two = 1;
	else if (strcmp(m, "recv-shutdown") && strcmp(m, "recv-close")) {
		fprintf(stderr, "usage: abortcall send-shutdown|sendsig-shutdown|send-shutwr|"
				"recv-shutdown|send-close|recv-close|recv2-close\n");
		return 2;
	}
	with_sig = !strncmp(m, "sendsig", 7);
	by_close = strstr(m, "-close") != NULL;
	signal(SIGPIPE, on_pipe);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	l = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 4) ||
	    getsockname(l, (struct sockaddr *)&a, &al)) {
		perror("listen");
		return 1;
	}
	cli = socket(AF_INET, SOCK_STREAM, 0);
	if (cli < 0 || connect(cli, (struct sockaddr *)&a, sizeof(a))) {
		perror("connect");
		return 1;
	}
	srv = accept(l, NULL, NULL);
	if (srv < 0) {
		perror("accept");
		return 1;
	}
	usleep(100 * 1000); /* hellos exchanged (framed mode) */

	pthread_create(&ta, NULL, blocked, NULL);
	if (two) {
		pthread_t t2;

		usleep(50 * 1000); /* the first reader is in the kernel */
		pthread_create(&t2, NULL, blocked2, NULL);
	}
	if (by_close)
		pthread_create(&tp, NULL, peer, NULL);
	usleep(300 * 1000);
	if (atomic_load(&done)) {
		fprintf(stderr, "the call did not block (result %ld, %s)\n", result,
			strerror(result_errno));
		return 1;
	}
	signal(SIGALRM, on_alarm);
	alarm(3);
	t0 = now_ms();
	if (by_close) {
		if (close(cli)) {
			perror("close");
			return 1;
		}
		op_ms = now_ms() - t0;
		alarm(0);
		if (!is_send) {
			/* The number is free again: a UNIX socket takes it. */
			if (socketpair(AF_UNIX, SOCK_STREAM, 0, pfd) || write(pfd[1], "P", 1) != 1) {
				perror("socketpair");
				return 1;
			}
			if (pfd[0] != cli)
				fprintf(stderr, "note: fd %d did not take the number %d\n", pfd[0], cli);
		}
		usleep(200 * 1000);
		blocked_after = !atomic_load(&done);
	} else {
		if (shutdown(cli, how)) {
			perror("shutdown");
			return 1;
		}
		op_ms = now_ms() - t0;
		alarm(0);
	}
	for (int i = 0; i < 500 && !atomic_load(&done); i++)
		usleep(10 * 1000);
	if (!atomic_load(&done)) {
		printf("op_ms=%ld woke_ms=-1 blocked_after=%d result=none errno=none sigpipe=%d\n",
		       op_ms, blocked_after, atomic_load(&sigpipes));
		fflush(stdout);
		_exit(0);
	}
	woke_ms = atomic_load(&done_ms) - t0;
	pthread_join(ta, NULL);
	if (!by_close)
		reset_peer();
	if (two) {
		for (int i = 0; i < 100 && !atomic_load(&done2); i++)
			usleep(10 * 1000);
		if (!atomic_load(&done2))
			snprintf(sec, sizeof(sec), " second=none");
		else if (result2 == 1)
			snprintf(sec, sizeof(sec), " second=x");
		else
			snprintf(sec, sizeof(sec), " second=%ld/%s", result2,
				 result2 == -1 ? strerrorname_np(errno2) : "-");
	}
	if (pfd[0] >= 0) {
		char b[4];

		close(pfd[1]);
		reused_ok = recv(pfd[0], b, sizeof(b), MSG_DONTWAIT) == 1 && b[0] == 'P';
	}
	if (!is_send && result > 0)
		printf("op_ms=%ld woke_ms=%ld blocked_after=%d result=%ld data=%.*s sigpipe=%d reused=%s%s\n",
		       op_ms, woke_ms, blocked_after, result, (int)result, rbuf,
		       atomic_load(&sigpipes), reused_ok ? "ok" : "lost", sec);
	else
		printf("op_ms=%ld woke_ms=%ld blocked_after=%d result=%s errno=%s sigpipe=%d reused=%s%s\n",
		       op_ms, woke_ms, blocked_after,
		       result < 0 ? "-1" : result == 0 ? "0" : "count",
		       result < 0 ? strerrorname_np(result_errno) : "none", atomic_load(&sigpipes),
		       reused_ok ? "ok" : "lost", sec);
	/* Not through exit(): the shim's exit handler waits (up to 3 s) for
	 * queued data to be acknowledged, which is not what is measured. */
	fflush(stdout);
	_exit(0);
}
