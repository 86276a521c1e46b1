/*
 * clonesetxid.c - a server process that accepts a connection and at once
 * makes a child with a raw clone, whose first act is a change of
 * credentials, as vsftpd's listener and session process do (the session
 * calls setgroups and setuid).
 *
 *   clonesetxid ROUNDS
 *
 * Each round: a fresh worker process (forked, so the shim's background
 * thread is not running in it yet) accepts one connection from this
 * process (run with HBSHIM_FRAME=*: the accept starts the worker's
 * thread) and clones a child with syscall(SYS_clone, SIGCHLD); the child
 * calls setresuid(-1, -1, -1), which changes nothing but goes through
 * glibc's all-threads setxid like any setuid in a process glibc counts as
 * threaded. A child that is still there 2 s later is hung (killed by its
 * alarm). Prints "rounds N hung 0" and exits 0 when none hung; stops at
 * the first hung round, prints "hung at round I" and exits 1; 2 on a setup
 * failure.
 */
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "loopback.h"

static int worker(int l)
{
	int s = accept(l, NULL, NULL), st;
	pid_t pid;

	if (s < 0)
		die("accept");
	pid = (pid_t)syscall(SYS_clone, (long)SIGCHLD, 0L, 0L, 0L, 0L);
	if (pid < 0)
		die("clone");
	if (pid == 0) {
		alarm(2);
		_exit(setresuid((uid_t)-1, (uid_t)-1, (uid_t)-1) ? 3 : 0);
	}
	if (waitpid(pid, &st, 0) != pid)
		die("waitpid");
	close(s);
	if (WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM)
		return 1;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 2;
}

int main(int argc, char **argv)
{
	int rounds, port, l;

	if (argc != 2 || (rounds = atoi(argv[1])) <= 0) {
		fprintf(stderr, "usage: clonesetxid ROUNDS\n");
		return 2;
	}
	l = listener(4, &port);
	for (int i = 0; i < rounds; i++) {
		pid_t w = fork();
		int st, c;

		if (w < 0)
			die("fork");
		if (w == 0)
			_exit(worker(l));
		c = dial(port);
		if (waitpid(w, &st, 0) != w)
			die("waitpid");
		close(c);
		if (!WIFEXITED(st) || WEXITSTATUS(st) > 1) {
			fprintf(stderr, "round %d: worker status %#x\n", i, st);
			return 2;
		}
		if (WEXITSTATUS(st) == 1) {
			printf("hung at round %d\n", i);
			return 1;
		}
	}
	printf("rounds %d hung 0\n", rounds);
	return 0;
}
