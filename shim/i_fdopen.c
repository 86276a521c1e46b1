/*
 * i_fdopen.c - fdopen on a connection that is or may become framed.
 *
 * glibc's stdio reads and writes with internal, non-interposable calls, so
 * a legacy client's `f = fdopen(sock, "r+"); fprintf(f, ...); fgets(...)`
 * put raw bytes inside a framed direction and read heartbeats as data.
 * fdopen on a tracked connection in frame mode, or on a TCP socket not
 * connected yet (its mode is chosen at connect), returns instead a
 * fopencookie stream whose reads, writes and close are this library's
 * read, write and close: framed bytes go framed, heartbeats are never
 * seen, and fclose runs the framed close (drain, linger) exactly once per
 * stream, as an fdopen stream closes its fd once. A connection that
 * settles as raw later is still right: read and write then pass the bytes
 * through. Every other fd (keepalive mode, untracked, not a socket) gets
 * the real fdopen after one table load and a branch.
 *
 * The stream behaves as glibc's own on a socket: the same mode strings and
 * checks (EINVAL for a bad mode or one the fd's access mode forbids, EBADF),
 * full buffering, fileno() the fd (glibc's cookie streams answer -1, and
 * legacy clients poll the fd they get from fileno), seeks fail with ESPIPE
 * (so fflush of an input stream succeeds as on a socket), and a short write
 * is a stream error only when write fails. Output still buffered at exit
 * is flushed before the shim's exit handling (glibc flushes stdio only
 * after the library destructors, when the framed exit wait is over).
 *
 * The stream names the fd by number, as glibc's does: a dup of it is
 * another fd of the same connection (closing the stream leaves the dup
 * open), and a dup2 onto the number gives the stream that file. freopen
 * closes the fd through the cookie's close and makes the stream glibc's
 * own file stream again; fclose then treats it as any other.
 *
 * fclose, of any stream, is interposed here: a stream of this file or of
 * i_stdio.c closes its fd through our close (the cookie's close), any
 * other's fd is forgotten by the table before libc closes it.
 *
 * fileno and the fclose recognition use glibc's struct _IO_FILE layout
 * (the public _fileno, and the jump-table word after the public struct,
 * checked on two probe streams first). Elsewhere, or if the check fails,
 * fdopen is the real one (README: not supported there).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "interpose.h"

/* May this connection's bytes be framed, now or after its connect? */
static int may_frame(const struct hb_conn *c)
{
	return c->mode == HB_MODE_FRAME || (c->mode == HB_MODE_NONE && c->kind == HB_KIND_SOCKET);
}

#ifdef __GLIBC__

/* glibc's stream list lock (exported since 2.2.5, not declared): held while
 * the registry is walked at exit and while fclose removes a stream, so the
 * exit flush never touches a stream being freed. */
extern void _IO_list_lock(void);
extern void _IO_list_unlock(void);

/* 0 not probed, 1 glibc's layout as expected (cookie_vt set), -1 not. */
static _Atomic int layout;
static const void *_Atomic cookie_vt;

/* The word after the public struct _IO_FILE: struct _IO_FILE_plus's
 * jump table. Every glibc stream has one. */
static const void *jumps_of(FILE *f)
{
	const void *v;

	memcpy(&v, (const char *)f + sizeof(FILE), sizeof(v));
	return v;
}

static ssize_t probe_read(void *ck, char *buf, size_t n)
{
	return 0;
}

/* Two cookie streams on a marker: glibc marks a cookie stream with
 * _fileno -2, and every cookie stream has the same jump table. (The
 * cookie itself is not checked: a sanitizer runtime's fopencookie wraps
 * it.) */
static int probe_layout(void)
{
	static const cookie_io_functions_t io = { probe_read, NULL, NULL, NULL };
	static char marker;
	int st = hb_load_acquire(&layout), err = errno;
	FILE *f, *g;

	if (st)
		return st;
	st = -1;
	f = fopencookie(&marker, "r", io);
	g = fopencookie(&marker, "w", io);
	if (f && g && f->_fileno == -2 && g->_fileno == -2 && jumps_of(f) &&
	    jumps_of(f) == jumps_of(g)) {
		hb_store_release(&cookie_vt, jumps_of(f));
		st = 1;
	}
	/* fileno -1: our fclose leaves the table alone. */
	if (f)
		fclose(f);
	if (g)
		fclose(g);
	if (st < 0)
		hb_log(HB_LOG_WARN, "fdopen: glibc's stream layout is not the expected one: "
				    "fdopen on a framed socket stays glibc's own (raw bytes)");
	hb_store_release(&layout, st);
	errno = err;
	return st;
}

/* Output streams made here, for the exit flush. A stream beyond the
 * capacity still works; only its exit flush is glibc's (late). */
#define NREG 1024
static FILE *_Atomic reg[NREG];
static _Atomic int nreg;

static void reg_add(FILE *f, int fd)
{
	for (unsigned i = 0; i < NREG; i++) {
		FILE *expect = NULL;
		unsigned k = ((unsigned)fd + i) % NREG;

		if (hb_cas_strong_acq_rel(&reg[k], &expect, f)) {
			hb_add_acq_rel(&nreg, 1);
			return;
		}
	}
}

/* Caller holds the list lock. */
static void reg_del(FILE *f)
{
	for (unsigned i = 0; i < NREG; i++) {
		FILE *expect = f;

		if (hb_load_relaxed(&reg[i]) == f && hb_cas_strong_acq_rel(&reg[i], &expect, NULL)) {
			hb_sub_acq_rel(&nreg, 1);
			return;
		}
	}
}

static ssize_t ck_read(void *ck, char *buf, size_t n)
{
	return read((int)(intptr_t)ck, buf, n);
}

/* As glibc's file streams write: all of it, retrying short counts; an
 * error ends the stream's write (the caller sees the error flag). */
static ssize_t ck_write(void *ck, const char *buf, size_t n)
{
	size_t done = 0;

	while (done < n) {
		ssize_t r = write((int)(intptr_t)ck, buf + done, n - done);

		if (r < 0)
			return done ? (ssize_t)done : -1;
		done += (size_t)r;
	}
	return (ssize_t)done;
}

/* A socket cannot seek: ESPIPE, which glibc's fflush of an input stream
 * ignores as it does for an fdopen'd socket. */
static int ck_seek(void *ck, off64_t *pos, int whence)
{
	errno = ESPIPE;
	return -1;
}

static int ck_close(void *ck)
{
	return close((int)(intptr_t)ck);
}

/* Parse mode as glibc's fdopen does: 'r', 'w' or 'a' first, then up to
 * four more characters of which a '+' ends the parse. Returns the
 * fopencookie mode in out[3], or -EINVAL. */
static int parse_mode(const char *mode, char out[3], int *rd, int *wr)
{
	int plus = 0;

	if (!mode || (mode[0] != 'r' && mode[0] != 'w' && mode[0] != 'a'))
		return -EINVAL;
	for (int i = 1; i < 5 && mode[i]; i++) {
		if (mode[i] == '+') {
			plus = 1;
			break;
		}
	}
	out[0] = mode[0];
	out[1] = plus ? '+' : 0;
	out[2] = 0;
	*rd = plus || mode[0] == 'r';
	*wr = plus || mode[0] != 'r';
	return 0;
}

/* The cookie stream for fd, or NULL with errno (the real fdopen's errors). */
static FILE *cookie_stream(int fd, const char *mode)
{
	static const cookie_io_functions_t io = { ck_read, ck_write, ck_seek, ck_close };
	char m[3];
	int rd, wr, r = parse_mode(mode, m, &rd, &wr);
	long fl;
	FILE *f;

	if (r < 0) {
		errno = -r;
		return NULL;
	}
	fl = hb_os_fcntl(fd, F_GETFL, 0);
	if (fl < 0) {
		errno = (int)-fl;
		return NULL;
	}
	if (((fl & O_ACCMODE) == O_RDONLY && wr) || ((fl & O_ACCMODE) == O_WRONLY && rd)) {
		errno = EINVAL;
		return NULL;
	}
	if (m[0] == 'a' && !(fl & O_APPEND) && (r = (int)hb_os_fcntl(fd, F_SETFL, fl | O_APPEND)) < 0) {
		errno = -r;
		return NULL;
	}
	f = fopencookie((void *)(intptr_t)fd, m, io);
	if (!f)
		return NULL;
	f->_fileno = fd;
	if (wr)
		reg_add(f, fd);
	hb_log(HB_LOG_DEBUG, "fd %d: fdopen(\"%s\"): the stream goes through hbshim", fd, m);
	return f;
}

/* fclose(fp), before the real one: 1 if fp is a stream of our fdopen (its
 * fd is closed through close()), else 0. Any thread. */
static int fdopen_release(void *fp)
{
	FILE *f = fp;
	int ours;

	if (hb_load_acquire(&layout) != 1)
		return 0;
	/* A stream freopen'd since is glibc's again but may be registered. */
	if (hb_load_acquire(&nreg)) {
		_IO_list_lock();
		reg_del(f);
		_IO_list_unlock();
	}
	ours = f->_fileno >= 0 && jumps_of(f) == hb_load_acquire(&cookie_vt);
	return ours;
}

void hb_fdopen_flush(void)
{
	if (!hb_load_acquire(&nreg))
		return;
	/* A stream another thread holds (blocked in fgets, say) is left to
	 * glibc's own final flush: never wait for it here. */
	_IO_list_lock();
	for (unsigned i = 0; i < NREG; i++) {
		FILE *f = hb_load_acquire(&reg[i]);

		if (f && ftrylockfile(f) == 0) {
			(void)fflush_unlocked(f);
			funlockfile(f);
		}
	}
	_IO_list_unlock();
}

#else /* !__GLIBC__ */

static int probe_layout(void)
{
	return -1;
}

static FILE *cookie_stream(int fd, const char *mode)
{
	(void)fd;
	(void)mode;
	errno = ENOSYS;
	return NULL;
}

static int fdopen_release(void *fp)
{
	(void)fp;
	return 0;
}

void hb_fdopen_flush(void)
{
}

#endif

static __attribute__((noinline)) FILE *fdopen_slow(struct hb_conn *c, int fd, const char *mode)
{
	void *(*fn)(int, const char *);

	c = hb_fd_conn_vet(fd, c);
	if (c && hb_conn_usable(c) && may_frame(c) && probe_layout() > 0)
		return cookie_stream(fd, mode);
	fn = REAL_PTR(fdopen);
	if (!fn) {
		hb_real_bind();
		fn = REAL_PTR(fdopen);
	}
	if (!fn) {
		errno = ENOSYS;
		return NULL;
	}
	return fn(fd, mode);
}

HB_EXPORT FILE *fdopen(int fd, const char *mode)
{
	struct hb_conn *c = hb_fd_conn_raw(fd);
	void *(*fn)(int, const char *) = REAL_PTR(fdopen);

	if (HB_LIKELY(!c && fn))
		return fn(fd, mode);
	return fdopen_slow(c, fd, mode);
}

HB_EXPORT int fclose(FILE *fp)
{
	int (*fn)(void *) = REAL_PTR(fclose);

	/* A stream of i_stdio.c or of this file closes its fd through our
	 * close (framed close semantics); any other stream's fd is closed
	 * inside libc, after the table forgot it. */
	if (fp && !hb_stdio_release(fp) && !fdopen_release(fp)) {
		int fd = fileno(fp);

		if (fd >= 0)
			hb_sock_forget(fd);
	}
	if (!fn) {
		hb_real_bind();
		fn = REAL_PTR(fclose);
	}
	if (!fn) {
		errno = ENOSYS;
		return EOF;
	}
	return fn(fp);
}
