/*
 * i_socket.c - interposers for the socket lifecycle: socket, connect,
 * accept, accept4, listen, setsockopt, shutdown, close, dup, dup2, dup3,
 * fcntl, fcntl64, ioctl, close_range, closefrom (fclose: i_fdopen.c).
 *
 * Each keeps the libc name, does its bookkeeping around the real call and
 * preserves errno exactly as the real call left it. Anything the shim cannot
 * track (table or pool exhausted, a family it does not handle) passes
 * through untouched: the table never fails an application call.
 */
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <linux/close_range.h>

#include "interpose.h"

#ifndef __GLIBC__
/* Not in musl: exported all the same (one list of symbols for both). */
int fcntl64(int fd, int cmd, ...);
int close_range(unsigned first, unsigned last, int flags);
void closefrom(int lowfd);
#endif

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

/* Start tracking a new TCP socket; errno is preserved. */
static struct hb_conn *track(int fd, int family, int kind, int nonblock)
{
	struct hb_conn *c = hb_conn_alloc();

	if (!c) {
		hb_stat_add(HB_ST_UNTRACKED, 1);
		hb_fd_forget(fd);
		return NULL;
	}
	c->family = (uint8_t)family;
	c->kind = (uint8_t)kind;
	c->mode = HB_MODE_KEEPALIVE;
	c->cookie = hb_os_cookie(fd);
	if (nonblock)
		hb_or_acq_rel(&c->flags, HB_CF_NONBLOCK);
	if (hb_fd_install(fd, c) < 0) {
		hb_conn_free(c);
		hb_stat_add(HB_ST_UNTRACKED, 1);
		return NULL;
	}
	return c;
}

static int is_tcp(int domain, int type, int protocol)
{
	return (domain == AF_INET || domain == AF_INET6) && (type & 0xf) == SOCK_STREAM &&
	       (protocol == 0 || protocol == IPPROTO_TCP);
}

HB_EXPORT int socket(int domain, int type, int protocol)
{
	int fd = REAL(socket, LIBC_RET(hb_os_socket(domain, type, protocol)), domain, type,
		      protocol);

	if (fd < 0 || !hb_enabled)
		return fd;
	if (is_tcp(domain, type, protocol))
		track(fd, domain, HB_KIND_SOCKET, type & SOCK_NONBLOCK);
	else
		hb_fd_forget(fd); /* a stale entry under a reused number */
	return fd;
}

/* The connection is (being) established: keepalive mode starts. */
static void opened(int fd, struct hb_conn *c, int established, const char *ev,
		   const struct sockaddr *peer, socklen_t peerlen)
{
	c->kind = HB_KIND_CONNECTED;
	c->opened_ms = hb_os_now_ms();
	if (established && c->mode != HB_MODE_FRAME) {
		hb_ka_apply(fd, c);
		hb_or_acq_rel(&c->flags, HB_CF_TIMING);
	}
	hb_stat_add(hb_conn_public_mode(c) == HB_MODE_FRAME ? HB_ST_CONN_FRAME : HB_ST_CONN_KEEPALIVE,
		    1);
	hb_event_conn(ev, fd, c, peer, peerlen, NULL, 0);
	if (HB_UNLIKELY(hb_cfg.nfaults))
		hb_fault_bind(fd, c, peer, peerlen, ev[0] == 'a'); /* HBSHIM_FAULTS */
	hb_thread_schedule(c);
}

static int real_connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	return REAL(connect, LIBC_RET(hb_os_connect(fd, sa, len)), fd, sa, len);
}

HB_EXPORT int connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	struct hb_conn *c = hb_fd_conn(fd);
	const struct sockaddr *asked = sa; /* the application's (events) */
	socklen_t asked_len = len;
	int r, err, fault = 0;

	if (!c || !hb_conn_usable(c) || c->kind != HB_KIND_SOCKET || !sa ||
	    sa->sa_family == AF_UNSPEC)
		return real_connect(fd, sa, len);
	if (HB_UNLIKELY(hb_cfg.nfaults) && (fault = hb_fault_connect(fd, c, &sa, &len)) < 0)
		return errno = -fault, -1; /* HBSHIM_FAULTS: errno, EALREADY */
	if (hb_cfg.connect_timeout_ms)
		r = hb_connect_bounded(fd, c, sa, len, real_connect);
	else
		r = real_connect(fd, sa, len);
	err = errno;
	if (fault > 0 && r == 0) {
		r = -1; /* a delayed non-blocking connect (HBSHIM_FAULTS) */
		err = EINPROGRESS;
	}
	if ((r == 0 || err == EINPROGRESS) && hb_cfg.nrules &&
	    hb_rules_match(hb_cfg.rules, hb_cfg.nrules, sa, len)) {
		hb_frame_client(fd, c, r == 0);
		hb_or_acq_rel(&c->flags, HB_CF_TIMING);
	}
	if (r == 0)
		opened(fd, c, 1, "connect", asked, asked_len);
	else if (err == EINPROGRESS)
		opened(fd, c, 0, "connect", asked, asked_len);
	hb_stat_add(HB_ST_CONNECTED, r == 0 || err == EINPROGRESS);
	errno = err;
	return r;
}

static int after_accept(int lfd, int fd, int flags)
{
	struct hb_conn *l = hb_fd_conn(lfd), *c;
	int err = errno;

	if (fd < 0)
		return fd;
	if (!l || !hb_conn_usable(l)) {
		hb_fd_forget(fd);
		errno = err;
		return fd;
	}
	c = track(fd, l->family, HB_KIND_SOCKET, flags & SOCK_NONBLOCK);
	if (c) {
		/* Options set on the listener are inherited by the kernel:
		 * the application's choices carry over. */
		hb_or_acq_rel(&c->flags, hb_load_relaxed(&l->flags) & HB_APP_MASK);
		hb_store_relaxed(&c->sndtimeo_ms, hb_load_relaxed(&l->sndtimeo_ms));
		hb_store_relaxed(&c->rcvtimeo_ms, hb_load_relaxed(&l->rcvtimeo_ms));
		hb_stat_add(HB_ST_ACCEPTED, 1);
		if (hb_cfg.accept_mode == HB_ACCEPT_AUTO) {
			/* Keepalive timing now; frame.c loosens it if the
			 * client turns out to speak hbshim. */
			hb_ka_apply(fd, c);
			hb_or_acq_rel(&c->flags, HB_CF_TIMING);
			hb_frame_server(fd, c);
		}
		opened(fd, c, 1, "accept", NULL, 0);
		if (c->mode == HB_MODE_FRAME)
			hb_frame_accepted(fd, c);
	}
	errno = err;
	return fd;
}

HB_EXPORT int accept(int fd, struct sockaddr *sa, socklen_t *len)
{
	int r = REAL(accept, LIBC_RET(hb_os_accept4(fd, sa, len, 0)), fd, sa, len);

	return after_accept(fd, r, 0);
}

HB_EXPORT int accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags)
{
	int r = REAL(accept4, LIBC_RET(hb_os_accept4(fd, sa, len, flags)), fd, sa, len, flags);

	return after_accept(fd, r, flags);
}

HB_EXPORT int listen(int fd, int backlog)
{
	struct hb_conn *c = hb_fd_conn(fd);
	int r = REAL(listen, LIBC_RET(hb_os_listen(fd, backlog)), fd, backlog);

	if (r == 0 && c && c->kind == HB_KIND_SOCKET)
		c->kind = HB_KIND_LISTENER;
	return r;
}

/* A non-blocking connect's outcome, as the application learns it: our
 * hello leaves now (the background thread would send it within a
 * millisecond or so, but a server that writes first waits only briefly). */
HB_EXPORT int getsockopt(int fd, int level, int opt, void *val, socklen_t *len)
{
	int r = REAL(getsockopt, LIBC_RET(hb_os_getsockopt(fd, level, opt, val, len)), fd,
		     level, opt, val, len);
	struct hb_conn *c;

	if (!(HB_UNLIKELY(r == 0 && level == SOL_SOCKET && opt == SO_ERROR) && val && len &&
	      *len >= sizeof(int) && (c = hb_fd_conn(fd))))
		return r;
	if (*(int *)val && (hb_load_relaxed(&c->flags) & HB_CF_CONN_EXPIRED)) {
		/* Our connect deadline dissolved the attempt (the kernel says
		 * ECONNRESET): the application learns it timed out. */
		hb_and_acq_rel(&c->flags, ~HB_CF_CONN_EXPIRED);
		*(int *)val = ETIMEDOUT;
	} else if (!*(int *)val && c->mode == HB_MODE_FRAME && c->client) {
		int err = errno;

		hb_frame_connected(c, fd);
		errno = err;
	}
	return r;
}

/* SO_RCVTIMEO / SO_SNDTIMEO as the kernel reads them (it accepted tv), in
 * ms for our deadlines (0: none): {0, 0} is none; a negative tv_sec is "at
 * once" (1 ms here); microseconds round up, as the kernel rounds up to a
 * tick; past UINT32_MAX ms (49 days) saturates instead of wrapping. */
static uint32_t timeo_ms(const struct timeval *tv)
{
	uint64_t ms;

	if (tv->tv_sec < 0)
		return 1;
	if ((uint64_t)tv->tv_sec > UINT32_MAX / 1000u)
		return UINT32_MAX;
	ms = (uint64_t)tv->tv_sec * 1000u + ((uint64_t)tv->tv_usec + 999u) / 1000u;
	return ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
}

HB_EXPORT int setsockopt(int fd, int level, int opt, const void *val, socklen_t len)
{
	int r = REAL(setsockopt, LIBC_RET(hb_os_setsockopt(fd, level, opt, val, len)), fd,
		     level, opt, val, len);
	struct hb_conn *c;
	uint32_t bit = 0;

	if (r != 0 || !(c = hb_fd_conn(fd)))
		return r;
	if (level == SOL_SOCKET) {
		if (opt == SO_KEEPALIVE)
			bit = HB_APP_KEEPALIVE;
		else if (opt == SO_LINGER)
			bit = HB_APP_LINGER;
		else if (opt == SO_RCVLOWAT)
			bit = HB_APP_RCVLOWAT;
		else if (opt == SO_RCVTIMEO) {
			bit = HB_APP_RCVTIMEO;
			if (val && len >= sizeof(struct timeval)) {
				const struct timeval *tv = val;

				hb_store_relaxed(&c->rcvtimeo_ms, timeo_ms(tv));
			}
		}
		else if (opt == SO_SNDTIMEO) {
			bit = HB_APP_SNDTIMEO;
			if (val && len >= sizeof(struct timeval)) {
				const struct timeval *tv = val;

				hb_store_relaxed(&c->sndtimeo_ms, timeo_ms(tv));
			}
		}
	} else if (level == IPPROTO_TCP) {
		if (opt == TCP_KEEPIDLE)
			bit = HB_APP_KEEPIDLE;
		else if (opt == TCP_KEEPINTVL)
			bit = HB_APP_KEEPINTVL;
		else if (opt == TCP_KEEPCNT)
			bit = HB_APP_KEEPCNT;
		else if (opt == TCP_USER_TIMEOUT)
			bit = HB_APP_USERTIMEOUT;
	}
	if (bit)
		hb_or_acq_rel(&c->flags, bit);
	return r;
}

HB_EXPORT int shutdown(int fd, int how)
{
	struct hb_conn *c = hb_fd_conn(fd);

	if (c && c->mode == HB_MODE_FRAME && hb_conn_usable(c)) {
		/* A half-close frame before the FIN; SHUT_RD may wait. */
		how = hb_frame_shutdown(c, fd, how);
		if (how < 0)
			return 0;
	}
	return REAL(shutdown, LIBC_RET(hb_os_shutdown(fd, how)), fd, how);
}

void hb_sock_forget(int fd)
{
	struct hb_conn *c = hb_fd_conn(fd);

	if (!c || hb_vforked())
		return;
	if (c->kind == HB_KIND_CONNECTED && hb_conn_usable(c) &&
	    hb_load_relaxed(&c->refs) == 1) {
		/* A connection that crossed a fork or exec may still be open
		 * in the other process (a parent that gave it to a child as
		 * its stdout and goes on using it): there the close is the
		 * kernel's own, which only drops this process's reference;
		 * our drain and shutdown would act on the stream of both.
		 * When that cannot be told (no /proc), it is shared. A copy
		 * this process never used since (neither side claimed) is
		 * left alone by both anyway: no need to ask. */
		uint32_t fl = hb_load_relaxed(&c->flags);

		if (c->mode == HB_MODE_FRAME &&
		    (!(fl & HB_CF_SHARED) ||
		     ((fl & (HB_CF_CLAIMED | HB_CF_TX_CLAIMED)) && hb_os_sock_shared(fd) == 0))) {
			hb_frame_close(c, fd);
			hb_frame_linger(c, fd);
		}
		hb_event_conn("close", fd, c, NULL, 0, NULL, 0);
	}
	hb_fd_forget(fd);
}

HB_EXPORT int close(int fd)
{
	hb_sock_forget(fd);
	return REAL_NOBIND(close, LIBC_RET(hb_os_close(fd)), fd);
}

static int dup_done(int oldfd, int newfd)
{
	struct hb_conn *c;
	int err = errno;

	if (newfd < 0)
		return newfd;
	c = hb_fd_conn_raw(oldfd);
	/* Only a change to the table asks for the pid (a system call). */
	if ((c || hb_fd_conn_raw(newfd)) && hb_vforked())
		return newfd;
	if (c && hb_conn_usable(c))
		hb_fd_install(newfd, c);
	else
		hb_fd_forget(newfd);
	errno = err;
	return newfd;
}

HB_EXPORT int dup(int fd)
{
	return dup_done(fd, REAL(dup, LIBC_RET(hb_os_dup(fd)), fd));
}

HB_EXPORT int dup2(int oldfd, int newfd)
{
	int begun, r, err;

	if (oldfd == newfd)
		return REAL(dup2, LIBC_RET(hb_os_dup2(oldfd, newfd)), oldfd, newfd);
	begun = hb_fd_conn_raw(newfd) && hb_vforked() ? 0 : hb_fd_forget_begin(newfd);
	r = REAL(dup2, LIBC_RET(hb_os_dup2(oldfd, newfd)), oldfd, newfd);
	err = errno;
	if (begun)
		hb_fd_forget_end(newfd, r >= 0);
	errno = err;
	return dup_done(oldfd, r);
}

HB_EXPORT int dup3(int oldfd, int newfd, int flags)
{
	int begun, r, err;

	if (oldfd == newfd)
		return REAL(dup3, LIBC_RET(hb_os_dup3(oldfd, newfd, flags)), oldfd, newfd, flags);
	begun = hb_fd_conn_raw(newfd) && hb_vforked() ? 0 : hb_fd_forget_begin(newfd);
	r = REAL(dup3, LIBC_RET(hb_os_dup3(oldfd, newfd, flags)), oldfd, newfd, flags);
	err = errno;
	if (begun)
		hb_fd_forget_end(newfd, r >= 0);
	errno = err;
	return dup_done(oldfd, r);
}

static int fcntl_done(int fd, int cmd, void *arg, int r)
{
	struct hb_conn *c;

	if (r < 0)
		return r;
	switch (cmd) {
	case F_DUPFD:
	case F_DUPFD_CLOEXEC:
		return dup_done(fd, r);
	case F_SETFL:
		if ((c = hb_fd_conn(fd))) {
			if ((long)(intptr_t)arg & O_NONBLOCK)
				hb_or_acq_rel(&c->flags, HB_CF_NONBLOCK);
			else
				hb_and_acq_rel(&c->flags, ~HB_CF_NONBLOCK);
		}
		break;
	}
	return r;
}

/* The third argument is read as a pointer-sized word whatever cmd is, as
 * glibc itself does; it is passed on unchanged. */
HB_EXPORT int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;
	int r;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC || cmd == F_SETFL)
		r = REAL(fcntl, LIBC_RET(hb_os_fcntl(fd, cmd, (long)arg)), fd, cmd, arg);
	else
		return REAL_NOBIND(fcntl, LIBC_RET(hb_os_fcntl(fd, cmd, (long)arg)), fd, cmd, arg);
	return fcntl_done(fd, cmd, arg, r);
}

HB_EXPORT int fcntl64(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;
	int r;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	r = REAL(fcntl64, LIBC_RET(hb_os_fcntl(fd, cmd, (long)arg)), fd, cmd, arg);
	return fcntl_done(fd, cmd, arg, r);
}

HB_EXPORT int ioctl(int fd, hb_ioctl_req_t req, ...)
{
	va_list ap;
	void *arg;
	int r;
	struct hb_conn *c;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (req == FIONREAD && arg && (c = hb_fd_conn(fd)) && c->mode == HB_MODE_FRAME &&
	    hb_conn_usable(c)) {
		int err = errno;

		if (hb_frame_inq(c, fd, (int *)arg) == 0) {
			errno = err;
			return 0;
		}
	}
	r = REAL(ioctl, LIBC_RET(hb_os_ioctl(fd, (unsigned long)req, arg)), fd, req, arg);
	if (r == 0 && req == FIONBIO && arg && (c = hb_fd_conn(fd))) {
		if (*(int *)arg)
			hb_or_acq_rel(&c->flags, HB_CF_NONBLOCK);
		else
			hb_and_acq_rel(&c->flags, ~HB_CF_NONBLOCK);
	}
	return r;
}

HB_EXPORT int close_range(unsigned first, unsigned last, int flags)
{
	/* Invalid arguments close nothing: let the real call say so. */
	if (first <= last && !(flags & ~(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC)) &&
	    !(flags & CLOSE_RANGE_CLOEXEC) && !hb_vforked())
		hb_fd_forget_range(first, last);
	return REAL_NOBIND(close_range, LIBC_RET(hb_os_close_range(first, last, flags)), first,
			   last, flags);
}

HB_EXPORT void closefrom(int lowfd)
{
	void (*fn)(int) = REAL_PTR(closefrom);

	if (lowfd >= 0 && !hb_vforked())
		hb_fd_forget_range((unsigned)lowfd, ~0u);
	if (fn)
		fn(lowfd);
	else
		(void)hb_os_close_range((unsigned)lowfd, ~0u, 0);
}
