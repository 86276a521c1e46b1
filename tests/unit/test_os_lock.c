/*
 * test_os_lock.c - the futex lock of the OS layer (shim/os_lock.c): a
 * thread that holds it is told (EDEADLK) instead of deadlocking, threads
 * contending through the futex wait never both hold it, a non-blocking
 * application call does not wait behind another application thread but
 * does wait behind the background thread, and a fork child's thread owns
 * with its own id once it forgot the cached one.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "hb.h"

static void test_owner_told(void **state)
{
	_Atomic uint32_t l = 0;

	(void)state;
	assert_int_equal(hb_lock(&l), 0);
	assert_int_equal(hb_load_relaxed(&l), hb_self_tid());
	assert_int_equal(hb_lock(&l), -EDEADLK);
	assert_int_equal(hb_trylock(&l), 0);
	assert_int_equal(hb_lock_held_by_app(&l), 1); /* the caller's own counts */
	hb_unlock(&l);
	assert_int_equal(hb_load_relaxed(&l), 0);
	assert_int_equal(hb_lock_held_by_app(&l), 0);
	assert_int_equal(hb_trylock(&l), 1);
	hb_unlock(&l);
	assert_int_equal(hb_lock_io(&l, 0), 0);
	hb_unlock(&l);
}

/* Threads incrementing a plain counter under the lock, holding it long
 * enough (a yield inside) that the others spin out and sleep on the
 * futex: the count is exact only if no two ever held it at once. */
#define THREADS 4
#define ROUNDS 20000
static _Atomic uint32_t shared_lock;
static volatile unsigned long counter;
static _Atomic int inside;
static _Atomic int overlap;

static void *bump(void *arg)
{
	(void)arg;
	for (int i = 0; i < ROUNDS; i++) {
		assert_int_equal(hb_lock(&shared_lock), 0);
		if (hb_add_relaxed(&inside, 1) != 0)
			hb_store_relaxed(&overlap, 1);
		counter = counter + 1;
		if (i % 64 == 0)
			sched_yield();
		hb_add_relaxed(&inside, -1);
		hb_unlock(&shared_lock);
	}
	return NULL;
}

static void test_mutual_exclusion(void **state)
{
	pthread_t t[THREADS];

	(void)state;
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, bump, NULL), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(hb_load_relaxed(&overlap), 0);
	assert_int_equal(counter, (unsigned long)THREADS * ROUNDS);
	assert_int_equal(hb_load_relaxed(&shared_lock), 0);
}

/* A thread that takes the lock, says so, holds it for hold_ms and lets go. */
struct holder {
	_Atomic uint32_t *l;
	_Atomic uint32_t tid;
	_Atomic int held;
	int hold_ms;
};

static void *hold(void *arg)
{
	struct holder *h = arg;

	hb_store_relaxed(&h->tid, hb_self_tid());
	assert_int_equal(hb_lock(h->l), 0);
	hb_store_relaxed(&h->held, 1);
	usleep((useconds_t)h->hold_ms * 1000);
	hb_unlock(h->l);
	return NULL;
}

static void start_holder(pthread_t *t, struct holder *h)
{
	assert_int_equal(pthread_create(t, NULL, hold, h), 0);
	while (!hb_load_relaxed(&h->held))
		usleep(100);
}

static void test_app_holder_not_waited_for(void **state)
{
	_Atomic uint32_t l = 0;
	struct holder h = { .l = &l, .hold_ms = 300 };
	pthread_t t;
	uint64_t t0;

	(void)state;
	hb_store_relaxed(&hb_thread_tid, 0); /* no background thread */
	start_holder(&t, &h);
	assert_int_equal(hb_lock_held_by_app(&l), 1);
	t0 = hb_os_now_ms();
	assert_int_equal(hb_lock_io(&l, 1), -EAGAIN);
	assert_int_equal(hb_lock_unless_app(&l), 0);
	assert_true(hb_os_now_ms() - t0 < 150);
	/* A blocking call waits, and gets it. */
	assert_int_equal(hb_lock_io(&l, 0), 0);
	assert_true(hb_os_now_ms() - t0 >= 200);
	hb_unlock(&l);
	pthread_join(t, NULL);
}

static void test_background_holder_waited_for(void **state)
{
	_Atomic uint32_t l = 0;
	struct holder h = { .l = &l, .hold_ms = 1 };
	pthread_t t;

	(void)state;
	assert_int_equal(pthread_create(&t, NULL, hold, &h), 0);
	while (!hb_load_relaxed(&h.tid))
		usleep(100);
	hb_store_relaxed(&hb_thread_tid, hb_load_relaxed(&h.tid)); /* it plays the background thread */
	while (!hb_load_relaxed(&h.held))
		usleep(100);
	assert_int_equal(hb_lock_held_by_app(&l), 0);
	assert_int_equal(hb_lock_io(&l, 1), 0); /* waited the millisecond out */
	assert_int_equal(hb_load_relaxed(&l), hb_self_tid());
	hb_unlock(&l);
	pthread_join(t, NULL);
	hb_store_relaxed(&hb_thread_tid, 0);
}

static void test_fork_child_forgets_tid(void **state)
{
	uint32_t parent = hb_self_tid();
	int st;
	pid_t p;

	(void)state;
	p = fork();
	assert_true(p >= 0);
	if (p == 0) {
		/* The cache is the parent's until forgotten. */
		if (hb_self_tid() != parent)
			_exit(1);
		hb_lock_forget_tid();
		if (hb_self_tid() != (uint32_t)getpid())
			_exit(2);
		_exit(0);
	}
	assert_int_equal(waitpid(p, &st, 0), p);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_owner_told),
		cmocka_unit_test(test_mutual_exclusion),
		cmocka_unit_test(test_app_holder_not_waited_for),
		cmocka_unit_test(test_background_holder_waited_for),
		cmocka_unit_test(test_fork_child_forgets_tid),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
