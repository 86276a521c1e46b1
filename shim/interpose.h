/*
 * interpose.h - helpers shared by the interposers (i_*.c) only.
 *
 * REAL(name, fallback, args...) calls the next definition of name, binding
 * symbols first if needed; before binding succeeds (recursion from dlsym's
 * own allocations, or a concurrent first call) it evaluates fallback, the
 * OS layer's system call in libc's -1/errno convention
 * (LIBC_RET(hb_os_...)). REAL_NOBIND never binds: close-like paths use it
 * (no dlsym there, ever).
 */
#ifndef HB_INTERPOSE_H
#define HB_INTERPOSE_H

#include <errno.h>
#include <unistd.h>

#include "hb.h"

#define REAL_PTR(name) __atomic_load_n(&hb_real.name, __ATOMIC_ACQUIRE)

#define REAL(name, fallback, ...)                                  \
	({                                                         \
		__typeof__(hb_real.name) fn_ = REAL_PTR(name);     \
		if (HB_UNLIKELY(!fn_)) {                           \
			hb_real_bind();                            \
			fn_ = REAL_PTR(name);                      \
		}                                                  \
		fn_ ? fn_(__VA_ARGS__) : (fallback);               \
	})

#define REAL_NOBIND(name, fallback, ...)                           \
	({                                                         \
		__typeof__(hb_real.name) fn_ = REAL_PTR(name);     \
		fn_ ? fn_(__VA_ARGS__) : (fallback);               \
	})

/* An OS-layer result (value or -errno) in libc's convention, for the
 * fallbacks of REAL: int, and ssize_t for the byte counts. */
#define LIBC_RET_SSIZE(expr)                                       \
	({                                                         \
		long r_ = (expr);                                  \
		if (r_ < 0) {                                      \
			errno = (int)-r_;                          \
			r_ = -1;                                   \
		}                                                  \
		(ssize_t)r_;                                       \
	})
#define LIBC_RET(expr) ((int)LIBC_RET_SSIZE(expr))

/* A connection usable by the I/O paths: tracked and not lost. */
static inline int hb_conn_usable(const struct hb_conn *c)
{
	return !(hb_load_relaxed(&c->flags) & HB_CF_LOST);
}

/* i_socket.c: the bookkeeping before a tracked fd goes away (the framed
 * close and linger, the close event, the table entry), nothing in a vfork
 * child; errno preserved. App threads (close, fclose). */
void hb_sock_forget(int fd);

#endif
