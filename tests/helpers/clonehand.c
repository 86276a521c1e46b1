/*
 * clonehand.c - a listener that hands each accepted connection to a child
 * made by a raw clone, as vsftpd does (isolate=YES: syscall(SYS_clone)
 * with new namespaces and SIGCHLD), and closes its own copy at once.
 *
 *   clonehand syscall|wrapper
 *
 * syscall: the child comes from syscall(SYS_clone, SIGCHLD, ...), so it
 * returns twice like fork; wrapper: from glibc's clone() with a function
 * and a stack. No fork handler runs in either. Makes a framed loopback
 * connection with itself (run it with HBSHIM_FRAME=*): the client side
 * stays here, the accepted side goes to the child, which echoes lines
 * until the end of stream. The parent closes the accepted side right
 * after the clone, then, as the client, sends 3 lines and reads each
 * echo, then half-closes and reads the end of stream:
 *   ECHO <line>      (3 times)
 *   END eof|error <errno>
 * Exit 0 when it got that far, 2 on a setup failure.
 */
#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "loopback.h"

static int srv;
static char stack[256 * 1024];

static int echo(void *arg)
{
	char b[256];
	ssize_t n;

	(void)arg;
	while ((n = read(srv, b, sizeof(b))) > 0)
		if (write(srv, b, (size_t)n) != n)
			return 1;
	close(srv);
	return n < 0;
}

static int read_line(int fd, char *b, size_t cap)
{
	size_t n = 0;

	while (n + 1 < cap) {
		ssize_t r = read(fd, b + n, 1);

		if (r <= 0)
			return -1;
		if (b[n++] == '\n')
			break;
	}
	b[n] = 0;
	return (int)n;
}

int main(int argc, char **argv)
{
	int port, l, cl, st, wrapper;
	char line[64];
	pid_t pid;
	ssize_t r;

	if (argc != 2 || (strcmp(argv[1], "syscall") && strcmp(argv[1], "wrapper"))) {
		fprintf(stderr, "usage: clonehand syscall|wrapper\n");
		return 2;
	}
	wrapper = !strcmp(argv[1], "wrapper");
	l = listener(1, &port);
	cl = dial(port);
	srv = accept(l, NULL, NULL);
	if (srv < 0)
		return perror("accept"), 2;
	if (wrapper) {
		pid = clone(echo, stack + sizeof(stack), SIGCHLD, NULL);
	} else {
		pid = (pid_t)syscall(SYS_clone, (long)SIGCHLD, 0L, 0L, 0L, 0L);
		if (pid == 0)
			_exit(echo(NULL));
	}
	if (pid < 0)
		return perror("clone"), 2;
	close(srv); /* the listener's copy: the child has the connection now */
	for (int i = 0; i < 3; i++) {
		int n = snprintf(line, sizeof(line), "line %d \x01\x02\n", i);

		if (write(cl, line, (size_t)n) != n)
			return perror("write"), 2;
		if (read_line(cl, line, sizeof(line)) < 0) {
			printf("ECHO none (%s)\n", errno ? strerror(errno) : "end of stream");
			return 0;
		}
		line[strcspn(line, "\n")] = 0;
		for (char *p = line; *p; p++)
			if ((unsigned char)*p < 32)
				*p = '.';
		printf("ECHO %s\n", line);
	}
	shutdown(cl, SHUT_WR);
	r = read(cl, line, sizeof(line));
	if (r == 0)
		printf("END eof\n");
	else
		printf("END error %d\n", r < 0 ? errno : -1);
	if (waitpid(pid, &st, 0) != pid)
		return perror("waitpid"), 2;
	return 0;
}
