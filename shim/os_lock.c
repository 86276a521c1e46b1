/*
 * os_lock.c - a small futex lock whose owner value is the thread id.
 *
 * The lock is one 32-bit word: 0 free, else the owner's tid, with
 * LOCK_WAITERS set once someone sleeps on it (hb_os_futex_wait). The owner
 * value lets a thread that already holds the lock be told (EDEADLK)
 * instead of deadlocking, as a signal handler re-entering the shim on the
 * same lock would. The shim's background thread (hb_thread_tid) holds a
 * lock for microseconds only and never waits for one; application threads
 * may hold one for as long as a call blocks in the kernel. hb_lock_io
 * states what an application call does about that; hb_lock_unless_app what
 * the shim's own work does. The locks know nothing of what they protect
 * (framed connections use two: hb_types.h's rxlock and txlock).
 */
#include <errno.h>

#include "hb_os.h"
#include "atomic.h"

#define LOCK_WAITERS 0x80000000u

_Atomic uint32_t hb_thread_tid;

/* The calling thread's id, the owner value of our locks. Cached per thread;
 * a forked child's only thread starts with its parent's cache and resets it
 * (hb_lock_forget_tid): a stale id would let that thread and a later
 * thread that gets the parent's id after it exits both "own" a lock. */
static __thread uint32_t cached_tid __attribute__((tls_model("initial-exec")));

uint32_t hb_self_tid(void)
{
	uint32_t tid;

	if (HB_LIKELY(cached_tid))
		return cached_tid;
	tid = (uint32_t)hb_os_gettid();
	/* A vfork child runs on its parent thread's TLS: caching its own id
	 * there would leave that thread owning locks under a dead process's
	 * id after the exec. */
	if (!hb_self_pid || hb_os_getpid() == hb_self_pid)
		cached_tid = tid;
	return tid;
}

void hb_lock_forget_tid(void)
{
	cached_tid = 0;
}

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

int hb_lock_held_by_app(_Atomic uint32_t *l)
{
	uint32_t cur = hb_load_relaxed(l) & ~LOCK_WAITERS;

	return cur && cur != hb_load_relaxed(&hb_thread_tid);
}

/* The background thread holds the lock for microseconds only, and is
 * waited for (at most a few milliseconds). */
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

/* A non-blocking call never waits behind another application thread (one
 * blocked in the kernel holds the lock for as long as it waits): it fails
 * with EAGAIN as the kernel would have had nothing for it. */
int hb_lock_io(_Atomic uint32_t *l, int nb)
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
