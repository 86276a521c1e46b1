/*
 * forkfiles - does a descriptor the shim opened for one line (HBSHIM_EVENTS,
 * HBSHIM_LOG_FILE) stay open in a child forked meanwhile by another thread?
 *
 *   forkfiles PATH NFORKS
 *
 * A thread makes loopback TCP connections in a loop (each one writes event
 * and log lines under the shim), while the main thread forks NFORKS
 * children. Each child reads /proc/self/fd and exits 1 when one of its
 * descriptors names PATH, 0 otherwise. Prints
 * "FORKS n LEAKED k CONNS c" and exits 0.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static atomic_int stop;
static atomic_long conns;
static int lfd;
static struct sockaddr_in addr;

static void *churn(void *arg)
{
	(void)arg;
	while (!atomic_load(&stop)) {
		int c = socket(AF_INET, SOCK_STREAM, 0), a;

		if (c < 0)
			continue;
		if (connect(c, (struct sockaddr *)&addr, sizeof(addr)) == 0) {
			a = accept(lfd, NULL, NULL);
			if (a >= 0)
				close(a);
			atomic_fetch_add(&conns, 1);
		}
		close(c);
	}
	return NULL;
}

struct dirent64_raw {
	unsigned long long ino;
	long long off;
	unsigned short reclen;
	unsigned char type;
	char name[];
};

/* In the child: 1 when a descriptor names target. Raw calls only. */
static int holds(const char *target)
{
	char buf[4096], link[PATH_MAX], p[64];
	int dfd = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	size_t tl = strlen(target);
	long n;

	if (dfd < 0)
		return 2;
	while ((n = syscall(SYS_getdents64, dfd, buf, sizeof(buf))) > 0) {
		for (long at = 0; at < n;) {
			struct dirent64_raw *d = (struct dirent64_raw *)(buf + at);
			ssize_t l;

			at += d->reclen;
			if (d->name[0] < '0' || d->name[0] > '9')
				continue;
			snprintf(p, sizeof(p), "/proc/self/fd/%s", d->name);
			l = readlink(p, link, sizeof(link));
			if (l == (ssize_t)tl && !memcmp(link, target, tl))
				return 1;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	char target[PATH_MAX];
	socklen_t len = sizeof(addr);
	int nforks, leaked = 0, forks = 0;
	pthread_t t;

	if (argc != 3) {
		fprintf(stderr, "usage: forkfiles PATH NFORKS\n");
		return 2;
	}
	nforks = atoi(argv[2]);
	/* The file exists already (created by the test), so realpath works. */
	if (!realpath(argv[1], target)) {
		perror("realpath");
		return 2;
	}
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	addr.sin_family = AF_INET;
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) || listen(lfd, 64) ||
	    getsockname(lfd, (struct sockaddr *)&addr, &len)) {
		perror("listen");
		return 2;
	}
	pthread_create(&t, NULL, churn, NULL);
	while (atomic_load(&conns) < 10)
		usleep(1000);
	for (int i = 0; i < nforks; i++) {
		int st;
		pid_t pid = fork();

		if (pid == 0)
			_exit(holds(target));
		if (pid < 0)
			break;
		forks++;
		if (waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 1)
			leaked++;
	}
	atomic_store(&stop, 1);
	pthread_join(t, NULL);
	printf("FORKS %d LEAKED %d CONNS %ld\n", forks, leaked, atomic_load(&conns));
	return 0;
}
