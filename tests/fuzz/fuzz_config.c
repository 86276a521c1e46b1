/*
 * fuzz_config.c - libFuzzer target for the configuration parser
 * (shim/config.c and shim/parse.c, pure): hb_parse_duration,
 * hb_parse_rules, hb_rules_match and hb_config_parse.
 *
 * Input: byte 0 is the size of the error buffer (0 = none, NULL), byte 1
 * picks the rule capacity (1..HB_MAX_RULES), the rest is split at '\n' into
 * values for the variables of hb_options[], in table order (an empty
 * piece leaves its variable unset). Each value lives in a heap buffer of
 * exactly its length plus the NUL, as does the error buffer, so ASan sees
 * any access outside them. Each value is also fed to hb_parse_duration and
 * hb_parse_rules on its own.
 *
 * Checked: return values are the documented ones; a failed duration leaves
 * its output untouched and a good one equals a slow reference; parsed rules
 * are well formed (family, prefix range, address bits past the prefix
 * clear) and each matches an address built from itself; a parsed
 * configuration is within its documented bounds; an error line is
 * NUL-terminated inside the buffer, one line, naming the variable.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "hb.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NVARS_MAX 16

static char *values[NVARS_MAX];

static const char *get(const char *name)
{
	for (int i = 0; i < hb_noptions && i < NVARS_MAX; i++)
		if (strcmp(name, hb_options[i].env) == 0)
			return values[i];
	abort(); /* asked for a variable the table does not list */
}

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* hb_parse_duration's documented grammar, the slow way. */
static int ref_duration(const char *s, uint64_t *ms)
{
	uint64_t v = 0, mul;
	int big = 0;

	if (!is_digit(*s))
		return -EINVAL;
	for (; is_digit(*s); s++) {
		if (v > 100000000000ull)
			big = 1;
		else
			v = v * 10 + (uint64_t)(*s - '0');
	}
	if (!strcmp(s, ""))
		mul = 1000;
	else if (!strcmp(s, "ms"))
		mul = 1;
	else if (!strcmp(s, "s"))
		mul = 1000;
	else if (!strcmp(s, "m"))
		mul = 60000;
	else if (!strcmp(s, "h"))
		mul = 3600000;
	else
		return -EINVAL;
	if (big || v * mul > UINT32_MAX)
		return -ERANGE;
	*ms = v * mul;
	return 0;
}

static void check_duration(const char *s)
{
	uint32_t ms = 0xdeadbeef;
	uint64_t want = 0;
	int r = hb_parse_duration(s, &ms), w = ref_duration(s, &want);

	if (r != w)
		abort();
	if (r < 0 && ms != 0xdeadbeef)
		abort();
	if (r == 0 && ms != want)
		abort();
}

/* Bits of a[0..len) past the first prefix bits are all clear. */
static int masked(const uint8_t *a, unsigned len, unsigned prefix)
{
	for (unsigned bit = prefix; bit < len * 8; bit++)
		if (a[bit / 8] & (0x80u >> (bit % 8)))
			return 0;
	return 1;
}

static void check_rule_self_match(const struct hb_rule *r)
{
	uint16_t port = r->port ? r->port : 4242;

	if (r->family == AF_INET6) {
		struct sockaddr_in6 s6;

		memset(&s6, 0, sizeof(s6));
		s6.sin6_family = AF_INET6;
		s6.sin6_port = htons(port);
		memcpy(&s6.sin6_addr, r->addr, 16);
		if (hb_rules_match(r, 1, (const struct sockaddr *)&s6, sizeof(s6)) != 1)
			abort();
	} else {
		struct sockaddr_in s4;

		memset(&s4, 0, sizeof(s4));
		s4.sin_family = AF_INET;
		s4.sin_port = htons(port);
		memcpy(&s4.sin_addr, r->addr, 4);
		if (hb_rules_match(r, 1, (const struct sockaddr *)&s4, sizeof(s4)) != 1)
			abort();
	}
}

static void check_rules(const struct hb_rule *rules, int n)
{
	static const uint8_t zero[16];

	for (int i = 0; i < n; i++) {
		const struct hb_rule *r = &rules[i];

		switch (r->family) {
		case 0:
			if (r->prefix || memcmp(r->addr, zero, 16))
				abort();
			break;
		case AF_INET:
			if (r->prefix > 32 || !masked(r->addr, 16, r->prefix))
				abort();
			break;
		case AF_INET6:
			if (r->prefix > 128 || !masked(r->addr, 16, r->prefix))
				abort();
			break;
		default:
			abort();
		}
		check_rule_self_match(r);
	}
}

static void check_rules_parse(const char *s, int max, const uint8_t *addr_bytes, size_t nb)
{
	struct hb_rule rules[HB_MAX_RULES + 1];
	int n = -1, r;

	memset(rules, 0x5a, sizeof(rules));
	r = hb_parse_rules(s, rules, max, &n);
	if (r != 0 && r != -EINVAL && r != -E2BIG)
		abort();
	if (rules[max].family != 0x5a) /* nothing written past max */
		abort();
	if (r != 0)
		return;
	if (n < 0 || n > max)
		abort();
	check_rules(rules, n);
	/* Any address: the answer is 0 or 1 and never reads past sa. */
	if (nb >= 18) {
		struct sockaddr_in6 s6;
		struct sockaddr_in s4;
		int m;

		memset(&s6, 0, sizeof(s6));
		s6.sin6_family = AF_INET6;
		memcpy(&s6.sin6_port, addr_bytes, 2);
		memcpy(&s6.sin6_addr, addr_bytes + 2, 16);
		m = hb_rules_match(rules, n, (const struct sockaddr *)&s6, sizeof(s6));
		if (m != 0 && m != 1)
			abort();
		memset(&s4, 0, sizeof(s4));
		s4.sin_family = AF_INET;
		memcpy(&s4.sin_port, addr_bytes, 2);
		memcpy(&s4.sin_addr, addr_bytes + 2, 4);
		m = hb_rules_match(rules, n, (const struct sockaddr *)&s4, sizeof(s4));
		if (m != 0 && m != 1)
			abort();
		/* Too short for its family: never a match. */
		if (hb_rules_match(rules, n, (const struct sockaddr *)&s4, sizeof(s4) - 1) != 0)
			abort();
	}
}

/* A stored HBSHIM_ONLY_CMDS / HBSHIM_SKIP_CMDS list: "a,b,c" inside its
 * buffer, at most HB_MAX_CMDS names of 1..HB_CMD_NAME_MAX bytes without '/'
 * or blanks at either end; each name is in the list (hb_scope_admits). */
static void check_cmds(const struct hb_config *c, const char *list)
{
	const char *nul = memchr(list, 0, HB_CMDS_MAX), *p = list;
	int n = 0;

	if (!nul)
		abort();
	while (*p) {
		size_t k = strcspn(p, ",");
		char name[HB_CMD_NAME_MAX + 1];

		if (k == 0 || k > HB_CMD_NAME_MAX || memchr(p, '/', k) || p[0] == ' ' ||
		    p[0] == '\t' || p[k - 1] == ' ' || p[k - 1] == '\t' || ++n > HB_MAX_CMDS)
			abort();
		memcpy(name, p, k);
		name[k] = 0;
		if (list == c->skip_cmds && hb_scope_admits(c, name))
			abort();
		if (list == c->only_cmds && !strstr(c->skip_cmds, name) && !hb_scope_admits(c, name))
			abort();
		p += k;
		if (*p == ',' && !*++p)
			abort(); /* a trailing comma */
	}
}

static void check_config(size_t errlen)
{
	struct hb_config c;
	char *err = errlen ? malloc(errlen) : NULL;
	int r;

	if (errlen && !err)
		abort();
	r = hb_config_parse(&c, get, err, errlen);
	if (r == 0) {
		if (c.disabled != 0 && c.disabled != 1)
			abort();
		if (c.interval_ms < 1 || c.interval_ms > 3600000u)
			abort();
		if (c.timeout_ms <= c.interval_ms || c.timeout_ms > 24u * 3600000u)
			abort();
		if (c.log_level < HB_LOG_OFF || c.log_level > HB_LOG_DEBUG)
			abort();
		if (c.accept_mode != HB_ACCEPT_AUTO && c.accept_mode != HB_ACCEPT_RAW)
			abort();
		if (c.nrules < 0 || c.nrules > HB_MAX_RULES)
			abort();
		check_rules(c.rules, c.nrules);
		if (!memchr(c.log_file, 0, HB_PATH_MAX) || !memchr(c.events_file, 0, HB_PATH_MAX) ||
		    !memchr(c.stats_file, 0, HB_PATH_MAX))
			abort();
		check_cmds(&c, c.only_cmds);
		check_cmds(&c, c.skip_cmds);
		if (errlen && err[0] != 0)
			abort();
	} else {
		if (r != -EINVAL || c.disabled != 1)
			abort();
		if (errlen) {
			const char *nul = memchr(err, 0, errlen);

			if (!nul || memchr(err, '\n', (size_t)(nul - err)))
				abort();
			if (errlen > 8 && strncmp(err, "HBSHIM_", 7) != 0)
				abort();
		}
	}
	free(err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t errlen, at = 0;
	int nvars = hb_noptions < NVARS_MAX ? hb_noptions : NVARS_MAX, max;

	if (size < 2)
		return 0;
	errlen = data[0];
	max = 1 + data[1] % HB_MAX_RULES;
	data += 2;
	size -= 2;
	for (int i = 0; i < nvars; i++) {
		const uint8_t *nl = at < size ? memchr(data + at, '\n', size - at) : NULL;
		size_t end = nl ? (size_t)(nl - data) : size, len = at < size ? end - at : 0;

		values[i] = NULL;
		if (len) {
			values[i] = malloc(len + 1);
			if (!values[i])
				abort();
			memcpy(values[i], data + at, len);
			values[i][len] = 0;
			check_duration(values[i]);
			check_rules_parse(values[i], max, data, size);
		}
		at = end < size ? end + 1 : size;
	}
	check_config(errlen);
	for (int i = 0; i < nvars; i++) {
		free(values[i]);
		values[i] = NULL;
	}
	return 0;
}
