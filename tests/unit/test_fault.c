/*
 * test_fault.c - the HBSHIM_FAULTS grammar (shim/fault.c) and its place in
 * the configuration (HBSHIM_FAULTS, HBSHIM_SEED in shim/config.c).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <cmocka.h>

#include "hb.h"

static struct hb_fault F[HB_MAX_FAULTS + 1];

static int parse(const char *s)
{
	const char *bad;
	size_t badlen;
	int n = -1, r = hb_fault_parse(s, F, HB_MAX_FAULTS, &n, &bad, &badlen);

	return r < 0 ? r : n;
}

static void bad(const char *s)
{
	int r = parse(s);

	if (r != -EINVAL && r != -E2BIG)
		fail_msg("\"%s\" accepted (%d)", s, r);
}

static void test_actions(void **state)
{
	(void)state;
	assert_int_equal(parse("latency=200ms,jitter=50ms,peer=127.0.0.1:8080,dir=in,after=1s,for=5s"), 1);
	assert_int_equal(F[0].action, HB_FA_LATENCY);
	assert_int_equal(F[0].arg, 200);
	assert_int_equal(F[0].jitter_ms, 50);
	assert_int_equal(F[0].dir, HB_FDIR_IN);
	assert_int_equal(F[0].after_ms, 1000);
	assert_int_equal(F[0].for_ms, 5000);
	assert_int_equal(F[0].peer.family, AF_INET);
	assert_int_equal(F[0].peer.port, 8080);
	assert_string_equal(F[0].name, "f1");
	assert_int_equal(F[0].prob_ppm, 1000000);

	assert_int_equal(parse("bandwidth=10k"), 1);
	assert_int_equal(F[0].action, HB_FA_BANDWIDTH);
	assert_int_equal(F[0].arg, 10000);
	assert_int_equal(F[0].dir, HB_FDIR_IN | HB_FDIR_OUT);
	assert_int_equal(parse("bandwidth=2M"), 1);
	assert_int_equal(F[0].arg, 2000000);
	assert_int_equal(parse("slicer=1"), 1);
	assert_int_equal(F[0].action, HB_FA_SLICER);
	assert_int_equal(F[0].arg, 1);
	assert_int_equal(parse("hang,after=2s"), 1);
	assert_int_equal(F[0].action, HB_FA_HANG);
	assert_int_equal(parse("reset,bytes=100,dir=out"), 1);
	assert_int_equal(F[0].action, HB_FA_RESET);
	assert_int_equal(F[0].after_bytes, 100);
	assert_int_equal(F[0].dir, HB_FDIR_OUT);
	assert_int_equal(parse("close"), 1);
	assert_int_equal(F[0].action, HB_FA_CLOSE);
	assert_int_equal(F[0].dir, HB_FDIR_IN);
	assert_int_equal(parse("limit_data=0"), 1);
	assert_int_equal(F[0].action, HB_FA_LIMIT);
	assert_int_equal(F[0].arg, 0);
	assert_int_equal(parse("errno=ECONNRESET,call=read,nth=3"), 1);
	assert_int_equal(F[0].action, HB_FA_ERRNO);
	assert_int_equal(F[0].arg, ECONNRESET);
	assert_int_equal(F[0].call, HB_FCALL_READ);
	assert_int_equal(F[0].dir, HB_FDIR_IN);
	assert_int_equal(F[0].nth, 3);
	assert_int_equal(parse("errno=EHOSTUNREACH,call=connect"), 1);
	assert_int_equal(F[0].side, HB_FSIDE_CONNECT);
	assert_int_equal(parse("refuse,peer=[::1]:*"), 1);
	assert_int_equal(F[0].action, HB_FA_REFUSE);
	assert_int_equal(F[0].side, HB_FSIDE_CONNECT);
	assert_int_equal(F[0].peer.family, AF_INET6);
	assert_int_equal(parse("timeout"), 1);
	assert_int_equal(F[0].action, HB_FA_TIMEOUT);
	assert_int_equal(parse("delay=300ms,prob=0.5"), 1);
	assert_int_equal(F[0].action, HB_FA_DELAY);
	assert_int_equal(F[0].arg, 300);
	assert_int_equal(F[0].prob_ppm, 500000);
}

static void test_lists_and_names(void **state)
{
	(void)state;
	assert_int_equal(parse(" reset , name=r1 ; slicer=4,side=accept ;hang "), 3);
	assert_string_equal(F[0].name, "r1");
	assert_string_equal(F[1].name, "f2");
	assert_int_equal(F[1].side, HB_FSIDE_ACCEPT);
	assert_string_equal(F[2].name, "f3");
	assert_int_equal(parse(""), 0);
	assert_int_equal(parse("   "), 0);
	/* peer rules with every character the peer syntax allows */
	assert_int_equal(parse("reset,peer=[fd00::/8]:443;close,peer=10.0.0.0/8:*;hang,peer=*:80"), 3);
	assert_int_equal(F[0].peer.prefix, 8);
	assert_int_equal(F[1].peer.prefix, 8);
	assert_int_equal(F[2].peer.port, 80);
	/* probabilities */
	assert_int_equal(parse("reset,prob=25%"), 1);
	assert_int_equal(F[0].prob_ppm, 250000);
	assert_int_equal(parse("reset,prob=12.5%"), 1);
	assert_int_equal(F[0].prob_ppm, 125000);
	assert_int_equal(parse("reset,prob=1"), 1);
	assert_int_equal(F[0].prob_ppm, 1000000);
	assert_int_equal(parse("reset,prob=0.000001"), 1);
	assert_int_equal(F[0].prob_ppm, 1);
	assert_int_equal(parse("reset,prob=0"), 1);
	assert_int_equal(F[0].prob_ppm, 0);
	/* 16 rules fit, 17 do not */
	char many[512] = "";
	for (int i = 0; i < 16; i++)
		strcat(many, i ? ";reset" : "reset");
	assert_int_equal(parse(many), 16);
	strcat(many, ";reset");
	assert_int_equal(parse(many), -E2BIG);
}

static void test_bad(void **state)
{
	(void)state;
	bad("bogus");
	bad("reset;");
	bad(";reset");
	bad("reset;;close");
	bad("reset,");
	bad(",reset");
	bad("reset,close");             /* two actions */
	bad("peer=*");                  /* no action */
	bad("latency");                 /* missing argument */
	bad("reset=1");                 /* argument where none is taken */
	bad("latency=5x");
	bad("latency=100ms,jitter=200ms"); /* jitter above latency */
	bad("slicer=0");
	bad("bandwidth=0");
	bad("bandwidth=5G");
	bad("slicer=99999999999");
	bad("errno=EFOO");
	bad("errno=econnreset");
	bad("errno=ECONNRESET,call=read,dir=out");
	bad("jitter=5ms,reset");
	bad("reset,call=read");
	bad("reset,dir=up");
	bad("reset,side=both");
	bad("reset,peer=1.2.3.4");
	bad("reset,peer=*,peer=*");
	bad("reset,peer=[::1]");
	bad("reset,nth=0");
	bad("reset,nth=-1");
	bad("reset,for=0");
	bad("reset,prob=1.5");
	bad("reset,prob=101%");
	bad("reset,prob=0.1234567");
	bad("reset,prob=.5");
	bad("reset,prob=5.");
	bad("reset,bytes=18446744073709551616");
	bad("refuse,dir=in");
	bad("refuse,after=1s");
	bad("timeout,side=accept");
	bad("errno=EPIPE,call=connect,bytes=3");
	bad("reset,name=");
	bad("reset,name=sixteen_chars_xx");
	bad("reset,name=a b");
	bad("reset,name=x;close,name=x"); /* duplicate name */
	bad("reset,name=f2;close");       /* clashes with the default name */
	bad("reset,unknown=1");
	bad("reset,=1");
}

static const char *vals[2];

static const char *get(const char *name)
{
	if (!strcmp(name, "HBSHIM_FAULTS"))
		return vals[0];
	if (!strcmp(name, "HBSHIM_SEED"))
		return vals[1];
	return NULL;
}

static void test_config(void **state)
{
	struct hb_config c;
	char err[1024];

	(void)state;
	vals[0] = "reset,name=boom,peer=127.0.0.1:*;slicer=1";
	vals[1] = "18446744073709551615";
	assert_int_equal(hb_config_parse(&c, get, err, sizeof(err)), 0);
	assert_int_equal(c.nfaults, 2);
	assert_string_equal(c.faults[0].name, "boom");
	assert_int_equal(c.faults[1].action, HB_FA_SLICER);
	assert_int_equal(c.seed_set, 1);
	assert_true(c.seed == UINT64_MAX);

	vals[1] = NULL;
	assert_int_equal(hb_config_parse(&c, get, err, sizeof(err)), 0);
	assert_int_equal(c.seed_set, 0);

	vals[1] = "18446744073709551616";
	assert_int_equal(hb_config_parse(&c, get, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "HBSHIM_SEED: invalid value"));
	vals[1] = "12x";
	assert_int_equal(hb_config_parse(&c, get, err, sizeof(err)), -EINVAL);
	vals[1] = NULL;

	vals[0] = "reset;latency=1x,peer=*";
	assert_int_equal(hb_config_parse(&c, get, err, sizeof(err)), -EINVAL);
	assert_int_equal(c.disabled, 1);
	/* one line naming the variable, the rule at fault and the forms */
	assert_non_null(strstr(err, "HBSHIM_FAULTS: invalid value"));
	assert_non_null(strstr(err, "(at \"latency=1x,peer=*\")"));
	assert_non_null(strstr(err, "expected rules separated by ';'"));
	assert_null(strchr(err, '\n'));
}

static void test_names(void **state)
{
	(void)state;
	assert_string_equal(hb_fault_action_name(HB_FA_LIMIT), "limit_data");
	assert_string_equal(hb_fault_action_name(HB_FA_RESET), "reset");
	assert_string_equal(hb_fault_errno_name(ECONNRESET), "ECONNRESET");
	for (int a = HB_FA_LATENCY; a < HB_FA_COUNT; a++)
		assert_string_not_equal(hb_fault_action_name(a), "?");
}

static void test_control(void **state)
{
	char mem[2048];
	struct hb_buf b;

	(void)state;
	memset(&hb_cfg, 0, sizeof(hb_cfg));
	hb_buf_init(&b, mem, sizeof(mem));
	assert_int_equal(hb_fault_ctl_exec("add name=a,reset,after=1h\n", &b), 0);
	assert_string_equal(hb_buf_str(&b), "ok added a\n");
	assert_int_equal(hb_cfg.nfaults, 1);
	assert_int_equal(hb_cfg.faults[0].action, HB_FA_RESET);
	assert_int_equal(hb_cfg.faults[0].after_ms, 3600000);
	hb_buf_init(&b, mem, sizeof(mem));
	assert_int_equal(hb_fault_ctl_exec("add name=a,slicer=2", &b), -EINVAL);
	assert_int_equal(hb_fault_ctl_exec("add slicer=2;reset", &b), -EINVAL);
	assert_int_equal(hb_fault_ctl_exec("add slicer=0", &b), -EINVAL);
	assert_int_equal(hb_fault_ctl_exec("trigger b", &b), -EINVAL);
	assert_int_equal(hb_fault_ctl_exec("frobnicate", &b), -EINVAL);
	assert_int_equal(hb_fault_ctl_exec("", &b), -EINVAL);
	assert_int_equal(hb_cfg.nfaults, 1);
	assert_int_equal(hb_fault_ctl_exec("add slicer=2", &b), 0); /* named f2 */
	assert_string_equal(hb_cfg.faults[1].name, "f2");
	assert_int_equal(hb_fault_ctl_exec("trigger a", &b), 0);
	assert_int_equal(hb_fault_kick[0], 1);
	assert_int_equal(hb_fault_ctl_exec("remove f2", &b), 0);
	assert_int_equal(hb_fault_off[1], 1);
	hb_buf_init(&b, mem, sizeof(mem));
	assert_int_equal(hb_fault_ctl_exec("list", &b), 0);
	assert_string_equal(hb_buf_str(&b), "ok\nrule a reset on\nrule f2 slicer off\n");
	for (int i = 2; i < HB_MAX_FAULTS; i++)
		assert_int_equal(hb_fault_ctl_exec("add reset", &b), 0);
	assert_int_equal(hb_fault_ctl_exec("add close", &b), -EINVAL); /* table full */
	memset(&hb_cfg, 0, sizeof(hb_cfg));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_actions),
		cmocka_unit_test(test_lists_and_names),
		cmocka_unit_test(test_bad),
		cmocka_unit_test(test_config),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_control),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
