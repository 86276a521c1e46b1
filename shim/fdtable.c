/*
 * fdtable.c - per-fd state: a lock-free two-level table with a close guard.
 *
 * hb_fd_chunks[fd >> 12] points to a chunk of 4096 entries, mapped on first
 * use and installed with CAS, so a process allowed 1,048,576 fds pays for
 * the chunks it touches only. Each entry holds one atomic word
 *
 *     state (EMPTY / ACTIVE / CLOSING) | busy count | generation
 *
 * and the pointer to the connection (the open file description's state,
 * shared by dup'd fds). Only the background thread raises the busy count,
 * around the shim-originated operations it performs on an application fd;
 * application threads never wait for each other here.
 *
 * Close order (DESIGN.md draws it): CAS ACTIVE -> CLOSING, wait until busy
 * is 0, clear the connection pointer, store EMPTY with generation + 1, drop
 * the reference, and only then does the caller run the real close. Closing
 * first would let the kernel hand the number to a new file while the
 * background thread still writes to it.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "hb.h"

_Atomic(struct hb_fdent *) hb_fd_chunks[HB_FD_MAX >> HB_FD_CHUNK_SHIFT];

/* The entry the background thread is pinning (or about to); fork repair. */
static _Atomic(struct hb_fdent *) bg_cur;

struct hb_fdent *hb_fd_entry(int fd, int create)
{
	unsigned idx;
	struct hb_fdent *ch, *expect = NULL;
	size_t bytes = sizeof(struct hb_fdent) * HB_FD_CHUNK;

	if (fd < 0 || (unsigned)fd >= HB_FD_MAX)
		return NULL;
	idx = (unsigned)fd >> HB_FD_CHUNK_SHIFT;
	ch = hb_load_acquire(&hb_fd_chunks[idx]);
	if (!ch && create) {
		ch = hb_os_mmap(bytes);
		if (!ch)
			return NULL;
		if (!hb_cas_strong_acq_rel(&hb_fd_chunks[idx], &expect, ch)) {
			(void)hb_os_munmap(ch, bytes);
			ch = expect;
		}
	}
	return ch ? &ch[(unsigned)fd & (HB_FD_CHUNK - 1)] : NULL;
}

/* Wait until the background thread left the entry. It holds it only across
 * one non-blocking syscall, so spin briefly, then sleep in small steps. */
static uint64_t wait_idle(struct hb_fdent *e)
{
	uint64_t w;
	unsigned spins = 0;

	while (HB_FD_BUSY(w = hb_load_acquire(&e->word)) != 0) {
		if (++spins < 256)
			hb_cpu_relax();
		else
			hb_os_sleep_us(20);
	}
	return w;
}

/* Remove fd from c's fd slots and drop its reference. */
static void release(struct hb_conn *c, int fd)
{
	uint32_t fl;

	for (int i = 0; i < HB_CONN_FDS; i++) {
		int expect = fd;

		if (hb_cas_strong_acq_rel(&c->fds[i], &expect, -1))
			break;
	}
	if (hb_sub_acq_rel(&c->refs, 1) != 1)
		return;
	fl = hb_or_acq_rel(&c->flags, HB_CF_RELEASED);
	if (c->kind == HB_KIND_CONNECTED)
		hb_stat_add(hb_conn_public_mode(c) == HB_MODE_FRAME ? HB_ST_CONN_FRAME
									 : HB_ST_CONN_KEEPALIVE,
			    -1);
	if (fl & HB_CF_SCHEDULED) {
		/* The background thread may hold it on its wheel: it reclaims
		 * (the push wakes it through the hook init.c registered). */
		hb_conn_push_reap(c);
	} else {
		hb_conn_free(c);
	}
}

/* CLOSING -> cleared -> EMPTY(gen + 1); returns the connection. */
static struct hb_conn *finish(struct hb_fdent *e, uint64_t w)
{
	struct hb_conn *c = hb_load_acquire(&e->conn);

	hb_store_release(&e->conn, NULL);
	hb_store_release(&e->word, HB_FD_MAKE(HB_FD_EMPTY, 0, HB_FD_GEN(w) + 1));
	return c;
}

/* Mark an ACTIVE entry CLOSING and wait for the background thread.
 * Returns the word, or 0 if the entry was not ACTIVE. */
static uint64_t begin_close(struct hb_fdent *e)
{
	uint64_t w = hb_load_acquire(&e->word);

	for (;;) {
		if (HB_FD_STATE(w) != HB_FD_ACTIVE)
			return 0;
		if (hb_cas_acq_rel(&e->word, &w, (w & ~3ull) | HB_FD_CLOSING))
			break;
	}
	return wait_idle(e) | 0; /* state CLOSING, busy 0 */
}

static int forget_entry(struct hb_fdent *e, int fd)
{
	uint64_t w = begin_close(e);
	struct hb_conn *c;

	if (!w)
		return 0;
	c = finish(e, w);
	if (c)
		release(c, fd);
	return 1;
}

int hb_fd_install(int fd, struct hb_conn *c)
{
	struct hb_fdent *e = hb_fd_entry(fd, 1);
	uint64_t w;
	int slot;

	if (!e)
		return -ENOMEM;
	/* An ACTIVE entry here means its fd was closed where we could not see
	 * it (fclose of an fdopen'd socket, a raw syscall): purge it. */
	forget_entry(e, fd);
	w = hb_load_acquire(&e->word);
	if (HB_FD_STATE(w) != HB_FD_EMPTY)
		return -EBUSY; /* a concurrent close of the same number: leave it */
	hb_add_acq_rel(&c->refs, 1);
	for (slot = 0; slot < HB_CONN_FDS; slot++) {
		int expect = -1;

		if (hb_load_relaxed(&c->fds[slot]) != -1)
			continue;
		hb_store_relaxed(&c->fdgens[slot], HB_FD_GEN(w));
		if (hb_cas_strong_acq_rel(&c->fds[slot], &expect, fd))
			break;
	}
	hb_store_release(&e->conn, c);
	hb_store_release(&e->word, HB_FD_MAKE(HB_FD_ACTIVE, 0, HB_FD_GEN(w)));
	return 0;
}

int hb_fd_forget(int fd)
{
	struct hb_fdent *e = hb_fd_entry(fd, 0);

	return e ? forget_entry(e, fd) : 0;
}

int hb_fd_forget_begin(int fd)
{
	struct hb_fdent *e = hb_fd_entry(fd, 0);

	return e && begin_close(e) != 0;
}

void hb_fd_forget_end(int fd, int ok)
{
	struct hb_fdent *e = hb_fd_entry(fd, 0);
	uint64_t w;
	struct hb_conn *c;

	if (!e)
		return;
	w = hb_load_acquire(&e->word);
	if (HB_FD_STATE(w) != HB_FD_CLOSING)
		return;
	if (!ok) {
		hb_store_release(&e->word, HB_FD_MAKE(HB_FD_ACTIVE, 0, HB_FD_GEN(w)));
		return;
	}
	c = finish(e, w);
	if (c)
		release(c, fd);
}

void hb_fd_forget_range(unsigned lo, unsigned hi)
{
	if (lo >= HB_FD_MAX)
		return;
	if (hi >= HB_FD_MAX)
		hi = HB_FD_MAX - 1;
	for (unsigned fd = lo; fd <= hi;) {
		struct hb_fdent *ch = hb_load_acquire(&hb_fd_chunks[fd >> HB_FD_CHUNK_SHIFT]);
		unsigned end = (fd | (HB_FD_CHUNK - 1));

		if (end > hi)
			end = hi;
		if (ch) {
			for (unsigned i = fd; i <= end; i++) {
				struct hb_fdent *e = &ch[i & (HB_FD_CHUNK - 1)];

				if (HB_FD_STATE(hb_load_relaxed(&e->word)) == HB_FD_ACTIVE)
					forget_entry(e, (int)i);
			}
		}
		if (end == HB_FD_MAX - 1)
			break;
		fd = end + 1;
	}
}

int hb_fd_pin(struct hb_conn *c, struct hb_fdent **ent)
{
	for (int i = 0; i < HB_CONN_FDS; i++) {
		int fd = hb_load_acquire(&c->fds[i]);
		uint32_t gen = hb_load_relaxed(&c->fdgens[i]);
		struct hb_fdent *e;
		uint64_t w;

		if (fd < 0 || !(e = hb_fd_entry(fd, 0)))
			continue;
		hb_store_release(&bg_cur, e);
		hb_fence_seq_cst();
		w = hb_load_acquire(&e->word);
		for (;;) {
			if (HB_FD_STATE(w) != HB_FD_ACTIVE || HB_FD_GEN(w) != gen)
				break;
			if (hb_cas_acq_rel(&e->word, &w, w + HB_FD_BUSY_ONE))
				goto pinned;
		}
		hb_store_release(&bg_cur, NULL);
		continue;
pinned:
		if (hb_load_acquire(&e->conn) != c ||
		    (c->cookie && hb_os_cookie(fd) != c->cookie)) {
			/* Same number, another file: closed behind our back. */
			hb_or_acq_rel(&c->flags, HB_CF_LOST);
			hb_fd_unpin(e);
			continue;
		}
		*ent = e;
		return fd;
	}
	return -1;
}

void hb_fd_unpin(struct hb_fdent *e)
{
	hb_sub_acq_rel(&e->word, HB_FD_BUSY_ONE);
	hb_store_release(&bg_cur, NULL);
}

void hb_fd_after_fork_child(void)
{
	struct hb_fdent *e = hb_load_acquire(&bg_cur);
	uint64_t w;

	if (!e)
		return;
	/* The thread that pinned it does not exist here. */
	w = hb_load_acquire(&e->word);
	while (HB_FD_BUSY(w) && !hb_cas_acq_rel(&e->word, &w, w & ~(0xffffull << 2)))
		;
	hb_store_release(&bg_cur, NULL);
}

void hb_fd_foreach(void (*fn)(int fd, struct hb_conn *c, void *arg), void *arg)
{
	for (unsigned k = 0; k < (HB_FD_MAX >> HB_FD_CHUNK_SHIFT); k++) {
		struct hb_fdent *ch = hb_load_acquire(&hb_fd_chunks[k]);

		if (!ch)
			continue;
		for (unsigned i = 0; i < HB_FD_CHUNK; i++) {
			struct hb_conn *c;

			if (HB_FD_STATE(hb_load_acquire(&ch[i].word)) != HB_FD_ACTIVE)
				continue;
			c = hb_load_acquire(&ch[i].conn);
			if (c)
				fn((int)(k * HB_FD_CHUNK + i), c, arg);
		}
	}
}
