/*
 * fault_io.c - HBSHIM_FAULTS at run time: network faults injected into the
 * application's own connections, from inside its process (a test harness
 * for programs one cannot modify). The grammar is fault.c's.
 *
 * Rules are bound to a connection when it is established (connect or
 * accept): those whose side and peer match get a slot in a per-connection
 * state, reached through c->fault. A process with no rule never allocates
 * one, so the I/O paths pay one atomic load. Connect faults (refuse,
 * timeout, delay, errno with call=connect) act in connect() itself.
 *
 * Every application read or write on a connection with rules is planned
 * against them: which rule's trigger is met (after a delay, after bytes,
 * on the Nth call, with a probability), then the actions shape the call
 * (at most N bytes, EOF, an errno, a wait) before the undisturbed call
 * below (raw, or hb_frame_recv/hb_frame_send on a framed connection: the
 * faults act on application bytes and never enter the frame codec). A
 * wait is made here in short slices (a blocking caller), honouring the
 * program's SO_RCVTIMEO/SO_SNDTIMEO (EAGAIN) and signals (EINTR); a
 * non-blocking caller gets EAGAIN instead of a wait.
 *
 * Readiness (poll, select) is fault_poll.c's; both share fault_io.h.
 *
 * Random choices (prob, slicer sizes, jitter) come from a generator per
 * connection seeded from HBSHIM_SEED and the connection's ordinal in the
 * process, so a program that makes its connections in the same order sees
 * the same faults with the same seed. Every injected fault is a "fault"
 * event and counts in hbshim_faults_injected_total{action}.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <netinet/in.h>

#include "fault_io.h"

#define SLICE_MS 20        /* longest single sleep of a wait */
#define IOV_CAP 64         /* iovec entries kept when a call is shortened */

/* The rules' live switches: fault_ctl.c's control step writes them, the
 * I/O paths here and in fault_poll.c read them. */
_Atomic uint8_t hb_fault_off[HB_MAX_FAULTS];
_Atomic uint32_t hb_fault_kick[HB_MAX_FAULTS];


/* ------------------------------------------------------------ helpers */

/* Sleep ms (at most SLICE_MS at a time is the caller's business): 0, or
 * -EINTR when a signal arrived. */
int hb_fault_nap(uint64_t ms)
{
	long r = hb_os_poll1(-1, 0, ms > INT_MAX ? INT_MAX : (int)ms, NULL);

	return r == -EINTR ? -EINTR : 0;
}

/* A signal interrupted one of our waits inside the application's call:
 * does that call fail EINTR? As in the kernel: always with a timeout of
 * the program's own (SO_RCVTIMEO/SO_SNDTIMEO), else only when some
 * installed handler lacks SA_RESTART (we cannot tell which one ran). */
int hb_fault_intr_fails(uint32_t tmo)
{
	return tmo || !hb_proc_handlers_restart();
}

/* Record one injected fault. */
void hb_fault_record(int fd, const struct hb_conn *c, const struct hb_fault *f, unsigned dir,
		   int err, const struct sockaddr *peer, socklen_t peerlen)
{
	struct hb_ev_field ev[4];
	int n = 0;

	hb_stat_add(HB_ST_FAULTS + f->action, 1);
	if (!hb_events_on())
		return;
	ev[n++] = HB_EV_STR("rule", f->name);
	ev[n++] = HB_EV_STR("action", hb_fault_action_name(f->action));
	if (dir)
		ev[n++] = HB_EV_STR("dir", dir == HB_FDIR_IN ? "in" : "out");
	if (err)
		ev[n++] = HB_EV_STR("errno", hb_fault_errno_name(err));
	hb_event_conn("fault", fd, c, peer, peerlen, ev, n);
	hb_log(HB_LOG_INFO, "fd %d: fault %s (%s) injected", fd, f->name,
	       hb_fault_action_name(f->action));
}

/* ------------------------------------------------------------ planning */

/* What the rules ask of one call. */
struct plan {
	int err;             /* fail with this errno (injected) */
	int eof;             /* reads: end of stream */
	int hang;            /* nothing moves */
	int reset;           /* send a reset now */
	size_t cap;          /* at most this many bytes */
	size_t slice_cap;    /* slicer's share of cap (rolled on the first pass) */
	uint64_t wait_until; /* not before this time (bandwidth) */
	uint32_t latency;    /* ms: reads wait this long after data came */
	uint64_t next_trigger; /* earliest "after" trigger still ahead, 0 = none */
	int lat_rule;        /* bound rule index for held_ms, or -1 */
	/* Faults to record after the lock is dropped. */
	int nrec;
	struct { uint8_t idx; int err; } rec[HB_MAX_FAULTS];
};

static void note(struct plan *p, const struct frule *r, int err)
{
	p->rec[p->nrec].idx = r->idx;
	p->rec[p->nrec].err = err;
	p->nrec++;
}

/* Evaluate the bound rules for a call in dir (HB_FDIR_IN: a read). first:
 * the call's first pass (counts calls, rolls dice); *skip carries the rules
 * whose roll failed to later passes. Under st->lock. */
static void plan_call(struct hb_fstate *st, unsigned dir, size_t want, uint64_t now, int first,
		      uint32_t *skip, struct plan *p)
{
	int d = dir == HB_FDIR_IN ? 0 : 1;

	memset(p, 0, sizeof(*p));
	p->cap = want;
	p->slice_cap = SIZE_MAX;
	p->lat_rule = -1;
	for (uint32_t k = 0; k < st->nrules; k++) {
		struct frule *r = &st->r[k];
		const struct hb_fault *f = &hb_cfg.faults[r->idx];
		uint64_t moved_dir;
		int newly = 0;

		uint32_t kick = hb_load_relaxed(&hb_fault_kick[r->idx]);
		int forced = 0;

		if (hb_load_relaxed(&hb_fault_off[r->idx]) || !(f->dir & dir) ||
		    (*skip & (1u << k)))
			continue;
		if (kick != r->kick_seen) {
			/* "hbshim ctl trigger": act now, whatever the trigger. */
			r->kick_seen = kick;
			r->done = 0;
			r->active = 1;
			r->since_ms = now;
			forced = newly = 1;
		}
		if (r->done)
			continue;
		if (first)
			r->calls++;
		if (!r->active) {
			moved_dir = ((f->dir & HB_FDIR_IN) ? st->bytes[0] : 0) +
				    ((f->dir & HB_FDIR_OUT) ? st->bytes[1] : 0);
			if (now - st->opened_ms < f->after_ms) {
				uint64_t at = st->opened_ms + f->after_ms;

				if (!p->next_trigger || at < p->next_trigger)
					p->next_trigger = at;
				continue;
			}
			if (moved_dir < f->after_bytes || (f->nth && r->calls < f->nth))
				continue;
			r->active = 1;
			r->since_ms = now;
			newly = 1;
		}
		if (f->for_ms && now - r->since_ms >= f->for_ms) {
			r->done = 1;
			continue;
		}
		if (!forced && f->prob_ppm < 1000000 && first &&
		    hb_fault_splitmix(&st->rng) % 1000000 >= f->prob_ppm) {
			*skip |= 1u << k;
			continue;
		}
		switch (f->action) {
		case HB_FA_RESET:
			p->reset = 1;
			r->done = 1;
			note(p, r, 0);
			break;
		case HB_FA_ERRNO:
			if (!first && !forced)
				break;
			p->err = (int)f->arg;
			if (f->nth)
				r->done = 1;
			note(p, r, (int)f->arg);
			break;
		case HB_FA_CLOSE:
			if (dir == HB_FDIR_IN)
				p->eof = 1;
			else
				p->err = EPIPE;
			if (newly)
				note(p, r, 0);
			break;
		case HB_FA_LIMIT:
			if (r->moved[d] >= f->arg) {
				if (dir == HB_FDIR_IN)
					p->eof = 1;
				else
					p->err = EPIPE;
				if (!r->hit) {
					r->hit = 1;
					note(p, r, 0);
				}
			} else if (f->arg - r->moved[d] < p->cap) {
				p->cap = (size_t)(f->arg - r->moved[d]);
			}
			break;
		case HB_FA_SLICER:
			if (first) {
				size_t n = 1 + (size_t)(hb_fault_splitmix(&st->rng) % f->arg);

				if (n < p->slice_cap)
					p->slice_cap = n;
			}
			if (newly)
				note(p, r, 0);
			break;
		case HB_FA_HANG:
			p->hang = 1;
			if (newly)
				note(p, r, 0);
			break;
		case HB_FA_LATENCY: {
			uint32_t lat = f->arg;

			if (f->jitter_ms && first) {
				uint64_t span = 2ull * f->jitter_ms + 1;

				lat = (uint32_t)(f->arg - f->jitter_ms + hb_fault_splitmix(&st->rng) % span);
			}
			if (lat > p->latency) {
				p->latency = lat;
				p->lat_rule = (int)k;
			}
			if (newly)
				note(p, r, 0);
			break;
		}
		case HB_FA_BANDWIDTH: {
			uint64_t due = r->since_ms + r->moved[d] * 1000 / f->arg;
			size_t chunk = f->arg / 20 ? f->arg / 20 : 1;

			if (due > p->wait_until)
				p->wait_until = due;
			if (chunk < p->cap)
				p->cap = chunk;
			if (newly)
				note(p, r, 0);
			break;
		}
		default:
			break;
		}
	}
}

static void account(struct hb_fstate *st, unsigned dir, size_t n)
{
	st->bytes[dir == HB_FDIR_IN ? 0 : 1] += n;
	for (uint32_t k = 0; k < st->nrules; k++) {
		struct frule *r = &st->r[k];

		if (r->active && !r->done && (hb_cfg.faults[r->idx].dir & dir))
			r->moved[dir == HB_FDIR_IN ? 0 : 1] += n;
	}
}

/* Send a reset now and leave the socket unconnected (the application's
 * fd stays open): SO_LINGER {1, 0} makes the disconnect abortive, and
 * connect(AF_UNSPEC) disconnects a TCP socket on Linux, sending the RST. */
void hb_fault_reset_now(int fd)
{
	struct linger lg = { 1, 0 };
	struct sockaddr un;

	memset(&un, 0, sizeof(un));
	un.sa_family = AF_UNSPEC;
	hb_os_setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	hb_os_connect(fd, &un, sizeof(un));
}

/* Shorten m to at most cap bytes into out (iov: IOV_CAP entries). */
static void shorten(const struct msghdr *m, size_t cap, struct msghdr *out, struct iovec *iov)
{
	size_t i, left = cap;

	*out = *m;
	out->msg_iov = iov;
	for (i = 0; i < (size_t)m->msg_iovlen && i < IOV_CAP && left; i++) {
		iov[i] = m->msg_iov[i];
		if (iov[i].iov_len > left)
			iov[i].iov_len = left;
		left -= iov[i].iov_len;
	}
	out->msg_iovlen = i;
}

static size_t msg_len(const struct msghdr *m)
{
	size_t t = 0;

	for (size_t i = 0; m->msg_iov && i < (size_t)m->msg_iovlen && i < IOV_MAX; i++)
		t += m->msg_iov[i].iov_len;
	return t;
}

/* One read or write through the rules; see hb.h. */
static long fault_io(struct hb_conn *c, int fd, struct msghdr *m, int flags, unsigned dir,
		     hb_fault_next_fn next, int *injected)
{
	struct hb_fstate *st = hb_fault_of(c);
	size_t want = msg_len(m);
	int nb = (flags & MSG_DONTWAIT) || (hb_load_relaxed(&c->flags) & HB_CF_NONBLOCK);
	uint32_t tmo = 0, skip = 0, lat0 = 0;
	size_t slice0 = SIZE_MAX;
	uint64_t start = hb_os_now_ms(), hang_out = 0;
	struct plan p;
	int first = 1;

	*injected = 0;
	if (dir == HB_FDIR_IN && (hb_load_relaxed(&c->flags) & HB_APP_RCVTIMEO))
		tmo = hb_load_relaxed(&c->rcvtimeo_ms);
	if (dir == HB_FDIR_OUT && (hb_load_relaxed(&c->flags) & HB_APP_SNDTIMEO))
		tmo = hb_load_relaxed(&c->sndtimeo_ms);
	for (;;) {
		uint64_t now = hb_os_now_ms(), until = 0;
		struct msghdr sm;
		struct iovec iov[IOV_CAP];
		long r;
		int reset_state;

		memset(&p, 0, sizeof(p));

		if (st->connect_until && now < st->connect_until) {
			/* A delayed non-blocking connect is still on. */
			*injected = 1;
			if (nb)
				return -EAGAIN;
			if (hb_fault_nap(st->connect_until - now > SLICE_MS ? SLICE_MS
								   : st->connect_until - now) ==
				    -EINTR &&
			    hb_fault_intr_fails(tmo))
				return -EINTR;
			continue;
		}
		lock(st);
		reset_state = st->reset;
		if (reset_state == 1)
			st->reset = 2; /* a reset sent while the app waited in poll */
		if (!reset_state) {
			plan_call(st, dir, want, now, first, &skip, &p);
			if (first) {
				slice0 = p.slice_cap;
				lat0 = p.latency;
			} else if (p.latency) {
				p.latency = lat0; /* the jitter rolled on the first pass */
			}
			if (slice0 < p.cap)
				p.cap = slice0;
			if (p.reset)
				st->reset = 2;
			if (p.latency && dir == HB_FDIR_IN && st->r[p.lat_rule].held_ms)
				until = st->r[p.lat_rule].held_ms + p.latency;
		}
		unlock(st);
		if (reset_state) {
			/* As after a reset from the peer: the first call fails
			 * ECONNRESET, then reads see EOF and writes EPIPE. */
			*injected = 1;
			if (reset_state == 1)
				return -ECONNRESET;
			return dir == HB_FDIR_IN ? 0 : -EPIPE;
		}
		for (int i = 0; i < p.nrec; i++)
			hb_fault_record(fd, c, &hb_cfg.faults[p.rec[i].idx], dir, p.rec[i].err, NULL, 0);
		first = 0;
		*injected = 1;
		if (p.reset) {
			hb_fault_reset_now(fd);
			return -ECONNRESET;
		}
		if (p.err)
			return -p.err;
		if (p.eof)
			return 0;
		if (p.hang && dir == HB_FDIR_OUT) {
			/* Accepted and lost, as into a socket buffer that
			 * never drains, up to one buffer's worth. */
			int sndbuf = 0;
			socklen_t sl = sizeof(sndbuf);

			if (hb_os_getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &sl) < 0)
				sndbuf = 0;
			lock(st);
			for (uint32_t k = 0; k < st->nrules; k++)
				if (hb_cfg.faults[st->r[k].idx].action == HB_FA_HANG &&
				    st->r[k].active)
					hang_out = st->r[k].moved[1];
			if (want && hang_out < (uint64_t)sndbuf) {
				size_t n = want;

				if (n > (uint64_t)sndbuf - hang_out)
					n = (size_t)((uint64_t)sndbuf - hang_out);
				account(st, dir, n);
				unlock(st);
				return (long)n;
			}
			unlock(st);
		}
		if (p.hang || (p.wait_until && p.wait_until > now) || (until && until > now) ||
		    (p.latency && dir == HB_FDIR_IN && !until)) {
			uint64_t wait_to = p.hang ? now + SLICE_MS : until > now ? until : p.wait_until;

			if (p.latency && dir == HB_FDIR_IN && !until) {
				/* Not yet seen data: is some there now? */
				short rev = 0;

				if (hb_os_poll1(fd, POLLIN, 0, &rev) > 0) {
					lock(st);
					if (p.lat_rule >= 0 && !st->r[p.lat_rule].held_ms)
						st->r[p.lat_rule].held_ms = now;
					unlock(st);
					continue;
				}
				if (nb) {
					*injected = 0;
					return next(c, fd, m, flags);
				}
				/* Block until something comes, in slices. */
				if (hb_os_poll1(fd, POLLIN, SLICE_MS, &rev) == -EINTR &&
				    hb_fault_intr_fails(tmo))
					return -EINTR;
				if (tmo && hb_os_now_ms() - start >= tmo)
					return -EAGAIN;
				continue;
			}
			if (nb) {
				if (dir == HB_FDIR_IN)
					hb_add_relaxed(&st->held_eagains, 1);
				return -EAGAIN;
			}
			if (tmo && now - start >= tmo)
				return -EAGAIN;
			if (wait_to > now + SLICE_MS)
				wait_to = now + SLICE_MS;
			if (tmo && wait_to > start + tmo)
				wait_to = start + tmo;
			if (hb_fault_nap(wait_to > now ? wait_to - now : 0) == -EINTR && hb_fault_intr_fails(tmo))
				return -EINTR;
			continue;
		}
		if (p.latency && dir == HB_FDIR_OUT) {
			/* Writes leave that much later: wait, then send. */
			uint64_t to = start + p.latency;

			while ((now = hb_os_now_ms()) < to)
				if (hb_fault_nap(to - now > SLICE_MS ? SLICE_MS : to - now) == -EINTR &&
				    hb_fault_intr_fails(tmo))
					return -EINTR;
		}
		if ((p.next_trigger || hb_cfg.control_path[0]) && dir == HB_FDIR_IN && !nb) {
			/* A blocking read while a timed trigger is ahead (or
			 * live control may trigger one): wait for data only
			 * until then, then plan again. */
			uint64_t to = p.next_trigger ? p.next_trigger : UINT64_MAX;

			if (hb_cfg.control_path[0] && to > now + CTL_SLICE_MS)
				to = now + CTL_SLICE_MS;
			short rev = 0;
			long pr;

			if (tmo && start + tmo < to)
				to = start + tmo;
			pr = hb_os_poll1(fd, POLLIN, to > now ? (int)(to - now < INT_MAX ? to - now : INT_MAX) : 0,
					 &rev);
			if (pr == -EINTR && hb_fault_intr_fails(tmo))
				return -EINTR;
			if (pr <= 0) {
				if (tmo && hb_os_now_ms() - start >= tmo)
					return -EAGAIN;
				continue;
			}
		}
		*injected = 0;
		if (p.cap < want) {
			shorten(m, p.cap, &sm, iov);
			r = next(c, fd, &sm, flags);
			if (dir == HB_FDIR_IN && r >= 0 && m->msg_name)
				m->msg_namelen = sm.msg_namelen;
			if (dir == HB_FDIR_IN && r >= 0) {
				m->msg_flags = sm.msg_flags;
				m->msg_controllen = sm.msg_controllen;
			}
		} else {
			r = next(c, fd, m, flags);
		}
		if (r > 0 && !(flags & MSG_PEEK)) {
			short rev = 0;
			/* Bytes still waiting came no later than those just
			 * delivered: they are due already. A drained socket
			 * starts the next chunk's clock afresh. */
			int drained = dir == HB_FDIR_IN && p.lat_rule >= 0 &&
				      hb_os_poll1(fd, POLLIN, 0, &rev) == 0;

			lock(st);
			account(st, dir, (size_t)r);
			if (drained)
				st->r[p.lat_rule].held_ms = 0;
			unlock(st);
		}
		return r;
	}
}

long hb_fault_recv(struct hb_conn *c, int fd, struct msghdr *m, int flags, hb_fault_next_fn next,
		   int *injected)
{
	return fault_io(c, fd, m, flags, HB_FDIR_IN, next, injected);
}

long hb_fault_send(struct hb_conn *c, int fd, const struct msghdr *m, int flags,
		   hb_fault_next_fn next, int *injected)
{
	struct msghdr copy = *m;

	return fault_io(c, fd, &copy, flags, HB_FDIR_OUT, next, injected);
}

void hb_fault_rule_names(struct hb_fstate *st, struct hb_buf *out)
{
	for (uint32_t k = 0; k < st->nrules; k++) {
		if (k)
			hb_buf_putc(out, ',');
		hb_buf_puts(out, hb_cfg.faults[st->r[k].idx].name);
	}
}
