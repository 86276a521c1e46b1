/*
 * vforkreuse.c - a vfork child closes a framed connection's number and
 * gets a pipe on it before it exits.
 *
 *   vforkreuse PORT
 *
 * Connects to 127.0.0.1:PORT (an echo server), sends "hi" and reads the
 * echo. Then vfork: the child, which runs in the parent's memory and so
 * must leave the shim's table alone, closes the socket's number, makes a
 * pipe (it gets that number back), writes "pipe bytes" into it and reads
 * them back, reports on stdout and _exits. The parent then sends "after"
 * and reads the echo. Prints
 *   mode M                        (hbshim_fd_mode of the socket, if loaded)
 *   child b'pipe bytes' same number 1
 *   parent got after
 * or the errno of what failed; exit 0 when every step ran.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "loopback.h"

static void say(const char *s)
{
	if (write(1, s, strlen(s)) < 0)
		_exit(9);
}

static int read_n(int fd, char *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = read(fd, buf + got, n - got);

		if (r <= 0)
			return -1;
		got += (size_t)r;
	}
	return 0;
}

int main(int argc, char **argv)
{
	int (*mode)(int) = (int (*)(int))dlsym(RTLD_DEFAULT, "hbshim_fd_mode");
	char buf[64];
	int fd, st;
	pid_t pid;

	if (argc < 2)
		return 2;
	fd = dial(atoi(argv[1]));
	if (write(fd, "hi", 2) != 2 || read_n(fd, buf, 2) < 0) {
		perror("first echo");
		return 3;
	}
	printf("mode %d\n", mode ? mode(fd) : -1);
	fflush(stdout);
	pid = vfork();
	if (pid == 0) {
		int p[2];

		close(fd);
		if (pipe(p) < 0)
			_exit(4);
		if (write(p[1], "pipe bytes", 10) != 10) {
			say(errno == ENOTSOCK ? "child write failed ENOTSOCK\n" : "child write failed\n");
			_exit(0);
		}
		if (read(p[0], buf, 10) != 10 || memcmp(buf, "pipe bytes", 10)) {
			say("child read failed\n");
			_exit(0);
		}
		say(p[0] == fd || p[1] == fd ? "child b'pipe bytes' same number 1\n"
					     : "child b'pipe bytes' same number 0\n");
		_exit(0);
	}
	if (pid < 0 || waitpid(pid, &st, 0) != pid)
		return 5;
	if (write(fd, "after", 5) != 5 || read_n(fd, buf, 5) < 0) {
		perror("second echo");
		return 6;
	}
	printf("parent got %.5s\n", buf);
	return 0;
}
