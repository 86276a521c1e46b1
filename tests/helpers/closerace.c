/*
 * closerace - the close/heartbeat race: framed connections are opened, used
 * long enough for heartbeats to be due, and closed by several threads at
 * once, while every freed fd number is immediately taken by a pipe or a
 * regular file. A background-thread heartbeat that reached a reused number
 * would put bytes into a pipe or a file: the test fails on the first stray
 * byte. One cycle in four closes the socket behind the shim's back
 * (syscall(SYS_close)), so the SO_COOKIE identity check is exercised too.
 *
 * usage: closerace THREADS CYCLES_PER_THREAD   (run under LD_PRELOAD with
 * HBSHIM_FRAME='127.0.0.1:*' and a small HBSHIM_INTERVAL)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int port, cycles;
static atomic_long stray, done, reused;
static char dir[256];

static void *acceptor(void *arg)
{
	int l = *(int *)arg;

	for (;;) {
		int c = accept(l, NULL, NULL);
		char b[64];

		if (c < 0)
			continue;
		/* Read the client's byte (and its hello), answer, then keep
		 * the connection until the client goes away. */
		if (read(c, b, sizeof(b)) > 0)
			(void)!write(c, "y", 1);
		while (read(c, b, sizeof(b)) > 0)
			;
		close(c);
	}
	return NULL;
}

static void check_pipe(int rfd)
{
	char b[16];
	ssize_t r = read(rfd, b, sizeof(b));

	if (r > 0) {
		fprintf(stderr, "STRAY: %zd byte(s) in a pipe (first 0x%02x)\n", r, b[0] & 0xff);
		atomic_fetch_add(&stray, r);
	}
}

static void *worker(void *arg)
{
	long id = (long)arg;
	char path[300];

	snprintf(path, sizeof(path), "%s/f%ld", dir, id);
	for (int i = 0; i < cycles; i++) {
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
		int s = socket(AF_INET, SOCK_STREAM, 0), p[2], f;
		struct stat st;
		char b;

		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a))) {
			if (s >= 0)
				close(s);
			usleep(1000);
			continue;
		}
		if (write(s, "x", 1) != 1 || read(s, &b, 1) != 1)
			fprintf(stderr, "exchange failed: %s\n", strerror(errno));
		if (i % 16 == 0)
			usleep(3000); /* let heartbeats come due */
		if (i % 4 == 3)
			syscall(SYS_close, s); /* behind the shim's back */
		else
			close(s);
		/* Take the number back at once: a pipe (read end, write end)
		 * and a regular file. */
		if (pipe2(p, O_NONBLOCK) == 0) {
			if (p[0] == s || p[1] == s)
				atomic_fetch_add(&reused, 1);
			usleep(i % 8 == 0 ? 2000 : 0);
			check_pipe(p[0]);
			close(p[0]);
			close(p[1]);
		}
		f = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
		if (f >= 0) {
			if (f == s)
				atomic_fetch_add(&reused, 1);
			usleep(i % 8 == 4 ? 2000 : 0);
			if (fstat(f, &st) == 0 && st.st_size != 0) {
				fprintf(stderr, "STRAY: %lld byte(s) in a file\n", (long long)st.st_size);
				atomic_fetch_add(&stray, st.st_size);
			}
			close(f);
		}
		atomic_fetch_add(&done, 1);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int threads, l, one = 1;
	pthread_t at, *ts;

	if (argc != 3) {
		fprintf(stderr, "usage: closerace THREADS CYCLES_PER_THREAD\n");
		return 2;
	}
	threads = atoi(argv[1]);
	cycles = atoi(argv[2]);
	snprintf(dir, sizeof(dir), "%s", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	l = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 512) ||
	    getsockname(l, (struct sockaddr *)&a, &len))
		return perror("listen"), 2;
	port = ntohs(a.sin_port);
	for (int i = 0; i < 4; i++)
		pthread_create(&at, NULL, acceptor, &l);
	ts = calloc((size_t)threads, sizeof(*ts));
	for (long i = 0; i < threads; i++)
		pthread_create(&ts[i], NULL, worker, (void *)i);
	for (int i = 0; i < threads; i++)
		pthread_join(ts[i], NULL);
	printf("closerace: %ld cycles, %ld numbers reused at once, %ld stray bytes\n",
	       atomic_load(&done), atomic_load(&reused), atomic_load(&stray));
	return atomic_load(&stray) != 0 || atomic_load(&done) < (long)threads * cycles / 2;
}
