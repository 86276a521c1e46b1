/*
 * conn.c - the connection pool and the lock-free stacks between threads.
 *
 * Connections live in chunks of CONN_CHUNK entries obtained with mmap and
 * never returned to the system: a stale pointer (an application thread that
 * looked a connection up, then lost a race with close) always points to
 * readable memory, and hb_conn.gen tells it the object was recycled. The
 * pool uses no malloc, so it works inside allocators' own calls and after
 * fork.
 *
 * Three intrusive stacks link connections by pool index (index + 1, 0 ends
 * a list):
 *   free  - Treiber stack, any thread pops (alloc), the background thread
 *           pushes (free); a 32-bit tag in the head word defeats ABA;
 *   inbox - app threads push new connections, the background thread takes
 *           the whole stack at once (no ABA: nobody pops single nodes);
 *   reap  - app threads push connections whose last fd closed; same.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hb.h"

#define CONN_CHUNK_SHIFT 10
#define CONN_CHUNK (1u << CONN_CHUNK_SHIFT)
#define CONN_MAX_CHUNKS 1024 /* 1,048,576 connections */

_Static_assert(sizeof(struct hb_conn) <= 256, "connection state must stay <= 256 bytes");

static _Atomic(struct hb_conn *) chunks[CONN_MAX_CHUNKS]; /* grower writes, all read */
static _Atomic uint32_t nchunks;     /* chunks published; grower writes */
static _Atomic uint64_t free_head;   /* tag << 32 | index + 1 */
static _Atomic uint32_t inbox_head;  /* index + 1 */
static _Atomic uint32_t reap_head;   /* index + 1 */
static _Atomic uint32_t in_use;      /* allocated connections */

struct hb_conn *hb_conn_at(uint32_t idx1)
{
	struct hb_conn *ch;

	if (!idx1 || idx1 > CONN_MAX_CHUNKS * CONN_CHUNK)
		return NULL;
	idx1--;
	ch = hb_load_acquire(&chunks[idx1 >> CONN_CHUNK_SHIFT]);
	return ch ? &ch[idx1 & (CONN_CHUNK - 1)] : NULL;
}

static void push_free(struct hb_conn *c)
{
	uint64_t old = hb_load_acquire(&free_head), nw;

	do {
		__atomic_store_n(&c->free_next, (uint32_t)old, __ATOMIC_RELAXED);
		nw = (((old >> 32) + 1) << 32) | c->self;
	} while (!hb_cas_acq_rel(&free_head, &old, nw));
}

static struct hb_conn *pop_free(void)
{
	uint64_t old = hb_load_acquire(&free_head), nw;
	struct hb_conn *c;

	for (;;) {
		c = hb_conn_at((uint32_t)old);
		if (!c)
			return NULL;
		nw = (((old >> 32) + 1) << 32) | __atomic_load_n(&c->free_next, __ATOMIC_RELAXED);
		if (hb_cas_acq_rel(&free_head, &old, nw))
			return c;
	}
}

/* Add one chunk; returns its first connection (not on the free list). */
static struct hb_conn *grow(void)
{
	uint32_t n = hb_load_acquire(&nchunks);
	size_t bytes = sizeof(struct hb_conn) * CONN_CHUNK;
	struct hb_conn *mem, *expect = NULL;

	if (n >= CONN_MAX_CHUNKS)
		return NULL;
	mem = hb_os_mmap(bytes);
	if (!mem)
		return NULL;
	for (uint32_t i = 0; i < CONN_CHUNK; i++)
		mem[i].self = n * CONN_CHUNK + i + 1;
	if (!hb_cas_strong_acq_rel(&chunks[n], &expect, mem)) {
		/* Another thread grew chunk n first: give ours back, use theirs. */
		(void)hb_os_munmap(mem, bytes);
		return NULL;
	}
	hb_store_release(&nchunks, n + 1);
	for (uint32_t i = CONN_CHUNK - 1; i >= 1; i--)
		push_free(&mem[i]);
	return &mem[0];
}

struct hb_conn *hb_conn_alloc(void)
{
	struct hb_conn *c;
	uint32_t self, gen;

	for (int tries = 0; tries < 4; tries++) {
		c = pop_free();
		if (!c)
			c = grow();
		if (!c)
			continue;
		self = c->self;
		gen = hb_load_relaxed(&c->gen);
		memset((char *)c, 0, sizeof(*c));
		c->self = self;
		hb_store_relaxed(&c->gen, gen);
		hb_store_relaxed(&c->refs, 0);
		for (int i = 0; i < HB_CONN_FDS; i++)
			hb_store_relaxed(&c->fds[i], -1);
		hb_add_relaxed(&in_use, 1);
		return c;
	}
	return NULL;
}

void hb_conn_free(struct hb_conn *c)
{
	hb_add_acq_rel(&c->gen, 1);
	hb_sub_acq_rel(&in_use, 1);
	push_free(c);
}

uint32_t hb_conn_in_use(void)
{
	return hb_load_relaxed(&in_use);
}

void hb_conn_push_inbox(struct hb_conn *c)
{
	uint32_t old = hb_load_acquire(&inbox_head);

	do {
		c->inbox_next = old;
	} while (!hb_cas_acq_rel(&inbox_head, &old, c->self));
}

static void (*_Atomic reap_hook)(void);

void hb_conn_on_reap(void (*fn)(void))
{
	hb_store_release(&reap_hook, fn);
}

void hb_conn_retry_reap(struct hb_conn *c)
{
	uint32_t old = hb_load_acquire(&reap_head);

	do {
		c->reap_next = old;
	} while (!hb_cas_acq_rel(&reap_head, &old, c->self));
}

void hb_conn_push_reap(struct hb_conn *c)
{
	void (*wake)(void);

	hb_conn_retry_reap(c);
	wake = hb_load_acquire(&reap_hook);
	if (wake)
		wake();
}

struct hb_conn *hb_conn_take_inbox(void)
{
	return hb_conn_at(hb_xchg_acq_rel(&inbox_head, 0));
}

struct hb_conn *hb_conn_take_reap(void)
{
	return hb_conn_at(hb_xchg_acq_rel(&reap_head, 0));
}
