/*
 * test_inherit.c - the HBSHIM_INHERIT entry parser (shim/inherit_parse.c):
 * what a good entry yields, and that every forged or damaged value is
 * refused (the entry zeroed, the next one found).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "hb.h"

static const struct hb_inherit_ent zero;

static int parse(const char *s, struct hb_inherit_ent *e, const char **next)
{
	const char *n = NULL;
	int r = hb_inherit_parse(s, e, &n);

	assert_non_null(n);
	if (next)
		*next = n;
	if (r)
		assert_memory_equal(e, &zero, sizeof(zero));
	return r;
}

static void test_good(void **state)
{
	struct hb_inherit_ent e;
	const char *next;
	const char *s = "3,1a2b,2,2,1,1,0,0003,1,20,0100,3e8,bb8;4,5,0,0,0,0,0,-,0,0,-,0,0";

	(void)state;
	assert_int_equal(parse(s, &e, &next), 0);
	assert_int_equal(e.fd, 3);
	assert_true(e.cookie == 0x1a2b);
	assert_int_equal(e.rxmode, HB_RX_FRAMED);
	assert_int_equal(e.txmode, HB_TX_FRAMED);
	assert_int_equal(e.client, 1);
	assert_int_equal(e.hello_sent, 1);
	assert_int_equal(e.rx.remaining, 0);
	assert_int_equal(e.rx.hdr_len, 2); /* a notice's first two bytes */
	assert_int_equal(e.rx.hdr[1], 3);
	assert_int_equal(e.rx.halfclosed, 1);
	assert_int_equal(e.peer_dg, 0);
	assert_int_equal(e.tx.remaining, 0x20);
	assert_int_equal(e.tx.pend_len, 2);
	assert_int_equal(e.tx.pend[0], 1);
	assert_int_equal(e.peer_interval_ms, 1000);
	assert_int_equal(e.peer_timeout_ms, 3000);
	assert_string_equal(next, "4,5,0,0,0,0,0,-,0,0,-,0,0");
	assert_int_equal(parse(next, &e, &next), 0);
	assert_int_equal(*next, 0);
	/* rx flags bit 1: the peer's hello said it can downgrade. */
	assert_int_equal(parse("4,5,2,2,0,0,0,-,2,0,-,0,0", &e, NULL), 0);
	assert_int_equal(e.peer_dg, 1);
	assert_int_equal(e.rx.halfclosed, 0);
	assert_int_equal(e.app_rcvlowat, 0);
	/* bit 2: the socket's SO_RCVLOWAT is the application's. */
	assert_int_equal(parse("5,77,2,2,0,0,0,-,5,0,-,0,0", &e, NULL), 0);
	assert_int_equal(e.app_rcvlowat, 1);
	assert_int_equal(e.rx.halfclosed, 1);
	assert_int_equal(e.peer_dg, 0);
	/* The largest values a connection can hold. */
	assert_int_equal(parse("fffff,ffffffffffffffff,3,2,1,1,1000000,-,1,1000000,"
			       "000102030405060708090a0b0c0d0e,ffffffff,ffffffff", &e, NULL), 0);
}

static void test_refused(void **state)
{
	static const char *const bad[] = {
		"1,0,0,2,0,0,0,-,0,0,-,0,0",              /* cookie 0 */
		"5,77,2,2,0,0,0,00000000000000,0,0,-,0,0", /* a 7-byte partial header */
		"5,77,2,2,0,0,0,0001,0,0,-,0,0",           /* a complete heartbeat header */
		"5,77,2,2,0,0,0,0100000001,0,0,-,0,0",     /* a complete data header */
		"5,77,2,2,0,0,0,07,0,0,-,0,0",             /* an unknown frame type */
		"5,77,2,2,0,0,0,0009,0,0,-,0,0",           /* an unknown control code */
		"5,77,2,2,0,0,10,01,0,0,-,0,0",            /* a header inside a frame */
		"5,77,2,2,0,0,1000001,-,0,0,-,0,0",        /* rx frame past 16 MiB */
		"5,77,2,2,0,0,0,-,0,1000001,-,0,0",        /* tx frame past 16 MiB */
		"5,77,2,2,0,0,0,-,0,0,000102030405060708090a0b0c0d0e0f,0,0", /* 16 pending */
		"5,77,4,2,0,0,0,-,0,0,-,0,0",              /* rxmode */
		"5,77,2,3,0,0,0,-,0,0,-,0,0",              /* txmode */
		"5,77,2,2,2,0,0,-,0,0,-,0,0",              /* client */
		"5,77,2,2,0,2,0,-,0,0,-,0,0",              /* hello_sent */
		"5,77,2,2,0,0,0,-,8,0,-,0,0",              /* rx flags past bit 2 */
		"5,77,2,2,0,0,0,-,0,0,-,100000000,0",      /* interval past 32 bits */
		"100000,77,2,2,0,0,0,-,0,0,-,0,0",         /* fd past the table */
		"5,77,2,2,0,0,0,-,0,0,-,0",                /* 12 fields */
		"5,77,2,2,0,0,0,-,0,0,-,0,0,0",            /* 14 fields */
		"5,77,2,2,0,0,0,,0,0,-,0,0",               /* empty bytes */
		"5,77,2,2,0,0,0,0,0,0,-,0,0",              /* odd hex digits */
		"5,77,2,2,0,0,0,--,0,0,-,0,0",
		"5,7F,2,2,0,0,0,-,0,0,-,0,0",              /* upper case */
		"5,10000000000000000,2,2,0,0,0,-,0,0,-,0,0", /* 17 digits */
		"5,77,2,2,0,0,0,-,0,0,-,0,0x",
		" 5,77,2,2,0,0,0,-,0,0,-,0,0",
		",",
		"",
	};
	struct hb_inherit_ent e;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&e, 0x5a, sizeof(e));
		if (parse(bad[i], &e, NULL) != -EINVAL)
			fail_msg("accepted: %s", bad[i]);
	}
}

static void test_next_after_bad(void **state)
{
	struct hb_inherit_ent e;
	const char *next;
	const char *s = "zz,1;;5,77,2,2,0,0,0,-,0,0,-,0,0";

	(void)state;
	assert_int_equal(parse(s, &e, &next), -EINVAL);
	assert_ptr_equal(next, s + 5);
	assert_int_equal(parse(next, &e, &next), -EINVAL); /* the empty one */
	assert_int_equal(parse(next, &e, &next), 0);
	assert_int_equal(e.fd, 5);
	assert_int_equal(*next, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_next_after_bad),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
