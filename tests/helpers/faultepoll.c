/*
 * faultepoll - a C epoll client for tests/bats/faults_eventloop.bats, for
 * the waits Python does not call: epoll_pwait and epoll_pwait2.
 *
 *   faultepoll PORT N CALL SECS
 *     Connect to faultapp.py's server on 127.0.0.1:PORT, ask for N bytes
 *     ("N\n"), and read them with non-blocking reads (MSG_DONTWAIT) of a
 *     socket registered level-triggered for EPOLLIN, waiting with CALL
 *     (wait | pwait | pwait2) for at most what is left of SECS
 *     (milliseconds; a timespec for pwait2). Prints "ok N", "eof after K", "err ERRNO after K" or
 *     "timeout after K", then "eagain K" (reads that found nothing after a
 *     report), "first MS" (milliseconds from the request to the first byte,
 *     -1 for none) and "empty K" (waits that returned 0 events before the
 *     deadline: a timeout cut short). Exits 2 on a setup error, 3 when the
 *     bytes do not match faultapp's pattern (byte i is i % 251).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int wait_call(const char *call, int ep, struct epoll_event *ev, double left_ms)
{
	sigset_t none;

	sigemptyset(&none);
	if (!strcmp(call, "pwait"))
		return epoll_pwait(ep, ev, 1, (int)left_ms + 1, &none);
	if (!strcmp(call, "pwait2")) {
		struct timespec ts = { (time_t)(left_ms / 1000),
				       (long)((left_ms - (double)(long)(left_ms / 1000) * 1000) * 1e6) };

		return epoll_pwait2(ep, ev, 1, &ts, &none);
	}
	return epoll_wait(ep, ev, 1, (int)left_ms + 1);
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	struct epoll_event ev = { .events = EPOLLIN };
	long n, got = 0, eagain = 0, empty = 0;
	double t0, end, first = -1;
	char req[32], buf[65536];
	const char *result = NULL;
	int s, ep, err = 0;

	if (argc != 5) {
		fprintf(stderr, "usage: faultepoll PORT N wait|pwait|pwait2 SECS\n");
		return 2;
	}
	n = atol(argv[2]);
	a.sin_port = htons((unsigned short)atoi(argv[1]));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	s = socket(AF_INET, SOCK_STREAM, 0);
	if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a)) < 0) {
		perror("connect");
		return 2;
	}
	ep = epoll_create1(0);
	ev.data.fd = s;
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev) < 0) {
		perror("epoll");
		return 2;
	}
	snprintf(req, sizeof(req), "%ld\n", n);
	t0 = now_ms();
	if (send(s, req, strlen(req), 0) != (ssize_t)strlen(req)) {
		perror("send");
		return 2;
	}
	end = t0 + atof(argv[4]) * 1000;
	while (got < n) {
		double left = end - now_ms();
		ssize_t r;
		int k;

		if (left <= 0) {
			result = "timeout";
			break;
		}
		k = wait_call(argv[3], ep, &ev, left);
		if (k < 0) {
			perror("epoll wait");
			return 2;
		}
		if (k == 0) {
			if (now_ms() < end - 1)
				empty++;
			continue;
		}
		r = recv(s, buf, sizeof(buf), MSG_DONTWAIT);
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			eagain++;
			continue;
		}
		if (r < 0) {
			err = errno;
			result = "err";
			break;
		}
		if (r == 0) {
			result = "eof";
			break;
		}
		if (first < 0)
			first = now_ms() - t0;
		for (ssize_t i = 0; i < r; i++)
			if ((unsigned char)buf[i] != (got + i) % 251)
				return 3;
		got += r;
	}
	if (!result)
		printf("ok %ld\n", got);
	else if (err)
		printf("err %s after %ld\n", strerrorname_np(err), got);
	else
		printf("%s after %ld\n", result, got);
	printf("eagain %ld\nfirst %.0f\nempty %ld\n", eagain, first, empty);
	return 0;
}
