/*
 * clonefiles.c - a raw clone child that closes a tracked connection, with
 * and without a shared fd table.
 *
 *   clonefiles files|own
 *
 * Makes a framed loopback connection with itself (run it with
 * HBSHIM_FRAME=*), closes the client side (the shim keeps a lingering
 * duplicate of it at a high fd), then clones a child with its own memory
 * (no CLONE_VM: the shim's fork handlers do not run there) and, for
 * "files", CLONE_FILES: the child shares our fd table. The child dups the
 * server side (a change to the table: the shim looks at its pid then) and
 * reports whether the lingering duplicate is still open in its table; the
 * parent reports the same for its own table after the child ended (the
 * server side stays open, so the linger goes on meanwhile):
 *   LINGER fd=N
 *   CHILD open|closed
 *   PARENT open|closed
 * Exit 0 when it got that far, 2 on a setup failure.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static int srv, lfd;
static char stack[256 * 1024];

static int child(void *arg)
{
	char line[32];
	int n;

	(void)arg;
	if (dup(srv) < 0)
		return 1;
	n = snprintf(line, sizeof(line), "CHILD %s\n", fcntl(lfd, F_GETFD) < 0 ? "closed" : "open");
	if (write(1, line, (size_t)n) != n)
		return 1;
	return 0;
}

/* The highest socket fd at or above min, or -1. */
static int high_socket(int min)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int best = -1;

	if (!d)
		return -1;
	while ((e = readdir(d))) {
		int fd = atoi(e->d_name);
		char l[64], p[64];
		ssize_t n;

		if (fd < min || fd == dirfd(d))
			continue;
		snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
		n = readlink(p, l, sizeof(l) - 1);
		if (n > 0 && !strncmp(l, "socket:", 7) && fd > best)
			best = fd;
	}
	closedir(d);
	return best;
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t al = sizeof(a);
	int l, cl, st, flags = SIGCHLD;
	char buf[2];
	pid_t pid;

	if (argc != 2 || (strcmp(argv[1], "files") && strcmp(argv[1], "own"))) {
		fprintf(stderr, "usage: clonefiles files|own\n");
		return 2;
	}
	if (!strcmp(argv[1], "files"))
		flags |= CLONE_FILES;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	l = socket(AF_INET, SOCK_STREAM, 0);
	if (l < 0 || bind(l, (void *)&a, sizeof(a)) || listen(l, 1) ||
	    getsockname(l, (void *)&a, &al))
		return perror("listen"), 2;
	cl = socket(AF_INET, SOCK_STREAM, 0);
	if (cl < 0 || connect(cl, (void *)&a, sizeof(a)))
		return perror("connect"), 2;
	srv = accept(l, NULL, NULL);
	if (srv < 0 || write(cl, "hi", 2) != 2 || read(srv, buf, 2) != 2 ||
	    write(srv, "ok", 2) != 2 || read(cl, buf, 2) != 2)
		return perror("exchange"), 2;
	close(cl); /* a framed connection to an hbshim peer: the shim lingers */
	lfd = high_socket(srv + 1);
	if (lfd < 0) {
		fprintf(stderr, "no lingering duplicate (is HBSHIM_FRAME=* set?)\n");
		return 2;
	}
	printf("LINGER fd=%d\n", lfd);
	fflush(stdout);
	pid = clone(child, stack + sizeof(stack), flags, NULL);
	if (pid < 0)
		return perror("clone"), 2;
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st))
		return fprintf(stderr, "child failed\n"), 2;
	printf("PARENT %s\n", fcntl(lfd, F_GETFD) < 0 ? "closed" : "open");
	return 0;
}
