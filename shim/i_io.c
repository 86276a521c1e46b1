/*
 * i_io.c - interposers for the data path: read, write, readv, writev, recv,
 * recvfrom, recvmsg, send, sendto, sendmsg and the glibc fortify variants
 * (sendfile, splice and the mmsg calls are in i_zcopy.c).
 *
 * The path of an fd the shim does not track is one table load and a branch
 * before the real call. A tracked connection's call goes down to
 * conn_io.c: a framed one, or one with fault rules, is handed over whole
 * (the shim makes the call); in keepalive mode the bytes are the
 * application's own and the call is made here, through the next
 * definition of the same function (a seccomp filter may allow read where
 * it refuses recvmsg), its result handed to conn_io.c. A keepalive-mode
 * connection's send carries MSG_NOSIGNAL so that the shim's own shutdown of
 * a dead connection never raises SIGPIPE (conn_io.c raises it where the
 * kernel would have).
 */
#include <limits.h>
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

#define PRECHECK(c, fd)                                  \
	do {                                             \
		int d_ = hb_io_dead_errno((c), (fd));    \
		if (d_) {                                \
			errno = d_;                      \
			return -1;                       \
		}                                        \
	} while (0)

/* The shim makes the call (conn_io.c): a framed connection, or one with
 * fault rules. Otherwise the call is the application's own, made here
 * through the next definition of the same function. */
#define SHIM_CALLS(c) ((c)->mode == HB_MODE_FRAME || HB_UNLIKELY(hb_fault_of(c)))

/* One buffer as a message for hb_io_recv / hb_io_send. */
static ssize_t recv1(struct hb_conn *c, int fd, void *buf, size_t n, int flags,
		     struct sockaddr *sa, socklen_t *sl)
{
	struct iovec v = { buf, n };
	struct msghdr m;
	ssize_t r;

	memset(&m, 0, sizeof(m));
	m.msg_iov = &v;
	m.msg_iovlen = 1;
	if (sa && sl) {
		m.msg_name = sa;
		m.msg_namelen = *sl;
	}
	r = hb_io_recv(c, fd, &m, flags);
	if (sa && sl && r >= 0)
		*sl = m.msg_namelen;
	return r;
}

static ssize_t send1(struct hb_conn *c, int fd, const void *buf, size_t n, int flags)
{
	struct iovec v = { (void *)buf, n };
	struct msghdr m;

	memset(&m, 0, sizeof(m));
	m.msg_iov = &v;
	m.msg_iovlen = 1;
	return hb_io_send(c, fd, &m, flags);
}

#define REAL_RECVFROM(fd, b, n, fl, sa, sl) \
	REAL(recvfrom, LIBC_RET_SSIZE(hb_os_recvfrom(fd, b, n, fl, sa, sl)), fd, b, n, fl, sa, sl)
#define REAL_SENDTO(fd, b, n, fl, sa, sl) \
	REAL(sendto, LIBC_RET_SSIZE(hb_os_sendto(fd, b, n, fl, sa, sl)), fd, b, n, fl, sa, sl)
#define REAL_SENDMSG(fd, m, fl) REAL(sendmsg, LIBC_RET_SSIZE(hb_os_sendmsg(fd, m, fl)), fd, m, fl)
#define REAL_RECVMSG(fd, m, fl) REAL(recvmsg, LIBC_RET_SSIZE(hb_os_recvmsg(fd, m, fl)), fd, m, fl)

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
	if (SHIM_CALLS(c))
		return recv1(c, fd, buf, n, 0, NULL, NULL);
	PRECHECK(c, fd);
	return hb_io_rx_done(c, fd, REAL(read, LIBC_RET_SSIZE(hb_os_read(fd, buf, n)), fd, buf, n), n);
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
	if (SHIM_CALLS(c))
		return recv1(c, fd, buf, n, flags, sa, sl);
	PRECHECK(c, fd);
	return hb_io_rx_done(c, fd, REAL_RECVFROM(fd, buf, n, flags, sa, sl), n);
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
	if (m && SHIM_CALLS(c))
		return hb_io_recv(c, fd, m, flags);
	PRECHECK(c, fd);
	r = REAL_RECVMSG(fd, m, flags);
	return hb_io_rx_done(c, fd, r, m ? iov_len(r, m->msg_iov, m->msg_iovlen) : 0);
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
	if (SHIM_CALLS(c) && (n < 0 || n > IOV_MAX)) {
		errno = EINVAL; /* the kernel's answer (hb_frame_recv's is EMSGSIZE) */
		return -1;
	}
	/* A framed connection's empty array goes to the kernel (there is
	 * nothing to decode into); the fault rules see every call. */
	if (SHIM_CALLS(c) && (n > 0 || hb_fault_of(c))) {
		struct msghdr m;

		memset(&m, 0, sizeof(m));
		m.msg_iov = (struct iovec *)iov;
		m.msg_iovlen = (size_t)n;
		return hb_io_recv(c, fd, &m, 0);
	}
	r = REAL(readv, LIBC_RET_SSIZE(hb_os_readv(fd, iov, n)), fd, iov, n);
	return hb_io_rx_done(c, fd, r, n > 0 ? iov_len(r, iov, (size_t)n) : 0);
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
	if (SHIM_CALLS(c))
		return send1(c, fd, buf, n, 0);
	PRECHECK(c, fd);
	hb_ka_note_tx(c);
	if (!hb_cfg.idle_timeout_ms)
		/* No shutdown of ours can race this write (only the idle
		 * deadline shuts a keepalive-mode connection down): the
		 * application's own call, which a seccomp filter (sshd's
		 * sandbox) may allow where sendto is not; the kernel raises
		 * SIGPIPE itself where it is due. */
		return hb_io_tx_done(c, fd,
				     REAL(write, LIBC_RET_SSIZE(hb_os_write(fd, buf, n)), fd, buf, n),
				     MSG_NOSIGNAL);
	/* write(2) on a TCP socket is send(2) with no flags. */
	return hb_io_tx_done(c, fd, REAL_SENDTO(fd, buf, n, MSG_NOSIGNAL, NULL, 0), 0);
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
	if (SHIM_CALLS(c))
		return send1(c, fd, buf, n, flags);
	PRECHECK(c, fd);
	hb_ka_note_tx(c);
	return hb_io_tx_done(c, fd, REAL_SENDTO(fd, buf, n, flags | MSG_NOSIGNAL, sa, sl), flags);
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
	if (m && SHIM_CALLS(c))
		return hb_io_send(c, fd, m, flags);
	PRECHECK(c, fd);
	hb_ka_note_tx(c);
	return hb_io_tx_done(c, fd, REAL_SENDMSG(fd, m, flags | MSG_NOSIGNAL), flags);
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
	if (n < 0 || n > IOV_MAX) {
		errno = EINVAL; /* the kernel's answer (hb_frame_send's is EMSGSIZE) */
		return -1;
	}
	memset(&m, 0, sizeof(m));
	m.msg_iov = (struct iovec *)iov;
	m.msg_iovlen = (size_t)n;
	if (SHIM_CALLS(c))
		return hb_io_send(c, fd, &m, 0);
	hb_ka_note_tx(c);
	if (!hb_cfg.idle_timeout_ms) /* as in write() */
		return hb_io_tx_done(c, fd,
				     REAL(writev, LIBC_RET_SSIZE(hb_os_writev(fd, iov, n)), fd, iov, n),
				     MSG_NOSIGNAL);
	return hb_io_tx_done(c, fd, REAL_SENDMSG(fd, &m, MSG_NOSIGNAL), 0);
}

HB_EXPORT ssize_t writev(int fd, const struct iovec *iov, int n)
{
	FAST_PATH(c, fn, writev, fd, iov, n);
	return writev_slow(c, fd, iov, n);
}
