/*
 * fault_poll.c - HBSHIM_FAULTS and readiness: poll, ppoll, select, pselect
 * (i_poll.c) and epoll_wait, epoll_pwait, epoll_pwait2 (i_epoll.c), in a
 * process with rules, do not report a socket readable while its data is
 * held back (latency, bandwidth, hang), nor readable or writable while a
 * non-blocking connect is delayed ("delay"), and report it at the release.
 * A wait is cut at the earliest release (and at a timed trigger) and made
 * again. Errors and hang-ups are never held. hang also silences a framed
 * connection's heartbeats (hb_fault_hung).
 *
 * poll and select hide a held socket by taking the held bits out of the
 * request for one round. epoll cannot be asked that way: a held report is
 * withdrawn after the kernel's call, and its registration "parked" until
 * the release: level-triggered, its held bits are taken out of the
 * registration (EPOLL_CTL_MOD: else the kernel reports it again at once, a
 * busy loop); edge-triggered and one-shot, the kernel will not report it
 * again by itself. At the release, the next wait on that set restores the
 * registration as the application made it (EPOLL_CTL_MOD), which makes the
 * kernel report the socket anew when it is ready, whatever the mode (a
 * one-shot registration is re-armed: its report had been withdrawn).
 */
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>

#include "fault_io.h"

#define HELD_IN 1  /* a read would be held back */
#define HELD_OUT 2 /* connect still delayed: not writable either */

/*
 * What of c is held back now: HELD_IN when a read would be (latency not
 * yet elapsed, bandwidth over budget, hang), HELD_IN | HELD_OUT while a
 * non-blocking connect is delayed. With something held, *rel is the time it
 * may change (UINT64_MAX: not by itself); with nothing, *rel is the next
 * timed trigger (0: none). A reset rule whose only trigger is time is
 * carried out here when due and the caller waits for input (want_in), so
 * that a program idle in poll sees the reset at its time (a wait for
 * output alone, as for a connect's outcome, leaves it to the next call).
 * App thread, inside poll/select/epoll.
 */
/* The fault events of rules in_held set off. */
static void record(int fd, struct hb_conn *c, const uint8_t *rec, int n)
{
	for (int i = 0; i < n; i++)
		hb_fault_record(fd, c, &hb_cfg.faults[rec[i]], HB_FDIR_IN, 0, NULL, 0);
}

static int in_held(struct hb_conn *c, int fd, uint64_t now, uint64_t *rel, int want_in)
{
	struct hb_fstate *st = hb_fault_of(c);
	int held = 0, fire = -1, nrec = 0;
	uint8_t rec[HB_MAX_FAULTS];
	uint64_t when = UINT64_MAX, next = 0;
	short rev = 0;

	*rel = 0;
	lock(st);
	if (st->connect_until > now) {
		/* A delayed connect: neither readable nor writable yet. */
		*rel = st->connect_until;
		unlock(st);
		return HELD_IN | HELD_OUT;
	}
	if (st->reset) {
		unlock(st);
		return 0;
	}
	for (uint32_t k = 0; k < st->nrules; k++) {
		struct frule *r = &st->r[k];
		const struct hb_fault *f = &hb_cfg.faults[r->idx];

		if (hb_load_relaxed(&hb_fault_off[r->idx]) || !(f->dir & HB_FDIR_IN))
			continue;
		if (f->action == HB_FA_RESET && want_in &&
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
			} else if (f->action == HB_FA_RESET) {
				if (want_in && !f->after_bytes && !f->nth && f->prob_ppm >= 1000000)
					fire = (int)k;
			} else if ((f->action == HB_FA_LATENCY || f->action == HB_FA_BANDWIDTH ||
				    f->action == HB_FA_HANG) && !f->nth && f->prob_ppm >= 1000000 &&
				   ((f->dir & HB_FDIR_IN) ? st->bytes[0] : 0) +
						   ((f->dir & HB_FDIR_OUT) ? st->bytes[1] : 0) >=
					   f->after_bytes) {
				/* A holding rule whose trigger is met takes effect
				 * now, not at the next read: data that comes before
				 * any read is held too (an edge-triggered waiter
				 * would not be told of it again). */
				r->active = 1;
				r->since_ms = now;
				rec[nrec++] = r->idx;
			}
			if (!r->active)
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
				if (hb_os_poll1(fd, POLLIN, 0, &rev) <= 0) {
					record(fd, c, rec, nrec);
					return 0;
				}
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
	record(fd, c, rec, nrec);
	if (fire >= 0 && !held) {
		hb_fault_record(fd, c, &hb_cfg.faults[st->r[fire].idx], HB_FDIR_IN, 0, NULL, 0);
		hb_fault_reset_now(fd);
		return 0;
	}
	if (hb_cfg.control_path[0] && (!next || next > now + CTL_SLICE_MS))
		next = now + CTL_SLICE_MS; /* look for a live trigger again soon */
	*rel = held ? when : next;
	return held ? HELD_IN : 0;
}

#define POLL_MAX 256 /* larger sets pass through unfiltered */
#define IN_EV (POLLIN | POLLRDNORM | POLLRDBAND)
#define OUT_EV (POLLOUT | POLLWRNORM | POLLWRBAND)

static short held_bits(int held)
{
	return (short)((held & HELD_IN ? IN_EV : 0) | (held & HELD_OUT ? OUT_EV : 0));
}

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
			int held;

			copy[i] = fds[i];
			if (fds[i].fd < 0 || !(fds[i].events & (IN_EV | OUT_EV)) ||
			    !(c = hb_fd_conn(fds[i].fd)) || !hb_fault_of(c))
				continue;
			any = 1; /* data that comes during the wait may be held */
			if ((held = in_held(c, fds[i].fd, now, &rel, fds[i].events & IN_EV)))
				copy[i].events &= (short)~held_bits(held);
			if (rel && rel < wake)
				wake = rel;
		}
		if (!any)
			return inner(fds, n, ts, mask);
		left.tv_sec = (time_t)((wake > now ? wake - now : 0) / 1000);
		left.tv_nsec = (long)((wake > now ? wake - now : 0) % 1000) * 1000000L;
		r = inner(copy, n, wake == UINT64_MAX ? NULL : &left, mask);
		for (nfds_t i = 0; i < n; i++) {
			struct hb_conn *c;
			uint64_t rel;

			int held;

			fds[i].revents = copy[i].revents;
			/* Data that just came is held from now on. */
			if (r > 0 && (fds[i].revents & (IN_EV | OUT_EV)) &&
			    !(fds[i].revents & (POLLERR | POLLHUP)) && (c = hb_fd_conn(fds[i].fd)) &&
			    hb_fault_of(c) && (held = in_held(c, fds[i].fd, hb_os_now_ms(), &rel, fds[i].events & IN_EV))) {
				fds[i].revents &= (short)~held_bits(held);
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

	if ((!rd && !wr) || nfds <= 0 || nfds > FD_SETSIZE || (ts && ts->tv_sec < 0))
		return inner(nfds, rd, wr, ex, ts, mask);
	if (rd)
		srd = *rd;
	if (wr)
		swr = *wr;
	if (ex)
		sex = *ex;
	for (;;) {
		uint64_t now = hb_os_now_ms(), wake = end;
		int any = 0, r;
		struct timespec left;

		if (rd)
			*rd = srd;
		if (wr)
			*wr = swr;
		if (ex)
			*ex = sex;
		for (int fd = 0; fd < nfds; fd++) {
			struct hb_conn *c;
			uint64_t rel;
			int held;

			if (!((rd && FD_ISSET(fd, &srd)) || (wr && FD_ISSET(fd, &swr))) ||
			    !(c = hb_fd_conn(fd)) || !hb_fault_of(c))
				continue;
			any = 1; /* data that comes during the wait may be held */
			if ((held = in_held(c, fd, now, &rel, rd && FD_ISSET(fd, &srd)))) {
				if (rd)
					FD_CLR(fd, rd);
				if (wr && (held & HELD_OUT))
					FD_CLR(fd, wr);
			}
			if (rel && rel < wake)
				wake = rel;
		}
		if (!any)
			return inner(nfds, rd, wr, ex, ts, mask);
		left.tv_sec = (time_t)((wake > now ? wake - now : 0) / 1000);
		left.tv_nsec = (long)((wake > now ? wake - now : 0) % 1000) * 1000000L;
		r = inner(nfds, rd, wr, ex, wake == UINT64_MAX ? NULL : &left, mask);
		for (int fd = 0; r > 0 && fd < nfds; fd++) {
			struct hb_conn *c;
			uint64_t rel;
			int held, was;

			/* Data that just came is held from now on. */
			was = (rd && FD_ISSET(fd, rd)) + (wr && FD_ISSET(fd, wr)) +
			      (ex && FD_ISSET(fd, ex));
			if (!((rd && FD_ISSET(fd, rd)) || (wr && FD_ISSET(fd, wr))) ||
			    !(c = hb_fd_conn(fd)) || !hb_fault_of(c) ||
			    !(held = in_held(c, fd, hb_os_now_ms(), &rel, rd && FD_ISSET(fd, &srd))))
				continue;
			if (rd)
				FD_CLR(fd, rd);
			if (wr && (held & HELD_OUT))
				FD_CLR(fd, wr);
			r -= was - ((rd && FD_ISSET(fd, rd)) + (wr && FD_ISSET(fd, wr)) +
				    (ex && FD_ISSET(fd, ex)));
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

/* ------------------------------------------------------------ epoll */

#define PARK_MAX 256 /* parked registrations at most (then reports pass) */
#define EP_IN ((uint32_t)(EPOLLIN | EPOLLRDNORM | EPOLLRDBAND))
#define EP_OUT ((uint32_t)(EPOLLOUT | EPOLLWRNORM | EPOLLWRBAND))

/* A registration whose report was withdrawn: restored at the release. */
struct parked {
	int epfd1;        /* epfd + 1; 0 = free */
	int fd;
	uint64_t data;    /* as the application registered it */
	uint32_t events;
	uint32_t self, gen; /* the connection's identity (fd reuse) */
	uint32_t held;    /* HELD_* bits withdrawn */
	uint32_t ver;     /* bumped on every change of the slot */
};

static struct parked parks[PARK_MAX];
static _Atomic int park_lk;
static _Atomic int parked_n; /* entries in use (fast "none" test) */

/* 1 with the lock held; 0 when it stays taken (a signal handler that
 * interrupted the holder): the caller goes on without parking. The lock
 * is held over epoll_ctl calls only (the application's, or ours on the
 * same set and fd), which never block. */
static int park_lock(void)
{
	for (int i = 0; i < 4000; i++) {
		int z = 0;

		if (!hb_load_relaxed(&park_lk) && hb_cas_strong_acq_rel(&park_lk, &z, 1))
			return 1;
		if (i < 200)
			hb_cpu_relax();
		else
			hb_os_sleep_us(5);
	}
	return 0;
}

static void park_unlock(void)
{
	hb_store_release(&park_lk, 0);
}

/* The connection behind fd is still the one parked (the fd was not
 * closed and its number reused). */
static struct hb_conn *park_conn(const struct parked *p)
{
	struct hb_conn *c = hb_fd_conn(p->fd);

	if (!c || c->self != p->self || hb_load_acquire(&c->gen) != p->gen || !hb_fault_of(c))
		return NULL;
	return c;
}

/* The epoll registrations of connections, as the application made them
 * (epoll_ctl), for park_held_reads. Under park_lk. */
#define REG_MAX 1024
struct reg {
	int epfd1; /* epfd + 1; 0 = free */
	int fd;
	uint64_t data;
	uint32_t events, self, gen;
	uint32_t eagains_seen; /* the connection's held_eagains acted on */
};
static struct reg regs[REG_MAX];
static _Atomic int regs_et; /* an edge-triggered registration was recorded */
static _Atomic int regs_off; /* the lock was not to be had: regs unknown */

int hb_fault_epoll_ctl_begin(int epfd, int fd)
{
	if (!park_lock()) {
		hb_store_relaxed(&regs_off, 1);
		return 0;
	}
	/* The application's own registration replaces what we parked. */
	for (int i = 0; hb_load_relaxed(&parked_n) && i < PARK_MAX; i++) {
		if (parks[i].epfd1 == epfd + 1 && parks[i].fd == fd) {
			parks[i].epfd1 = 0;
			parks[i].ver++;
			hb_add_relaxed(&parked_n, -1);
		}
	}
	return 1;
}

void hb_fault_epoll_ctl_end(int locked, int ok, struct hb_conn *c, int epfd, int op, int fd,
			    const struct epoll_event *ev)
{
	int slot = -1;

	if (!locked)
		return;
	for (int i = 0; ok && i < REG_MAX; i++) {
		if (regs[i].epfd1 == epfd + 1 && regs[i].fd == fd) {
			regs[i].epfd1 = 0;
			if (slot < 0)
				slot = i;
		} else if (slot < 0 && !regs[i].epfd1) {
			slot = i;
		}
	}
	if (ok && op != EPOLL_CTL_DEL && ev && c) {
		struct hb_fstate *st = hb_fault_of(c);

		if (slot >= 0) {
			regs[slot] = (struct reg){ .epfd1 = epfd + 1, .fd = fd, .data = ev->data.u64,
						   .events = ev->events, .self = c->self,
						   .gen = hb_load_acquire(&c->gen) };
			if (st)
				regs[slot].eagains_seen = hb_load_relaxed(&st->held_eagains);
			if (ev->events & EPOLLET)
				hb_store_relaxed(&regs_et, 1);
		} else
			hb_store_relaxed(&regs_off, 1); /* full: unknown from now on */
	}
	park_unlock();
}

/* Park one registration; under park_lk. 1 when parked (now or before). */
static int park(int epfd, int fd, uint64_t data, uint32_t events, uint32_t self, uint32_t gen,
		uint32_t strip, int held)
{
	int slot = -1;

	for (int i = 0; i < PARK_MAX; i++) {
		if (parks[i].epfd1 == epfd + 1 && parks[i].fd == fd) {
			slot = i; /* parked already (an edge of new data) */
			break;
		}
		if (slot < 0 && !parks[i].epfd1)
			slot = i;
	}
	if (slot < 0)
		return 0;
	if (parks[slot].epfd1 != epfd + 1) {
		if (!(events & (EPOLLONESHOT | EPOLLET))) {
			/* Level-triggered: out of the registration until the
			 * release, else it is reported again at once. */
			struct epoll_event pe = { .events = events & ~strip };

			pe.data.u64 = data;
			if (hb_os_epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &pe) != 0)
				return 0; /* EPOLLEXCLUSIVE cannot be modified */
		}
		parks[slot] = (struct parked){ .epfd1 = epfd + 1, .fd = fd, .data = data,
					       .events = events, .self = self, .gen = gen,
					       .ver = parks[slot].ver + 1 };
		hb_add_relaxed(&parked_n, 1);
	}
	parks[slot].held |= (uint32_t)held;
	return 1;
}

/* A non-blocking read that found its data held (fault_io.c counts them in
 * held_eagains) leaves an edge-triggered registration waiting for an edge
 * the kernel will not raise again for that data: park it, so that the
 * release re-arms it. Under park_lk. */
static void park_held_reads(int epfd)
{
	for (int i = 0; hb_load_relaxed(&regs_et) && i < REG_MAX; i++) {
		struct reg *g = &regs[i];
		struct hb_conn *c;
		struct hb_fstate *st;
		uint32_t n;

		if (g->epfd1 != epfd + 1 || !(g->events & EPOLLET) || !(g->events & EP_IN) ||
		    !(c = hb_fd_conn(g->fd)) || c->self != g->self ||
		    hb_load_acquire(&c->gen) != g->gen || !(st = hb_fault_of(c)) ||
		    (n = hb_load_relaxed(&st->held_eagains)) == g->eagains_seen)
			continue;
		g->eagains_seen = n;
		park(epfd, g->fd, g->data, g->events, g->self, g->gen, EP_IN, HELD_IN);
	}
}

/* Restore the registrations of set epfd whose hold is over; returns the
 * earliest release still ahead (UINT64_MAX: none by itself). */
static uint64_t unpark(int epfd, uint64_t now)
{
	uint64_t wake = UINT64_MAX;

	if (!hb_load_relaxed(&parked_n) && !hb_load_relaxed(&regs_et))
		return wake;
	if (!park_lock())
		return wake;
	if (!hb_load_relaxed(&regs_off))
		park_held_reads(epfd);
	park_unlock();
	for (int i = 0; hb_load_relaxed(&parked_n) && i < PARK_MAX; i++) {
		struct parked p;
		struct hb_conn *c;
		uint64_t rel;
		int held;

		/* Judged outside the lock (in_held may record an event or
		 * send a reset); acted on only if the entry is unchanged. */
		if (!park_lock())
			break;
		p = parks[i];
		park_unlock();
		if (p.epfd1 != epfd + 1)
			continue;
		c = park_conn(&p);
		if (c && ((held = in_held(c, p.fd, now, &rel, (p.events & EP_IN) != 0)) &
			  (int)p.held)) {
			if (rel < wake)
				wake = rel;
			continue;
		}
		if (!park_lock())
			break;
		if (parks[i].epfd1 == p.epfd1 && parks[i].ver == p.ver) {
			if (c) {
				struct epoll_event ev = { .events = p.events };

				ev.data.u64 = p.data;
				(void)hb_os_epoll_ctl(epfd, EPOLL_CTL_MOD, p.fd, &ev);
			}
			parks[i].epfd1 = 0;
			parks[i].ver++;
			hb_add_relaxed(&parked_n, -1);
		}
		park_unlock();
	}
	if (hb_cfg.control_path[0] && wake > now + CTL_SLICE_MS)
		wake = now + CTL_SLICE_MS; /* a rule removed live releases it */
	return wake;
}

/* Withdraw the held bits of one report; 1 when it is left empty. */
static int hold_report(int epfd, struct epoll_event *ev, uint64_t now, uint64_t *wake)
{
	struct hb_epreg reg;
	struct hb_conn *c;
	uint64_t rel;
	uint32_t strip;
	int held, fd, parked;

	if ((ev->events & (EPOLLERR | EPOLLHUP)) || !(ev->events & (EP_IN | EP_OUT)) ||
	    !hb_epmap_find(epfd, ev->data.u64, &reg))
		return 0;
	if (!reg.verified) {
		/* The kernel must confirm that no other fd of the set carries
		 * this data (epollmap.c). */
		fd = reg.fd;
		(void)hb_epmap_check_set(epfd);
		if (!hb_epmap_find(epfd, ev->data.u64, &reg) || !reg.verified || reg.fd != fd)
			return 0;
	}
	c = hb_fd_conn(reg.fd);
	if (!c || c->self != reg.self || hb_load_acquire(&c->gen) != reg.gen || !hb_fault_of(c) ||
	    !(held = in_held(c, reg.fd, now, &rel, (ev->events & EP_IN) != 0)))
		return 0;
	strip = (held & HELD_IN ? EP_IN : 0) | (held & HELD_OUT ? EP_OUT : 0);
	if (!(ev->events & strip))
		return 0;
	if ((reg.events & EPOLLONESHOT) && (ev->events & ~strip & (EP_IN | EP_OUT | EPOLLPRI |
								      EPOLLRDHUP))) {
		/* Part of a one-shot report goes out: the application re-arms
		 * it, and the kernel reports what is still there. */
		ev->events &= ~strip;
		return 0;
	}
	if (!park_lock())
		return 0;
	parked = park(epfd, reg.fd, reg.data, reg.events, reg.self, reg.gen, strip, held);
	park_unlock();
	if (!parked)
		return 0;
	if (rel < *wake)
		*wake = rel;
	ev->events &= ~strip;
	return !(ev->events & ~(uint32_t)(EPOLLET | EPOLLONESHOT | EPOLLEXCLUSIVE | EPOLLWAKEUP));
}

int hb_fault_epoll(int epfd, struct epoll_event *evs, int max, int64_t timeout_ns,
		   int (*inner)(int, struct epoll_event *, int, int64_t, void *), void *arg)
{
	uint64_t end = timeout_ns < 0 ? UINT64_MAX
				      : hb_os_now_ms() + ((uint64_t)timeout_ns + 999999) / 1000000;

	for (;;) {
		uint64_t now = hb_os_now_ms(), wake = unpark(epfd, now);
		int r, k = 0;

		if (end < wake)
			wake = end;
		r = inner(epfd, evs, max,
			  wake == UINT64_MAX ? -1
			  : wake > now	     ? (int64_t)(wake - now) * 1000000
					     : 0,
			  arg);
		if (r < 0)
			return r;
		now = hb_os_now_ms();
		for (int i = 0; i < r; i++) {
			uint64_t w = UINT64_MAX;

			if (!hold_report(epfd, &evs[i], now, &w))
				evs[k++] = evs[i];
		}
		if (k > 0)
			return k;
		if (now >= end)
			return 0;
	}
}
