/*
 * config.c - the HBSHIM_* environment variables, parsed once.
 *
 * Everything here runs inside the library constructor of an arbitrary
 * process, possibly before its allocator or stdio is usable, so the file is
 * pure: no malloc, no stdio, no system calls, no logging, no errno. Numbers
 * are parsed by hand (strtoul honours locales and sets errno); addresses go
 * through inet_pton, which does neither. Errors are reported by writing one
 * line into the caller's buffer; the caller decides where it goes.
 *
 * One table (hb_options[] below) says for every variable how it is parsed,
 * where it is stored, its default, its bounds, its documentation and what the
 * error message offers instead. The wrapper's options and --help come from
 * it, and tests/bats/config.bats holds README's settings table against it.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "hb.h"

struct hb_config hb_cfg;

/* How many bytes of a rejected value the error line quotes. */
#define QUOTE_MAX 80

/* --------------------------------------------------------------- helpers */

static char lower(char ch)
{
	return (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
}

/* Case-insensitive equality of a NUL-terminated s with a lowercase word. */
static int word_eq(const char *s, const char *word)
{
	while (*s && *word && lower(*s) == *word) {
		s++;
		word++;
	}
	return *s == 0 && *word == 0;
}

/* ------------------------------------------------------- program names */

/*
 * A comma-separated list of program names (HBSHIM_ONLY_CMDS and
 * HBSHIM_SKIP_CMDS), stored in out[HB_CMDS_MAX] as "a,b,c" with the blanks
 * around names dropped; a blank-only list is stored as "" (no list). A name
 * is non-empty, holds no '/' (it is a basename), is at most HB_CMD_NAME_MAX
 * bytes; at most HB_MAX_CMDS names. -EINVAL or -E2BIG with *bad and *badlen
 * on the offending name.
 */
static int parse_cmds(const char *s, char *out, const char **bad, size_t *badlen)
{
	const char *p = s;
	size_t len = 0;
	int count = 0;

	out[0] = 0;
	if (hb_list_blank(s))
		return 0;
	for (int more = 1; more;) {
		const char *start;

		more = hb_list_item(&p, ',', &start, badlen);
		*bad = start;
		if (count >= HB_MAX_CMDS)
			return -E2BIG;
		if (*badlen == 0 || *badlen > HB_CMD_NAME_MAX || memchr(start, '/', *badlen))
			return -EINVAL;
		if (len + *badlen + 2 > HB_CMDS_MAX)
			return -E2BIG;
		if (count)
			out[len++] = ',';
		memcpy(out + len, start, *badlen);
		len += *badlen;
		out[len] = 0;
		count++;
	}
	return 0;
}

/* 1 when name is one of the names of a stored list ("a,b,c"). */
static int cmds_match(const char *list, const char *name)
{
	size_t n = strlen(name);

	if (n == 0)
		return 0;
	while (*list) {
		size_t k = strcspn(list, ",");

		if (k == n && memcmp(list, name, n) == 0)
			return 1;
		list += k;
		if (*list == ',')
			list++;
	}
	return 0;
}

int hb_scope_admits(const struct hb_config *c, const char *name)
{
	if (!name)
		name = "";
	if (c->only_cmds[0] && !cmds_match(c->only_cmds, name))
		return 0;
	return !cmds_match(c->skip_cmds, name);
}

/* ---------------------------------------------------------------- tables */

#define DURATION_FORMS "a duration such as 250ms, 5s, 1m or a bare number of seconds"
#define CMDS_FORMS                                                                      \
	"comma-separated program names (basenames of argv[0], without '/'), "         \
	"at most 32 names of at most 255 bytes each"
#define CFG(field) offsetof(struct hb_config, field)

const struct hb_option hb_options[] = {
	{ "HBSHIM_DISABLE", "--disable", NULL, HB_OPTF_FLAG, HB_OPT_BOOL, CFG(disabled), 0, 0,
	  "0", "0", "1, true or yes: load but stay inactive (0, false, no: active)",
	  "1, 0, true, false, yes or no" },
	{ "HBSHIM_ONLY_CMDS", "--only", "NAME", HB_OPTF_REPEATABLE, HB_OPT_CMDS, CFG(only_cmds), 0,
	  0, NULL, "every program",
	  "act only in programs of these names (basename of argv[0]), passive elsewhere",
	  CMDS_FORMS },
	{ "HBSHIM_SKIP_CMDS", "--skip", "NAME", HB_OPTF_REPEATABLE, HB_OPT_CMDS, CFG(skip_cmds), 0,
	  0, NULL, "none", "stay passive in programs of these names (basename of argv[0])",
	  CMDS_FORMS },
	{ "HBSHIM_INTERVAL", "--interval", "DURATION", 0, HB_OPT_DURATION, CFG(interval_ms), 1,
	  HB_MS_PER_H, "5s", "5s", "heartbeat interval, 1ms..1h", DURATION_FORMS " (1ms..1h)" },
	/* No init: unset, it is 3 x the interval in force (hb_config_parse). */
	{ "HBSHIM_TIMEOUT", "--timeout", "DURATION", 0, HB_OPT_TIMEOUT, CFG(timeout_ms), 1,
	  24 * HB_MS_PER_H, NULL, "3 x interval",
	  "silence after which a peer is dead; more than the interval, at most 24h",
	  DURATION_FORMS },
	{ "HBSHIM_CONNECT_TIMEOUT", "--connect-timeout", "DURATION", 0, HB_OPT_DURATION,
	  CFG(connect_timeout_ms), 0, UINT32_MAX, NULL, "off",
	  "deadline for connect() to complete; 0 = off", DURATION_FORMS " (0 = off)" },
	{ "HBSHIM_IDLE_TIMEOUT", "--idle-timeout", "DURATION", 0, HB_OPT_DURATION,
	  CFG(idle_timeout_ms), 0, UINT32_MAX, NULL, "off",
	  "deadline for a connection without application data; 0 = off",
	  DURATION_FORMS " (0 = off)" },
	{ "HBSHIM_FRAME", "--frame", "RULES", HB_OPTF_REPEATABLE, HB_OPT_RULES, CFG(rules), 0, 0,
	  NULL, "none",
	  "peers that speak heartbeat frames: *, *:PORT, ADDR[/PREFIX]:PORT, [V6ADDR[/PREFIX]]:PORT",
	  "comma-separated peer rules: *, *:PORT, ADDR:PORT, ADDR/PREFIX:PORT, "
	  "[V6ADDR]:PORT or [V6ADDR/PREFIX]:PORT, PORT 1..65535 or * (at most 32 rules)" },
	{ "HBSHIM_ACCEPT", "--accept", "auto|raw", 0, HB_OPT_ACCEPT, CFG(accept_mode), 0, 0,
	  "auto", "auto", "accepted connections: auto (frame if the client does) or raw (never frame)",
	  "auto or raw" },
	{ "HBSHIM_LOG", "--log", "LEVEL", 0, HB_OPT_LOG, CFG(log_level), 0, 0, "warn", "warn",
	  "log level: error, warn, info, debug or off", "error, warn, info, debug or off" },
	{ "HBSHIM_LOG_FILE", "--log-file", "PATH", 0, HB_OPT_PATH, CFG(log_file), 0, 0, NULL,
	  "stderr", "append log lines to this file",
	  "a file path shorter than 512 bytes (unset or empty = stderr)" },
	{ "HBSHIM_EVENTS", "--events", "PATH", 0, HB_OPT_PATH, CFG(events_file), 0, 0, NULL, "off",
	  "append one JSON object per event to this file",
	  "a file path shorter than 512 bytes (unset or empty = off)" },
	{ "HBSHIM_STATS", "--stats", "PATH", 0, HB_OPT_PATH, CFG(stats_file), 0, 0, NULL, "off",
	  "keep Prometheus text-format counters in this file",
	  "a file path shorter than 512 bytes (unset or empty = off)" },
	{ "HBSHIM_FAULTS", "--fault", "RULE", HB_OPTF_REPEATABLE | HB_OPTF_SEMI, HB_OPT_FAULTS,
	  CFG(faults), 0, 0, NULL, "none",
	  "test harness: inject network faults; ACTION[,KEY=VALUE...], rules separated by ';'",
	  "rules separated by ';', each ACTION[,KEY=VALUE...] with one action: latency=DURATION, "
	  "bandwidth=BYTES_PER_S, slicer=BYTES, hang, reset, close, limit_data=BYTES, "
	  "errno=ENAME, refuse, timeout or delay=DURATION; keys name=NAME, peer=PEER_RULE, "
	  "side=connect|accept|any, dir=in|out|both, call=connect|read|write|any, "
	  "jitter=DURATION, after=DURATION, bytes=N, nth=N, prob=P or P%, for=DURATION "
	  "(at most 16 rules)" },
	{ "HBSHIM_CONTROL", "--control", "PATH", 0, HB_OPT_PATH, CFG(control_path), 0, 0, NULL,
	  "off", "test harness: serve live fault control (hbshim ctl PATH ...) on this UNIX socket",
	  "a file path shorter than 512 bytes; %p is the process id (unset or empty = off)" },
	{ "HBSHIM_SEED", "--seed", "N", 0, HB_OPT_SEED, CFG(seed), 0, 0, NULL, "random",
	  "seed of every random choice of the fault rules (same seed, same choices)",
	  "a decimal number below 2^64" },
};
const int hb_noptions = (int)(sizeof(hb_options) / sizeof(hb_options[0]));
_Static_assert(HB_MAX_RULES == 32, "update the HBSHIM_FRAME error text");
_Static_assert(HB_PATH_MAX == 512, "update the path error texts");
_Static_assert(HB_MAX_CMDS == 32 && HB_CMD_NAME_MAX == 255, "update CMDS_FORMS");
_Static_assert(HB_MAX_FAULTS == 16, "update the HBSHIM_FAULTS error text");

/* ----------------------------------------------------------------- parse */

/* A duration as the shortest exact text: "90s", "250ms", "2h". */
static void put_duration(struct hb_buf *b, uint32_t ms)
{
	if (ms && ms % HB_MS_PER_H == 0) {
		hb_buf_putu(b, ms / HB_MS_PER_H);
		hb_buf_putc(b, 'h');
	} else if (ms && ms % HB_MS_PER_M == 0) {
		hb_buf_putu(b, ms / HB_MS_PER_M);
		hb_buf_putc(b, 'm');
	} else if (ms && ms % HB_MS_PER_S == 0) {
		hb_buf_putu(b, ms / HB_MS_PER_S);
		hb_buf_putc(b, 's');
	} else {
		hb_buf_putu(b, ms);
		hb_buf_puts(b, "ms");
	}
}

/*
 * Quote at most QUOTE_MAX bytes of a rejected value. Control bytes, quotes
 * and backslashes are escaped, so the message stays on one line and reads
 * unambiguously whatever the value holds.
 */
static void put_quoted(struct hb_buf *b, const char *v, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t i;

	hb_buf_putc(b, '"');
	for (i = 0; i < n && i < QUOTE_MAX; i++) {
		unsigned char ch = (unsigned char)v[i];

		if (ch == '"' || ch == '\\') {
			hb_buf_putc(b, '\\');
			hb_buf_putc(b, (char)ch);
		} else if (ch < 0x20 || ch == 0x7f) {
			hb_buf_puts(b, "\\x");
			hb_buf_putc(b, hex[ch >> 4]);
			hb_buf_putc(b, hex[ch & 15]);
		} else {
			hb_buf_putc(b, (char)ch);
		}
	}
	if (i < n)
		hb_buf_puts(b, "...");
	hb_buf_putc(b, '"');
}

/* Why a value was rejected, for the error line. */
struct why {
	uint32_t interval_ms; /* the interval in force (HB_OPT_TIMEOUT) */
	int ret;              /* HB_OPT_RULES, HB_OPT_CMDS: -EINVAL or -E2BIG */
	const char *bad;      /* ... the first rule or name that failed */
	size_t badlen;
};

/* Write the error line for value v of variable i; returns -EINVAL. */
static int reject_value(char *err, size_t errlen, int i, const char *v, const struct why *why)
{
	int rules = hb_options[i].kind == HB_OPT_RULES || hb_options[i].kind == HB_OPT_FAULTS;
	int list = rules || hb_options[i].kind == HB_OPT_CMDS;
	struct hb_buf b;

	hb_buf_init(&b, err, errlen);
	hb_buf_puts(&b, hb_options[i].env);
	hb_buf_puts(&b, ": invalid value ");
	put_quoted(&b, v, strlen(v));
	if (list && why->ret == -E2BIG) {
		hb_buf_puts(&b, rules ? " (too many rules)" : " (too many names)");
	} else if (list && why->bad && why->badlen == 0) {
		hb_buf_puts(&b, rules ? " (empty rule)" : " (empty name)");
	} else if (list && why->bad && why->badlen != strlen(v)) {
		hb_buf_puts(&b, " (at ");
		put_quoted(&b, why->bad, why->badlen);
		hb_buf_putc(&b, ')');
	}
	hb_buf_puts(&b, ": expected ");
	hb_buf_puts(&b, hb_options[i].expect);
	if (hb_options[i].kind == HB_OPT_TIMEOUT) {
		hb_buf_puts(&b, " (more than HBSHIM_INTERVAL, here ");
		put_duration(&b, why->interval_ms);
		hb_buf_puts(&b, ", and at most ");
		put_duration(&b, hb_options[i].max_ms);
		hb_buf_putc(&b, ')');
	}
	hb_buf_str(&b);
	return -EINVAL;
}

/* Parse value v of variable i into c. 0, or -EINVAL with *why filled in. */
static int parse_one(struct hb_config *c, int i, const char *v, struct why *why)
{
	const struct hb_option *o = &hb_options[i];
	char *field = (char *)c + o->off;
	uint32_t ms;
	int level;
	size_t len;

	switch (o->kind) {
	case HB_OPT_BOOL:
		if (word_eq(v, "1") || word_eq(v, "true") || word_eq(v, "yes"))
			*(int *)field = 1;
		else if (word_eq(v, "0") || word_eq(v, "false") || word_eq(v, "no"))
			*(int *)field = 0;
		else
			return -EINVAL;
		return 0;
	case HB_OPT_DURATION:
	case HB_OPT_TIMEOUT:
		if (hb_parse_duration(v, &ms) < 0 || ms < o->min_ms || ms > o->max_ms)
			return -EINVAL;
		if (o->kind == HB_OPT_TIMEOUT && ms <= c->interval_ms)
			return -EINVAL;
		*(uint32_t *)field = ms;
		return 0;
	case HB_OPT_RULES:
		why->ret = hb_parse_rule_list(v, c->rules, HB_MAX_RULES, &c->nrules, &why->bad,
				      &why->badlen);
		return why->ret < 0 ? -EINVAL : 0;
	case HB_OPT_ACCEPT:
		if (word_eq(v, "auto"))
			c->accept_mode = HB_ACCEPT_AUTO;
		else if (word_eq(v, "raw"))
			c->accept_mode = HB_ACCEPT_RAW;
		else
			return -EINVAL;
		return 0;
	case HB_OPT_LOG:
		if (word_eq(v, "off"))
			level = HB_LOG_OFF;
		else if (word_eq(v, "error"))
			level = HB_LOG_ERROR;
		else if (word_eq(v, "warn"))
			level = HB_LOG_WARN;
		else if (word_eq(v, "info"))
			level = HB_LOG_INFO;
		else if (word_eq(v, "debug"))
			level = HB_LOG_DEBUG;
		else
			return -EINVAL;
		c->log_level = level;
		return 0;
	case HB_OPT_CMDS:
		why->ret = parse_cmds(v, field, &why->bad, &why->badlen);
		return why->ret < 0 ? -EINVAL : 0;
	case HB_OPT_FAULTS:
		why->ret = hb_fault_parse(v, c->faults, HB_MAX_FAULTS, &c->nfaults, &why->bad,
					  &why->badlen);
		return why->ret < 0 ? -EINVAL : 0;
	case HB_OPT_SEED: {
		uint64_t seed = 0;

		for (len = 0; v[len]; len++) {
			unsigned d = (unsigned)(v[len] - '0');

			if (v[len] < '0' || v[len] > '9' || seed > (UINT64_MAX - d) / 10)
				return -EINVAL;
			seed = seed * 10 + d;
		}
		c->seed = seed;
		c->seed_set = 1;
		return 0;
	}
	case HB_OPT_PATH:
		len = strlen(v);
		if (len >= HB_PATH_MAX)
			return -EINVAL;
		memcpy(field, v, len + 1);
		return 0;
	}
	return -EINVAL;
}

/*
 * Variables are read in table order, which puts HBSHIM_INTERVAL before
 * HBSHIM_TIMEOUT: the timeout is checked against the interval in force. The
 * first invalid value stops the parse. Beyond the contract in hb.h, a failed
 * parse leaves c->disabled set, so a caller that uses *c anyway does nothing.
 * HBSHIM_DISABLE=1 does not skip validation: a typo elsewhere is reported
 * even while the shim is off.
 */
int hb_config_parse(struct hb_config *c, const char *(*get)(const char *name), char *err,
		    size_t errlen)
{
	int i, timeout_set = 0;

	memset(c, 0, sizeof(*c));
	if (err && errlen)
		err[0] = 0;
	for (i = 0; i < hb_noptions; i++) {
		struct why why = { 0, 0, NULL, 0 };

		/* The table's defaults go through the same parser as values. */
		if (hb_options[i].init && parse_one(c, i, hb_options[i].init, &why) < 0)
			return reject_value(err, errlen, i, hb_options[i].init, &why);
	}
	for (i = 0; i < hb_noptions; i++) {
		const char *v = get ? get(hb_options[i].env) : NULL;

		if (!v || !v[0])
			continue;
		struct why why = { c->interval_ms, 0, NULL, 0 };

		if (parse_one(c, i, v, &why) < 0) {
			memset(c, 0, sizeof(*c));
			c->disabled = 1;
			return reject_value(err, errlen, i, v, &why);
		}
		if (hb_options[i].kind == HB_OPT_TIMEOUT)
			timeout_set = 1;
	}
	if (!timeout_set)
		c->timeout_ms = 3 * c->interval_ms; /* at most 3h: fits */
	return 0;
}
