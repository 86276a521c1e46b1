/*
 * test_scope.c - HBSHIM_ONLY_CMDS / HBSHIM_SKIP_CMDS (shim/config.c): what
 * the lists accept, how they are stored, and hb_scope_admits.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "hb.h"

static const char *only, *skip;

static const char *get(const char *name)
{
	if (!strcmp(name, "HBSHIM_ONLY_CMDS"))
		return only;
	if (!strcmp(name, "HBSHIM_SKIP_CMDS"))
		return skip;
	return NULL;
}

static int parse(struct hb_config *c, const char *o, const char *s, char *err, size_t n)
{
	only = o;
	skip = s;
	return hb_config_parse(c, get, err, n);
}

static void test_stored_form(void **state)
{
	struct hb_config c;
	char err[512];

	(void)state;
	assert_int_equal(parse(&c, " python3 ,  nginx\t,x ", NULL, err, sizeof(err)), 0);
	assert_string_equal(c.only_cmds, "python3,nginx,x");
	assert_string_equal(c.skip_cmds, "");
	assert_int_equal(parse(&c, " \t ", "sh", err, sizeof(err)), 0);
	assert_string_equal(c.only_cmds, ""); /* blank: no list */
	assert_string_equal(c.skip_cmds, "sh");
}

static void bad(const char *v, const char *why)
{
	struct hb_config c;
	char err[512];

	if (parse(&c, v, NULL, err, sizeof(err)) != -EINVAL)
		fail_msg("\"%s\" accepted", v);
	if (strncmp(err, "HBSHIM_ONLY_CMDS: invalid value ", 32) || !strstr(err, why) ||
	    strchr(err, '\n'))
		fail_msg("\"%s\": error line \"%s\", want one naming the variable with \"%s\"", v,
			 err, why);
	if (!c.disabled)
		fail_msg("\"%s\": a failed parse must leave the config disabled", v);
}

static void test_rejected(void **state)
{
	char many[33 * 2 + 1], longname[257];

	(void)state;
	bad("a/b", "\"a/b\": expected");
	bad("sh, b/c ,d", "(at \"b/c\")");
	bad("/usr/bin/python3", "expected comma-separated program names");
	bad("a,,b", "(empty name)");
	bad("a,", "(empty name)");
	bad(",a", "(empty name)");
	for (int i = 0; i < 33; i++)
		memcpy(many + 2 * i, "n,", 2);
	many[33 * 2 - 1] = 0; /* 33 names */
	bad(many, "(too many names)");
	memset(longname, 'x', 256);
	longname[256] = 0;
	bad(longname, "expected");
}

static void test_limits_accepted(void **state)
{
	struct hb_config c;
	char err[512], many[32 * 2], longname[256];

	(void)state;
	for (int i = 0; i < 32; i++)
		memcpy(many + 2 * i, "n,", 2);
	many[32 * 2 - 1] = 0;
	assert_int_equal(parse(&c, many, NULL, err, sizeof(err)), 0);
	memset(longname, 'x', 255);
	longname[255] = 0;
	assert_int_equal(parse(&c, longname, longname, err, sizeof(err)), 0);
	assert_string_equal(c.only_cmds, longname);
}

static void test_admits(void **state)
{
	struct hb_config c;
	char err[512];

	(void)state;
	assert_int_equal(parse(&c, NULL, NULL, err, sizeof(err)), 0);
	assert_int_equal(hb_scope_admits(&c, "anything"), 1);
	assert_int_equal(hb_scope_admits(&c, ""), 1);

	assert_int_equal(parse(&c, "python3,nginx", NULL, err, sizeof(err)), 0);
	assert_int_equal(hb_scope_admits(&c, "python3"), 1);
	assert_int_equal(hb_scope_admits(&c, "nginx"), 1);
	assert_int_equal(hb_scope_admits(&c, "python"), 0);  /* no prefix match */
	assert_int_equal(hb_scope_admits(&c, "python33"), 0);
	assert_int_equal(hb_scope_admits(&c, "Python3"), 0); /* exact bytes */
	assert_int_equal(hb_scope_admits(&c, "python3,nginx"), 0);
	assert_int_equal(hb_scope_admits(&c, ""), 0);
	assert_int_equal(hb_scope_admits(&c, NULL), 0);

	assert_int_equal(parse(&c, NULL, "sh,bash", err, sizeof(err)), 0);
	assert_int_equal(hb_scope_admits(&c, "sh"), 0);
	assert_int_equal(hb_scope_admits(&c, "bash"), 0);
	assert_int_equal(hb_scope_admits(&c, "dash"), 1);
	assert_int_equal(hb_scope_admits(&c, ""), 1);

	/* Both: the only-list first, then the skip-list. */
	assert_int_equal(parse(&c, "python3,curl", "curl", err, sizeof(err)), 0);
	assert_int_equal(hb_scope_admits(&c, "python3"), 1);
	assert_int_equal(hb_scope_admits(&c, "curl"), 0);
	assert_int_equal(hb_scope_admits(&c, "sh"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stored_form),
		cmocka_unit_test(test_rejected),
		cmocka_unit_test(test_limits_accepted),
		cmocka_unit_test(test_admits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
