/*
 * i_io.c - interposers for the data path: read, write, readv, writev, recv,
 * recvfrom, recvmsg, send, sendto, sendmsg and the glibc fortify variants
 * (sendfile, splice and the mmsg calls are in i_zcopy.c).
 *
 * The path of an fd the shim does not track is one table load and a branch
 * before the real call. On a tracked connection in keepalive mode the bytes
 * are the application's own; the shim only
 *   - answers ETIMEDOUT on every call once the connection was declared dead
 *     (by the shim's deadlines or by the kernel's keepalive/user timeout),
 *   - sends with MSG_NOSIGNAL so that its own shutdown of a dead connection
 *     never raises SIGPIPE, raising SIGPIPE itself where the kernel would
 *     have (EPIPE on a connection the shim did not kill, no MSG_NOSIGNAL).
 */
#include <limits.h>
#include <signal.h>
#include <netinet/in.h>
#include <string.h>

#include "interpose.h"

/* glibc's fortify entry points (declared by its headers only under
 * _FORTIFY_SOURCE); musl has none (its fortify headers check inline). */
#ifdef __GLIBC__
extern void __chk_fail(void) __attribute__((noreturn));
#endif
ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen);
ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags);
ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags,
		       struct sockaddr *sa, socklen_t *sl);

/* The connection was found dead by the shim: answer its errno, unless the
 * fd turns out to be another file now (closed behind our back). */
static int dead_errno(struct hb_conn *c, int fd)
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

/* Common tail of the receive calls on a tracked connection. */
static ssize_t rx_done(struct hb_conn *c, int fd, ssize_t r, size_t want)
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
	if (r <= 0 && (want || r < 0) && (d = dead_errno(c, fd))) {
		/* Our shutdown woke the call: report the death, not EOF. */
		errno = d;
		return -1;
	}
	errno = err;
	return r;
}

static ssize_t tx_done(struct hb_conn *c, int fd, ssize_t r, int app_flags)
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
	if ((d = dead_errno(c, fd))) {
		errno = d;
		return -1;
	}
	if (err == EPIPE && !(app_flags & MSG_NOSIGNAL))
		hb_os_raise_sigpipe(); /* what the kernel would have done */
	errno = err;
	return r;
}

int hb_io_dead_errno(struct hb_conn *c, int fd)
{
	return dead_errno(c, fd);
}

#define PRECHECK(c, fd)                              \
	do {                                         \
		int d_ = dead_errno((c), (fd));      \
		if (d_) {                            \
			errno = d_;                  \
			return -1;                   \
		}                                    \
	} while (0)

/* Convert a framed-path result (count or -errno) to libc's convention. */
ssize_t hb_io_frame_rx(struct hb_conn *c, int fd, long r, size_t want)
{
	if (r > 0)
		return r; /* errno untouched, as after any successful call */
	if (r == 0)
		return rx_done(c, fd, 0, want);
	errno = (int)-r;
	return rx_done(c, fd, -1, want);
}

ssize_t hb_io_frame_tx(struct hb_conn *c, int fd, long r, int app_flags)
{
	if (r >= 0)
		return r;
	errno = (int)-r;
	return tx_done(c, fd, -1, app_flags);
}

static long frame_recv1(struct hb_conn *c, int fd, void *buf, size_t n, int flags,
			struct sockaddr *sa, socklen_t *sl)
{
	struct iovec v = { buf, n };
	struct msghdr m;
	long r;

	memset(&m, 0, sizeof(m));
	m.msg_iov = &v;
	m.msg_iovlen = 1;
	if (sa && sl) {
		m.msg_name = sa;
		m.msg_namelen = *sl;
	}
	r = hb_frame_recv(c, fd, &m, flags);
	if (sa && sl && r >= 0)
		*sl = m.msg_namelen;
	return r;
}

static long frame_send1(struct hb_conn *c, int fd, const void *buf, size_t n, int flags)
{
	struct iovec v = { (void *)buf, n };
	struct msghdr m;

	memset(&m, 0, sizeof(m));
	m.msg_iov = &v;
	m.msg_iovlen = 1;
	return hb_frame_send(c, fd, &m, flags);
}

#define IS_FRAME(c) ((c)->mode == HB_MODE_FRAME)

#define REAL_RECVFROM(fd, b, n, fl, sa, sl) \
	REAL(recvfrom, LIBC_RET_SSIZE(hb_os_recvfrom(fd, b, n, fl, sa, sl)), fd, b, n, fl, sa, sl)
#define REAL_SENDTO(fd, b, n, fl, sa, sl) \
	REAL(sendto, LIBC_RET_SSIZE(hb_os_sendto(fd, b, n, fl, sa, sl)), fd, b, n, fl, sa, sl)
#define REAL_SENDMSG(fd, m, fl) REAL(sendmsg, LIBC_RET_SSIZE(hb_os_sendmsg(fd, m, fl)), fd, m, fl)
#define REAL_RECVMSG(fd, m, fl) REAL(recvmsg, LIBC_RET_SSIZE(hb_os_recvmsg(fd, m, fl)), fd, m, fl)

/* fault_io.c's way down: the undisturbed receive or send of this
 * connection (framed or raw), count or -errno. */
static long plain_recv(struct hb_conn *c, int fd, struct msghdr *m, int flags)
{
	long r;

	if (IS_FRAME(c))
		return hb_frame_recv(c, fd, m, flags);
	r = REAL_RECVMSG(fd, m, flags);
	return r < 0 ? -errno : r;
}

static long plain_send(struct hb_conn *c, int fd, struct msghdr *m, int flags)
{
	long r;

	if (IS_FRAME(c))
		return hb_frame_send(c, fd, m, flags);
	hb_ka_note_tx(c);
	r = REAL_SENDMSG(fd, m, flags | MSG_NOSIGNAL);
	return r < 0 ? -errno : r;
}

/* A call on a connection with fault rules (HBSHIM_FAULTS): through
 * fault_io.c; an error the fault injected is reported as is, anything else
 * as the undisturbed path would. */
static __attribute__((noinline)) ssize_t fault_rx(struct hb_conn *c, int fd, struct msghdr *m, int flags, size_t want)
{
	int injected;
	long r = hb_fault_recv(c, fd, m, flags, plain_recv, &injected);

	if (injected && r <= 0) {
		if (r == 0)
			return 0;
		errno = (int)-r;
		return -1;
	}
	return hb_io_frame_rx(c, fd, r, want);
}

static __attribute__((noinline)) ssize_t fault_tx(struct hb_conn *c, int fd, const struct msghdr *m, int flags)
{
	int injected;
	long r = hb_fault_send(c, fd, m, flags, plain_send, &injected);

	if (injected && r < 0) {
		errno = (int)-r;
		return -1;
	}
	return hb_io_frame_tx(c, fd, r, flags);
}

/* One buffer, or an iovec array, as a message for fault_rx / fault_tx. */
static ssize_t fault_rx1(struct hb_conn *c, int fd, void *buf, size_t n, int flags,
			 struct sockaddr *sa, socklen_t *sl)
{
	struct iovec v = { buf, n };
	struct msghdr m = { .msg_iov = &v, .msg_iovlen = 1 };
	ssize_t r;

	if (sa && sl) {
		m.msg_name = sa;
		m.msg_namelen = *sl;
	}
	r = fault_rx(c, fd, &m, flags, n);
	if (sa && sl && r >= 0)
		*sl = m.msg_namelen;
	return r;
}

static ssize_t fault_tx1(struct hb_conn *c, int fd, const void *buf, size_t n, int flags)
{
	struct iovec v = { (void *)buf, n };
	struct msghdr m = { .msg_iov = &v, .msg_iovlen = 1 };

	return fault_tx(c, fd, &m, flags);
}

static ssize_t fault_rxv(struct hb_conn *c, int fd, const struct iovec *iov, int n)
{
	struct msghdr m = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n };
	size_t want = 0;

	if (n < 0 || n > IOV_MAX) {
		errno = EINVAL;
		return -1;
	}
	for (int i = 0; i < n; i++)
		want += iov[i].iov_len;
	return fault_rx(c, fd, &m, 0, want);
}

static ssize_t fault_txv(struct hb_conn *c, int fd, const struct iovec *iov, int n)
{
	struct msghdr m = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n };

	if (n < 0 || n > IOV_MAX) {
		errno = EINVAL;
		return -1;
	}
	return fault_tx(c, fd, &m, 0);
}

static ssize_t fault_rxm(struct hb_conn *c, int fd, struct msghdr *m, int flags)
{
	size_t want = 0;

	for (size_t i = 0; m->msg_iov && i < m->msg_iovlen && i < IOV_MAX; i++)
		want += m->msg_iov[i].iov_len;
	return fault_rx(c, fd, m, flags, want);
}

/*
 * Each exported call is a tiny fast path: one table load, one load of the
 * real function, a branch and a tail call, with no stack frame, for an fd
 * the shim does not track. Everything else (tracked fds, first call before
 * binding) is in a separate out-of-line function.
 */
#define FAST_PATH(c, fn, name, fd, ...)                            \
	struct hb_conn *c = hb_fd_conn_raw(fd); /* slow: vetted */ \
	__typeof__(hb_real.name) fn = REAL_PTR(name);              \
	if (HB_LIKELY(!c && fn))                                   \
		return fn(fd, __VA_ARGS__)

#define SLOW __attribute__((noinline))

static SLOW ssize_t read_slow(struct hb_conn *c, int fd, void *buf, size_t n)
{
	c = hb_fd_conn_vet(fd, c);
	if (!c || !hb_conn_usable(c))
		return REAL(read, LIBC_RET_SSIZE(hb_os_read(fd, buf, n)), fd, buf, n);
	PRECHECK(c, fd);
	if (HB_UNLIKELY(hb_fault_of(c)))
		return fault_rx1(c, fd, buf, n, 0, NULL, NULL);
	if (IS_FRAME(c))
		return hb_io_frame_rx(c, fd, frame_recv1(c, fd, buf, n, 0, NULL, NULL), n);
	return rx_done(c, fd, REAL(read, LIBC_RET_SSIZE(hb_os_read(fd, buf, n)), fd, buf, n), n);
}

HB_EXPORT ssize_t read(int fd, void *buf, size_t n)
{
	FAST_PATH(c, fn, read, fd, buf, n);
	return read_slow(c, fd, buf, n);
}

#ifdef __GLIBC__
HB_EXPORT ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen)
{
	if (n > buflen)
		__chk_fail();
	return read(fd, buf, n);
}
#endif

static SLOW ssize_t recvfrom_slow(struct hb_conn *c, int fd, void *buf, size_t n, int flags,
				  struct sockaddr *sa, socklen_t *sl)
{
	c = hb_fd_conn_vet(fd, c);
	if (!c || !hb_conn_usable(c))
		return REAL_RECVFROM(fd, buf, n, flags, sa, sl);
	PRECHECK(c, fd);
	if (HB_UNLIKELY(hb_fault_of(c)))
		return fault_rx1(c, fd, buf, n, flags, sa, sl);
	if (IS_FRAME(c))
		return hb_io_frame_rx(c, fd, frame_recv1(c, fd, buf, n, flags, sa, sl), n);
	return rx_done(c, fd, REAL_RECVFROM(fd, buf, n, flags, sa, sl), n);
}

HB_EXPORT ssize_t recv(int fd, void *buf, size_t n, int flags)
{
	FAST_PATH(c, fn, recvfrom, fd, buf, n, flags, NULL, NULL);
	return recvfrom_slow(c, fd, buf, n, flags, NULL, NULL);
}

#ifdef __GLIBC__
HB_EXPORT ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags)
{
	if (n > buflen)
		__chk_fail();
	return recv(fd, buf, n, flags);
}
#endif

HB_EXPORT ssize_t recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *sa,
			   socklen_t *sl)
{
	FAST_PATH(c, fn, recvfrom, fd, buf, n, flags, sa, sl);
	return recvfrom_slow(c, fd, buf, n, flags, sa, sl);
}

#ifdef __GLIBC__
HB_EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags,
				 struct sockaddr *sa, socklen_t *sl)
{
	if (n > buflen)
		__chk_fail();
	return recvfrom(fd, buf, n, flags, sa, sl);
}
#endif

/* The bytes an iovec array asks for, read only after a call with r == 0
 * (the only case where it matters: an end of stream, or a zero-length
 * read): the kernel or hb_frame_recv accepted the array then, so it is
 * readable and at most IOV_MAX entries long. */
static size_t iov_len(long r, const struct iovec *iov, size_t n)
{
	size_t t = 0;

	if (r != 0)
		return 1;
	for (size_t i = 0; iov && i < n && i < IOV_MAX; i++)
		t += iov[i].iov_len;
	return t;
}

static SLOW ssize_t recvmsg_slow(struct hb_conn *c, int fd, struct msghdr *m, int flags)
{
	long r;

	c = hb_fd_conn_vet(fd, c);
	if (!c || !hb_conn_usable(c))
		return REAL_RECVMSG(fd, m, flags);
	PRECHECK(c, fd);
	if (HB_UNLIKELY(hb_fault_of(c)) && m)
		return fault_rxm(c, fd, m, flags);
	if (IS_FRAME(c) && m) {
		r = hb_frame_recv(c, fd, m, flags);
		return hb_io_frame_rx(c, fd, r, iov_len(r, m->msg_iov, m->msg_iovlen));
	}
	r = REAL_RECVMSG(fd, m, flags);
	return rx_done(c, fd, r, m ? iov_len(r, m->msg_iov, m->msg_iovlen) : 0);
}

HB_EXPORT ssize_t recvmsg(int fd, struct msghdr *m, int flags)
{
	FAST_PATH(c, fn, recvmsg, fd, m, flags);
	return recvmsg_slow(c, fd, m, flags);
}

static SLOW ssize_t readv_slow(struct hb_conn *c, int fd, const struct iovec *iov, int n)
{
	long r;

	c = hb_fd_conn_vet(fd, c);
	if (!c || !hb_conn_usable(c))
		return REAL(readv, LIBC_RET_SSIZE(hb_os_readv(fd, iov, n)), fd, iov, n);
	PRECHECK(c, fd);
	if (HB_UNLIKELY(hb_fault_of(c)))
		return fault_rxv(c, fd, iov, n);
	if (IS_FRAME(c) && (n < 0 || n > IOV_MAX)) {
		errno = EINVAL; /* the kernel's answer (hb_frame_recv's is EMSGSIZE) */
		return -1;
	}
	if (IS_FRAME(c) && n > 0) {
		struct msghdr m;

		memset(&m, 0, sizeof(m));
		m.msg_iov = (struct iovec *)iov;
		m.msg_iovlen = (size_t)n;
		r = hb_frame_recv(c, fd, &m, 0);
		return hb_io_frame_rx(c, fd, r, iov_len(r, iov, (size_t)n));
	}
	r = REAL(readv, LIBC_RET_SSIZE(hb_os_readv(fd, iov, n)), fd, iov, n);
	return rx_done(c, fd, r, n > 0 ? iov_len(r, iov, (size_t)n) : 0);
}

HB_EXPORT ssize_t readv(int fd, const struct iovec *iov, int n)
{
	FAST_PATH(c, fn, readv, fd, iov, n);
	return readv_slow(c, fd, iov, n);
}

static SLOW ssize_t write_slow(struct hb_conn *c, int fd, const void *buf, size_t n)
{
	c = hb_fd_conn_vet(fd, c);
	if (!c || !hb_conn_usable(c) || c->kind != HB_KIND_CONNECTED)
		return REAL(write, LIBC_RET_SSIZE(hb_os_write(fd, buf, n)), fd, buf, n);
	PRECHECK(c, fd);
	if (HB_UNLIKELY(hb_fault_of(c)))
		return fault_tx1(c, fd, buf, n, 0);
	if (IS_FRAME(c))
		return hb_io_frame_tx(c, fd, frame_send1(c, fd, buf, n, 0), 0);
	hb_ka_note_tx(c);
	if (!hb_cfg.idle_timeout_ms)
		/* No shutdown of ours can race this write (only the idle
		 * deadline shuts a keepalive-mode connection down): the
		 * application's own call, which a seccomp filter (sshd's
		 * sandbox) may allow where sendto is not; the kernel raises
		 * SIGPIPE itself where it is due. */
		return tx_done(c, fd,
			       REAL(write, LIBC_RET_SSIZE(hb_os_write(fd, buf, n)), fd, buf, n),
			       MSG_NOSIGNAL);
	/* write(2) on a TCP socket is send(2) with no flags. */
	return tx_done(c, fd, REAL_SENDTO(fd, buf, n, MSG_NOSIGNAL, NULL, 0), 0);
}

HB_EXPORT ssize_t write(int fd, const void *buf, size_t n)
{
	FAST_PATH(c, fn, write, fd, buf, n);
	return write_slow(c, fd, buf, n);
}

static SLOW ssize_t sendto_slow(struct hb_conn *c, int fd, const void *buf, size_t n, int flags,
				const struct sockaddr *sa, socklen_t sl)
{
	c = hb_fd_conn_vet(fd, c);
	if (!c || !hb_conn_usable(c) || c->kind != HB_KIND_CONNECTED)
		return REAL_SENDTO(fd, buf, n, flags, sa, sl);
	PRECHECK(c, fd);
	if (HB_UNLIKELY(hb_fault_of(c)))
		return fault_tx1(c, fd, buf, n, flags);
	if (IS_FRAME(c))
		return hb_io_frame_tx(c, fd, frame_send1(c, fd, buf, n, flags), flags);
	hb_ka_note_tx(c);
	return tx_done(c, fd, REAL_SENDTO(fd, buf, n, flags | MSG_NOSIGNAL, sa, sl), flags);
}

HB_EXPORT ssize_t send(int fd, const void *buf, size_t n, int flags)
{
	FAST_PATH(c, fn, sendto, fd, buf, n, flags, NULL, 0);
	return sendto_slow(c, fd, buf, n, flags, NULL, 0);
}

HB_EXPORT ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *sa,
			 socklen_t sl)
{
	FAST_PATH(c, fn, sendto, fd, buf, n, flags, sa, sl);
	return sendto_slow(c, fd, buf, n, flags, sa, sl);
}

static SLOW ssize_t sendmsg_slow(struct hb_conn *c, int fd, const struct msghdr *m, int flags)
{
	c = hb_fd_conn_vet(fd, c);
	if (!c || !hb_conn_usable(c) || c->kind != HB_KIND_CONNECTED)
		return REAL_SENDMSG(fd, m, flags);
	PRECHECK(c, fd);
	if (HB_UNLIKELY(hb_fault_of(c)) && m)
		return fault_tx(c, fd, m, flags);
	if (IS_FRAME(c) && m)
		return hb_io_frame_tx(c, fd, hb_frame_send(c, fd, m, flags), flags);
	hb_ka_note_tx(c);
	return tx_done(c, fd, REAL_SENDMSG(fd, m, flags | MSG_NOSIGNAL), flags);
}

HB_EXPORT ssize_t sendmsg(int fd, const struct msghdr *m, int flags)
{
	FAST_PATH(c, fn, sendmsg, fd, m, flags);
	return sendmsg_slow(c, fd, m, flags);
}

static SLOW ssize_t writev_slow(struct hb_conn *c, int fd, const struct iovec *iov, int n)
{
	c = hb_fd_conn_vet(fd, c);
	struct msghdr m;

	if (!c || !hb_conn_usable(c) || c->kind != HB_KIND_CONNECTED)
		return REAL(writev, LIBC_RET_SSIZE(hb_os_writev(fd, iov, n)), fd, iov, n);
	PRECHECK(c, fd);
	if (HB_UNLIKELY(hb_fault_of(c)))
		return fault_txv(c, fd, iov, n);
	if (n < 0 || n > IOV_MAX) {
		errno = EINVAL; /* the kernel's answer (hb_frame_send's is EMSGSIZE) */
		return -1;
	}
	memset(&m, 0, sizeof(m));
	m.msg_iov = (struct iovec *)iov;
	m.msg_iovlen = (size_t)n;
	if (IS_FRAME(c))
		return hb_io_frame_tx(c, fd, hb_frame_send(c, fd, &m, 0), 0);
	hb_ka_note_tx(c);
	if (!hb_cfg.idle_timeout_ms) /* as in write() */
		return tx_done(c, fd,
			       REAL(writev, LIBC_RET_SSIZE(hb_os_writev(fd, iov, n)), fd, iov, n),
			       MSG_NOSIGNAL);
	return tx_done(c, fd, REAL_SENDMSG(fd, &m, MSG_NOSIGNAL), 0);
}

HB_EXPORT ssize_t writev(int fd, const struct iovec *iov, int n)
{
	FAST_PATH(c, fn, writev, fd, iov, n);
	return writev_slow(c, fd, iov, n);
}
