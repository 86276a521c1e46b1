/*
 * conn_io.c - a tracked connection's side of a data call: what the
 * interposers of i_io.c (and i_zcopy.c) hand a call to once they found
 * its connection.
 *
 * Before the call: the dead check (a connection the shim declared dead
 * answers its errno on every call). The call itself, when the shim makes
 * it: through the fault rules when a connection has some (fault_io.c,
 * which makes the undisturbed call below them as its last step), else the
 * framed receive or send path. After the call: the result in libc's
 * convention, with the connection's verdicts applied (a kernel
 * ETIMEDOUT declares the peer dead, our own shutdown reports the death
 * rather than an end of stream, the connect deadline's ECONNRESET is
 * ETIMEDOUT, an error a call of the shim's own consumed is reported once).
 * A keepalive-mode call without fault rules is the application's own: the
 * interposer makes it (through the next definition of the same function)
 * and hands its result here. App threads; errno is the result's.
 */
#include <errno.h>
#include <limits.h>
#include <sys/socket.h>

#include "hb.h"

/* The connection was found dead by the shim: answer its errno, unless the
 * fd turns out to be another file now (closed behind our back). */
int hb_io_dead_errno(struct hb_conn *c, int fd)
{
	int d = hb_load_acquire(&c->dead);

	if (!d)
		return 0;
	if (c->cookie && hb_os_cookie(fd) != c->cookie) {
		hb_or_acq_rel(&c->flags, HB_CF_LOST);
		return 0;
	}
	return d;
}

/* The first error after our connect deadline dissolved a non-blocking
 * connect is the kernel's ECONNRESET for it: report ETIMEDOUT. */
static int conn_expired_errno(struct hb_conn *c, int err)
{
	if (HB_UNLIKELY(hb_load_relaxed(&c->flags) & HB_CF_CONN_EXPIRED) &&
	    (err == ECONNRESET || err == ENOTCONN || err == EPIPE)) {
		hb_and_acq_rel(&c->flags, ~HB_CF_CONN_EXPIRED);
		return ETIMEDOUT;
	}
	return err;
}

ssize_t hb_io_rx_done(struct hb_conn *c, int fd, ssize_t r, size_t want)
{
	int err = errno, d;

	if (r < 0)
		err = conn_expired_errno(c, err);
	if (HB_UNLIKELY(hb_load_relaxed(&c->stolen_err)) && r <= 0) {
		/* The connection's error went to a call of the shim's own:
		 * report it instead of the end of stream that follows it,
		 * once, as the kernel would have. */
		int s = hb_xchg_acq_rel(&c->stolen_err, 0);

		if (r == 0 && want && s) {
			errno = s;
			return -1;
		}
	}

	if (r < 0 && err == ETIMEDOUT) {
		hb_conn_kernel_timed_out(c, fd);
		errno = ETIMEDOUT;
		return r;
	}
	if (r <= 0 && (want || r < 0) && (d = hb_io_dead_errno(c, fd))) {
		/* Our shutdown woke the call: report the death, not EOF. */
		errno = d;
		return -1;
	}
	errno = err;
	return r;
}

ssize_t hb_io_tx_done(struct hb_conn *c, int fd, ssize_t r, int app_flags)
{
	int err = errno, d;

	if (r >= 0)
		return r;
	err = conn_expired_errno(c, err);
	if (err == ETIMEDOUT) {
		hb_conn_kernel_timed_out(c, fd);
		errno = ETIMEDOUT;
		return r;
	}
	if ((d = hb_io_dead_errno(c, fd))) {
		errno = d;
		return -1;
	}
	if (err == EPIPE && !(app_flags & MSG_NOSIGNAL))
		hb_os_raise_sigpipe(); /* what the kernel would have done */
	errno = err;
	return r;
}

ssize_t hb_io_frame_rx(struct hb_conn *c, int fd, long r, size_t want)
{
	if (r > 0)
		return r; /* errno untouched, as after any successful call */
	if (r == 0)
		return hb_io_rx_done(c, fd, 0, want);
	errno = (int)-r;
	return hb_io_rx_done(c, fd, -1, want);
}

ssize_t hb_io_frame_tx(struct hb_conn *c, int fd, long r, int app_flags)
{
	if (r >= 0)
		return r;
	errno = (int)-r;
	return hb_io_tx_done(c, fd, -1, app_flags);
}

/* The bytes m asks for, read only after a call with r == 0 (the only case
 * where it matters: an end of stream, or a zero-length read): the kernel
 * or hb_frame_recv accepted the array then, so it is readable and at most
 * IOV_MAX entries long. */
static size_t want_of(long r, const struct msghdr *m)
{
	size_t t = 0;

	if (r != 0)
		return 1;
	for (size_t i = 0; m->msg_iov && i < (size_t)m->msg_iovlen && i < IOV_MAX; i++)
		t += m->msg_iov[i].iov_len;
	return t;
}

/* fault_io.c's way down: the undisturbed receive or send of this
 * connection (framed or raw), count or -errno. */
static long plain_recv(struct hb_conn *c, int fd, struct msghdr *m, int flags)
{
	if (c->mode == HB_MODE_FRAME)
		return hb_frame_recv(c, fd, m, flags);
	return hb_next_recvmsg(fd, m, flags);
}

static long plain_send(struct hb_conn *c, int fd, struct msghdr *m, int flags)
{
	if (c->mode == HB_MODE_FRAME)
		return hb_frame_send(c, fd, m, flags);
	hb_ka_note_tx(c);
	return hb_next_sendmsg(fd, m, flags | MSG_NOSIGNAL);
}

/* A call on a connection with fault rules (HBSHIM_FAULTS): an error the
 * fault injected is reported as is, anything else as the undisturbed path
 * would. */
static __attribute__((noinline)) ssize_t fault_rx(struct hb_conn *c, int fd, struct msghdr *m,
						  int flags)
{
	int injected;
	long r = hb_fault_recv(c, fd, m, flags, plain_recv, &injected);

	if (injected && r <= 0) {
		if (r == 0)
			return 0;
		errno = (int)-r;
		return -1;
	}
	return hb_io_frame_rx(c, fd, r, want_of(r, m));
}

static __attribute__((noinline)) ssize_t fault_tx(struct hb_conn *c, int fd,
						  const struct msghdr *m, int flags)
{
	int injected;
	long r = hb_fault_send(c, fd, m, flags, plain_send, &injected);

	if (injected && r < 0) {
		errno = (int)-r;
		return -1;
	}
	return hb_io_frame_tx(c, fd, r, flags);
}

ssize_t hb_io_recv(struct hb_conn *c, int fd, struct msghdr *m, int flags)
{
	long r;
	int d = hb_io_dead_errno(c, fd);

	if (d) {
		errno = d;
		return -1;
	}
	if (HB_UNLIKELY(hb_fault_of(c)))
		return fault_rx(c, fd, m, flags);
	r = hb_frame_recv(c, fd, m, flags);
	return hb_io_frame_rx(c, fd, r, want_of(r, m));
}

ssize_t hb_io_send(struct hb_conn *c, int fd, const struct msghdr *m, int flags)
{
	int d = hb_io_dead_errno(c, fd);

	if (d) {
		errno = d;
		return -1;
	}
	if (HB_UNLIKELY(hb_fault_of(c)))
		return fault_tx(c, fd, m, flags);
	return hb_io_frame_tx(c, fd, hb_frame_send(c, fd, m, flags), flags);
}
