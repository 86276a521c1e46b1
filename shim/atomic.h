/*
 * atomic.h - the only place hbshim spells out C11 atomics.
 *
 * Every access names its memory order, so a reader sees at the call site
 * what each load and store promises (the mimalloc convention). Fields that
 * are accessed through these macros are declared _Atomic and carry a comment
 * saying who writes and who reads them.
 */
#ifndef HB_ATOMIC_H
#define HB_ATOMIC_H

#include <stdatomic.h>

/* Signal handlers, vfork children and the background thread share these
 * fields: every width the shim uses must be lock-free on every target
 * (x86-64, arm64: make arm64 checks it). */
_Static_assert(ATOMIC_CHAR_LOCK_FREE == 2 && ATOMIC_SHORT_LOCK_FREE == 2 &&
		       ATOMIC_INT_LOCK_FREE == 2 && ATOMIC_LLONG_LOCK_FREE == 2 &&
		       ATOMIC_POINTER_LOCK_FREE == 2,
	       "hbshim needs lock-free atomics");

#define hb_load_relaxed(p) atomic_load_explicit((p), memory_order_relaxed)
#define hb_load_acquire(p) atomic_load_explicit((p), memory_order_acquire)
#define hb_store_relaxed(p, v) atomic_store_explicit((p), (v), memory_order_relaxed)
#define hb_store_release(p, v) atomic_store_explicit((p), (v), memory_order_release)
#define hb_xchg_acq_rel(p, v) atomic_exchange_explicit((p), (v), memory_order_acq_rel)
#define hb_cas_acq_rel(p, expp, v)                                                   \
	atomic_compare_exchange_weak_explicit((p), (expp), (v), memory_order_acq_rel, \
					      memory_order_acquire)
#define hb_cas_strong_acq_rel(p, expp, v)                                              \
	atomic_compare_exchange_strong_explicit((p), (expp), (v), memory_order_acq_rel, \
						memory_order_acquire)
#define hb_add_relaxed(p, v) atomic_fetch_add_explicit((p), (v), memory_order_relaxed)
#define hb_add_acq_rel(p, v) atomic_fetch_add_explicit((p), (v), memory_order_acq_rel)
#define hb_sub_acq_rel(p, v) atomic_fetch_sub_explicit((p), (v), memory_order_acq_rel)
#define hb_or_acq_rel(p, v) atomic_fetch_or_explicit((p), (v), memory_order_acq_rel)
#define hb_and_acq_rel(p, v) atomic_fetch_and_explicit((p), (v), memory_order_acq_rel)
#define hb_fence_seq_cst() atomic_thread_fence(memory_order_seq_cst)

static inline void hb_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

#endif
