/*
 * fault_connect.c - HBSHIM_FAULTS when a connection is made: the connect
 * faults (refuse, timeout, delay, errno with call=connect) acted out in
 * connect() itself, and the binding of the data rules whose side and peer
 * match to the new connection's state (c->fault), seeded for reproducible
 * choices. What the rules then do to reads and writes is fault_io.c's.
 *
 * Seeding: HBSHIM_SEED, or a random seed per process; a connection's
 * generator is the seed mixed with its ordinal in the process, so a
 * program that makes its connections in the same order sees the same
 * faults with the same seed. Connect faults, made before a connection has
 * a state, draw from one process-wide generator.
 */
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <netinet/in.h>

#include "fault_io.h"

#define FSTATE_MAX 16384   /* connections with rules per process (then none) */

static struct hb_fstate *_Atomic pool;
static _Atomic uint32_t pool_used;
static _Atomic uint32_t ordinals;
static _Atomic uint32_t connect_calls[HB_MAX_FAULTS];
static _Atomic uint32_t connect_kick_seen[HB_MAX_FAULTS];
static _Atomic uint64_t proc_rng;
static _Atomic int seeded;


static uint64_t seed(void)
{
	if (hb_load_acquire(&seeded))
		return hb_cfg.seed_set ? hb_cfg.seed : hb_load_relaxed(&proc_rng);
	if (!hb_cfg.seed_set) {
		uint64_t s = 0;

		if (hb_os_getrandom(&s, sizeof(s)) != (long)sizeof(s))
			s = hb_os_now_ns() ^ ((uint64_t)hb_os_getpid() << 32);
		hb_store_relaxed(&proc_rng, s);
	}
	hb_store_release(&seeded, 1);
	return hb_cfg.seed_set ? hb_cfg.seed : hb_load_relaxed(&proc_rng);
}


/* A connection's fault state, from a pool mapped once and never freed. */
static struct hb_fstate *fstate_alloc(void)
{
	struct hb_fstate *p = hb_load_acquire(&pool);
	uint32_t i;

	if (!p) {
		struct hb_fstate *n = hb_os_mmap(sizeof(struct hb_fstate) * FSTATE_MAX), *z = NULL;

		if (!n)
			return NULL;
		if (!hb_cas_strong_acq_rel(&pool, &z, n)) {
			hb_os_munmap(n, sizeof(struct hb_fstate) * FSTATE_MAX);
			n = z;
		}
		p = n;
	}
	i = hb_add_relaxed(&pool_used, 1);
	if (i >= FSTATE_MAX) {
		if (i == FSTATE_MAX)
			hb_log(HB_LOG_WARN, "fault rules: more than %d connections; later ones "
			       "get no faults", FSTATE_MAX);
		return NULL;
	}
	return &p[i];
}

/* A listener whose accept queue is full (backlog 0, one connection never
 * accepted): the kernel drops further SYNs to it, so a connect there stays
 * in SYN_SENT exactly as toward a host that never answers, and the
 * program's own timeouts (blocking, SO_SNDTIMEO, poll) decide. */
struct blackhole {
	_Atomic int state; /* 0 none, 1 being made, 2 ready, 3 failed */
	struct sockaddr_storage addr;
	socklen_t len;
};
static struct blackhole holes[2]; /* AF_INET, AF_INET6 */

/* A loopback port bound and never listened on: the kernel answers a
 * connect there with a reset, so a refused connect (blocking: ECONNREFUSED;
 * non-blocking: EINPROGRESS, then POLLOUT|POLLERR|POLLHUP and SO_ERROR
 * ECONNREFUSED) is the kernel's own, for every kind of caller. The socket
 * stays open (and the port reserved) for the life of the process. */
static struct blackhole refusers[2];

/* A TCP socket bound to a free loopback port of family, listening with
 * backlog 0 if listening; its address in h. The fd, or -1. */
static long bound_loopback(struct blackhole *h, int family, int listening)
{
	struct sockaddr_storage ss;
	socklen_t len = family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
	long b;

	memset(&ss, 0, sizeof(ss));
	ss.ss_family = (sa_family_t)family;
	if (family == AF_INET)
		((struct sockaddr_in *)&ss)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	else
		((struct sockaddr_in6 *)&ss)->sin6_addr = in6addr_loopback;
	b = hb_os_socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (b < 0)
		return -1;
	if (hb_os_bind((int)b, (struct sockaddr *)&ss, len) < 0 ||
	    (listening && hb_os_listen((int)b, 0) < 0) ||
	    hb_os_getsockname((int)b, (struct sockaddr *)&h->addr, &len) < 0) {
		hb_os_close((int)b);
		return -1;
	}
	h->len = len;
	return b;
}

static int make_refuser(struct blackhole *h, int family)
{
	return bound_loopback(h, family, 0) < 0 ? -1 : 0;
}

static int make_hole(struct blackhole *h, int family)
{
	long l = bound_loopback(h, family, 1), f;
	short rev = 0;

	if (l < 0)
		return -1;
	f = hb_os_socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (f < 0) {
		hb_os_close((int)l);
		return -1;
	}
	hb_os_connect((int)f, (struct sockaddr *)&h->addr, h->len);
	/* The filler's handshake completes at once on loopback; both fds
	 * stay open for the life of the process. */
	if (hb_os_poll1((int)f, POLLOUT, 1000, &rev) <= 0 || (rev & (POLLERR | POLLHUP))) {
		hb_os_close((int)f);
		hb_os_close((int)l);
		return -1;
	}
	return 0;
}

/* The private address of a kind (holes or refusers) for a family, made on
 * first use; NULL when it cannot be. */
static const struct blackhole *hole(struct blackhole *kind, int family)
{
	struct blackhole *h = &kind[family == AF_INET ? 0 : 1];
	int s = hb_load_acquire(&h->state);

	if (s == 0 && hb_cas_strong_acq_rel(&h->state, &s, 1)) {
		int ok = kind == holes ? make_hole(h, family) : make_refuser(h, family);

		hb_store_release(&h->state, ok == 0 ? 2 : 3);
	}
	while ((s = hb_load_acquire(&h->state)) == 1)
		hb_os_sleep_us(1000);
	return s == 2 ? h : NULL;
}

static int is_connect_fault(const struct hb_fault *f)
{
	return f->action == HB_FA_REFUSE || f->action == HB_FA_TIMEOUT ||
	       f->action == HB_FA_DELAY || (f->action == HB_FA_ERRNO && f->call == HB_FCALL_CONNECT);
}

/* Process-wide roll for connect faults (connections have no state yet). */
static int roll(uint32_t ppm)
{
	uint64_t x, n;

	if (ppm >= 1000000)
		return 1;
	seed();
	x = hb_load_relaxed(&proc_rng);
	do {
		n = x;
		hb_fault_splitmix(&n);
	} while (!hb_cas_strong_acq_rel(&proc_rng, &x, n));
	{
		uint64_t y = x;

		return hb_fault_splitmix(&y) % 1000000 < ppm;
	}
}

int hb_fault_connect(int fd, struct hb_conn *c, const struct sockaddr **sa, socklen_t *len)
{
	struct hb_fstate *st = hb_fault_of(c);

	if (st && st->connect_until) {
		/* Asked again during a delayed non-blocking connect: as the
		 * kernel answers while the handshake is on; after it, the
		 * real connect answers (EISCONN). */
		if (hb_os_now_ms() < st->connect_until)
			return -EALREADY;
		return 0;
	}
	if (!hb_cfg.seed_set || !hb_load_relaxed(&seeded))
		seed();
	if (hb_cfg.seed_set && !hb_load_relaxed(&proc_rng)) {
		uint64_t z = 0, s = hb_cfg.seed ^ 0x5bd1e995ull;

		hb_cas_strong_acq_rel(&proc_rng, &z, s);
	}
	for (int i = 0; i < hb_cfg.nfaults; i++) {
		const struct hb_fault *f = &hb_cfg.faults[i];
		uint32_t n;

		uint32_t kick, seen;

		if (!is_connect_fault(f) || hb_load_relaxed(&hb_fault_off[i]) ||
		    !hb_rules_match(&f->peer, 1, *sa, *len))
			continue;
		n = hb_add_relaxed(&connect_calls[i], 1) + 1;
		kick = hb_load_relaxed(&hb_fault_kick[i]);
		seen = hb_load_relaxed(&connect_kick_seen[i]);
		if (kick != seen && hb_cas_strong_acq_rel(&connect_kick_seen[i], &seen, kick)) {
			/* "hbshim ctl trigger": this connect, whatever the trigger */
		} else if ((f->nth && n != f->nth) || !roll(f->prob_ppm)) {
			continue;
		}
		switch (f->action) {
		case HB_FA_REFUSE: {
			const struct blackhole *h = hole(refusers, (*sa)->sa_family);

			hb_fault_record(fd, c, f, 0, ECONNREFUSED, *sa, *len);
			if (!h)
				return -ECONNREFUSED; /* no private port: at once */
			*sa = (const struct sockaddr *)&h->addr;
			*len = h->len;
			return 0;
		}
		case HB_FA_ERRNO:
			hb_fault_record(fd, c, f, 0, (int)f->arg, *sa, *len);
			return -(int)f->arg;
		case HB_FA_DELAY: {
			uint64_t until = hb_os_now_ms() + f->arg, now;

			hb_fault_record(fd, c, f, 0, 0, *sa, *len);
			if ((hb_load_relaxed(&c->flags) & HB_CF_NONBLOCK) &&
			    (st = st ? st : fstate_alloc())) {
				/* Non-blocking: the connect is made now and is
				 * in progress for the application until then
				 * (reads and writes EAGAIN, not readable or
				 * writable to poll, select, epoll). */
				st->connect_until = until;
				hb_store_release(&c->fault, st);
				return 1;
			}
			while ((now = hb_os_now_ms()) < until)
				if (hb_fault_nap(until - now) == -EINTR)
					return -EINTR;
			break;
		}
		case HB_FA_TIMEOUT: {
			const struct blackhole *h = hole(holes, (*sa)->sa_family);

			if (!h) {
				hb_log(HB_LOG_WARN, "fd %d: fault %s: no private listener for "
				       "a timeout; connect left alone", fd, f->name);
				break;
			}
			hb_fault_record(fd, c, f, 0, 0, *sa, *len);
			*sa = (const struct sockaddr *)&h->addr;
			*len = h->len;
			return 0;
		}
		}
	}
	return 0;
}

void hb_fault_bind(int fd, struct hb_conn *c, const struct sockaddr *peer, socklen_t peerlen,
		   int accepted)
{
	struct sockaddr_storage ss;
	struct hb_fstate *st = hb_fault_of(c);
	uint64_t x;

	/* A state made by a delayed connect takes the rules; one that has
	 * them already (a second connect call) keeps them. */
	if (st && st->nrules)
		return;
	if (!peer) {
		peerlen = sizeof(ss);
		if (hb_os_getpeername(fd, (struct sockaddr *)&ss, &peerlen) < 0)
			return;
		peer = (struct sockaddr *)&ss;
	}
	for (int i = 0; i < hb_cfg.nfaults; i++) {
		const struct hb_fault *f = &hb_cfg.faults[i];

		if (is_connect_fault(f) ||
		    (f->side == HB_FSIDE_CONNECT && accepted) ||
		    (f->side == HB_FSIDE_ACCEPT && !accepted) ||
		    !hb_rules_match(&f->peer, 1, peer, peerlen))
			continue;
		if (hb_load_relaxed(&hb_fault_off[i]))
			continue;
		if (!st && !(st = fstate_alloc()))
			return;
		lock(st);
		st->r[st->nrules].kick_seen = hb_load_relaxed(&hb_fault_kick[i]);
		st->r[st->nrules].idx = (uint8_t)i;
		st->nrules++;
		unlock(st);
	}
	if (!st)
		return;
	st->opened_ms = hb_os_now_ms();
	st->ordinal = hb_add_relaxed(&ordinals, 1);
	x = seed() ^ ((uint64_t)st->ordinal * 0xd1342543de82ef95ull);
	hb_fault_splitmix(&x);
	st->rng = x;
	hb_store_release(&c->fault, st);
}

