/*
 * thread.c - the single background thread.
 *
 * Started lazily by the first connection that needs timers (never from the
 * constructor: creating threads there deadlocked tcmalloc programs; only
 * HBSHIM_CONTROL, served from load on, has init.c start it there), with
 * every signal blocked so no application handler ever runs on it. It sleeps
 * on a futex until the timer wheel's next due tick or a wake-up, then:
 *   1. takes the reap stack, then the inbox (in that order: a connection is
 *      pushed to the inbox before it can be pushed to reap, so a reaped
 *      connection was always seen first);
 *   2. links new connections into the wheel;
 *   3. unlinks and frees reaped ones;
 *   4. advances the wheel, running each due connection's next step;
 *   5. rewrites HBSHIM_STATS every STATS_PERIOD_MS;
 *   6. every period of the step registered from above (HBSHIM_CONTROL's
 *      server), runs it; its sleep never outlasts that period.
 * It holds no lock at any time; application threads talk to it through the
 * lock-free stacks of conn.c and the fd table's busy count.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "hb.h"

#define STATS_PERIOD_MS 2000

enum { PH_ARM = 0, PH_IDLE = 1, PH_DONE = 2 };
enum { TS_NONE = 0, TS_STARTING = 1, TS_RUNNING = 2, TS_FAILED = 3 };

static _Atomic int tstate;
static _Atomic uint32_t wake_word;
static _Atomic int need_rebuild; /* set in a forked child */
static _Atomic int atfork_done;
static struct hb_wheel wheel; /* background thread only */
static uint64_t rng;          /* background thread only */

static uint32_t rand32(void)
{
	/* xorshift64*: good enough to spread timers. */
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return (uint32_t)((rng * 2685821657736338717ull) >> 32);
}

/* Until frame.c's entry points are registered (init.c does it before any
 * connection exists): nothing framed to tick. */
static uint64_t no_tick(struct hb_conn *c, int fd, uint64_t now, uint64_t late)
{
	return 0;
}

static uint64_t no_linger_tick(struct hb_conn *c, int fd, uint64_t now)
{
	return 0;
}

static void no_notice(struct hb_conn *c, int fd, uint8_t reason, uint32_t silent_ms)
{
}

static void no_hook(void)
{
}

static const struct hb_frame_ops no_ops = { no_tick, no_linger_tick, no_notice,
					    no_hook, no_hook, no_hook };
static const struct hb_frame_ops *_Atomic fops_ptr = &no_ops;
#define fops (hb_load_acquire(&fops_ptr))

void hb_thread_set_frame_ops(const struct hb_frame_ops *ops)
{
	hb_store_release(&fops_ptr, ops);
}

/* Set once by the constructor, before the thread that reads them exists. */
static void (*periodic_step)(uint64_t now);
static uint32_t periodic_ms;

void hb_thread_set_periodic_step(void (*step)(uint64_t now), uint32_t every_ms)
{
	periodic_ms = every_ms ? every_ms : 1;
	periodic_step = step;
}

/*
 * Per-thread credentials. The kernel keeps capabilities, the keep-caps
 * flag and the securebits per thread; glibc changes uids and gids in every
 * thread at once (its setxid broadcast) and aborts the process when the
 * threads' answers differ. A program that keeps a capability in its own
 * thread only (proftpd's mod_cap: PR_SET_KEEPCAPS and capset, then
 * setresuid to nobody and later seteuid(0)) left this thread without it:
 * its seteuid failed here with EPERM and glibc aborted the program. So
 * such a call the application makes for its own thread is made here too
 * (hb_thread_mirror), before the application goes on: this thread holds
 * what the application's thread holds. One call at a time; the caller
 * waits at most MIRROR_WAIT_MS.
 */
#define MIRROR_WAIT_MS 1000
static _Atomic uint32_t mirror_lock;
static _Atomic uint32_t mirror_seq, mirror_done;
static long mirror_nr, mirror_arg[4], mirror_result;

static void mirror_run(void)
{
	uint32_t seq = hb_load_acquire(&mirror_seq);

	if (seq == hb_load_relaxed(&mirror_done))
		return;
	mirror_result = hb_os_syscall6(mirror_nr, mirror_arg[0], mirror_arg[1], mirror_arg[2],
				       mirror_arg[3], 0, 0);
	hb_store_release(&mirror_done, seq);
	hb_os_futex_wake(&mirror_done);
}

long hb_thread_mirror(long nr, long a0, long a1, long a2, long a3)
{
	uint32_t seq;
	uint64_t until;
	long r = -EAGAIN;

	if (hb_load_acquire(&tstate) != TS_RUNNING || hb_self_tid() == hb_load_relaxed(&hb_thread_tid))
		return 0; /* no thread yet: one started later copies its creator */
	if (hb_lock(&mirror_lock) < 0)
		return -EDEADLK;
	mirror_nr = nr;
	mirror_arg[0] = a0;
	mirror_arg[1] = a1;
	mirror_arg[2] = a2;
	mirror_arg[3] = a3;
	seq = hb_load_relaxed(&mirror_seq) + 1;
	hb_store_release(&mirror_seq, seq);
	hb_thread_wake();
	until = hb_os_now_ms() + MIRROR_WAIT_MS;
	for (;;) {
		uint32_t d = hb_load_acquire(&mirror_done);
		uint64_t now;

		if (d == seq) {
			r = mirror_result;
			break;
		}
		now = hb_os_now_ms();
		if (now >= until)
			break;
		hb_os_futex_wait(&mirror_done, d, (int64_t)(until - now));
	}
	hb_unlock(&mirror_lock);
	return r;
}

void hb_thread_wake(void)
{
	/* Bump even while the thread is starting: its futex_wait compares the
	 * word it read before taking the stacks, so nothing pushed is missed. */
	hb_add_acq_rel(&wake_word, 1);
	hb_os_futex_wake(&wake_word);
}

/* The idle deadline of a keepalive-mode connection: look again when due. */
static void idle_check(struct hb_conn *c, int fd, uint64_t now)
{
	uint64_t next = hb_idle_check(c, fd, now, fops->notice);

	if (next)
		hb_wheel_add(&wheel, c, next);
	else
		c->phase = PH_DONE;
}

static void fire(struct hb_conn *c, void *arg)
{
	uint64_t now = *(uint64_t *)arg;
	struct hb_fdent *ent;
	int fd;

	if (hb_load_acquire(&c->flags) & (HB_CF_RELEASED | HB_CF_LOST) ||
	    hb_load_acquire(&c->dead))
		return; /* lazily cancelled; reap frees it */
	fd = hb_fd_pin(c, &ent);
	if (fd < 0)
		return;
	if (c->kind == HB_KIND_LINGER) {
		uint64_t next = fops->linger_tick(c, fd, now);

		hb_fd_unpin(ent);
		if (next)
			hb_wheel_add(&wheel, c, next);
		else if (hb_fd_forget(fd))
			hb_os_close(fd); /* our private duplicate, never the app's */
		return;
	}
	if (c->mode == HB_MODE_FRAME) {
		uint64_t next;

		if (!(hb_load_relaxed(&c->flags) & HB_CF_KA_ARMED))
			hb_ka_arm(fd, c); /* the backstop */
		next = fops->tick(c, fd, now,
				  now > c->wexpires ? now - c->wexpires : 0);
		next = hb_idle_frame(c, fd, now, next, fops->notice);
		if (next) {
			hb_wheel_add(&wheel, c, next > now ? next : now + 1);
		} else if (c->mode == HB_MODE_KEEPALIVE && !hb_load_acquire(&c->dead)) {
			/* Settled as plain keepalive: continue as such. */
			c->phase = PH_ARM;
			hb_wheel_add(&wheel, c, now + 1);
		}
		hb_fd_unpin(ent);
		return;
	}
	switch (c->phase) {
	case PH_ARM:
		if (!(hb_load_relaxed(&c->flags) & HB_CF_TIMING)) {
			/* A non-blocking connect: options once established. */
			struct hb_tcp_info x;

			if (hb_os_tcp_info(fd, &x) == 0 && x.ti.tcpi_state == TCP_SYN_SENT) {
				if (hb_connect_expired(c, fd, now)) {
					c->phase = PH_DONE;
					break;
				}
				hb_wheel_add(&wheel, c, hb_connect_due(c, now + 50));
				break;
			}
			hb_ka_apply(fd, c);
			hb_or_acq_rel(&c->flags, HB_CF_TIMING);
		}
		hb_ka_arm(fd, c);
		c->phase = PH_IDLE;
		if (hb_cfg.idle_timeout_ms)
			idle_check(c, fd, now);
		else
			c->phase = PH_DONE;
		break;
	case PH_IDLE:
		idle_check(c, fd, now);
		break;
	default:
		break;
	}
	hb_fd_unpin(ent);
}

static void first_timer(struct hb_conn *c, uint64_t now)
{
	uint64_t due;

	if (c->wlinked || (hb_load_acquire(&c->flags) & HB_CF_RELEASED))
		return;
	c->phase = PH_ARM;
	if (c->mode == HB_MODE_FRAME) {
		/* Now: an accepted connection's hello may be waiting (and its
		 * window is short, the framed tick looks every millisecond), a
		 * client's may still be queued behind a non-blocking connect.
		 * Heartbeats are spread by a per-connection offset there. */
		hb_wheel_add(&wheel, c, now + 1);
		return;
	}
	due = c->opened_ms + (hb_ka_cfg.jitter_ms ? rand32() % hb_ka_cfg.jitter_ms : 0);
	/* A connect deadline shorter than that spread: look when it is due. */
	due = hb_connect_due(c, due);
	hb_wheel_add(&wheel, c, due > now ? due : now);
}

static void clear_link(int fd, struct hb_conn *c, void *arg)
{
	c->wlinked = 0;
	c->wprev = c->wnext = NULL;
}

static void relink(int fd, struct hb_conn *c, void *arg)
{
	uint64_t now = *(uint64_t *)arg;
	uint32_t fl = hb_load_acquire(&c->flags);

	if ((fl & HB_CF_SCHEDULED) && !(fl & HB_CF_RELEASED) && !c->wlinked) {
		if (c->mode == HB_MODE_FRAME) {
			/* Framed: heartbeats and liveness go on here (the tick
			 * stays passive until this process uses the stream). */
			first_timer(c, now);
		} else if (fl & HB_CF_KA_ARMED) {
			c->phase = PH_IDLE;
			if (hb_cfg.idle_timeout_ms)
				hb_wheel_add(&wheel, c, now + hb_cfg.idle_timeout_ms / 4);
		} else {
			first_timer(c, now);
		}
	}
}

/* In a forked child: the parent's wheel lists are meaningless here. */
static void rebuild(uint64_t now)
{
	struct hb_conn *c, *next, *reap = hb_conn_take_reap(), *in = hb_conn_take_inbox();

	hb_wheel_init(&wheel, now);
	/* Still reachable through the fd table; off the inbox now (before
	 * any is freed: a freed one could be reused and pushed again). */
	for (c = in; c; c = next) {
		next = hb_conn_at(c->inbox_next);
		hb_and_acq_rel(&c->flags, ~HB_CF_POKE);
	}
	for (c = reap; c; c = next) {
		next = hb_conn_at(c->reap_next);
		c->wlinked = 0;
		if (hb_load_acquire(&c->flags) & HB_CF_POKE)
			hb_conn_push_reap(c); /* pushed on the inbox since: later */
		else
			hb_conn_free(c);
	}
	hb_fd_foreach(clear_link, NULL);
	hb_fd_foreach(relink, &now);
}

/*
 * The window sweep (keepalive mode): connections the application wrote on
 * since the last sweep, or whose user timeout we switched off, get their
 * window looked at (hb_ka_window). The sweep itself reads memory only; a
 * connection costs system calls only while it has data in flight. Its
 * period is a third of the user timeout, so a window that shuts is seen
 * well before the kernel would abort on it, and at most an interval, so a
 * peer that stopped answering is declared dead within T + I.
 */
static void sweep_one(int fd, struct hb_conn *c, void *arg)
{
	uint32_t fl = hb_load_acquire(&c->flags);
	struct hb_tcp_info x;
	struct hb_fdent *ent;

	(void)arg;
	if (c->mode != HB_MODE_KEEPALIVE || !(fl & (HB_CF_TXW | HB_CF_UTO_OFF)) ||
	    !(fl & HB_CF_TIMING))
		return; /* nothing written, or our options not applied yet */
	hb_and_acq_rel(&c->flags, ~HB_CF_TXW);
	if ((fl & (HB_CF_RELEASED | HB_CF_LOST | HB_APP_USERTIMEOUT)) || hb_load_acquire(&c->dead))
		return; /* gone, or not ours to watch */
	if ((fd = hb_fd_pin(c, &ent)) < 0)
		return;
	if (hb_os_tcp_info(fd, &x) == 0) {
		/* Written since the last sweep: since the first write of them. */
		uint64_t now = hb_os_now_ms(), since = 0;
		int r;

		if (fl & HB_CF_TXW) {
			int32_t ago = (int32_t)((uint32_t)now - hb_load_relaxed(&c->ka_txw_at));

			since = ago > 0 ? now - (uint64_t)ago : now;
		}
		r = hb_ka_window(c, fd, &x, hb_ka_cfg.user_timeout_ms, now, since);

		if (r > 0)
			hb_or_acq_rel(&c->flags, HB_CF_TXW);
		else if (r < 0)
			hb_conn_declare_dead(c, fd, HB_DEAD_WRITE, x.ti.tcpi_last_ack_recv);
	}
	hb_fd_unpin(ent);
}

static uint64_t sweep_period(void)
{
	uint64_t p = hb_ka_cfg.user_timeout_ms / 3;

	if (p > hb_cfg.interval_ms)
		p = hb_cfg.interval_ms;
	return p < 100 ? 100 : p;
}

/* 1 once the thread started by start() runs (hb_thread_wait_begun). */
static _Atomic uint32_t thread_began;

static void *thread_main(void *arg)
{
	uint64_t now = hb_os_now_ms(), next_stats = now + STATS_PERIOD_MS;
	uint64_t next_sweep = now + sweep_period(), next_step = now;

	hb_store_release(&thread_began, 1);
	hb_os_futex_wake(&thread_began);

	hb_store_relaxed(&hb_thread_tid, (uint32_t)hb_os_gettid());
	rng = hb_os_now_ns() ^ ((uint64_t)hb_os_getpid() << 32) ^ 0x9e3779b97f4a7c15ull;
	if (hb_xchg_acq_rel(&need_rebuild, 0))
		rebuild(now);
	else
		hb_wheel_init(&wheel, now);
	for (;;) {
		uint32_t seen = hb_load_acquire(&wake_word);
		struct hb_conn *reap = hb_conn_take_reap(), *in = hb_conn_take_inbox(), *c, *nx;
		uint64_t due;
		int64_t wait;

		mirror_run();

		now = hb_os_now_ms();
		for (c = in; c; c = nx) {
			nx = hb_conn_at(c->inbox_next);
			/* Off the inbox: it may be pushed again from here on. */
			hb_and_acq_rel(&c->flags, ~HB_CF_POKE);
			if (c->wlinked) { /* poked: its next step now */
				hb_wheel_del(&wheel, c);
				hb_wheel_add(&wheel, c, now + 1);
			} else {
				first_timer(c, now);
			}
		}
		for (c = reap; c; c = nx) {
			nx = hb_conn_at(c->reap_next);
			hb_wheel_del(&wheel, c);
			if (hb_load_acquire(&c->users) || (hb_load_acquire(&c->flags) & HB_CF_POKE)) {
				/* Another thread is still inside a framed call on a
				 * connection whose fd was closed under it, or it is
				 * on the inbox (never free it there): retry. */
				hb_conn_retry_reap(c);
				continue;
			}
			hb_conn_free(c);
		}
		hb_wheel_advance(&wheel, now, fire, &now);
		if (now >= next_stats) {
			hb_stats_flush();
			next_stats = now + STATS_PERIOD_MS;
		}
		if (now >= next_sweep) {
			if (hb_conn_in_use())
				hb_fd_foreach(sweep_one, NULL);
			next_sweep = now + sweep_period();
		}
		if (periodic_step && now >= next_step) {
			periodic_step(now);
			next_step = now + periodic_ms;
		}
		due = hb_wheel_next(&wheel);
		if (hb_cfg.stats_file[0] && due > next_stats)
			due = next_stats;
		if (hb_conn_in_use() && due > next_sweep)
			due = next_sweep;
		if (periodic_step && due > next_step)
			due = next_step;
		now = hb_os_now_ms();
		wait = due == UINT64_MAX ? -1 : (due > now ? (int64_t)(due - now) : 0);
		if (wait != 0)
			hb_os_futex_wait(&wake_word, seen, wait);
	}
	return NULL;
}

static void atfork_prepare(void)
{
	fops->atfork_prepare();
}

static void atfork_child(void)
{
	/* First the entry the parent's background thread was pinning: that
	 * thread is not here to unpin it, and dropping a lingering entry
	 * waits for its pin. */
	hb_fd_after_fork_child();
	fops->atfork_child();
	fops->linger_drop_all();
	/* No background thread here until one is needed. */
	hb_store_release(&tstate, TS_NONE);
	hb_store_release(&wake_word, 0);
	hb_store_release(&need_rebuild, 1);
}

/* A lingering duplicate in the table of a child that shares its parent's
 * fd table: the parent's background thread lingers on it and closes it;
 * this process only forgets it. */
static void forget_linger(int fd, struct hb_conn *c, void *arg)
{
	(void)arg;
	if (c->kind == HB_KIND_LINGER)
		(void)hb_fd_forget(fd);
}

void hb_thread_after_clone(int own_files)
{
	if (!hb_load_acquire(&atfork_done)) {
		fops->atfork_child();
	} else if (own_files) {
		atfork_child();
	} else {
		hb_fd_after_fork_child();
		fops->atfork_child();
		hb_fd_foreach(forget_linger, NULL);
		hb_store_release(&tstate, TS_NONE);
		hb_store_release(&wake_word, 0);
		hb_store_release(&need_rebuild, 1);
	}
}

static void start(void)
{
	int expect = TS_NONE;
	sigset_t all, old;
	pthread_attr_t attr;
	pthread_t tid;
	int rc;

	if (!hb_cas_strong_acq_rel(&tstate, &expect, TS_STARTING))
		return;
	if (!hb_xchg_acq_rel(&atfork_done, 1))
		pthread_atfork(atfork_prepare, NULL, atfork_child);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	hb_store_release(&thread_began, 0);
	rc = pthread_create(&tid, &attr, thread_main, NULL);
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		hb_store_release(&tstate, TS_FAILED);
		hb_log(HB_LOG_ERROR, "cannot start the background thread (error %d): "
				     "deadlines and idle checks are off in this process", rc);
		return;
	}
	hb_store_release(&tstate, TS_RUNNING);
#ifdef __GLIBC__
	pthread_setname_np(tid, "hbshim");
#endif
}

void hb_thread_wait_begun(void)
{
	uint64_t until = 0;

	for (;;) {
		int ts = hb_load_acquire(&tstate);

		if (ts == TS_NONE || ts == TS_FAILED ||
		    (ts == TS_RUNNING && hb_load_acquire(&thread_began)))
			return;
		if (!until)
			until = hb_os_now_ms() + 1000;
		else if (hb_os_now_ms() >= until)
			return;
		/* Begun, RUNNING not stored yet (its creator is between the two,
		 * perhaps under us in a signal handler): no futex value to wait
		 * on, so nap instead of spinning. */
		if (hb_load_acquire(&thread_began))
			hb_os_sleep_us(200);
		else
			hb_os_futex_wait(&thread_began, 0, 1);
	}
}

/* A forked child that uses an inherited connection: its timers are in the
 * wheel copied from the parent, rebuilt when the thread starts here. */
void hb_thread_ensure(void)
{
	if (hb_load_acquire(&tstate) == TS_NONE)
		start();
}

void hb_thread_schedule(struct hb_conn *c)
{
	uint32_t fl = hb_load_acquire(&c->flags);

	do {
		if (fl & (HB_CF_RELEASED | HB_CF_SCHEDULED))
			return;
	} while (!hb_cas_acq_rel(&c->flags, &fl, fl | HB_CF_SCHEDULED | HB_CF_POKE));
	hb_conn_push_inbox(c);
	if (hb_load_acquire(&tstate) != TS_RUNNING)
		start();
	hb_thread_wake();
}

/* HB_CF_POKE is set by whoever pushes the connection on the inbox and
 * cleared by the background thread when it takes it off: one push per stay,
 * so its link is never overwritten while it is on the stack. */
void hb_thread_poke(struct hb_conn *c)
{
	uint32_t fl = hb_load_acquire(&c->flags);

	do {
		if (!(fl & HB_CF_SCHEDULED) || (fl & (HB_CF_POKE | HB_CF_RELEASED)))
			return; /* not scheduled yet, or on the inbox already */
	} while (!hb_cas_acq_rel(&c->flags, &fl, fl | HB_CF_POKE));
	hb_conn_push_inbox(c);
	hb_thread_wake();
}
