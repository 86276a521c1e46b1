/*
 * acceptrace - accept-time hello detection racing the background thread:
 * a client connects and at once writes a recognisable block, many times;
 * the server accepts each connection while the client's hello and first
 * data frame are already queued. The accepting thread and the shim's
 * background thread both look for the hello right after accept(); exactly
 * one may consume it, and the frame behind it must never be taken for a raw
 * stream's first bytes. Spinning threads in both processes make the
 * accepting thread lose its CPU at random points, and a 100 us interval
 * timer interrupts it, so the two orders both happen. The server checks
 * every byte of every connection.
 *
 * usage: acceptrace CONNECTIONS   (under LD_PRELOAD with
 * HBSHIM_FRAME='127.0.0.1:*' and a 1 ms HBSHIM_INTERVAL)
 * Prints "N connections, M bad"; exit status 0 only when M is 0.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BLOCK 200

static volatile int stop;

static void on_alarm(int sig) { (void)sig; }

static void *spin(void *arg)
{
	volatile unsigned long n = 0;

	(void)arg;
	while (!stop)
		n++;
	return NULL;
}

/* Neither process may outlive a broken run: exit after 60 s. */
static void *watchdog(void *arg)
{
	time_t end = time(NULL) + 60;

	(void)arg;
	while (time(NULL) < end)
		sleep(1); /* the interval timer's signals cut sleeps short */
	fprintf(stderr, "acceptrace: stuck for 60 s\n");
	_exit(3);
}

static void contention(void)
{
	struct sigaction sa;
	struct itimerval it = { { 0, 100 }, { 0, 100 } };
	pthread_t t;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGALRM, &sa, NULL);
	setitimer(ITIMER_REAL, &it, NULL);
	pthread_create(&t, NULL, spin, NULL);
	pthread_create(&t, NULL, watchdog, NULL);
}

static void fill(unsigned char *b, int conn)
{
	for (int i = 0; i < BLOCK; i++)
		b[i] = (unsigned char)(conn * 31 + i * 7 + 1);
}

/* Read exactly n bytes (EINTR retried); 0 or -1. */
static int read_all(int fd, unsigned char *b, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = read(fd, b + got, n - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		got += (size_t)r;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int n, l, one = 1, st;
	pid_t pid;

	if (argc != 2 || (n = atoi(argv[1])) <= 0)
		return fprintf(stderr, "usage: acceptrace CONNECTIONS\n"), 2;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	l = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 64) ||
	    getsockname(l, (struct sockaddr *)&a, &len))
		return perror("listen"), 2;
	pid = fork();
	if (pid == 0) {
		int bad = 0;

		contention();
		for (int i = 0; i < n; i++) {
			unsigned char want[BLOCK], got[BLOCK];
			int c;

			while ((c = accept(l, NULL, NULL)) < 0 && errno == EINTR)
				;
			if (c < 0)
				return perror("accept"), 1;
			fill(want, i);
			if (read_all(c, got, BLOCK) < 0 || memcmp(got, want, BLOCK) != 0) {
				if (!bad)
					fprintf(stderr, "connection %d: first bytes %02x %02x %02x\n", i,
						got[0], got[1], got[2]);
				bad++;
			}
			while (write(c, "k", 1) < 0 && errno == EINTR)
				;
			close(c);
		}
		stop = 1;
		printf("%d connections, %d bad\n", n, bad);
		return bad != 0;
	}
	close(l);
	contention();
	for (int i = 0; i < n; i++) {
		unsigned char b[BLOCK];
		int s = socket(AF_INET, SOCK_STREAM, 0);

		while (connect(s, (struct sockaddr *)&a, sizeof(a)) < 0) {
			if (errno == EISCONN)
				break;
			if (errno != EINTR && errno != EALREADY)
				return perror("connect"), 1;
		}
		fill(b, i);
		if (write(s, b, BLOCK) != BLOCK)
			return perror("write"), 1;
		if (read_all(s, b, 1) < 0)
			return fprintf(stderr, "client: no answer on connection %d\n", i), 1;
		close(s);
	}
	stop = 1;
	waitpid(pid, &st, 0);
	return !WIFEXITED(st) || WEXITSTATUS(st);
}
