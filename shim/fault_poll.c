/*
 * fault_poll.c - HBSHIM_FAULTS and readiness: poll, ppoll, select and
 * pselect (i_poll.c hands processes with rules here) do not report a socket
 * readable while its data is held back (latency, bandwidth, hang), and
 * wake at its release or at a timed trigger; hang also silences a framed
 * connection's heartbeats. epoll is not filtered.
 */
#include <errno.h>
#include <string.h>

#include "fault_int.h"

/*
 * Would a read on c now be held back (latency not yet elapsed, bandwidth
 * over budget, hang)? Returns 1 and the time it may change in *rel
 * (UINT64_MAX: not by itself), or 0 with *rel the next timed trigger (0:
 * none). A reset rule whose only trigger is time is carried out here when
 * due, so that a program idle in poll sees the reset at its time. App
 * thread, inside poll/select.
 */
static int in_held(struct hb_conn *c, int fd, uint64_t now, uint64_t *rel)
{
	struct hb_fstate *st = hb_fault_of(c);
	int held = 0, fire = -1;
	uint64_t when = UINT64_MAX, next = 0;
	short rev = 0;

	*rel = 0;
	lock(st);
	if (st->reset) {
		unlock(st);
		return 0;
	}
	for (uint32_t k = 0; k < st->nrules; k++) {
		struct frule *r = &st->r[k];
		const struct hb_fault *f = &hb_cfg.faults[r->idx];

		if (hb_load_relaxed(&hb_fault_off[r->idx]) || !(f->dir & HB_FDIR_IN))
			continue;
		if (f->action == HB_FA_RESET &&
		    hb_load_relaxed(&hb_fault_kick[r->idx]) != r->kick_seen) {
			r->kick_seen = hb_load_relaxed(&hb_fault_kick[r->idx]);
			fire = (int)k;
			continue;
		}
		if (r->done)
			continue;
		if (!r->active) {
			uint64_t at = st->opened_ms + f->after_ms;

			if (now < at) {
				if (!next || at < next)
					next = at;
			} else if (f->action == HB_FA_RESET && !f->after_bytes && !f->nth &&
				   f->prob_ppm >= 1000000) {
				fire = (int)k;
			}
			continue;
		}
		if (f->for_ms && now - r->since_ms >= f->for_ms)
			continue;
		if (f->for_ms && r->since_ms + f->for_ms < when)
			when = r->since_ms + f->for_ms;
		switch (f->action) {
		case HB_FA_HANG:
			held = 1;
			break;
		case HB_FA_LATENCY:
			if (!r->held_ms) {
				unlock(st);
				if (hb_os_poll1(fd, POLLIN, 0, &rev) <= 0)
					return 0;
				lock(st);
				if (!r->held_ms)
					r->held_ms = now;
			}
			if (r->held_ms + f->arg > now) {
				held = 1;
				if (r->held_ms + f->arg < when)
					when = r->held_ms + f->arg;
			}
			break;
		case HB_FA_BANDWIDTH: {
			uint64_t due = r->since_ms + r->moved[0] * 1000 / f->arg;

			if (due > now) {
				held = 1;
				if (due < when)
					when = due;
			}
			break;
		}
		default:
			break;
		}
	}
	if (fire >= 0 && !held) {
		st->r[fire].active = 1;
		st->r[fire].done = 1;
		st->r[fire].since_ms = now;
		st->reset = 1;
	}
	unlock(st);
	if (fire >= 0 && !held) {
		hb_fault_record(fd, c, &hb_cfg.faults[st->r[fire].idx], HB_FDIR_IN, 0, NULL, 0);
		hb_fault_reset_now(fd);
		return 0;
	}
	if (hb_cfg.control_path[0] && (!next || next > now + CTL_SLICE_MS))
		next = now + CTL_SLICE_MS; /* look for a live trigger again soon */
	*rel = held ? when : next;
	return held;
}

#define POLL_MAX 256 /* larger sets pass through unfiltered */

int hb_fault_ppoll(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *mask,
		   int (*inner)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *))
{
	uint64_t end = ts ? hb_os_now_ms() + (uint64_t)ts->tv_sec * 1000 +
				    ((uint64_t)ts->tv_nsec + 999999) / 1000000
			  : UINT64_MAX;
	struct pollfd copy[POLL_MAX];

	if (n > POLL_MAX || (ts && ts->tv_sec < 0))
		return inner(fds, n, ts, mask);
	for (;;) {
		uint64_t now = hb_os_now_ms(), wake = end;
		int any = 0, r;
		struct timespec left;

		for (nfds_t i = 0; i < n; i++) {
			struct hb_conn *c;
			uint64_t rel;

			copy[i] = fds[i];
			if (fds[i].fd < 0 || !(fds[i].events & (POLLIN | POLLRDNORM)) ||
			    !(c = hb_fd_conn(fds[i].fd)) || !hb_fault_of(c))
				continue;
			if (in_held(c, fds[i].fd, now, &rel)) {
				copy[i].events &= (short)~(POLLIN | POLLRDNORM | POLLRDBAND);
				any = 1;
			}
			if (rel && rel < wake) {
				wake = rel;
				any = 1;
			}
		}
		if (!any)
			return inner(fds, n, ts, mask);
		left.tv_sec = (time_t)((wake > now ? wake - now : 0) / 1000);
		left.tv_nsec = (long)((wake > now ? wake - now : 0) % 1000) * 1000000L;
		r = inner(copy, n, wake == UINT64_MAX ? NULL : &left, mask);
		for (nfds_t i = 0; i < n; i++) {
			struct hb_conn *c;
			uint64_t rel;

			fds[i].revents = copy[i].revents;
			/* Data that just came is held from now on. */
			if (r > 0 && (fds[i].revents & (POLLIN | POLLRDNORM)) &&
			    !(fds[i].revents & (POLLERR | POLLHUP)) && (c = hb_fd_conn(fds[i].fd)) &&
			    hb_fault_of(c) && in_held(c, fds[i].fd, hb_os_now_ms(), &rel)) {
				fds[i].revents &= (short)~(POLLIN | POLLRDNORM | POLLRDBAND);
				if (!fds[i].revents)
					r--;
			}
		}
		if (r != 0 || hb_os_now_ms() >= end)
			return r;
	}
}

int hb_fault_pselect(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, const struct timespec *ts,
		     const sigset_t *mask,
		     int (*inner)(int, fd_set *, fd_set *, fd_set *, const struct timespec *,
				  const sigset_t *))
{
	uint64_t end = ts ? hb_os_now_ms() + (uint64_t)ts->tv_sec * 1000 +
				    ((uint64_t)ts->tv_nsec + 999999) / 1000000
			  : UINT64_MAX;
	fd_set srd, swr, sex;

	if (!rd || nfds <= 0 || nfds > FD_SETSIZE || (ts && ts->tv_sec < 0))
		return inner(nfds, rd, wr, ex, ts, mask);
	srd = *rd;
	if (wr)
		swr = *wr;
	if (ex)
		sex = *ex;
	for (;;) {
		uint64_t now = hb_os_now_ms(), wake = end;
		int any = 0, r;
		struct timespec left;

		*rd = srd;
		if (wr)
			*wr = swr;
		if (ex)
			*ex = sex;
		for (int fd = 0; fd < nfds; fd++) {
			struct hb_conn *c;
			uint64_t rel;

			if (!FD_ISSET(fd, &srd) || !(c = hb_fd_conn(fd)) || !hb_fault_of(c))
				continue;
			if (in_held(c, fd, now, &rel)) {
				FD_CLR(fd, rd);
				any = 1;
			}
			if (rel && rel < wake) {
				wake = rel;
				any = 1;
			}
		}
		if (!any)
			return inner(nfds, rd, wr, ex, ts, mask);
		left.tv_sec = (time_t)((wake > now ? wake - now : 0) / 1000);
		left.tv_nsec = (long)((wake > now ? wake - now : 0) % 1000) * 1000000L;
		r = inner(nfds, rd, wr, ex, wake == UINT64_MAX ? NULL : &left, mask);
		for (int fd = 0; r > 0 && fd < nfds; fd++) {
			struct hb_conn *c;
			uint64_t rel;

			/* Data that just came is held from now on. */
			if (FD_ISSET(fd, rd) && (c = hb_fd_conn(fd)) && hb_fault_of(c) &&
			    in_held(c, fd, hb_os_now_ms(), &rel)) {
				FD_CLR(fd, rd);
				if (!(wr && FD_ISSET(fd, wr)) && !(ex && FD_ISSET(fd, ex)))
					r--;
			}
		}
		if (r != 0 || hb_os_now_ms() >= end)
			return r;
	}
}

int hb_fault_hung(struct hb_conn *c)
{
	struct hb_fstate *st = hb_fault_of(c);
	uint64_t now = hb_os_now_ms();
	int hung = 0;

	lock(st);
	for (uint32_t k = 0; k < st->nrules && !hung; k++) {
		const struct frule *r = &st->r[k];
		const struct hb_fault *f = &hb_cfg.faults[r->idx];

		hung = f->action == HB_FA_HANG && r->active && !r->done &&
		       !hb_load_relaxed(&hb_fault_off[r->idx]) &&
		       !(f->for_ms && now - r->since_ms >= f->for_ms);
	}
	unlock(st);
	return hung;
}
