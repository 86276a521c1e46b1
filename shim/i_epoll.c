/*
 * i_epoll.c - epoll_wait, epoll_pwait, epoll_pwait2: the second line of
 * readiness on framed connections, as i_poll.c is for poll and select.
 *
 * SO_RCVLOWAT keeps heartbeats from waking epoll (frame.c); when the
 * background thread is starved for two peer intervals, enough of them add
 * up to the mark and the kernel reports the fd readable with no
 * application byte behind it: a blocking read then waits for the next
 * message (600 ms seen at a 20 ms interval), and a non-blocking one gets
 * EAGAIN. After the real call, each EPOLLIN report is mapped back to its fd
 * through what epoll_ctl registered (epollmap.c); when that fd is framed
 * and has no application byte (control frames at the head consumed,
 * hb_frame_app_readable), EPOLLIN is withdrawn from the report, and a
 * report left empty is dropped. When every report was dropped the call
 * waits again for what is left of its timeout (monotonic).
 *
 * Modes: a dropped EPOLLONESHOT report had disarmed its registration in the
 * kernel; it is re-armed with the registered events and data (after the
 * drain, so data arriving meanwhile is reported by the re-arm itself). An
 * edge-triggered report needs nothing: with the control frames drained the
 * queue is below the mark, and the next data frame raises a new edge.
 * EPOLLEXCLUSIVE: a dropped report wakes no other waiter, and none was
 * needed (nothing for the application arrived). A nested set's report (an
 * epoll fd inside another) is not a socket and passes unfiltered; the inner
 * set's own epoll_wait is filtered, so at most one empty round of the outer
 * loop results. A data value registered for two fds in one set, or one the
 * map cannot confirm, is left alone (epollmap.c).
 *
 * Errors, EINTR, signal masks and reports of other fds are the real call's.
 * A process without a framed connection pays one atomic load. In a process
 * with fault rules (HBSHIM_FAULTS), fault_poll.c wraps these waits to hold
 * back reports of data a fault holds back.
 */
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/epoll.h>

#include "interpose.h"

/* Declared by glibc 2.35 and later, not by musl (1.2.3 at least): exported
 * all the same (one list of symbols for both), so declared here for the
 * others, with glibc's prototype. */
#if !defined(__GLIBC__) || __GLIBC__ < 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ < 35)
int epoll_pwait2(int epfd, struct epoll_event *evs, int max, const struct timespec *ts,
		 const sigset_t *mask);
#endif

/* Rounds of "everything reported was control frames" before the reports
 * are passed on as they are (i_poll.c's bound). */
#define MAX_ROUNDS 64

#define IN_BITS ((uint32_t)(EPOLLIN | EPOLLRDNORM))
#define END_BITS ((uint32_t)(EPOLLERR | EPOLLHUP | EPOLLRDHUP))

/* 1 when the report ev of set epfd has no application byte behind it and
 * may lose EPOLLIN; *r then holds its registration. */
static int withdraw(int epfd, const struct epoll_event *ev, struct hb_epreg *r)
{
	struct hb_conn *c;
	uint32_t self;
	int fd;

	if (!(ev->events & IN_BITS) || (ev->events & END_BITS) || !hb_epmap_find(epfd, ev->data.u64, r))
		return 0;
	c = hb_fd_conn(r->fd);
	if (!c || c->self != r->self || hb_load_acquire(&c->gen) != r->gen ||
	    c->mode != HB_MODE_FRAME || !hb_conn_usable(c) || hb_frame_app_readable(c, r->fd))
		return 0;
	if (r->verified)
		return 1;
	/* First use of this registration: the kernel must confirm that no
	 * other fd of the set carries the same data. */
	fd = r->fd;
	self = r->self;
	(void)hb_epmap_check_set(epfd);
	return hb_epmap_find(epfd, ev->data.u64, r) && r->verified && r->fd == fd && r->self == self;
}

/* Filter n reports in place; returns how many are left. */
static int filter(int epfd, struct epoll_event *evs, int n)
{
	int k = 0;

	for (int i = 0; i < n; i++) {
		struct epoll_event ev = evs[i];
		struct hb_epreg r;

		if (withdraw(epfd, &ev, &r)) {
			ev.events &= ~IN_BITS;
			if (!ev.events) {
				if (r.events & EPOLLONESHOT) {
					struct epoll_event re = { .events = r.events };

					re.data.u64 = r.data;
					(void)hb_os_epoll_ctl(epfd, EPOLL_CTL_MOD, r.fd, &re);
				}
				continue;
			}
		}
		evs[k++] = ev;
	}
	return k;
}

enum { K_WAIT, K_PWAIT, K_PWAIT2 };

static int real_wait(int kind, int epfd, struct epoll_event *evs, int max, int ms,
		     const struct timespec *ts, const sigset_t *mask)
{
	switch (kind) {
	case K_WAIT:
		/* epoll_pwait with no mask: arm64's table has no epoll_wait. */
		return REAL(epoll_wait,
			    LIBC_RET(hb_os_epoll_pwait(epfd, evs, max, ms, NULL)), epfd,
			    evs, max, ms);
	case K_PWAIT:
		return REAL(epoll_pwait,
			    LIBC_RET(hb_os_epoll_pwait(epfd, evs, max, ms, mask)), epfd,
			    evs, max, ms, mask);
	default:
		return REAL(epoll_pwait2,
			    LIBC_RET(hb_os_epoll_pwait2(epfd, evs, max, ts, mask)), epfd,
			    evs, max, ts, mask);
	}
}

/* ms < 0 (or ts NULL for pwait2): no timeout. */
static int do_epoll(int kind, int epfd, struct epoll_event *evs, int max, int ms,
		    const struct timespec *ts, const sigset_t *mask)
{
	uint64_t end = 0;
	int forever, r;

	if (!hb_load_relaxed(&hb_frame_seen) || !hb_enabled || !hb_load_relaxed(&hb_epmap_used))
		return real_wait(kind, epfd, evs, max, ms, ts, mask);
	/* A timeout of more than a century is forever too (no overflow). */
	forever = kind == K_PWAIT2 ? !ts || ts->tv_sec > (time_t)3600 * 24 * 366 * 100 : ms < 0;
	if (!forever) {
		uint64_t t = kind != K_PWAIT2 ? (uint64_t)ms * 1000000ull
			     : ts->tv_sec < 0 || ts->tv_nsec < 0 ? 0 /* EINVAL: the kernel's */
			     : (uint64_t)ts->tv_sec * 1000000000ull + (uint64_t)ts->tv_nsec;

		end = hb_os_now_ns() + t;
	}
	for (int round = 0;; round++) {
		struct timespec left;

		if (round && !forever) {
			uint64_t now = hb_os_now_ns(), l = now < end ? end - now : 0;

			ms = (int)((l + 999999) / 1000000);
			left = (struct timespec){ (time_t)(l / 1000000000ull),
						  (long)(l % 1000000000ull) };
			ts = &left;
		}
		r = real_wait(kind, epfd, evs, max, ms, ts, mask);
		if (r <= 0 || round >= MAX_ROUNDS)
			return r;
		{
			int err = errno, k = filter(epfd, evs, r);

			errno = err;
			if (k > 0)
				return k;
		}
		/* Only control frames were behind the reports: wait again. */
		if (!forever && hb_os_now_ns() >= end)
			return 0;
	}
}

/* HBSHIM_FAULTS (fault_poll.c) waits through do_epoll, with a timeout in
 * ns (-1: none) that it converts back to the call's own form. */
struct fault_wait {
	int kind;
	const sigset_t *mask;
};

static int fault_wait_cb(int epfd, struct epoll_event *evs, int max, int64_t ns, void *arg)
{
	const struct fault_wait *w = arg;
	struct timespec ts = { (time_t)(ns / 1000000000), (long)(ns % 1000000000) };
	int64_t ms64 = ns < 0 ? -1 : (ns + 999999) / 1000000;
	int ms = ms64 > INT_MAX ? INT_MAX : (int)ms64;

	return do_epoll(w->kind, epfd, evs, max, ms, ns < 0 ? NULL : &ts, w->mask);
}

static int fault_epoll(int kind, int epfd, struct epoll_event *evs, int max, int ms,
		       const struct timespec *ts, const sigset_t *mask)
{
	struct fault_wait w = { kind, mask };
	int64_t ns;

	if (kind != K_PWAIT2)
		ns = ms < 0 ? -1 : (int64_t)ms * 1000000;
	else if (!ts || ts->tv_sec > (time_t)3600 * 24 * 366 * 100)
		ns = -1;
	else if (ts->tv_sec < 0 || ts->tv_nsec < 0 || ts->tv_nsec >= 1000000000)
		return do_epoll(kind, epfd, evs, max, ms, ts, mask); /* the kernel's EINVAL */
	else
		ns = (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
	if (max <= 0 || !evs)
		return do_epoll(kind, epfd, evs, max, ms, ts, mask);
	return hb_fault_epoll(epfd, evs, max, ns, fault_wait_cb, &w);
}

HB_EXPORT int epoll_wait(int epfd, struct epoll_event *evs, int max, int timeout)
{
	if (HB_UNLIKELY(hb_cfg.nfaults)) /* HBSHIM_FAULTS */
		return fault_epoll(K_WAIT, epfd, evs, max, timeout, NULL, NULL);
	return do_epoll(K_WAIT, epfd, evs, max, timeout, NULL, NULL);
}

HB_EXPORT int epoll_pwait(int epfd, struct epoll_event *evs, int max, int timeout,
			  const sigset_t *mask)
{
	if (HB_UNLIKELY(hb_cfg.nfaults)) /* HBSHIM_FAULTS */
		return fault_epoll(K_PWAIT, epfd, evs, max, timeout, NULL, mask);
	return do_epoll(K_PWAIT, epfd, evs, max, timeout, NULL, mask);
}

HB_EXPORT int epoll_pwait2(int epfd, struct epoll_event *evs, int max, const struct timespec *ts,
			   const sigset_t *mask)
{
	if (HB_UNLIKELY(hb_cfg.nfaults)) /* HBSHIM_FAULTS */
		return fault_epoll(K_PWAIT2, epfd, evs, max, -1, ts, mask);
	return do_epoll(K_PWAIT2, epfd, evs, max, -1, ts, mask);
}
