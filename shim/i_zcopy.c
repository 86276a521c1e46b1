/*
 * i_zcopy.c - interposers for the calls that move bytes without a user
 * buffer of the application's: sendfile, sendfile64, splice, and the
 * multi-message sendmmsg / recvmmsg.
 *
 * On a framed connection they keep the framing and stay zero-copy: the
 * shim writes a data frame header, then lets the kernel move the payload
 * (frame.c, hb_frame_xfer_out/in); a frame never promises more than the
 * source can deliver (bytes left in a regular file, bytes queued in a
 * pipe). Elsewhere they pass through; on a connection declared dead they
 * fail with its errno.
 */
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/sendfile.h>

#include "interpose.h"

static inline struct hb_conn *tracked(int fd)
{
	struct hb_conn *c = hb_fd_conn(fd);

	return (c && hb_conn_usable(c)) ? c : NULL;
}

static int nb_of(const struct hb_conn *c)
{
	return (hb_load_relaxed(&c->flags) & HB_CF_NONBLOCK) != 0;
}

struct sf_ctx {
	int is64, out, in;
	off_t *off;
};

static long sf_xfer(void *p, size_t n)
{
	struct sf_ctx *x = p;
	ssize_t r;

	if (x->is64)
		r = REAL(sendfile64, LIBC_RET_SSIZE(hb_os_sendfile(x->out, x->in, x->off, n)),
			 x->out, x->in, x->off, n);
	else
		r = REAL(sendfile, LIBC_RET_SSIZE(hb_os_sendfile(x->out, x->in, x->off, n)),
			 x->out, x->in, x->off, n);
	return r < 0 ? -errno : r;
}

static ssize_t do_sendfile(int is64, int out, int in, off_t *off, size_t n)
{
	struct hb_conn *c = tracked(out);
	struct sf_ctx x = { is64, out, in, off };
	struct stat st;
	size_t avail = n;
	int d;
	long r;

	if (!c) {
		r = sf_xfer(&x, n);
		if (r < 0) {
			errno = (int)-r;
			return -1;
		}
		return r;
	}
	if ((d = hb_io_dead_errno(c, out))) {
		errno = d;
		return -1;
	}
	if (c->mode != HB_MODE_FRAME) {
		hb_ka_note_tx(c);
		r = sf_xfer(&x, n);
		return r < 0 ? hb_io_frame_tx(c, out, r, MSG_NOSIGNAL) : r;
	}
	/* Bound the frame by what the file still holds. */
	if (hb_os_fstat(in, &st) == 0 && S_ISREG(st.st_mode)) {
		off_t pos = off ? *off : (off_t)hb_os_lseek(in, 0, SEEK_CUR);

		avail = pos >= 0 && st.st_size > pos ? (size_t)(st.st_size - pos) : 0;
	}
	r = hb_frame_xfer_out(c, out, n, avail, nb_of(c), sf_xfer, &x);
	return hb_io_frame_tx(c, out, r, MSG_NOSIGNAL);
}

HB_EXPORT ssize_t sendfile(int out, int in, off_t *off, size_t n)
{
	return do_sendfile(0, out, in, off, n);
}

#ifdef __GLIBC__
HB_EXPORT ssize_t sendfile64(int out, int in, off_t *off, size_t n)
{
	return do_sendfile(1, out, in, off, n);
}
#endif

struct sp_ctx {
	int in, out;
	loff_t *off_in, *off_out;
	unsigned flags;
};

static long sp_xfer(void *p, size_t n)
{
	struct sp_ctx *x = p;
	ssize_t r = REAL(splice,
			 LIBC_RET_SSIZE(hb_os_splice(x->in, x->off_in, x->out, x->off_out, n,
						     x->flags)),
			 x->in, x->off_in, x->out, x->off_out, n, x->flags);

	return r < 0 ? -errno : r;
}

HB_EXPORT ssize_t splice(int in, loff_t *off_in, int out, loff_t *off_out, size_t n,
			 unsigned int flags)
{
	struct hb_conn *ci = tracked(in), *co = tracked(out);
	struct sp_ctx x = { in, out, off_in, off_out, flags };
	int nb = (flags & SPLICE_F_NONBLOCK) != 0, d;
	long r;

	if (co && (d = hb_io_dead_errno(co, out))) {
		errno = d;
		return -1;
	}
	if (ci && (d = hb_io_dead_errno(ci, in))) {
		errno = d;
		return -1;
	}
	if (ci && ci->mode == HB_MODE_FRAME) {
		r = hb_frame_xfer_in(ci, in, n, nb || nb_of(ci), sp_xfer, &x);
		return hb_io_frame_rx(ci, in, r, n);
	}
	if (co && co->mode == HB_MODE_FRAME) {
		struct stat st = { 0 };
		size_t avail = n;
		int q = 0;

		/* What the source holds bounds the frame; a source fstat
		 * cannot see (a bad fd) fails as the real splice would,
		 * before a header promises bytes (a zero length is 0 first). */
		if ((r = hb_os_fstat(in, &st)) != 0 && n) {
			errno = (int)-r;
			return -1;
		}
		if (S_ISFIFO(st.st_mode) && hb_os_ioctl(in, FIONREAD, &q) == 0)
			avail = (size_t)q;
		else if (S_ISREG(st.st_mode)) {
			off_t pos = off_in ? *off_in : (off_t)hb_os_lseek(in, 0, SEEK_CUR);

			avail = pos >= 0 && st.st_size > pos ? (size_t)(st.st_size - pos) : 0;
		}
		if (!avail && S_ISFIFO(st.st_mode) && !nb) {
			/* An empty pipe: wait for bytes as the real splice would. */
			short rev;

			hb_os_poll1(in, POLLIN, -1, &rev);
			if (hb_os_ioctl(in, FIONREAD, &q) == 0)
				avail = (size_t)q;
		}
		r = hb_frame_xfer_out(co, out, n, avail, nb || nb_of(co), sp_xfer, &x);
		return hb_io_frame_tx(co, out, r, MSG_NOSIGNAL);
	}
	if (co)
		hb_ka_note_tx(co);
	r = sp_xfer(&x, n);
	if (r < 0) {
		errno = (int)-r;
		return -1;
	}
	return r;
}

HB_EXPORT int sendmmsg(int fd, struct mmsghdr *v, unsigned int n, hb_mmsg_flags_t flags)
{
	struct hb_conn *c = tracked(fd);
	unsigned i;

	if (!c || c->mode != HB_MODE_FRAME || !v)
		return REAL(sendmmsg, LIBC_RET(hb_os_sendmmsg(fd, v, n, (int)flags)), fd, v, n,
			    flags);
	for (i = 0; i < n; i++) {
		size_t want = 0;
		long r;

		r = hb_frame_send(c, fd, &v[i].msg_hdr, flags | (i ? MSG_DONTWAIT : 0));
		if (r < 0) {
			if (i)
				break;
			return (int)hb_io_frame_tx(c, fd, r, flags);
		}
		/* hb_frame_send accepted the array: at most IOV_MAX entries,
		 * no sum past SSIZE_MAX. */
		for (size_t k = 0; k < (size_t)v[i].msg_hdr.msg_iovlen; k++)
			want += v[i].msg_hdr.msg_iov[k].iov_len;
		v[i].msg_len = (unsigned)r;
		if ((size_t)r < want) {
			i++;
			break;
		}
	}
	return (int)i;
}

HB_EXPORT int recvmmsg(int fd, struct mmsghdr *v, unsigned int n, hb_mmsg_flags_t flags,
		       struct timespec *timeout)
{
	struct hb_conn *c = tracked(fd);
	unsigned i;

	if (!c || c->mode != HB_MODE_FRAME || !v)
		return REAL(recvmmsg, LIBC_RET(hb_os_recvmmsg(fd, v, n, (int)flags, timeout)), fd,
			    v, n, flags, timeout);
	for (i = 0; i < n; i++) {
		int fl = flags & ~MSG_WAITFORONE;
		long r;

		if (i && (flags & MSG_WAITFORONE))
			fl |= MSG_DONTWAIT;
		r = hb_frame_recv(c, fd, &v[i].msg_hdr, fl);
		if (r < 0) {
			if (i)
				break;
			return (int)hb_io_frame_rx(c, fd, r, 1);
		}
		v[i].msg_len = (unsigned)r;
		if (r == 0)
			break;
	}
	return (int)i;
}
