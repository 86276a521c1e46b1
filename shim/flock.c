/*
 * flock.c - the two small futex locks of a framed connection.
 *
 * rxlock serialises the decoder state, txlock the encoder state, so two
 * application threads never interleave inside a frame. Application threads
 * take them (hb_lock_fd for a call on fd); the background thread only ever
 * try-locks them, so it never waits behind a blocked application call and
 * never blocks one. Lock order is rx before tx; a writer never waits for
 * rxlock while holding txlock. The owner value is the thread id, so a
 * signal handler re-entering the shim on the same connection is told
 * (EDEADLK) instead of deadlocking.
 */
#include <errno.h>

#include "hb.h"
#include "frame_int.h"

#define LOCK_WAITERS 0x80000000u

/* The calling thread's id, the owner value of our locks. Cached per thread;
 * a forked child's only thread starts with its parent's cache and resets it
 * (hb_frame_atfork_child): a stale id would let that thread and a later
 * thread that gets the parent's id after it exits both "own" a lock. */
static __thread uint32_t cached_tid __attribute__((tls_model("initial-exec")));

uint32_t hb_self_tid(void)
{
	if (!cached_tid)
		cached_tid = (uint32_t)hb_os_gettid();
	return cached_tid;
}

void hb_lock_forget_tid(void)
{
	cached_tid = 0;
}

/* 0, or -EDEADLK when this thread already holds it (a signal handler
 * re-entering the shim on the same connection). */
int hb_lock(_Atomic uint32_t *l)
{
	uint32_t me = hb_self_tid(), cur = 0;

	for (int spin = 0;; spin++) {
		cur = 0;
		if (hb_cas_acq_rel(l, &cur, me))
			return 0;
		if ((cur & ~LOCK_WAITERS) == me)
			return -EDEADLK;
		if (spin < 100) {
			hb_cpu_relax();
			continue;
		}
		if (!(cur & LOCK_WAITERS) && !hb_cas_acq_rel(l, &cur, cur | LOCK_WAITERS))
			continue;
		hb_os_futex_wait(l, cur | LOCK_WAITERS, 50);
	}
}

int hb_trylock(_Atomic uint32_t *l)
{
	uint32_t cur = 0;

	return hb_cas_strong_acq_rel(l, &cur, hb_self_tid());
}

/* Whether an application thread holds the lock (the caller's own included):
 * one blocked in the kernel may hold it for as long as it waits. */
int hb_lock_held_by_app(_Atomic uint32_t *l)
{
	uint32_t cur = hb_load_relaxed(l) & ~LOCK_WAITERS;

	return cur && cur != hb_load_relaxed(&hb_thread_tid);
}

/* The lock, unless an application thread holds it (one blocked in a read
 * may hold it for long); the background thread holds it for microseconds
 * only, and is waited for (at most a few milliseconds). */
int hb_lock_unless_app(_Atomic uint32_t *l)
{
	for (int spin = 0; spin < 2000; spin++) {
		if (hb_trylock(l))
			return 1;
		if (hb_lock_held_by_app(l))
			return 0;
		if (spin < 100)
			hb_cpu_relax();
		else
			hb_os_sleep_us(1);
	}
	return 0;
}

/* For the application's calls: a non-blocking one never waits behind
 * another application thread (one blocked in the kernel holds the lock for
 * as long as it waits); it fails with EAGAIN as the kernel would have had
 * nothing for it. 0 or -EAGAIN. */
static int lock_io(_Atomic uint32_t *l, int nb)
{
	if (nb)
		return hb_lock_unless_app(l) ? 0 : -EAGAIN;
	return hb_lock(l) < 0 ? -EAGAIN : 0;
}

void hb_unlock(_Atomic uint32_t *l)
{
	if (hb_xchg_acq_rel(l, 0) & LOCK_WAITERS)
		hb_os_futex_wake(l);
}

/* Whether fd still refers to c. A close from another application thread
 * does not wait for a call blocked in the kernel (the kernel's close does
 * not either), so once a blocking system call returned, the number may
 * have been closed and reused for another file: an application thread
 * looks before it makes another system call on fd, and a framed call
 * then ends with what it has, or EBADF. (The use count keeps c itself
 * alive.) */
int hb_fd_is(const struct hb_conn *c, int fd)
{
	return hb_fd_conn(fd) == c;
}

/* lock_io for a call on fd: a thread that waited for the lock behind one
 * blocked in the kernel may find fd closed when it gets it. 0, -EAGAIN or
 * -EBADF (the lock not held then). */
int hb_lock_fd(const struct hb_conn *c, int fd, _Atomic uint32_t *l, int nb)
{
	int r = lock_io(l, nb);

	if (r == 0 && !hb_fd_is(c, fd)) {
		hb_unlock(l);
		r = -EBADF;
	}
	return r;
}
