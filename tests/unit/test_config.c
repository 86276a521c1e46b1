/*
 * test_config.c - HBSHIM_* parsing (shim/config.c, shim/parse.c): durations,
 * peer rules, rule matching, the whole configuration and its error lines,
 * the doc table.
 */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>
#include <cmocka.h>

#include "hb.h"

/* ------------------------------------------------------------ durations */

static void dur_ok(const char *s, uint32_t want)
{
	uint32_t ms = 12345;
	int ret = hb_parse_duration(s, &ms);

	if (ret != 0 || ms != want)
		fail_msg("\"%s\": ret %d ms %u, want 0 and %u", s, ret, ms, want);
}

static void dur_bad(const char *s, int want)
{
	uint32_t ms = 12345;
	int ret = hb_parse_duration(s, &ms);

	if (ret != want || ms != 12345)
		fail_msg("\"%s\": ret %d ms %u, want %d and out untouched", s, ret, ms, want);
}

static void test_duration_forms(void **state)
{
	(void)state;
	dur_ok("250ms", 250);
	dur_ok("5s", 5000);
	dur_ok("1m", 60000);
	dur_ok("2h", 7200000);
	dur_ok("7", 7000);
	dur_ok("0", 0);
	dur_ok("0ms", 0);
	dur_ok("0s", 0);
	dur_ok("0h", 0);
	dur_ok("1ms", 1);
	dur_ok("007s", 7000);
	dur_ok("90m", 5400000);
	dur_ok("24h", 86400000);
	dur_ok("1000ms", 1000);
}

static void test_duration_limits(void **state)
{
	(void)state;
	dur_ok("4294967295ms", UINT32_MAX);
	dur_ok("4294967s", 4294967000u);
	dur_ok("4294967", 4294967000u);
	dur_ok("71582m", 4294920000u);
	dur_ok("1193h", 4294800000u);
	dur_bad("4294967296ms", -ERANGE);
	dur_bad("4294968s", -ERANGE);
	dur_bad("4294968", -ERANGE);
	dur_bad("71583m", -ERANGE);
	dur_bad("1194h", -ERANGE);
	dur_bad("18446744073709551616ms", -ERANGE);
	dur_bad("99999999999999999999999999999999", -ERANGE);
	/* Bad syntax wins over size. */
	dur_bad("99999999999999999999999999999999x", -EINVAL);
}

static void test_duration_rejects(void **state)
{
	static const char *const bad[] = {
		"", "-1", "-1s", "+1", "+5s", "1.5s", "1.5", "0.5", ".5s", " 5s", "5s ", "5 s",
		"5x", "5S", "5MS", "5H", "ms", "s", "m", "h", "5sm", "5mss", "5msx", "5d",
		"5us", "0x10", "5ms\n", "5\t", "1e3", "5s5", "five", "5,0s", "\xff",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		dur_bad(bad[i], -EINVAL);
	dur_bad(NULL, -EINVAL);
}

/* ---------------------------------------------------------------- rules */

static struct hb_rule rules[HB_MAX_RULES + 4];

static int parse(const char *s)
{
	int n = -1, ret = hb_parse_rules(s, rules, HB_MAX_RULES, &n);

	if (ret < 0) {
		assert_int_equal(n, 0);
		return ret;
	}
	return n;
}

static void check_rule(const struct hb_rule *r, int family, int prefix, int port,
		       const char *addr)
{
	uint8_t want[16] = { 0 };

	assert_int_equal(r->family, family);
	assert_int_equal(r->prefix, prefix);
	assert_int_equal(r->port, port);
	if (addr)
		assert_int_equal(inet_pton(family, addr, want), 1);
	assert_memory_equal(r->addr, want, 16);
}

static void test_rules_any(void **state)
{
	(void)state;
	assert_int_equal(parse("*"), 1);
	check_rule(&rules[0], 0, 0, 0, NULL);
	assert_int_equal(parse("*:443"), 1);
	check_rule(&rules[0], 0, 0, 443, NULL);
	assert_int_equal(parse("*:*"), 1);
	check_rule(&rules[0], 0, 0, 0, NULL);
	assert_int_equal(parse("*:1"), 1);
	check_rule(&rules[0], 0, 0, 1, NULL);
	assert_int_equal(parse("*:65535"), 1);
	check_rule(&rules[0], 0, 0, 65535, NULL);
	assert_int_equal(parse("*:00080"), 1);
	check_rule(&rules[0], 0, 0, 80, NULL);
}

static void test_rules_ipv4(void **state)
{
	(void)state;
	assert_int_equal(parse("10.1.2.3:80"), 1);
	check_rule(&rules[0], AF_INET, 32, 80, "10.1.2.3");
	assert_int_equal(parse("10.1.2.3/32:*"), 1);
	check_rule(&rules[0], AF_INET, 32, 0, "10.1.2.3");
	/* Host bits beyond the prefix are cleared. */
	assert_int_equal(parse("10.1.2.3/8:*"), 1);
	check_rule(&rules[0], AF_INET, 8, 0, "10.0.0.0");
	assert_int_equal(parse("192.168.3.255/23:8080"), 1);
	check_rule(&rules[0], AF_INET, 23, 8080, "192.168.2.0");
	assert_int_equal(parse("1.2.3.4/0:22"), 1);
	check_rule(&rules[0], AF_INET, 0, 22, "0.0.0.0");
}

static void test_rules_ipv6(void **state)
{
	(void)state;
	assert_int_equal(parse("[::1]:443"), 1);
	check_rule(&rules[0], AF_INET6, 128, 443, "::1");
	assert_int_equal(parse("[fd00::/8]:*"), 1);
	check_rule(&rules[0], AF_INET6, 8, 0, "fd00::");
	assert_int_equal(parse("[fdab:cdef::1/12]:9"), 1);
	check_rule(&rules[0], AF_INET6, 12, 9, "fda0::");
	assert_int_equal(parse("[::/0]:*"), 1);
	check_rule(&rules[0], AF_INET6, 0, 0, "::");
	assert_int_equal(parse("[2001:DB8::1/128]:65535"), 1);
	check_rule(&rules[0], AF_INET6, 128, 65535, "2001:db8::1");
	/* An IPv4-mapped rule becomes the IPv4 rule it stands for... */
	assert_int_equal(parse("[::ffff:10.1.2.3]:80"), 1);
	check_rule(&rules[0], AF_INET, 32, 80, "10.1.2.3");
	assert_int_equal(parse("[::ffff:10.1.2.3/104]:80"), 1);
	check_rule(&rules[0], AF_INET, 8, 80, "10.0.0.0");
	assert_int_equal(parse("[::ffff:0:0/96]:*"), 1);
	check_rule(&rules[0], AF_INET, 0, 0, "0.0.0.0");
	/* ...unless its prefix reaches into the ::ffff part. */
	assert_int_equal(parse("[::ffff:0:0/95]:*"), 1);
	check_rule(&rules[0], AF_INET6, 95, 0, "::fffe:0:0");
}

static void test_rules_lists(void **state)
{
	char buf[HB_MAX_RULES * 8 + 16];
	int i, n, len = 0;

	(void)state;
	assert_int_equal(parse("*:80,10.0.0.0/8:443,[::1]:1"), 3);
	check_rule(&rules[0], 0, 0, 80, NULL);
	check_rule(&rules[1], AF_INET, 8, 443, "10.0.0.0");
	check_rule(&rules[2], AF_INET6, 128, 1, "::1");
	assert_int_equal(parse("  *:80 ,\t10.0.0.0/8:443 , [::1]:1\t"), 3);
	check_rule(&rules[0], 0, 0, 80, NULL);
	check_rule(&rules[1], AF_INET, 8, 443, "10.0.0.0");
	check_rule(&rules[2], AF_INET6, 128, 1, "::1");
	assert_int_equal(parse(""), 0);
	assert_int_equal(parse("   "), 0);
	assert_int_equal(parse(NULL), 0);

	/* Exactly HB_MAX_RULES fit; one more is -E2BIG. */
	for (i = 0; i < HB_MAX_RULES; i++)
		len += snprintf(buf + len, sizeof(buf) - (size_t)len, "%s*:%d", i ? "," : "",
				i + 1);
	assert_int_equal(parse(buf), HB_MAX_RULES);
	check_rule(&rules[HB_MAX_RULES - 1], 0, 0, HB_MAX_RULES, NULL);
	snprintf(buf + len, sizeof(buf) - (size_t)len, ",*:99");
	assert_int_equal(parse(buf), -E2BIG);
	n = -1;
	assert_int_equal(hb_parse_rules("*:1,*:2,*:3", rules, 2, &n), -E2BIG);
	assert_int_equal(n, 0);
	assert_int_equal(hb_parse_rules("*:1,*:2", rules, 2, &n), 0);
	assert_int_equal(n, 2);
}

static void test_rules_rejects(void **state)
{
	static const char *const bad[] = {
		"10.0.0.1", "10.0.0.1:0", "10.0.0.1:65536", "10.0.0.1:99999999999", "10.0.0.1:",
		"10.0.0.1:-1", "10.0.0.1:+80", "10.0.0.1:8 0", "10.0.0.1:80:90", "10.0.0.1:x",
		"10.0.0.1/33:80", "10.0.0.1/:80", "10.0.0.1/-1:80", "10.0.0.1/8/8:80",
		"10.0.0.1/ 8:80", "10.0.0.1 :80", "256.0.0.1:80", "10.0.0:80", "10.0.0.1.5:80",
		"/8:80", ":80", "host.example:80", "::1:80", "[::1]", "[::1]80", "[::1:80",
		"::1]:80", "[::1]:", "[::1/129]:80", "[::1/]:80", "[::1]/8:80", "[10.0.0.1]:80",
		"[fe80::1%eth0]:80", "[]:80", "[:::1]:80", "[::1]:0", "*:", "**", "*x", "*:0",
		"*/0:80", "*:80x", "*:80,,*:81", "*:80,", ",*:80", "*:80 *:81", "*:80;*:81",
		"*:80, ,*:81",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (parse(bad[i]) != -EINVAL)
			fail_msg("rule \"%s\" was accepted", bad[i]);
}

/* ------------------------------------------------------------- matching */

static struct sockaddr_storage ss;

static const struct sockaddr *v4(const char *a, int port)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

	memset(&ss, 0, sizeof(ss));
	sin->sin_family = AF_INET;
	sin->sin_port = htons((uint16_t)port);
	assert_int_equal(inet_pton(AF_INET, a, &sin->sin_addr), 1);
	return (const struct sockaddr *)&ss;
}

static const struct sockaddr *v6(const char *a, int port)
{
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

	memset(&ss, 0, sizeof(ss));
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons((uint16_t)port);
	assert_int_equal(inet_pton(AF_INET6, a, &sin6->sin6_addr), 1);
	return (const struct sockaddr *)&ss;
}

static int n_rules;

static void use(const char *s)
{
	n_rules = parse(s);
	assert_true(n_rules > 0);
}

#define M4(a, port) hb_rules_match(rules, n_rules, v4(a, port), sizeof(struct sockaddr_in))
#define M6(a, port) hb_rules_match(rules, n_rules, v6(a, port), sizeof(struct sockaddr_in6))

static void test_match_ipv4_prefixes(void **state)
{
	(void)state;
	use("10.0.0.0/8:*");
	assert_int_equal(M4("10.0.0.0", 1), 1);
	assert_int_equal(M4("10.255.255.255", 65535), 1);
	assert_int_equal(M4("11.0.0.0", 1), 0);
	assert_int_equal(M4("9.255.255.255", 1), 0);
	assert_int_equal(M6("::ffff:10.1.2.3", 80), 1);
	assert_int_equal(M6("::ffff:11.0.0.0", 80), 0);
	assert_int_equal(M6("::10.1.2.3", 80), 0); /* not mapped */
	assert_int_equal(M6("a00::", 80), 0);      /* same leading bits, other family */

	use("192.168.2.0/23:80");
	assert_int_equal(M4("192.168.2.0", 80), 1);
	assert_int_equal(M4("192.168.3.255", 80), 1);
	assert_int_equal(M4("192.168.4.0", 80), 0);
	assert_int_equal(M4("192.168.1.255", 80), 0);
	assert_int_equal(M4("192.168.3.1", 81), 0);

	use("128.0.0.0/1:*");
	assert_int_equal(M4("255.255.255.255", 1), 1);
	assert_int_equal(M4("128.0.0.0", 1), 1);
	assert_int_equal(M4("127.255.255.255", 1), 0);

	use("0.0.0.0/0:*");
	assert_int_equal(M4("0.0.0.0", 1), 1);
	assert_int_equal(M4("255.255.255.255", 1), 1);
	assert_int_equal(M6("::ffff:1.2.3.4", 1), 1);
	assert_int_equal(M6("::1", 1), 0);

	use("192.168.1.1/32:80");
	assert_int_equal(M4("192.168.1.1", 80), 1);
	assert_int_equal(M4("192.168.1.0", 80), 0);
	assert_int_equal(M4("192.168.1.2", 80), 0);
	assert_int_equal(M4("192.168.1.1", 81), 0);
	assert_int_equal(M6("::ffff:192.168.1.1", 80), 1);
	assert_int_equal(M6("::ffff:192.168.1.1", 81), 0);

	use("10.1.2.3:443");
	assert_int_equal(M4("10.1.2.3", 443), 1);
	assert_int_equal(M4("10.1.2.4", 443), 0);
}

static void test_match_ipv6_prefixes(void **state)
{
	(void)state;
	use("[2001:db8::1]:443");
	assert_int_equal(M6("2001:db8::1", 443), 1);
	assert_int_equal(M6("2001:db8::2", 443), 0);
	assert_int_equal(M6("2001:db8::1", 444), 0);
	assert_int_equal(M6("3001:db8::1", 443), 0);
	assert_int_equal(M4("32.1.13.184", 443), 0); /* 2001:0db8 as IPv4 bytes */

	use("[fd00::/8]:*");
	assert_int_equal(M6("fd00::", 1), 1);
	assert_int_equal(M6("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 1), 1);
	assert_int_equal(M6("fc00::", 1), 0);
	assert_int_equal(M6("fe00::", 1), 0);

	use("[2001:db8::/33]:*");
	assert_int_equal(M6("2001:db8:7fff::1", 1), 1);
	assert_int_equal(M6("2001:db8:8000::", 1), 0);

	use("[::/0]:*");
	assert_int_equal(M6("::", 1), 1);
	assert_int_equal(M6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 1), 1);
	assert_int_equal(M6("::ffff:1.2.3.4", 1), 1); /* a mapped address is in ::/0 */
	assert_int_equal(M4("1.2.3.4", 1), 0);

	use("[::ffff:10.0.0.0/104]:*");
	assert_int_equal(M4("10.9.9.9", 1), 1);
	assert_int_equal(M6("::ffff:10.9.9.9", 1), 1);
	assert_int_equal(M4("11.9.9.9", 1), 0);
}

static void test_match_any_and_ports(void **state)
{
	struct sockaddr_un sun;

	(void)state;
	use("*");
	assert_int_equal(M4("1.2.3.4", 1), 1);
	assert_int_equal(M6("::1", 65535), 1);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	assert_int_equal(hb_rules_match(rules, n_rules, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(hb_rules_match(rules, n_rules, NULL, 0), 0);
	/* Truncated sockaddrs never match. */
	assert_int_equal(hb_rules_match(rules, n_rules, v4("1.2.3.4", 1),
					sizeof(struct sockaddr_in) - 1), 0);
	assert_int_equal(hb_rules_match(rules, n_rules, v6("::1", 1),
					sizeof(struct sockaddr_in6) - 1), 0);
	assert_int_equal(hb_rules_match(rules, 0, v4("1.2.3.4", 1), sizeof(struct sockaddr_in)),
			 0);

	use("*:443");
	assert_int_equal(M4("1.2.3.4", 443), 1);
	assert_int_equal(M6("::1", 443), 1);
	assert_int_equal(M4("1.2.3.4", 80), 0);
	assert_int_equal(M6("::1", 444), 0);

	use("10.0.0.0/8:80, [::1]:443, *:8443");
	assert_int_equal(M4("10.0.0.1", 80), 1);
	assert_int_equal(M4("10.0.0.1", 443), 0);
	assert_int_equal(M6("::1", 443), 1);
	assert_int_equal(M6("::1", 80), 0);
	assert_int_equal(M6("::2", 8443), 1);
	assert_int_equal(M4("8.8.8.8", 8443), 1);
	assert_int_equal(M4("8.8.8.8", 80), 0);
}

/* --------------------------------------------------------------- config */

#define NENV 16
static const char *env_name[NENV], *env_val[NENV];

static void env_reset(void)
{
	memset(env_name, 0, sizeof(env_name));
	memset(env_val, 0, sizeof(env_val));
}

static void env_set(const char *name, const char *val)
{
	int i;

	for (i = 0; i < NENV; i++) {
		if (!env_name[i] || !strcmp(env_name[i], name)) {
			env_name[i] = name;
			env_val[i] = val;
			return;
		}
	}
	fail_msg("env table full");
}

static const char *env_get(const char *name)
{
	int i;

	for (i = 0; i < NENV && env_name[i]; i++)
		if (!strcmp(env_name[i], name))
			return env_val[i];
	return NULL;
}

static struct hb_config cfg;
static char err[512];

static int parse_cfg(void)
{
	memset(&cfg, 0xa5, sizeof(cfg));
	memset(err, 'x', sizeof(err));
	return hb_config_parse(&cfg, env_get, err, sizeof(err));
}

static void check_defaults(const struct hb_config *c)
{
	static const char zero[HB_PATH_MAX];
	static const struct hb_rule zrules[HB_MAX_RULES];

	assert_int_equal(c->disabled, 0);
	assert_int_equal(c->interval_ms, 5000);
	assert_int_equal(c->timeout_ms, 15000);
	assert_int_equal(c->connect_timeout_ms, 0);
	assert_int_equal(c->idle_timeout_ms, 0);
	assert_int_equal(c->log_level, HB_LOG_WARN);
	assert_int_equal(c->accept_mode, HB_ACCEPT_AUTO);
	assert_memory_equal(c->log_file, zero, HB_PATH_MAX);
	assert_memory_equal(c->events_file, zero, HB_PATH_MAX);
	assert_memory_equal(c->stats_file, zero, HB_PATH_MAX);
	assert_int_equal(c->nrules, 0);
	assert_memory_equal(c->rules, zrules, sizeof(zrules));
}

static int setup_env(void **state)
{
	(void)state;
	env_reset();
	return 0;
}

static void test_config_defaults(void **state)
{
	(void)state;
	assert_int_equal(parse_cfg(), 0);
	check_defaults(&cfg);
	assert_string_equal(err, "");

	/* A NULL getter: everything unset. */
	memset(&cfg, 0xa5, sizeof(cfg));
	assert_int_equal(hb_config_parse(&cfg, NULL, NULL, 0), 0);
	check_defaults(&cfg);

	/* Empty values are defaults too. */
	for (int i = 0; i < hb_noptions; i++)
		env_set(hb_options[i].env, "");
	assert_int_equal(parse_cfg(), 0);
	check_defaults(&cfg);
}

static void test_config_durations(void **state)
{
	(void)state;
	env_set("HBSHIM_INTERVAL", "2s");
	assert_int_equal(parse_cfg(), 0);
	assert_int_equal(cfg.interval_ms, 2000);
	assert_int_equal(cfg.timeout_ms, 6000);

	env_set("HBSHIM_INTERVAL", "1ms");
	assert_int_equal(parse_cfg(), 0);
	assert_int_equal(cfg.timeout_ms, 3);

	env_set("HBSHIM_INTERVAL", "1h");
	assert_int_equal(parse_cfg(), 0);
	assert_int_equal(cfg.interval_ms, 3600000);
	assert_int_equal(cfg.timeout_ms, 10800000);

	env_set("HBSHIM_INTERVAL", "");
	env_set("HBSHIM_TIMEOUT", "20s");
	assert_int_equal(parse_cfg(), 0);
	assert_int_equal(cfg.interval_ms, 5000);
	assert_int_equal(cfg.timeout_ms, 20000);

	env_set("HBSHIM_TIMEOUT", "5001ms");
	assert_int_equal(parse_cfg(), 0);
	assert_int_equal(cfg.timeout_ms, 5001);

	env_set("HBSHIM_TIMEOUT", "24h");
	assert_int_equal(parse_cfg(), 0);
	assert_int_equal(cfg.timeout_ms, 86400000);

	env_set("HBSHIM_INTERVAL", "10");
	env_set("HBSHIM_TIMEOUT", "11");
	assert_int_equal(parse_cfg(), 0);
	assert_int_equal(cfg.interval_ms, 10000);
	assert_int_equal(cfg.timeout_ms, 11000);

	env_reset();
	env_set("HBSHIM_CONNECT_TIMEOUT", "3s");
	env_set("HBSHIM_IDLE_TIMEOUT", "10m");
	assert_int_equal(parse_cfg(), 0);
	assert_int_equal(cfg.connect_timeout_ms, 3000);
	assert_int_equal(cfg.idle_timeout_ms, 600000);
	env_set("HBSHIM_CONNECT_TIMEOUT", "0");
	env_set("HBSHIM_IDLE_TIMEOUT", "0ms");
	assert_int_equal(parse_cfg(), 0);
	assert_int_equal(cfg.connect_timeout_ms, 0);
	assert_int_equal(cfg.idle_timeout_ms, 0);
	env_set("HBSHIM_IDLE_TIMEOUT", "4294967295ms");
	assert_int_equal(parse_cfg(), 0);
	assert_int_equal(cfg.idle_timeout_ms, UINT32_MAX);
}

static void expect_bad(const char *name, const char *val)
{
	env_set(name, val);
	if (parse_cfg() != -EINVAL)
		fail_msg("%s=\"%s\" was accepted", name, val);
	if (strncmp(err, name, strlen(name)) != 0 || err[strlen(name)] != ':')
		fail_msg("%s=\"%s\": error line \"%s\" does not start with the name", name, val, err);
	assert_null(strchr(err, '\n'));
	assert_int_equal(cfg.disabled, 1);
}

static void test_config_rejects(void **state)
{
	(void)state;
	expect_bad("HBSHIM_INTERVAL", "0");
	expect_bad("HBSHIM_INTERVAL", "3600001ms");
	expect_bad("HBSHIM_INTERVAL", "61m");
	expect_bad("HBSHIM_INTERVAL", "5x");
	expect_bad("HBSHIM_INTERVAL", "-1");
	expect_bad("HBSHIM_INTERVAL", "1.5s");
	expect_bad("HBSHIM_INTERVAL", " 5s");
	expect_bad("HBSHIM_INTERVAL", "99999999999999");
	env_reset();
	expect_bad("HBSHIM_TIMEOUT", "0");
	expect_bad("HBSHIM_TIMEOUT", "5s");   /* equal to the default interval */
	expect_bad("HBSHIM_TIMEOUT", "4999ms");
	expect_bad("HBSHIM_TIMEOUT", "1441m");
	expect_bad("HBSHIM_TIMEOUT", "86400001ms");
	expect_bad("HBSHIM_TIMEOUT", "oops");
	env_set("HBSHIM_INTERVAL", "10s");
	expect_bad("HBSHIM_TIMEOUT", "10s");
	expect_bad("HBSHIM_TIMEOUT", "9s");
	env_reset();
	expect_bad("HBSHIM_CONNECT_TIMEOUT", "4294967296ms");
	expect_bad("HBSHIM_CONNECT_TIMEOUT", "1s ");
	env_reset();
	expect_bad("HBSHIM_IDLE_TIMEOUT", "-5s");
	env_reset();
	expect_bad("HBSHIM_LOG", "verbose");
	expect_bad("HBSHIM_LOG", "warning");
	expect_bad("HBSHIM_LOG", " warn");
	expect_bad("HBSHIM_LOG", "3");
	env_reset();
	expect_bad("HBSHIM_ACCEPT", "frame");
	expect_bad("HBSHIM_ACCEPT", "autox");
	env_reset();
	expect_bad("HBSHIM_DISABLE", "2");
	expect_bad("HBSHIM_DISABLE", "on");
	expect_bad("HBSHIM_DISABLE", "yess");
	expect_bad("HBSHIM_DISABLE", " 1");
	env_reset();
	expect_bad("HBSHIM_FRAME", "10.0.0.1");
	expect_bad("HBSHIM_FRAME", "*:80,");
	expect_bad("HBSHIM_FRAME", "[::1]:0");
}

static void test_config_enums(void **state)
{
	static const struct {
		const char *v;
		int level;
	} logs[] = {
		{ "off", HB_LOG_OFF },	   { "error", HB_LOG_ERROR }, { "warn", HB_LOG_WARN },
		{ "info", HB_LOG_INFO },   { "debug", HB_LOG_DEBUG }, { "DEBUG", HB_LOG_DEBUG },
		{ "Info", HB_LOG_INFO },
	};
	static const struct {
		const char *v;
		int on;
	} bools[] = {
		{ "1", 1 },	{ "true", 1 }, { "yes", 1 }, { "TRUE", 1 }, { "Yes", 1 },
		{ "0", 0 },	{ "false", 0 }, { "no", 0 }, { "NO", 0 },   { "", 0 },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(logs) / sizeof(logs[0]); i++) {
		env_set("HBSHIM_LOG", logs[i].v);
		assert_int_equal(parse_cfg(), 0);
		assert_int_equal(cfg.log_level, logs[i].level);
	}
	env_set("HBSHIM_ACCEPT", "raw");
	assert_int_equal(parse_cfg(), 0);
	assert_int_equal(cfg.accept_mode, HB_ACCEPT_RAW);
	env_set("HBSHIM_ACCEPT", "auto");
	assert_int_equal(parse_cfg(), 0);
	assert_int_equal(cfg.accept_mode, HB_ACCEPT_AUTO);
	for (i = 0; i < sizeof(bools) / sizeof(bools[0]); i++) {
		env_set("HBSHIM_DISABLE", bools[i].v);
		assert_int_equal(parse_cfg(), 0);
		assert_int_equal(cfg.disabled, bools[i].on);
		/* Disabling does not skip the other variables. */
		assert_int_equal(cfg.accept_mode, HB_ACCEPT_AUTO);
	}
}

static void test_config_disable_still_validates(void **state)
{
	(void)state;
	env_set("HBSHIM_DISABLE", "1");
	env_set("HBSHIM_INTERVAL", "2s");
	assert_int_equal(parse_cfg(), 0);
	assert_int_equal(cfg.disabled, 1);
	assert_int_equal(cfg.interval_ms, 2000);
	assert_int_equal(cfg.timeout_ms, 6000);
	env_set("HBSHIM_INTERVAL", "2x");
	assert_int_equal(parse_cfg(), -EINVAL);
	assert_non_null(strstr(err, "HBSHIM_INTERVAL"));
}

static void test_config_paths_and_rules(void **state)
{
	char path[HB_PATH_MAX + 1];

	(void)state;
	env_set("HBSHIM_LOG_FILE", "/tmp/hb.log");
	env_set("HBSHIM_EVENTS", "events.jsonl");
	env_set("HBSHIM_STATS", "/run/hb.prom");
	env_set("HBSHIM_FRAME", "*:80, 10.0.0.0/8:*");
	assert_int_equal(parse_cfg(), 0);
	assert_string_equal(cfg.log_file, "/tmp/hb.log");
	assert_string_equal(cfg.events_file, "events.jsonl");
	assert_string_equal(cfg.stats_file, "/run/hb.prom");
	assert_int_equal(cfg.nrules, 2);
	check_rule(&cfg.rules[0], 0, 0, 80, NULL);
	check_rule(&cfg.rules[1], AF_INET, 8, 0, "10.0.0.0");

	/* HB_PATH_MAX - 1 bytes fit, HB_PATH_MAX do not. */
	memset(path, 'p', sizeof(path));
	path[0] = '/';
	path[HB_PATH_MAX - 1] = 0;
	env_set("HBSHIM_STATS", path);
	assert_int_equal(parse_cfg(), 0);
	assert_int_equal(strlen(cfg.stats_file), HB_PATH_MAX - 1);
	assert_string_equal(cfg.stats_file, path);
	path[HB_PATH_MAX - 1] = 'p';
	path[HB_PATH_MAX] = 0;
	expect_bad("HBSHIM_STATS", path);
	expect_bad("HBSHIM_EVENTS", path);
	expect_bad("HBSHIM_LOG_FILE", path);
}

static void test_config_error_lines(void **state)
{
	char small[12];

	(void)state;
	env_set("HBSHIM_INTERVAL", "5x");
	assert_int_equal(parse_cfg(), -EINVAL);
	assert_string_equal(err, "HBSHIM_INTERVAL: invalid value \"5x\": expected a duration "
				 "such as 250ms, 5s, 1m or a bare number of seconds (1ms..1h)");

	env_reset();
	env_set("HBSHIM_INTERVAL", "2s");
	env_set("HBSHIM_TIMEOUT", "2s");
	assert_int_equal(parse_cfg(), -EINVAL);
	assert_string_equal(err, "HBSHIM_TIMEOUT: invalid value \"2s\": expected a duration "
				 "such as 250ms, 5s, 1m or a bare number of seconds (more than "
				 "HBSHIM_INTERVAL, here 2s, and at most 24h)");

	env_reset();
	env_set("HBSHIM_IDLE_TIMEOUT", "1 s");
	assert_int_equal(parse_cfg(), -EINVAL);
	assert_string_equal(err, "HBSHIM_IDLE_TIMEOUT: invalid value \"1 s\": expected a "
				 "duration such as 250ms, 5s, 1m or a bare number of seconds "
				 "(0 = off)");

	env_reset();
	env_set("HBSHIM_LOG", "loud");
	assert_int_equal(parse_cfg(), -EINVAL);
	assert_string_equal(err, "HBSHIM_LOG: invalid value \"loud\": expected error, warn, "
				 "info, debug or off");

	env_reset();
	env_set("HBSHIM_ACCEPT", "x");
	assert_int_equal(parse_cfg(), -EINVAL);
	assert_string_equal(err, "HBSHIM_ACCEPT: invalid value \"x\": expected auto or raw");

	env_reset();
	env_set("HBSHIM_DISABLE", "maybe");
	assert_int_equal(parse_cfg(), -EINVAL);
	assert_string_equal(err, "HBSHIM_DISABLE: invalid value \"maybe\": expected 1, 0, true, "
				 "false, yes or no");

	/* Rules: the offending item is pointed at. */
	env_reset();
	env_set("HBSHIM_FRAME", "*:80, 10.0.0.1 ,[::1]:1");
	assert_int_equal(parse_cfg(), -EINVAL);
	assert_string_equal(err, "HBSHIM_FRAME: invalid value \"*:80, 10.0.0.1 ,[::1]:1\" (at "
				 "\"10.0.0.1\"): expected comma-separated peer rules: *, *:PORT, "
				 "ADDR:PORT, ADDR/PREFIX:PORT, [V6ADDR]:PORT or [V6ADDR/PREFIX]:PORT, "
				 "PORT 1..65535 or * (at most 32 rules)");
	env_set("HBSHIM_FRAME", "bogus");
	assert_int_equal(parse_cfg(), -EINVAL);
	assert_true(strncmp(err, "HBSHIM_FRAME: invalid value \"bogus\": expected", 45) == 0);
	env_set("HBSHIM_FRAME", "*:1,");
	assert_int_equal(parse_cfg(), -EINVAL);
	assert_true(strncmp(err, "HBSHIM_FRAME: invalid value \"*:1,\" (empty rule): ", 49) == 0);
	env_set("HBSHIM_FRAME", "*,*,*,*,*,*,*,*,*,*,*,*,*,*,*,*,*,*,*,*,*,*,*,*,*,*,*,*,*,*,*,*,*");
	assert_int_equal(parse_cfg(), -EINVAL);
	assert_non_null(strstr(err, "\" (too many rules): expected"));

	/* Control bytes and quotes are escaped, long values cut at 80 bytes. */
	env_reset();
	env_set("HBSHIM_LOG", "a\"b\\c\nd\x7f");
	assert_int_equal(parse_cfg(), -EINVAL);
	assert_string_equal(err, "HBSHIM_LOG: invalid value \"a\\\"b\\\\c\\x0ad\\x7f\": expected "
				 "error, warn, info, debug or off");
	env_set("HBSHIM_LOG", "0123456789012345678901234567890123456789"
			      "0123456789012345678901234567890123456789x");
	assert_int_equal(parse_cfg(), -EINVAL);
	assert_string_equal(err, "HBSHIM_LOG: invalid value \""
				 "0123456789012345678901234567890123456789"
				 "0123456789012345678901234567890123456789...\": expected "
				 "error, warn, info, debug or off");

	/* A short buffer gets a NUL-terminated prefix; no buffer is fine. */
	memset(small, 'x', sizeof(small));
	assert_int_equal(hb_config_parse(&cfg, env_get, small, sizeof(small)), -EINVAL);
	assert_string_equal(small, "HBSHIM_LOG:");
	assert_int_equal(hb_config_parse(&cfg, env_get, NULL, 0), -EINVAL);
	/* The first bad variable in table order is the one reported. */
	env_set("HBSHIM_INTERVAL", "bad");
	assert_int_equal(parse_cfg(), -EINVAL);
	assert_true(strncmp(err, "HBSHIM_INTERVAL:", 16) == 0);
}

static void test_option_docs(void **state)
{
	static const char *const want[][2] = {
		{ "HBSHIM_INTERVAL", "--interval" },
		{ "HBSHIM_TIMEOUT", "--timeout" },
		{ "HBSHIM_CONNECT_TIMEOUT", "--connect-timeout" },
		{ "HBSHIM_IDLE_TIMEOUT", "--idle-timeout" },
		{ "HBSHIM_LOG", "--log" },
		{ "HBSHIM_LOG_FILE", "--log-file" },
		{ "HBSHIM_EVENTS", "--events" },
		{ "HBSHIM_STATS", "--stats" },
		{ "HBSHIM_DISABLE", "--disable" },
		{ "HBSHIM_FRAME", "--frame" },
		{ "HBSHIM_ACCEPT", "--accept" },
		{ "HBSHIM_ONLY_CMDS", "--only" },
		{ "HBSHIM_SKIP_CMDS", "--skip" },
		{ "HBSHIM_FAULTS", "--fault" },
		{ "HBSHIM_CONTROL", "--control" },
		{ "HBSHIM_SEED", "--seed" },
	};
	size_t i;
	int j, found;

	(void)state;
	assert_int_equal(hb_noptions, sizeof(want) / sizeof(want[0]));
	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		found = 0;
		for (j = 0; j < hb_noptions; j++) {
			const struct hb_option *d = &hb_options[j];

			if (strcmp(d->env, want[i][0]) != 0)
				continue;
			found++;
			assert_non_null(d->option);
			assert_string_equal(d->option, want[i][1]);
			assert_non_null(d->deflt);
			assert_true(d->deflt[0] != 0);
			assert_non_null(d->doc);
			assert_true(d->doc[0] != 0);
			assert_null(strchr(d->doc, '\n'));
		}
		if (found != 1)
			fail_msg("%s listed %d times", want[i][0], found);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_duration_forms),
		cmocka_unit_test(test_duration_limits),
		cmocka_unit_test(test_duration_rejects),
		cmocka_unit_test(test_rules_any),
		cmocka_unit_test(test_rules_ipv4),
		cmocka_unit_test(test_rules_ipv6),
		cmocka_unit_test(test_rules_lists),
		cmocka_unit_test(test_rules_rejects),
		cmocka_unit_test(test_match_ipv4_prefixes),
		cmocka_unit_test(test_match_ipv6_prefixes),
		cmocka_unit_test(test_match_any_and_ports),
		cmocka_unit_test_setup(test_config_defaults, setup_env),
		cmocka_unit_test_setup(test_config_durations, setup_env),
		cmocka_unit_test_setup(test_config_rejects, setup_env),
		cmocka_unit_test_setup(test_config_enums, setup_env),
		cmocka_unit_test_setup(test_config_disable_still_validates, setup_env),
		cmocka_unit_test_setup(test_config_paths_and_rules, setup_env),
		cmocka_unit_test_setup(test_config_error_lines, setup_env),
		cmocka_unit_test(test_option_docs),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
