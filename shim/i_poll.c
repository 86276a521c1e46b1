/*
 * i_poll.c - poll, ppoll, select, pselect (and the fortify poll variants):
 * readiness that matches the application's view on framed connections.
 *
 * The first line of defence is the kernel's: frame.c keeps SO_RCVLOWAT at
 * the size of the smallest data frame, so a heartbeat or two never makes a
 * framed fd readable, for every readiness API at once. When the background
 * thread is late to drain control frames (a starved machine), enough of
 * them add up to the mark. These wrappers catch that case: after the real
 * call, a framed fd reported readable is checked (control frames at the head
 * consumed); when no application byte is behind the report it is withdrawn,
 * and the call waits again for what is left of the timeout. A blocking read
 * after poll therefore never waits for data that was never there.
 *
 * Errors, EINTR, timeouts and signal masks are the real call's own: the
 * wrapper only removes readable reports, never adds one, and returns at once
 * whatever the real call returned when it was not a readable report on a
 * framed fd. Processes without a framed connection pay one atomic load.
 *
 * epoll_wait is filtered the same way in i_epoll.c, with the registrations
 * epoll_ctl (below) records.
 */
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>

#include "interpose.h"

/* Rounds of "everything reported was control frames" before the report is
 * passed on as it is (it then costs the application one EAGAIN). */
#define MAX_ROUNDS 64

/* glibc's fortify entry points (not declared by its headers). */
int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t fdslen);
int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *timeout,
		const sigset_t *mask, size_t fdslen);

static int framed_fd(int fd, struct hb_conn **out)
{
	struct hb_conn *c;

	if (fd < 0 || !(c = hb_fd_conn(fd)) || c->mode != HB_MODE_FRAME || !hb_conn_usable(c))
		return 0;
	*out = c;
	return 1;
}

/* Withdraw readable reports with no application byte behind them; returns
 * the number of entries still reporting something. */
static int filter_pollfds(struct pollfd *fds, nfds_t n, int count)
{
	for (nfds_t i = 0; i < n; i++) {
		struct hb_conn *c;
		short ev = fds[i].revents;

		if (!(ev & (POLLIN | POLLRDNORM)) || (ev & (POLLERR | POLLHUP | POLLRDHUP | POLLNVAL)))
			continue;
		if (!framed_fd(fds[i].fd, &c) || hb_frame_app_readable(c, fds[i].fd))
			continue;
		fds[i].revents = (short)(ev & ~(POLLIN | POLLRDNORM));
		if (!fds[i].revents)
			count--;
	}
	return count;
}

static uint64_t ts_ns(const struct timespec *t)
{
	return (uint64_t)t->tv_sec * 1000000000ull + (uint64_t)t->tv_nsec;
}

static struct timespec ns_ts(uint64_t ns)
{
	return (struct timespec){ (time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull) };
}

/* ppoll with the real call's semantics; timeout NULL = forever. */
static int do_ppoll(struct pollfd *fds, nfds_t n, const struct timespec *timeout,
		    const sigset_t *mask, int as_poll, int poll_ms)
{
	uint64_t end = 0;
	int r;

	if (!hb_load_relaxed(&hb_frame_seen) || !hb_enabled) {
		if (as_poll)
			return REAL(poll, LIBC_RET(hb_os_poll(fds, n, poll_ms)), fds, n, poll_ms);
		return REAL(ppoll, LIBC_RET(hb_os_ppoll(fds, n, timeout, mask)), fds, n,
			    timeout, mask);
	}
	if (timeout)
		end = hb_os_now_ns() + ts_ns(timeout);
	for (int round = 0;; round++) {
		struct timespec left;
		const struct timespec *tp = timeout;

		if (timeout && round) {
			uint64_t now = hb_os_now_ns();

			left = ns_ts(now < end ? end - now : 0);
			tp = &left;
		}
		if (as_poll) {
			int ms = poll_ms;

			if (ms > 0 && round) {
				uint64_t now = hb_os_now_ns();

				ms = now < end ? (int)((end - now + 999999) / 1000000) : 0;
			}
			r = REAL(poll, LIBC_RET(hb_os_poll(fds, n, ms)), fds, n, ms);
		} else {
			r = REAL(ppoll, LIBC_RET(hb_os_ppoll(fds, n, tp, mask)), fds, n, tp,
				 mask);
		}
		if (r <= 0 || round >= MAX_ROUNDS)
			return r;
		{
			int err = errno, k = filter_pollfds(fds, n, r);

			errno = err;
			if (k > 0)
				return k;
		}
		/* Only control frames were behind the reports: wait again. */
		if (timeout && hb_os_now_ns() >= end)
			return 0;
	}
}

/* HBSHIM_FAULTS (fault_io.c) waits through these. */
static int fault_ppoll_cb(struct pollfd *fds, nfds_t n, const struct timespec *t,
			  const sigset_t *mask)
{
	return do_ppoll(fds, n, t, mask, 0, 0);
}

HB_EXPORT int poll(struct pollfd *fds, nfds_t n, int timeout)
{
	struct timespec t = ns_ts(timeout > 0 ? (uint64_t)timeout * 1000000ull : 0);

	if (HB_UNLIKELY(hb_cfg.nfaults)) /* HBSHIM_FAULTS */
		return hb_fault_ppoll(fds, n, timeout < 0 ? NULL : &t, NULL, fault_ppoll_cb);
	return do_ppoll(fds, n, timeout < 0 ? NULL : &t, NULL, 1, timeout);
}

HB_EXPORT int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t fdslen)
{
	if (fdslen / sizeof(*fds) < n)
		__builtin_trap(); /* glibc's __chk_fail: a buffer overflow */
	return poll(fds, n, timeout);
}

HB_EXPORT int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *timeout,
		    const sigset_t *mask)
{
	if (HB_UNLIKELY(hb_cfg.nfaults)) /* HBSHIM_FAULTS */
		return hb_fault_ppoll(fds, n, timeout, mask, fault_ppoll_cb);
	return do_ppoll(fds, n, timeout, mask, 0, 0);
}

HB_EXPORT int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *timeout,
			  const sigset_t *mask, size_t fdslen)
{
	if (fdslen / sizeof(*fds) < n)
		__builtin_trap();
	return ppoll(fds, n, timeout, mask);
}

/* select/pselect: the same filter over the read set. */
static int filter_fdset(int nfds, fd_set *rd, int count)
{
	for (int fd = 0; rd && fd < nfds && fd < FD_SETSIZE; fd++) {
		struct hb_conn *c;

		if (!FD_ISSET(fd, rd) || !framed_fd(fd, &c) || hb_frame_app_readable(c, fd))
			continue;
		FD_CLR(fd, rd);
		count--;
	}
	return count;
}

static int do_pselect(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, const struct timespec *timeout,
		      const sigset_t *mask, struct timeval *tv)
{
	fd_set srd, swr, sex;
	uint64_t end = 0;
	int r;

	if (!hb_load_relaxed(&hb_frame_seen) || !hb_enabled || !rd || nfds <= 0 ||
	    nfds > FD_SETSIZE) {
		if (tv)
			return REAL(select, LIBC_RET(hb_os_select(nfds, rd, wr, ex, tv)), nfds, rd, wr,
				    ex, tv);
		return REAL(pselect, LIBC_RET(hb_os_pselect(nfds, rd, wr, ex, timeout, mask)), nfds,
			    rd, wr, ex, timeout, mask);
	}
	srd = *rd;
	if (wr)
		swr = *wr;
	if (ex)
		sex = *ex;
	if (timeout)
		end = hb_os_now_ns() + ts_ns(timeout);
	for (int round = 0;; round++) {
		struct timespec left;
		const struct timespec *tp = timeout;

		if (round) {
			*rd = srd;
			if (wr)
				*wr = swr;
			if (ex)
				*ex = sex;
		}
		if (timeout && round) {
			uint64_t now = hb_os_now_ns();

			left = ns_ts(now < end ? end - now : 0);
			tp = &left;
		}
		/* pselect for select too (the timeout is ours to keep) */
		r = REAL(pselect, LIBC_RET(hb_os_pselect(nfds, rd, wr, ex, tp, mask)), nfds, rd, wr,
			 ex, tp, mask);
		if (r > 0 && round < MAX_ROUNDS) {
			int err = errno, k = filter_fdset(nfds, rd, r);

			errno = err;
			if (k > 0) {
				r = k;
				break;
			}
			if (!timeout || hb_os_now_ns() < end)
				continue;
			/* Timed out after all: empty sets, as select reports it. */
			FD_ZERO(rd);
			if (wr)
				FD_ZERO(wr);
			if (ex)
				FD_ZERO(ex);
			r = 0;
		}
		break;
	}
	if (tv) {
		/* Linux select reports the time not slept. */
		uint64_t now = hb_os_now_ns(), left = timeout && now < end ? end - now : 0;

		tv->tv_sec = (time_t)(left / 1000000000ull);
		tv->tv_usec = (suseconds_t)(left % 1000000000ull / 1000);
	}
	return r;
}

static int fault_pselect_cb(int nfds, fd_set *rd, fd_set *wr, fd_set *ex,
			    const struct timespec *t, const sigset_t *mask)
{
	return do_pselect(nfds, rd, wr, ex, t, mask, NULL);
}

HB_EXPORT int select(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *tv)
{
	struct timespec t;

	if (tv) {
		if (tv->tv_sec < 0 || tv->tv_usec < 0 || tv->tv_usec >= 1000000) {
			errno = EINVAL;
			return -1;
		}
		t = (struct timespec){ tv->tv_sec, tv->tv_usec * 1000 };
	}
	if (HB_UNLIKELY(hb_cfg.nfaults)) /* HBSHIM_FAULTS; tv keeps its value */
		return hb_fault_pselect(nfds, rd, wr, ex, tv ? &t : NULL, NULL, fault_pselect_cb);
	return do_pselect(nfds, rd, wr, ex, tv ? &t : NULL, NULL, tv);
}

HB_EXPORT int pselect(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, const struct timespec *timeout,
		      const sigset_t *mask)
{
	if (HB_UNLIKELY(hb_cfg.nfaults)) /* HBSHIM_FAULTS */
		return hb_fault_pselect(nfds, rd, wr, ex, timeout, mask, fault_pselect_cb);
	return do_pselect(nfds, rd, wr, ex, timeout, mask, NULL);
}

/* epoll_ctl is watched for two things: the epoll sets framed sockets are
 * added to, so that a lingering close (frame.c) can take the socket out of
 * them, and every registration of a tracked socket (and, once there is one,
 * every data value registered by other fds), so that epoll_wait can map a
 * report back to its fd (epollmap.c, i_epoll.c). */
static __attribute__((noinline)) int epoll_ctl_slow(struct hb_conn *c, int epfd, int op, int fd,
						    struct epoll_event *ev)
{
	int r, parked = 0;

	if (c && op == EPOLL_CTL_ADD && c->mode == HB_MODE_FRAME && hb_conn_usable(c))
		hb_epoll_note(epfd);
	if (HB_UNLIKELY(hb_cfg.nfaults) && c) /* HBSHIM_FAULTS: parked registrations */
		parked = hb_fault_epoll_ctl_begin(epfd, fd);
	r = REAL(epoll_ctl, LIBC_RET(hb_os_epoll_ctl(epfd, op, fd, ev)), epfd, op, fd, ev);
	if (parked)
		hb_fault_epoll_ctl_end(parked, r == 0, c, epfd, op, fd, ev);
	if (r == 0) {
		int err = errno;

		hb_epmap_ctl(c && hb_conn_usable(c) ? c : NULL, epfd, op, fd, ev);
		errno = err;
	}
	return r;
}

HB_EXPORT int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
	struct hb_conn *c = hb_fd_conn(fd);
	int (*fn)(int, int, int, void *) = REAL_PTR(epoll_ctl);

	if (HB_LIKELY(!c && fn) && !hb_load_relaxed(&hb_epmap_used))
		return fn(epfd, op, fd, ev);
	return epoll_ctl_slow(c, epfd, op, fd, ev);
}
