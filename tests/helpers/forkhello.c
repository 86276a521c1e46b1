/*
 * forkhello.c - a server process that hands an accepted connection to one
 * child, then, once that child exited, to another, while it never reads
 * the connection itself (vsftpd's session process: a pre-login child, then
 * a post-login child). The client's hello reaches the socket only after
 * the first hand-over, so the first child takes it.
 *
 *   forkhello fork|clone|downgrade
 *
 * fork: the children come from fork(); clone: from syscall(SYS_clone,
 * SIGCHLD), which runs no fork handler. downgrade: clone, and after "ok 1"
 * the client installs an allow-all seccomp filter (its shim downgrades the
 * connection to raw first, asking the peer to follow) and sends
 * "PASS y"; the first child reads it and answers "ok P" (the stream is raw
 * both ways from there), and the second child must answer raw too. Run with HBSHIM_FRAME=* and
 * HBSHIM_ACCEPT=auto. This process is the client: it forks the server
 * first, then connects without blocking (the shim keeps its hello queued
 * until the connection is used) and waits until the server has made its
 * first child. The server accepts and makes the first child, which reads
 * a line ("USER x") and answers "ok 1"; after it exited, the second child
 * answers "ok 2" without reading. The client sends its line and reads both
 * answers:
 *   GOT ok 1
 *   GOT ok 2             (or "ERR <errno name>" / "EOF" for the second)
 * Exit 0 when it got that far, 2 on a setup failure. With FORKHELLO_PIDFILE
 * set, the server process writes its pid there first (a test can then tell
 * from the shim's debug log whether the server, not the first child, took
 * the client's hello: the hello raced ahead of the first hand-over).
 */
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "loopback.h"

static int use_clone, downgrade;

/* An allow-all filter: the shim's prctl interposer downgrades framed
 * connections before any filter (it cannot tell what a filter forbids). */
static void seccomp_allow_all(void)
{
	struct sock_filter f[] = { BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW) };
	struct sock_fprog prog = { 1, f };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog))
		die("seccomp");
}

static pid_t child(void)
{
	if (use_clone)
		return (pid_t)syscall(SYS_clone, (long)SIGCHLD, 0L, 0L, 0L, 0L);
	return fork();
}

static int read_line(int fd, char *b, size_t cap)
{
	size_t n = 0;

	while (n + 1 < cap) {
		ssize_t r = read(fd, b + n, 1);

		if (r < 0)
			return -errno;
		if (r == 0)
			return n ? (int)n : -1;
		if (b[n++] == '\n')
			break;
	}
	b[n] = 0;
	return (int)n;
}

static void reap(pid_t pid)
{
	int st;

	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st))
		_exit(3);
}

static int server(int l, int ready)
{
	const char *pidfile = getenv("FORKHELLO_PIDFILE");
	char b[64];
	int s;
	pid_t p;

	if (pidfile) {
		FILE *f = fopen(pidfile, "w");

		if (!f || fprintf(f, "%d\n", (int)getpid()) < 0 || fclose(f))
			die("pidfile");
	}
	s = accept(l, NULL, NULL);
	if (s < 0)
		die("accept");
	p = child();
	if (p < 0)
		die("clone");
	if (p == 0) {
		if (read_line(s, b, sizeof(b)) <= 0 || strcmp(b, "USER x\n"))
			_exit(1);
		if (write(s, "ok 1\n", 5) != 5)
			_exit(1);
		if (downgrade && (read_line(s, b, sizeof(b)) <= 0 || strcmp(b, "PASS y\n") ||
				  write(s, "ok P\n", 5) != 5))
			_exit(1);
		_exit(0);
	}
	if (write(ready, "r", 1) != 1)
		die("write");
	reap(p);
	p = child();
	if (p < 0)
		die("clone");
	if (p == 0)
		_exit(write(s, "ok 2\n", 5) == 5 ? 0 : 1);
	reap(p);
	close(s);
	return 0;
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	int port, l, c, pfd[2], err = 0;
	socklen_t el = sizeof(err);
	struct pollfd pw;
	char b[64];
	pid_t srv;

	if (argc != 2 || (strcmp(argv[1], "fork") && strcmp(argv[1], "clone") &&
			  strcmp(argv[1], "downgrade"))) {
		fprintf(stderr, "usage: forkhello fork|clone|downgrade\n");
		return 2;
	}
	downgrade = !strcmp(argv[1], "downgrade");
	use_clone = downgrade || !strcmp(argv[1], "clone");
	l = listener(1, &port);
	if (pipe(pfd))
		die("pipe");
	srv = fork();
	if (srv < 0)
		die("fork");
	if (srv == 0) {
		close(pfd[0]);
		_exit(server(l, pfd[1]));
	}
	close(pfd[1]);
	close(l);
	c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(c, (struct sockaddr *)&a, sizeof(a)) == 0) {
		fprintf(stderr, "connect completed at once: the hello went with it\n");
		return 2;
	}
	if (errno != EINPROGRESS)
		die("connect");
	if (read(pfd[0], b, 1) != 1)
		die("read ready");
	pw.fd = c;
	pw.events = POLLOUT;
	if (poll(&pw, 1, 5000) != 1 || getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &el) || err)
		die("connect wait");
	fcntl(c, F_SETFL, 0);
	if (write(c, "USER x\n", 7) != 7)
		die("write");
	for (int i = 0; i < 2 + downgrade; i++) {
		int r;

		if (downgrade && i == 1) {
			seccomp_allow_all();
			if (write(c, "PASS y\n", 7) != 7)
				die("write");
		}
		r = read_line(c, b, sizeof(b));

		if (r == -1) {
			printf("EOF\n");
			break;
		}
		if (r < 0) {
			printf("ERR %s\n", strerrorname_np(-r) ? strerrorname_np(-r) : "?");
			break;
		}
		printf("GOT %s", b);
	}
	close(c);
	if (waitpid(srv, &err, 0) != srv)
		die("waitpid");
	return 0;
}
