/*
 * sigstorm - framed transfers under a signal storm: an interval timer fires
 * every 100 us in both processes while the client writes MEGABYTES of
 * pseudo-random data in random-sized blocking writes and the server reads
 * it back. With SA_RESTART the application must never see EINTR (as
 * without the shim: blocking socket calls without timeouts are restarted);
 * without it, EINTR may appear and the application retries. Either way the
 * bytes must arrive exactly.
 *
 * usage: sigstorm restart|norestart MEGABYTES
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t ticks;
static void on_alarm(int sig) { (void)sig; ticks++; }

static void storm(int restart)
{
	struct sigaction sa;
	struct itimerval it = { { 0, 100 }, { 0, 100 } };

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;
	sa.sa_flags = restart ? SA_RESTART : 0;
	sigaction(SIGALRM, &sa, NULL);
	setitimer(ITIMER_REAL, &it, NULL);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint8_t next_byte(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return (uint8_t)*s;
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int restart, l, one = 1, st;
	long total, eintr = 0;
	pid_t pid;

	if (argc != 3)
		return fprintf(stderr, "usage: sigstorm restart|norestart MEGABYTES\n"), 2;
	restart = !strcmp(argv[1], "restart");
	total = atol(argv[2]) << 20;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	l = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 1) ||
	    getsockname(l, (struct sockaddr *)&a, &len))
		return perror("listen"), 2;
	pid = fork();
	if (pid == 0) {
		/* server: read everything, verify on the fly */
		uint64_t s = rng;
		long got = 0, bad = 0;
		char buf[70000];
		int c;

		storm(restart);
		while ((c = accept(l, NULL, NULL)) < 0 && errno == EINTR)
			eintr++;
		while (got < total) {
			ssize_t r = read(c, buf, (size_t)(rand() % (int)sizeof(buf)) + 1);

			if (r < 0 && errno == EINTR) {
				eintr++;
				continue;
			}
			if (r <= 0) {
				fprintf(stderr, "server read: r=%zd %s at %ld\n", r, strerror(errno), got);
				return 1;
			}
			for (ssize_t i = 0; i < r; i++)
				bad += (uint8_t)buf[i] != next_byte(&s);
			got += r;
		}
		while (write(c, "k", 1) < 0 && errno == EINTR)
			eintr++;
		printf("server: %ld bytes, %ld mismatches, %ld EINTR, %d signals\n", got, bad,
		       eintr, (int)ticks);
		return bad != 0 || (restart && eintr != 0);
	}
	close(l);
	{
		int s = socket(AF_INET, SOCK_STREAM, 0);
		uint64_t g = rng;
		long sent = 0;
		char buf[200000], k;

		storm(restart);
		while (connect(s, (struct sockaddr *)&a, sizeof(a)) < 0) {
			if (errno != EINTR && errno != EALREADY && errno != EISCONN)
				return perror("connect"), 1;
			if (errno == EISCONN)
				break;
			eintr++;
		}
		while (sent < total) {
			size_t n = (size_t)(rand() % (int)sizeof(buf)) + 1, off = 0;

			if ((long)n > total - sent)
				n = (size_t)(total - sent);
			for (size_t i = 0; i < n; i++)
				buf[i] = (char)next_byte(&g);
			while (off < n) {
				ssize_t r = write(s, buf + off, n - off);

				if (r < 0 && errno == EINTR) {
					eintr++;
					continue;
				}
				if (r <= 0)
					return fprintf(stderr, "client write: %s\n", strerror(errno)), 1;
				off += (size_t)r;
			}
			sent += (long)n;
		}
		while (read(s, &k, 1) < 0 && errno == EINTR)
			eintr++;
		printf("client: %ld bytes, %ld EINTR, %d signals\n", sent, eintr, (int)ticks);
		waitpid(pid, &st, 0);
		return !WIFEXITED(st) || WEXITSTATUS(st) || (restart && eintr != 0);
	}
}
