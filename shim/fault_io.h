/*
 * fault_io.h - the fault runtime's interface to the other fault files
 * (fault_connect.c, fault_poll.c): the state bound to a connection with
 * fault rules, its lock, the generator, and what fault_io.c exports to
 * them. Nothing outside the fault files includes it.
 */
#ifndef HB_FAULT_IO_H
#define HB_FAULT_IO_H

#include "hb.h"

#define CTL_SLICE_MS 100 /* with live control: how soon a waiting call sees a trigger */

/* A bound rule's progress on one connection. */
struct frule {
	uint8_t idx;       /* hb_cfg.faults[idx] */
	uint8_t active;    /* trigger met: since_ms is the start of its window */
	uint8_t done;      /* fired once (one-shot) or its window is over */
	uint8_t hit;       /* limit_data: the limit was reached (event sent) */
	uint32_t kick_seen; /* hb_fault_kick[idx] last acted on (live control) */
	uint32_t calls;    /* matching calls so far */
	uint64_t since_ms; /* when the trigger was met */
	uint64_t moved[2]; /* bytes in, out since then (each direction its own
			      limit and rate) */
	uint64_t held_ms;  /* latency (in): when waiting data was first seen */
};

struct hb_fstate {
	_Atomic uint32_t lock; /* guards everything below; never held over a syscall */
	uint32_t nrules;
	uint32_t ordinal;      /* connection number in this process (seeding) */
	int reset;             /* 1: reset sent (from a poll wait), 2: ECONNRESET reported */
	uint64_t connect_until; /* non-blocking connect under "delay": in progress
				   for the application until then (0: none) */
	_Atomic uint32_t held_eagains; /* non-blocking reads that found their data
					  held (fault_poll.c re-arms the edge-
					  triggered registrations of the fd) */
	uint64_t opened_ms;
	uint64_t rng;
	uint64_t bytes[2];     /* application bytes in, out */
	struct frule r[HB_MAX_FAULTS];
};

/* The state's lock: short sections, never held over a system call. */
static inline void lock(struct hb_fstate *st)
{
	uint32_t z;

	for (;;) {
		z = 0;
		if (hb_cas_strong_acq_rel(&st->lock, &z, 1))
			return;
		hb_os_sleep_us(0);
	}
}

static inline void unlock(struct hb_fstate *st)
{
	hb_store_release(&st->lock, 0);
}

/* splitmix64: the generator of every random choice (advances *x). */
static inline uint64_t hb_fault_splitmix(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Sleep ms (the caller keeps each sleep short): 0, or -EINTR when a signal
 * arrived. Any app thread (fault_io.c). */
int hb_fault_nap(uint64_t ms);

/* A signal interrupted one of our waits inside the application's call
 * whose own timeout is tmo ms (0: none): does that call fail EINTR?
 * (fault_io.c) */
int hb_fault_intr_fails(uint32_t tmo);

/* Record one injected fault (event, counter, log). Any app thread. */
void hb_fault_record(int fd, const struct hb_conn *c, const struct hb_fault *f, unsigned dir,
		     int err, const struct sockaddr *peer, socklen_t peerlen);
/* Send a reset now; the socket is left unconnected, fd open. */
void hb_fault_reset_now(int fd);

#endif
