/*
 * parse.c - the value syntax the variables share: durations, lists and
 * peer rules (parsing and matching).
 *
 * config.c (every HBSHIM_* variable) and fault.c (the HBSHIM_FAULTS
 * grammar, whose rules carry durations and a peer) both read values with
 * these, so they live below both. Pure, as config.c is: no malloc, no
 * stdio, no system calls, no errno; numbers are parsed by hand (strtoul
 * honours locales and sets errno), addresses with inet_pton.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "hb.h"

/* --------------------------------------------------------------- helpers */

static int is_digit(char ch)
{
	return ch >= '0' && ch <= '9';
}

/* Parse exactly n decimal digits of s into *out, at most max. -EINVAL on
 * anything else (empty, sign, other characters, a value above max). */
static int parse_uint(const char *s, size_t n, uint32_t max, uint32_t *out)
{
	uint64_t v = 0;
	size_t i;

	if (n == 0)
		return -EINVAL;
	for (i = 0; i < n; i++) {
		if (!is_digit(s[i]))
			return -EINVAL;
		v = v * 10 + (uint64_t)(s[i] - '0');
		if (v > max)
			return -EINVAL;
	}
	*out = (uint32_t)v;
	return 0;
}

/* ------------------------------------------------------------- durations */

int hb_parse_duration(const char *s, uint32_t *out_ms)
{
	const char *p = s;
	uint64_t v = 0, mul;
	int too_big = 0;

	if (!s || !is_digit(*s))
		return -EINVAL;
	/*
	 * Keep scanning after the value outgrew 32 bits, so that a long number
	 * with a bad suffix is still reported as bad syntax. v never exceeds
	 * (2^32 - 1) * 10 + 9, far below 2^64.
	 */
	for (; is_digit(*p); p++) {
		if (v > UINT32_MAX)
			too_big = 1;
		else
			v = v * 10 + (uint64_t)(*p - '0');
	}
	if (*p == 0)
		mul = HB_MS_PER_S;
	else if (p[0] == 'm' && p[1] == 's' && p[2] == 0)
		mul = 1;
	else if (p[0] == 's' && p[1] == 0)
		mul = HB_MS_PER_S;
	else if (p[0] == 'm' && p[1] == 0)
		mul = HB_MS_PER_M;
	else if (p[0] == 'h' && p[1] == 0)
		mul = HB_MS_PER_H;
	else
		return -EINVAL;
	if (too_big || v > UINT32_MAX / mul)
		return -ERANGE;
	*out_ms = (uint32_t)(v * mul);
	return 0;
}

/* ----------------------------------------------------------------- rules */

static const uint8_t v4mapped_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

/* Clear the bits of addr (len bytes) after the first prefix bits. */
static void mask_addr(uint8_t *addr, unsigned len, unsigned prefix)
{
	unsigned i;

	for (i = 0; i < len; i++) {
		if (prefix >= 8) {
			prefix -= 8;
			continue;
		}
		addr[i] &= (uint8_t)(0xff00u >> prefix);
		prefix = 0;
	}
}

/* 1 when the first prefix bits of a and b are equal. */
static int prefix_eq(const uint8_t *a, const uint8_t *b, unsigned prefix)
{
	unsigned full = prefix / 8, rest = prefix % 8;

	if (full && memcmp(a, b, full) != 0)
		return 0;
	if (rest) {
		uint8_t m = (uint8_t)(0xff00u >> rest);

		if ((a[full] & m) != (b[full] & m))
			return 0;
	}
	return 1;
}

/* Port field of a rule: "*" (any, stored as 0) or 1..65535. */
static int parse_port(const char *s, size_t n, uint16_t *port)
{
	uint32_t v;

	if (n == 1 && s[0] == '*') {
		*port = 0;
		return 0;
	}
	if (parse_uint(s, n, 65535, &v) < 0 || v == 0)
		return -EINVAL;
	*port = (uint16_t)v;
	return 0;
}

/*
 * Address part of a rule, "ADDR" or "ADDR/PREFIX", family AF_INET or
 * AF_INET6 as announced by the brackets. An IPv4-mapped IPv6 rule with a
 * prefix of 96 or more is stored as the IPv4 rule it stands for, so that it
 * matches AF_INET peers as well as mapped ones.
 */
static int parse_addr(const char *s, size_t n, int family, struct hb_rule *r)
{
	char tmp[INET6_ADDRSTRLEN];
	unsigned maxbits = family == AF_INET ? 32 : 128;
	uint32_t prefix = maxbits;
	size_t alen = n;
	const char *slash = memchr(s, '/', n);

	if (slash) {
		alen = (size_t)(slash - s);
		if (parse_uint(slash + 1, n - alen - 1, maxbits, &prefix) < 0)
			return -EINVAL;
	}
	if (alen == 0 || alen >= sizeof(tmp))
		return -EINVAL;
	memcpy(tmp, s, alen);
	tmp[alen] = 0;
	if (inet_pton(family, tmp, r->addr) != 1)
		return -EINVAL;
	if (family == AF_INET6 && prefix >= 96 && memcmp(r->addr, v4mapped_prefix, 12) == 0) {
		memmove(r->addr, r->addr + 12, 4);
		memset(r->addr + 4, 0, 12);
		family = AF_INET;
		prefix -= 96;
		maxbits = 32;
	}
	mask_addr(r->addr, maxbits / 8, prefix);
	r->family = (uint8_t)family;
	r->prefix = (uint8_t)prefix;
	return 0;
}

/* One rule, s[0..n) with no surrounding blanks. */
static int parse_rule(const char *s, size_t n, struct hb_rule *r)
{
	const char *colon;

	memset(r, 0, sizeof(*r));
	if (n == 0)
		return -EINVAL;
	if (s[0] == '*') {
		if (n == 1)
			return 0;
		if (s[1] != ':')
			return -EINVAL;
		return parse_port(s + 2, n - 2, &r->port);
	}
	if (s[0] == '[') {
		const char *close = memchr(s, ']', n);
		size_t inner;

		if (!close)
			return -EINVAL;
		inner = (size_t)(close - s) - 1;
		colon = close + 1;
		if (colon >= s + n || *colon != ':')
			return -EINVAL;
		if (parse_addr(s + 1, inner, AF_INET6, r) < 0)
			return -EINVAL;
	} else {
		colon = memchr(s, ':', n);
		if (!colon)
			return -EINVAL;
		if (parse_addr(s, (size_t)(colon - s), AF_INET, r) < 0)
			return -EINVAL;
	}
	return parse_port(colon + 1, n - (size_t)(colon + 1 - s), &r->port);
}

static int is_blank(char ch)
{
	return ch == ' ' || ch == '\t';
}

int hb_list_blank(const char *s)
{
	if (!s)
		return 1;
	while (is_blank(*s))
		s++;
	return *s == 0;
}

int hb_list_item(const char **p, char sep, const char **start, size_t *len)
{
	const char *q = *p, *a, *b;

	while (is_blank(*q))
		q++;
	a = q;
	while (*q && *q != sep)
		q++;
	b = q;
	while (b > a && is_blank(b[-1]))
		b--;
	*start = a;
	*len = (size_t)(b - a);
	if (*q == 0) {
		*p = q;
		return 0;
	}
	*p = q + 1; /* the separator; an item must follow it */
	return 1;
}

/*
 * hb_parse_rules, also telling where it stopped: on failure *bad and
 * *badlen delimit the offending item (for the error line).
 */
int hb_parse_rule_list(const char *s, struct hb_rule *out, int max, int *n, const char **bad,
		       size_t *badlen)
{
	const char *p = s;
	int count = 0;

	*n = 0;
	if (hb_list_blank(s))
		return 0; /* an empty list: no rules */
	for (int more = 1; more;) {
		const char *start;
		size_t len;
		int ret;

		more = hb_list_item(&p, ',', &start, &len);
		*bad = start;
		*badlen = len;
		if (count >= max)
			return -E2BIG;
		ret = parse_rule(start, len, &out[count]);
		if (ret < 0)
			return ret;
		count++;
	}
	*n = count;
	return 0;
}

int hb_parse_rules(const char *s, struct hb_rule *out, int max, int *n)
{
	const char *bad;
	size_t badlen;

	return hb_parse_rule_list(s, out, max, n, &bad, &badlen);
}

static int rule_match(const struct hb_rule *r, int family, const uint8_t *addr,
		      const uint8_t *v4, uint16_t port)
{
	if (r->port && r->port != port)
		return 0;
	if (r->family == 0)
		return 1;
	if (r->family == AF_INET) {
		/* family is AF_INET, or AF_INET6 with a mapped address in v4 */
		return v4 && prefix_eq(r->addr, v4, r->prefix);
	}
	if (r->family == AF_INET6)
		return family == AF_INET6 && prefix_eq(r->addr, addr, r->prefix);
	return 0;
}

int hb_rules_match(const struct hb_rule *rules, int n, const struct sockaddr *sa,
		   socklen_t len)
{
	const uint8_t *addr, *v4;
	uint16_t port;
	int family, i;

	if (!sa || len < (socklen_t)sizeof(sa_family_t))
		return 0;
	family = sa->sa_family;
	if (family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		addr = (const uint8_t *)&sin->sin_addr;
		v4 = addr;
		port = ntohs(sin->sin_port);
	} else if (family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

		addr = (const uint8_t *)&sin6->sin6_addr;
		v4 = memcmp(addr, v4mapped_prefix, 12) == 0 ? addr + 12 : NULL;
		port = ntohs(sin6->sin6_port);
	} else {
		return 0;
	}
	for (i = 0; i < n; i++)
		if (rule_match(&rules[i], family, addr, v4, port))
			return 1;
	return 0;
}
