/*
 * fdopen_client - a legacy line client that talks through stdio streams
 * made with fdopen on the socket it connected (stdio_socket.bats).
 *
 *   fdopen_client PORT rw         one "r+" stream: fprintf lines, fgets the
 *                                 echo (short lines with pauses, a line
 *                                 flushed in two parts, a 20000-byte line),
 *                                 then fclose
 *   fdopen_client PORT two-dup    in = fdopen(s, "r"), out = fdopen(dup(s), "w")
 *   fdopen_client PORT two-same   in = fdopen(s, "r"), out = fdopen(s, "w")
 *   fdopen_client PORT poll       fileno(f) is the socket; poll on it before
 *                                 each fgets; no POLLIN while only heartbeats
 *                                 arrive
 *   fdopen_client PORT serve      the server side: listen on PORT, print
 *                                 LISTENING, accept one connection, fdopen
 *                                 it "r+" and echo each line with fgets/fputs
 *                                 until the end of stream; "served N lines"
 *   fdopen_client PORT exit       fdopen(s, "w"), fprintf lines and a
 *                                 20000-byte line, then return from main
 *                                 without fflush or fclose (exit flushes)
 *
 * The peer is an echo server. Every echoed line must equal the line sent,
 * byte for byte. Prints "sent N" (bytes written) and "OK" at the end; any
 * mismatch or failed call prints "FAIL ..." and exits 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#define LONG_LINE 20000

static long sent;

static void die(const char *what)
{
	printf("FAIL %s: %s\n", what, strerror(errno));
	exit(1);
}

static void nap(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Write line (with its newline) to out, possibly in two flushed parts,
 * then read one line from in and compare. */
static void exchange(FILE *in, FILE *out, const char *line, size_t split)
{
	static char got[LONG_LINE + 64];
	size_t n = strlen(line);

	if (split && split < n) {
		if (fwrite(line, 1, split, out) != split || fflush(out) != 0)
			die("fwrite first part");
		nap(50); /* heartbeats go both ways in the middle of the line */
		if (fprintf(out, "%s", line + split) < 0 || fflush(out) != 0)
			die("fprintf second part");
	} else if (fprintf(out, "%s", line) != (int)n || fflush(out) != 0) {
		die("fprintf");
	}
	sent += (long)n;
	if (!fgets(got, sizeof(got), in))
		die(feof(in) ? "fgets: end of stream" : "fgets");
	if (strcmp(got, line) != 0) {
		printf("FAIL echo differs: sent %zu bytes, got %zu: \"%.40s\"\n", n, strlen(got), got);
		exit(1);
	}
}

static void lines(FILE *in, FILE *out, int pollfd)
{
	static char big[LONG_LINE + 2];
	char line[64];

	for (int i = 0; i < 5; i++) {
		snprintf(line, sizeof(line), "line %d of the legacy client\n", i);
		if (pollfd < 0) {
			exchange(in, out, line, 0);
		} else {
			struct pollfd p = { pollfd, POLLIN, 0 };
			int r;

			if (fprintf(out, "%s", line) < 0 || fflush(out) != 0)
				die("fprintf");
			sent += (long)strlen(line);
			/* The reply comes after heartbeats: poll wakes for it. */
			r = poll(&p, 1, 5000);
			if (r != 1 || !(p.revents & POLLIN)) {
				printf("FAIL poll before the reply: %d revents %#x\n", r, p.revents);
				exit(1);
			}
			char got[64];

			if (!fgets(got, sizeof(got), in) || strcmp(got, line) != 0) {
				printf("FAIL poll: echo differs\n");
				exit(1);
			}
			/* Nothing more is due: heartbeats alone are no POLLIN. */
			p.revents = 0;
			r = poll(&p, 1, 150);
			if (r != 0) {
				printf("FAIL poll with only heartbeats arriving: %d revents %#x\n", r,
				       p.revents);
				exit(1);
			}
			continue;
		}
		nap(60);
	}
	if (pollfd >= 0)
		return;
	exchange(in, out, "a line flushed in two parts\n", 9);
	for (int i = 0; i < LONG_LINE; i++)
		big[i] = (char)('a' + i % 26);
	big[LONG_LINE] = '\n';
	big[LONG_LINE + 1] = 0;
	exchange(in, out, big, 0);
	exchange(in, out, "last\n", 0);
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	const char *how;
	FILE *in, *out;
	int s;

	if (argc != 3) {
		fprintf(stderr, "usage: fdopen_client PORT rw|two-dup|two-same|poll|serve|exit\n");
		return 2;
	}
	how = argv[2];
	setvbuf(stdout, NULL, _IOLBF, 0);
	sa.sin_port = htons((unsigned short)atoi(argv[1]));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	s = socket(AF_INET, SOCK_STREAM, 0);
	if (s < 0)
		die("socket");
	if (strcmp(how, "serve") != 0 && connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("connect");

	if (!strcmp(how, "rw") || !strcmp(how, "poll")) {
		/* glibc's answer to a bad mode, framed or not. */
		errno = 0;
		if (fdopen(s, "z+") != NULL || errno != EINVAL) {
			printf("FAIL fdopen with mode \"z+\": errno %d\n", errno);
			return 1;
		}
		in = out = fdopen(s, "r+");
		if (!in)
			die("fdopen r+");
		if (fileno(in) != s) {
			printf("FAIL fileno %d, socket %d\n", fileno(in), s);
			return 1;
		}
		lines(in, out, strcmp(how, "poll") ? -1 : fileno(in));
		if (fclose(in) != 0)
			die("fclose");
	} else if (!strcmp(how, "two-dup") || !strcmp(how, "two-same")) {
		int same = !strcmp(how, "two-same");
		int s2 = same ? s : dup(s);

		in = fdopen(s, "r");
		out = s2 < 0 ? NULL : fdopen(s2, "w");
		if (!in || !out)
			die("fdopen r / w");
		if (fileno(in) != s || fileno(out) != s2) {
			printf("FAIL fileno %d %d, fds %d %d\n", fileno(in), fileno(out), s, s2);
			return 1;
		}
		lines(in, out, -1);
		if (fclose(out) != 0)
			die("fclose out");
		/* Each stream closes its fd once: with both on s, the second
		 * close finds it closed already, as without the shim. */
		errno = 0;
		if (same) {
			if (fclose(in) != EOF || errno != EBADF) {
				printf("FAIL second fclose on one fd: errno %d\n", errno);
				return 1;
			}
		} else if (fclose(in) != 0) {
			die("fclose in");
		}
	} else if (!strcmp(how, "serve")) {
		static char line[LONG_LINE + 64];
		int one = 1, c, nlines = 0;

		if (setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
		    bind(s, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(s, 1) < 0)
			die("listen");
		printf("LISTENING\n");
		c = accept(s, NULL, NULL);
		if (c < 0)
			die("accept");
		close(s);
		s = c;
		in = fdopen(c, "r+");
		if (!in)
			die("fdopen r+");
		while (fgets(line, sizeof(line), in)) {
			if (fputs(line, in) == EOF || fflush(in) != 0)
				die("fputs");
			nlines++;
		}
		if (ferror(in))
			die("fgets");
		printf("served %d lines\n", nlines);
		if (fclose(in) != 0)
			die("fclose");
	} else if (!strcmp(how, "exit")) {
		static char big[LONG_LINE + 2];

		out = fdopen(s, "w");
		if (!out)
			die("fdopen w");
		for (int i = 0; i < 3; i++)
			sent += fprintf(out, "unflushed line %d\n", i);
		memset(big, 'x', LONG_LINE);
		big[LONG_LINE] = '\n';
		sent += fprintf(out, "%s", big);
		sent += fprintf(out, "tail without a newline");
		printf("sent %ld\n", sent);
		nap(100); /* heartbeats arrive meanwhile */
		return 0;
	} else {
		fprintf(stderr, "unknown mode %s\n", how);
		return 2;
	}
	/* fclose closed the socket, exactly once. */
	if (fcntl(s, F_GETFD) != -1 || errno != EBADF) {
		printf("FAIL the socket is still open after fclose\n");
		return 1;
	}
	printf("sent %ld\n", sent);
	/* Stay a while: the peer's heartbeats still arrive at the closed
	 * connection; the peer must see a clean end, never a reset. */
	nap(300);
	printf("OK\n");
	return 0;
}
