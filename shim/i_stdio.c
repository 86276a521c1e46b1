/*
 * i_stdio.c - stdio on a framed connection handed over by exec.
 *
 * An inetd-style server (git daemon, xinetd, socat EXEC) execs a handler
 * with the connection on fds 0, 1 (and 2). inherit.c carries the framed
 * state across the exec, and the handler's read/write/send/recv calls are
 * framed here as anywhere; but glibc's stdio reads and writes with its
 * internal, non-interposable calls, so a handler that answers with printf
 * or fwrite (git upload-pack's ref advertisement) put raw bytes inside a
 * framed direction, and the peer failed with EPROTO.
 *
 * In a process that starts with an inherited framed connection on fd 0, 1
 * or 2, the constructor replaces that standard stream with one whose
 * reads and writes are this library's read and write (glibc documents
 * stdin, stdout and stderr as variables a program may assign). The new
 * stream keeps the fd number for fileno(), the buffering stdio would have
 * chosen for a socket (full; none for stderr), and closes the fd on
 * fclose. Its buffer is flushed before the shim's exit handling, which
 * runs before glibc's own final flush.
 *
 * Only these three streams, and only when framed: a keepalive-mode socket
 * needs nothing (its bytes are the application's); fdopen on a framed
 * socket is i_fdopen.c's.
 *
 * glibc only: musl's standard streams are constants whose writes are raw
 * system calls, so there nothing here replaces them, and a handler's stdio
 * on an inherited framed connection is unsupported on musl (README; the
 * peer sees a protocol error, never silently changed bytes).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#include "hb.h"

static FILE *adopted[3];

#ifdef __GLIBC__
static ssize_t ck_read(void *ck, char *buf, size_t n)
{
	return read((int)(intptr_t)ck, buf, n);
}

/* stdio expects all of it, or an error. */
static ssize_t ck_write(void *ck, const char *buf, size_t n)
{
	size_t done = 0;

	while (done < n) {
		ssize_t r = write((int)(intptr_t)ck, buf + done, n - done);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		done += (size_t)r;
	}
	return (ssize_t)done;
}

static int ck_close(void *ck)
{
	return close((int)(intptr_t)ck);
}
#endif

void hb_stdio_adopt(void)
{
#ifdef __GLIBC__
	static const cookie_io_functions_t io = { ck_read, ck_write, NULL, ck_close };

	for (int fd = 0; fd < 3; fd++) {
		struct hb_conn *c = hb_fd_conn(fd);
		FILE *f;

		if (!c || c->mode != HB_MODE_FRAME)
			continue;
		f = fopencookie((void *)(intptr_t)fd, fd ? "w" : "r", io);
		if (!f)
			continue;
		f->_fileno = fd; /* fileno(stdout) is still 1 */
		(void)setvbuf(f, NULL, fd == 2 ? _IONBF : _IOFBF, BUFSIZ); /* else the default */
		adopted[fd] = f;
		if (fd == 0)
			stdin = f;
		else if (fd == 1)
			stdout = f;
		else
			stderr = f;
		hb_log(HB_LOG_DEBUG, "fd %d: framed connection as %s: stdio goes through hbshim", fd,
		       fd == 0 ? "stdin" : fd == 1 ? "stdout" : "stderr");
	}
#else
	for (int fd = 0; fd < 3; fd++) {
		struct hb_conn *c = hb_fd_conn(fd);

		if (c && c->mode == HB_MODE_FRAME)
			hb_log(HB_LOG_DEBUG, "fd %d: framed connection as a standard stream: "
					     "stdio on it is not framed with musl", fd);
	}
#endif
}

/* fclose of one of ours: its close comes through close() (ck_close). */
int hb_stdio_release(void *fp)
{
	for (int i = 0; i < 3; i++) {
		if (adopted[i] && adopted[i] == fp) {
			adopted[i] = NULL;
			return 1;
		}
	}
	return 0;
}

/* Before the shim's exit handling: glibc flushes stdio only after the
 * library destructors ran. A stream the program replaced or closed is
 * not ours any more. */
void hb_stdio_flush(void)
{
	if (adopted[1] && stdout == adopted[1])
		fflush(stdout);
	if (adopted[2] && stderr == adopted[2])
		fflush(stderr);
}
