/*
 * fdpass_mmsg.c - a TCP connection handed to another process with
 * sendmmsg and SCM_RIGHTS.
 *
 *   fdpass_mmsg send PORT PATH   connects to 127.0.0.1:PORT (an echo
 *                                server), sends "before\n" and reads it
 *                                back, connects to the unix socket PATH and
 *                                sends two messages in one sendmmsg: "a"
 *                                alone, then "b" with the TCP socket in
 *                                SCM_RIGHTS; closes its copy and waits for
 *                                the receiver's one-byte "done".
 *   fdpass_mmsg recv PATH        listens on PATH, prints "ready", takes the
 *                                two messages (recvmsg), then writes 65536
 *                                bytes (frame-header look-alikes, every byte
 *                                value) on the received socket with
 *                                write(2), reads them back with read(2),
 *                                prints "exact 65536" when equal, and
 *                                sends "done".
 *
 * Exit 0 on success, 2 on a failed setup call, 4 on a short or different
 * echo.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "loopback.h"

#define PAYLOAD 65536

static struct sockaddr_un unix_addr(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };

	if (strlen(path) >= sizeof(a.sun_path)) {
		fprintf(stderr, "path too long\n");
		exit(2);
	}
	strcpy(a.sun_path, path);
	return a;
}

static int do_send(int port, const char *path)
{
	struct sockaddr_un a = unix_addr(path);
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec io[2] = { { "a", 1 }, { "b", 1 } };
	struct mmsghdr v[2];
	struct cmsghdr *h;
	unsigned char back[7];
	char done;
	int s = dial(port), u;

	write_all(s, (const unsigned char *)"before\n", 7);
	read_all(s, back, 7);
	if (memcmp(back, "before\n", 7))
		return 4;
	u = socket(AF_UNIX, SOCK_STREAM, 0);
	if (u < 0 || connect(u, (struct sockaddr *)&a, sizeof(a)))
		die("connect unix");
	memset(v, 0, sizeof(v));
	memset(&ctl, 0, sizeof(ctl));
	v[0].msg_hdr.msg_iov = &io[0];
	v[0].msg_hdr.msg_iovlen = 1;
	v[1].msg_hdr.msg_iov = &io[1];
	v[1].msg_hdr.msg_iovlen = 1;
	v[1].msg_hdr.msg_control = ctl.buf;
	v[1].msg_hdr.msg_controllen = sizeof(ctl.buf);
	h = CMSG_FIRSTHDR(&v[1].msg_hdr);
	h->cmsg_level = SOL_SOCKET;
	h->cmsg_type = SCM_RIGHTS;
	h->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(h), &s, sizeof(int));
	if (sendmmsg(u, v, 2, 0) != 2)
		die("sendmmsg");
	close(s);
	if (read(u, &done, 1) != 1 || done != 'k')
		die("the receiver's done");
	return 0;
}

/* One byte of data and, when the message carries one, an fd. */
static int take(int u, char *c)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec io = { c, 1 };
	struct msghdr m = { .msg_iov = &io, .msg_iovlen = 1, .msg_control = ctl.buf,
			    .msg_controllen = sizeof(ctl.buf) };
	struct cmsghdr *h;
	int fd = -1;

	if (recvmsg(u, &m, 0) != 1)
		die("recvmsg");
	for (h = CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h))
		if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS)
			memcpy(&fd, CMSG_DATA(h), sizeof(int));
	return fd;
}

static int do_recv(const char *path)
{
	struct sockaddr_un a = unix_addr(path);
	static unsigned char out[PAYLOAD], back[PAYLOAD];
	int l = socket(AF_UNIX, SOCK_STREAM, 0), u, s;
	char c1, c2;

	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 1))
		die("listen unix");
	printf("ready\n");
	fflush(stdout);
	u = accept(l, NULL, NULL);
	if (u < 0)
		die("accept unix");
	if (take(u, &c1) >= 0 || c1 != 'a') {
		fprintf(stderr, "first message: not 'a' alone\n");
		return 2;
	}
	s = take(u, &c2);
	if (s < 0 || c2 != 'b') {
		fprintf(stderr, "second message: no fd\n");
		return 2;
	}
	memcpy(out, "\x00\x01\x00\x00\x00\x05hello\x00\x04\x01\xff\x00", 16);
	for (size_t i = 16; i < PAYLOAD; i++)
		out[i] = (unsigned char)(i * 7 + (i >> 8));
	write_all(s, out, PAYLOAD);
	read_all(s, back, PAYLOAD);
	if (memcmp(out, back, PAYLOAD)) {
		fprintf(stderr, "the echo differs\n");
		return 4;
	}
	printf("exact %d\n", PAYLOAD);
	fflush(stdout);
	if (write(u, "k", 1) != 1)
		die("done");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "send"))
		return do_send(atoi(argv[2]), argv[3]);
	if (argc == 3 && !strcmp(argv[1], "recv"))
		return do_recv(argv[2]);
	fprintf(stderr, "usage: fdpass_mmsg send PORT PATH | recv PATH\n");
	return 2;
}
