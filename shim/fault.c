/*
 * fault.c - the grammar of HBSHIM_FAULTS (test-harness fault injection).
 *
 * Pure, like config.c (which calls it): no malloc, no stdio, no system
 * calls, no errno; it runs in the library constructor and in the wrapper.
 * The runtime that applies the rules to connections is fault_io.c.
 *
 * Grammar (README "Testing a closed-source client"):
 *
 *   FAULTS = RULE { ";" RULE }
 *   RULE   = ITEM { "," ITEM }          exactly one ITEM is an action
 *   ITEM   = ACTION | KEY "=" VALUE
 *   ACTION = "latency=" DURATION | "bandwidth=" RATE | "slicer=" BYTES
 *          | "hang" | "reset" | "close" | "limit_data=" BYTES
 *          | "errno=" ENAME | "refuse" | "timeout" | "delay=" DURATION
 *   KEY    = name | peer | side | dir | call | jitter | after | bytes
 *          | nth | prob | for
 *
 * ';' and ',' never occur in a peer rule (parse.c's single-rule syntax:
 * "*", "*:PORT", "ADDR[/PREFIX]:PORT", "[V6ADDR[/PREFIX]]:PORT") nor in any
 * other value, so the split is unambiguous; '=' separates a key from its
 * value only at its first occurrence.
 */
#include <errno.h>
#include <string.h>

#include "hb.h"

/* Longest value copied for a sub-parser (peer rule, duration). */
#define VALUE_MAX 96

static const struct {
	const char *name;
	uint8_t action;
	uint8_t has_arg;
} actions[] = {
	{ "latency", HB_FA_LATENCY, 1 },   { "bandwidth", HB_FA_BANDWIDTH, 1 },
	{ "slicer", HB_FA_SLICER, 1 },     { "hang", HB_FA_HANG, 0 },
	{ "reset", HB_FA_RESET, 0 },       { "close", HB_FA_CLOSE, 0 },
	{ "limit_data", HB_FA_LIMIT, 1 },  { "errno", HB_FA_ERRNO, 1 },
	{ "refuse", HB_FA_REFUSE, 0 },     { "timeout", HB_FA_TIMEOUT, 0 },
	{ "delay", HB_FA_DELAY, 1 },
};

/* The errnos a rule may inject, by name. */
static const struct {
	const char *name;
	int err;
} errnos[] = {
	{ "ECONNRESET", ECONNRESET },     { "ECONNREFUSED", ECONNREFUSED },
	{ "ECONNABORTED", ECONNABORTED }, { "ETIMEDOUT", ETIMEDOUT },
	{ "EPIPE", EPIPE },               { "EHOSTUNREACH", EHOSTUNREACH },
	{ "ENETUNREACH", ENETUNREACH },   { "ENETDOWN", ENETDOWN },
	{ "EAGAIN", EAGAIN },             { "EINTR", EINTR },
	{ "ENOBUFS", ENOBUFS },           { "ENOMEM", ENOMEM },
	{ "EIO", EIO },                   { "EADDRNOTAVAIL", EADDRNOTAVAIL },
};

const char *hb_fault_action_name(int action)
{
	for (size_t i = 0; i < sizeof(actions) / sizeof(actions[0]); i++)
		if (actions[i].action == action)
			return actions[i].name;
	return "?";
}

const char *hb_fault_errno_name(int err)
{
	for (size_t i = 0; i < sizeof(errnos) / sizeof(errnos[0]); i++)
		if (errnos[i].err == err)
			return errnos[i].name;
	return "?";
}

/* s[0..n) equals the NUL-terminated word exactly. */
static int eq(const char *s, size_t n, const char *word)
{
	return strlen(word) == n && memcmp(s, word, n) == 0;
}

static int is_blank(char ch)
{
	return ch == ' ' || ch == '\t';
}

/* Decimal s[0..n) into *out, at most max; -EINVAL otherwise. */
static int parse_u64(const char *s, size_t n, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (n == 0 || n > 20)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		unsigned d;

		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		d = (unsigned)(s[i] - '0');
		if (v > (max - d) / 10)
			return -EINVAL;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

/* A byte count or rate: digits, optionally "k" (x 1000) or "m" (x 10^6). */
static int parse_size(const char *s, size_t n, uint32_t *out)
{
	uint64_t v, mul = 1;

	if (n > 1 && (s[n - 1] == 'k' || s[n - 1] == 'K')) {
		mul = 1000;
		n--;
	} else if (n > 1 && (s[n - 1] == 'm' || s[n - 1] == 'M')) {
		mul = 1000000;
		n--;
	}
	if (parse_u64(s, n, UINT32_MAX, &v) < 0 || v > UINT32_MAX / mul)
		return -EINVAL;
	*out = (uint32_t)(v * mul);
	return 0;
}

static int parse_dur(const char *s, size_t n, uint32_t *ms)
{
	char tmp[VALUE_MAX];

	if (n == 0 || n >= sizeof(tmp))
		return -EINVAL;
	memcpy(tmp, s, n);
	tmp[n] = 0;
	return hb_parse_duration(tmp, ms) < 0 ? -EINVAL : 0;
}

/* A probability: "0.25", "1", "0", or a percentage "25%", "12.5%"; stored
 * in millionths. At most six decimals of a fraction (four of a percent). */
static int parse_prob(const char *s, size_t n, uint32_t *ppm)
{
	uint64_t whole = 0, frac = 0;
	size_t i = 0, digits = 0, fd = 0, maxfd;
	int pct = 0;

	if (n && s[n - 1] == '%') {
		pct = 1;
		n--;
	}
	maxfd = pct ? 4 : 6;
	for (; i < n && s[i] >= '0' && s[i] <= '9'; i++, digits++) {
		whole = whole * 10 + (uint64_t)(s[i] - '0');
		if (whole > 100)
			return -EINVAL;
	}
	if (digits == 0)
		return -EINVAL;
	if (i < n && s[i] == '.') {
		for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++, fd++) {
			if (fd >= maxfd)
				return -EINVAL;
			frac = frac * 10 + (uint64_t)(s[i] - '0');
		}
		if (fd == 0)
			return -EINVAL;
	}
	if (i != n)
		return -EINVAL;
	for (; fd < maxfd; fd++)
		frac *= 10;
	/* frac is now in 10^-maxfd units of the whole part. */
	if (pct)
		whole = whole * 10000 + frac;     /* millionths */
	else
		whole = whole * 1000000 + frac;
	if (whole > 1000000)
		return -EINVAL;
	*ppm = (uint32_t)whole;
	return 0;
}

static int parse_name(const char *s, size_t n, char *out)
{
	if (n == 0 || n >= HB_FAULT_NAME)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' || ch == '.'))
			return -EINVAL;
	}
	memcpy(out, s, n);
	out[n] = 0;
	return 0;
}

static int parse_peer(const char *s, size_t n, struct hb_rule *r)
{
	char tmp[VALUE_MAX];
	int count = 0;

	/* hb_parse_rules reads a list: a lone rule has no comma (items are
	 * split at commas already) and must yield exactly one. */
	if (n == 0 || n >= sizeof(tmp))
		return -EINVAL;
	memcpy(tmp, s, n);
	tmp[n] = 0;
	if (hb_parse_rules(tmp, r, 1, &count) < 0 || count != 1)
		return -EINVAL;
	return 0;
}

/* Keys seen in a rule (each at most once). */
enum {
	K_ACTION = 1u << 0, K_NAME = 1u << 1, K_PEER = 1u << 2, K_SIDE = 1u << 3,
	K_DIR = 1u << 4, K_CALL = 1u << 5, K_JITTER = 1u << 6, K_AFTER = 1u << 7,
	K_BYTES = 1u << 8, K_NTH = 1u << 9, K_PROB = 1u << 10, K_FOR = 1u << 11,
};

/* One item key[=value] of a rule into f; *seen tracks the keys. */
static int parse_item(const char *s, size_t n, struct hb_fault *f, unsigned *seen)
{
	const char *eqs = memchr(s, '=', n);
	size_t kl = eqs ? (size_t)(eqs - s) : n;
	const char *v = eqs ? eqs + 1 : NULL;
	size_t vl = eqs ? n - kl - 1 : 0;
	unsigned key = 0;
	uint64_t u = 0;
	int ret = 0;

	for (size_t i = 0; i < sizeof(actions) / sizeof(actions[0]); i++) {
		if (!eq(s, kl, actions[i].name))
			continue;
		if (!!v != actions[i].has_arg || (*seen & K_ACTION))
			return -EINVAL;
		*seen |= K_ACTION;
		f->action = actions[i].action;
		switch (f->action) {
		case HB_FA_LATENCY:
		case HB_FA_DELAY:
			return parse_dur(v, vl, &f->arg);
		case HB_FA_BANDWIDTH:
		case HB_FA_SLICER:
			if (parse_size(v, vl, &f->arg) < 0 || f->arg == 0)
				return -EINVAL;
			return 0;
		case HB_FA_LIMIT:
			return parse_size(v, vl, &f->arg);
		case HB_FA_ERRNO:
			for (size_t k = 0; k < sizeof(errnos) / sizeof(errnos[0]); k++) {
				if (eq(v, vl, errnos[k].name)) {
					f->arg = (uint32_t)errnos[k].err;
					return 0;
				}
			}
			return -EINVAL;
		default:
			return 0;
		}
	}
	if (!v)
		return -EINVAL;
	if (eq(s, kl, "name")) {
		key = K_NAME;
		ret = parse_name(v, vl, f->name);
	} else if (eq(s, kl, "peer")) {
		key = K_PEER;
		ret = parse_peer(v, vl, &f->peer);
	} else if (eq(s, kl, "side")) {
		key = K_SIDE;
		if (eq(v, vl, "connect"))
			f->side = HB_FSIDE_CONNECT;
		else if (eq(v, vl, "accept"))
			f->side = HB_FSIDE_ACCEPT;
		else if (eq(v, vl, "any"))
			f->side = HB_FSIDE_ANY;
		else
			ret = -EINVAL;
	} else if (eq(s, kl, "dir")) {
		key = K_DIR;
		if (eq(v, vl, "in"))
			f->dir = HB_FDIR_IN;
		else if (eq(v, vl, "out"))
			f->dir = HB_FDIR_OUT;
		else if (eq(v, vl, "both"))
			f->dir = HB_FDIR_IN | HB_FDIR_OUT;
		else
			ret = -EINVAL;
	} else if (eq(s, kl, "call")) {
		key = K_CALL;
		if (eq(v, vl, "connect"))
			f->call = HB_FCALL_CONNECT;
		else if (eq(v, vl, "read"))
			f->call = HB_FCALL_READ;
		else if (eq(v, vl, "write"))
			f->call = HB_FCALL_WRITE;
		else if (eq(v, vl, "any"))
			f->call = HB_FCALL_ANY;
		else
			ret = -EINVAL;
	} else if (eq(s, kl, "jitter")) {
		key = K_JITTER;
		ret = parse_dur(v, vl, &f->jitter_ms);
	} else if (eq(s, kl, "after")) {
		key = K_AFTER;
		ret = parse_dur(v, vl, &f->after_ms);
	} else if (eq(s, kl, "for")) {
		key = K_FOR;
		ret = parse_dur(v, vl, &f->for_ms);
		if (ret == 0 && f->for_ms == 0)
			ret = -EINVAL;
	} else if (eq(s, kl, "bytes")) {
		key = K_BYTES;
		ret = parse_u64(v, vl, UINT64_MAX, &f->after_bytes);
	} else if (eq(s, kl, "nth")) {
		key = K_NTH;
		ret = parse_u64(v, vl, UINT32_MAX, &u);
		if (ret == 0 && u == 0)
			ret = -EINVAL;
		f->nth = (uint32_t)u;
	} else if (eq(s, kl, "prob")) {
		key = K_PROB;
		ret = parse_prob(v, vl, &f->prob_ppm);
	} else {
		return -EINVAL;
	}
	if (ret < 0 || (*seen & key))
		return -EINVAL;
	*seen |= key;
	return 0;
}

/* Defaults and the checks that need the whole rule. */
static int finish_rule(struct hb_fault *f, unsigned seen)
{
	int connect_only = f->action == HB_FA_REFUSE || f->action == HB_FA_TIMEOUT ||
			   f->action == HB_FA_DELAY;

	if (!(seen & K_ACTION))
		return -EINVAL;
	if ((seen & K_JITTER) && f->action != HB_FA_LATENCY)
		return -EINVAL;
	if (f->action == HB_FA_LATENCY && f->jitter_ms > f->arg)
		return -EINVAL; /* a delay never goes negative */
	if ((seen & K_CALL) && f->action != HB_FA_ERRNO)
		return -EINVAL;
	if (connect_only || (f->action == HB_FA_ERRNO && f->call == HB_FCALL_CONNECT)) {
		/* Connect faults act before any byte or timer: no direction,
		 * byte count or delay trigger, and only on our connects. */
		if (seen & (K_DIR | K_BYTES | K_AFTER | K_FOR))
			return -EINVAL;
		if ((seen & K_SIDE) && f->side != HB_FSIDE_CONNECT)
			return -EINVAL;
		f->side = HB_FSIDE_CONNECT;
		f->dir = 0;
		return 0;
	}
	if (!(seen & K_DIR)) {
		if (f->action == HB_FA_CLOSE || f->action == HB_FA_LIMIT)
			f->dir = HB_FDIR_IN;
		else if (f->action == HB_FA_ERRNO && f->call == HB_FCALL_READ)
			f->dir = HB_FDIR_IN;
		else if (f->action == HB_FA_ERRNO && f->call == HB_FCALL_WRITE)
			f->dir = HB_FDIR_OUT;
		else
			f->dir = HB_FDIR_IN | HB_FDIR_OUT;
	}
	if (f->action == HB_FA_ERRNO && f->call == HB_FCALL_READ && f->dir != HB_FDIR_IN)
		return -EINVAL;
	if (f->action == HB_FA_ERRNO && f->call == HB_FCALL_WRITE && f->dir != HB_FDIR_OUT)
		return -EINVAL;
	return 0;
}

static void default_name(char *out, int index)
{
	/* "f1".."f99": rules without a name= are addressed by position. */
	out[0] = 'f';
	if (index + 1 >= 10) {
		out[1] = (char)('0' + (index + 1) / 10);
		out[2] = (char)('0' + (index + 1) % 10);
		out[3] = 0;
	} else {
		out[1] = (char)('0' + index + 1);
		out[2] = 0;
	}
}

int hb_fault_parse_one(const char *s, size_t n, struct hb_fault *f, int index)
{
	unsigned seen = 0;
	const char *p = s, *end = s + n;

	memset(f, 0, sizeof(*f));
	f->prob_ppm = 1000000;
	default_name(f->name, index);
	for (;;) {
		const char *a, *b;
		int ret;

		while (p < end && is_blank(*p))
			p++;
		a = p;
		while (p < end && *p != ',')
			p++;
		b = p;
		while (b > a && is_blank(b[-1]))
			b--;
		ret = parse_item(a, (size_t)(b - a), f, &seen);
		if (ret < 0)
			return ret;
		if (p == end)
			break;
		p++; /* the comma: an item must follow */
	}
	return finish_rule(f, seen);
}

int hb_fault_parse(const char *s, struct hb_fault *out, int max, int *n, const char **bad,
		   size_t *badlen)
{
	const char *p = s;
	int count = 0;

	*n = 0;
	*bad = NULL;
	*badlen = 0;
	if (hb_list_blank(s))
		return 0;
	for (int more = 1; more;) {
		const char *start;
		size_t len;
		int ret;

		more = hb_list_item(&p, ';', &start, &len);
		*bad = start;
		*badlen = len;
		if (count >= max)
			return -E2BIG;
		if (len == 0)
			return -EINVAL;
		ret = hb_fault_parse_one(start, len, &out[count], count);
		if (ret < 0)
			return ret;
		for (int i = 0; i < count; i++)
			if (strcmp(out[i].name, out[count].name) == 0)
				return -EINVAL; /* names address rules: unique */
		count++;
	}
	*n = count;
	*bad = NULL;
	*badlen = 0;
	return 0;
}
