/*
 * fmt.c - a bounded string builder for log lines, events and stats.
 *
 * snprintf may allocate, take locale locks and is not async-signal-safe, and
 * inet_ntop is not promised to be either, so the shim formats by hand into
 * caller memory. Output that does not fit is dropped: the buffer keeps its
 * first cap - 1 bytes, leaving room for the terminating NUL that hb_buf_str
 * adds. Every function here is pure, any thread, async-signal-safe.
 */
#include <stdint.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "hb_os.h"

static const char hexdig[] = "0123456789abcdef";

void hb_buf_init(struct hb_buf *b, char *mem, size_t cap)
{
	b->p = mem;
	b->len = 0;
	b->cap = mem ? cap : 0;
}

void hb_buf_putc(struct hb_buf *b, char c)
{
	if (b->len + 1 < b->cap)
		b->p[b->len++] = c;
}

/* Append n bytes, as many as fit. */
static void put_mem(struct hb_buf *b, const char *s, size_t n)
{
	size_t room = b->cap ? b->cap - 1 - b->len : 0;

	if (n > room)
		n = room;
	if (!n)
		return; /* p may be NULL */
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

/*
 * Append n bytes only if all of them fit, so that a JSON string never ends in
 * half an escape. When they do not fit the output stops here for good: cap is
 * lowered to len + 1, and what follows cannot appear without what came first.
 */
static void put_whole(struct hb_buf *b, const char *s, size_t n)
{
	if (b->len + n < b->cap)
		put_mem(b, s, n);
	else if (b->cap)
		b->cap = b->len + 1;
}

void hb_buf_puts(struct hb_buf *b, const char *s)
{
	if (!s)
		s = "(null)";
	put_mem(b, s, strlen(s));
}

/* Append s padded with spaces (or zeros) to width, on the left unless left. */
static void put_padded(struct hb_buf *b, const char *s, size_t n, unsigned width, int left,
		       char pad)
{
	size_t i;

	/* A zero pad goes after the sign, as printf puts it. */
	if (pad == '0' && !left && n && s[0] == '-' && width > n) {
		hb_buf_putc(b, '-');
		s++;
		n--;
		width--;
	}
	/* The loops stop at a full buffer: a width can be huge ("%*s"). */
	if (!left)
		for (i = n; i < width && b->len + 1 < b->cap; i++)
			hb_buf_putc(b, pad);
	put_mem(b, s, n);
	if (left)
		for (i = n; i < width && b->len + 1 < b->cap; i++)
			hb_buf_putc(b, ' ');
}

/* Digits of v in base 10 or 16, right-aligned in tmp[0..24). Returns the start. */
static char *utoa(char tmp[24], uint64_t v, unsigned base)
{
	char *p = tmp + 24;

	do {
		*--p = hexdig[v % base];
		v /= base;
	} while (v);
	return p;
}

static char *itoa(char tmp[24], int64_t v)
{
	char *p;

	/* Negate in unsigned arithmetic: -INT64_MIN does not fit int64_t. */
	if (v >= 0)
		return utoa(tmp, (uint64_t)v, 10);
	p = utoa(tmp, 0 - (uint64_t)v, 10);
	*--p = '-';
	return p;
}

void hb_buf_putu(struct hb_buf *b, uint64_t v)
{
	char tmp[24], *p = utoa(tmp, v, 10);

	put_mem(b, p, (size_t)(tmp + 24 - p));
}

void hb_buf_puti(struct hb_buf *b, int64_t v)
{
	char tmp[24], *p = itoa(tmp, v);

	put_mem(b, p, (size_t)(tmp + 24 - p));
}

void hb_buf_putx(struct hb_buf *b, uint64_t v)
{
	char tmp[24], *p = utoa(tmp, v, 16);

	put_mem(b, p, (size_t)(tmp + 24 - p));
}

void hb_buf_json_str(struct hb_buf *b, const char *s)
{
	const char *run;

	if (!s)
		s = "(null)";
	while (*s) {
		unsigned char ch;

		/* Copy the longest stretch that needs no escape in one go. */
		for (run = s; *s && (unsigned char)*s >= 0x20 && *s != '"' && *s != '\\'; s++)
			;
		put_mem(b, run, (size_t)(s - run));
		if (!*s)
			break;
		ch = (unsigned char)*s++;
		switch (ch) {
		case '"':
			put_whole(b, "\\\"", 2);
			break;
		case '\\':
			put_whole(b, "\\\\", 2);
			break;
		case '\b':
			put_whole(b, "\\b", 2);
			break;
		case '\f':
			put_whole(b, "\\f", 2);
			break;
		case '\n':
			put_whole(b, "\\n", 2);
			break;
		case '\r':
			put_whole(b, "\\r", 2);
			break;
		case '\t':
			put_whole(b, "\\t", 2);
			break;
		default: {
			char esc[6] = { '\\', 'u', '0', '0', hexdig[ch >> 4], hexdig[ch & 15] };

			put_whole(b, esc, sizeof(esc));
		}
		}
	}
}

static void put_ipv4(struct hb_buf *b, const uint8_t *a)
{
	int i;

	for (i = 0; i < 4; i++) {
		if (i)
			hb_buf_putc(b, '.');
		hb_buf_putu(b, a[i]);
	}
}

/*
 * RFC 5952: lowercase hex without leading zeros, the longest run of two or
 * more zero groups (the first one on a tie) shortened to "::", and IPv4-mapped
 * addresses in mixed notation (::ffff:1.2.3.4).
 */
static void put_ipv6(struct hb_buf *b, const uint8_t *a)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	unsigned g[8];
	int i, best = -1, bestlen = 1, cur = -1, curlen = 0;

	if (memcmp(a, mapped, sizeof(mapped)) == 0) {
		hb_buf_puts(b, "::ffff:");
		put_ipv4(b, a + 12);
		return;
	}
	for (i = 0; i < 8; i++) {
		g[i] = (unsigned)a[2 * i] << 8 | a[2 * i + 1];
		if (g[i] == 0) {
			if (cur < 0) {
				cur = i;
				curlen = 0;
			}
			if (++curlen > bestlen) {
				best = cur;
				bestlen = curlen;
			}
		} else {
			cur = -1;
		}
	}
	for (i = 0; i < 8; i++) {
		if (i == best) {
			hb_buf_puts(b, "::");
			i += bestlen - 1;
			continue;
		}
		if (i && i != best + bestlen)
			hb_buf_putc(b, ':');
		hb_buf_putx(b, g[i]);
	}
}

void hb_buf_addr(struct hb_buf *b, const struct sockaddr *sa, socklen_t len)
{
	if (sa && sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		put_ipv4(b, (const uint8_t *)&sin->sin_addr);
		hb_buf_putc(b, ':');
		hb_buf_putu(b, ntohs(sin->sin_port));
	} else if (sa && sa->sa_family == AF_INET6 &&
		   len >= (socklen_t)sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

		hb_buf_putc(b, '[');
		put_ipv6(b, (const uint8_t *)&sin6->sin6_addr);
		if (sin6->sin6_scope_id) {
			/* RFC 4007 zone index, numeric: no if_indextoname here. */
			hb_buf_putc(b, '%');
			hb_buf_putu(b, sin6->sin6_scope_id);
		}
		hb_buf_puts(b, "]:");
		hb_buf_putu(b, ntohs(sin6->sin6_port));
	} else {
		hb_buf_putc(b, '?');
	}
}

/*
 * Besides the documented subset, flags '-' and '0', a width and a precision
 * (digits or '*') and the length modifiers hh h l ll z j t are understood,
 * and %X prints uppercase hex, so that every format the compiler's printf
 * check accepts consumes its arguments as printf would. Precision limits the
 * bytes of %s and is ignored elsewhere. A conversion not listed here (%f, %o,
 * %n...) is copied literally and takes no argument: the arguments after it
 * are then misread, so do not use one.
 */
void hb_buf_vfmt(struct hb_buf *b, const char *fmt, va_list ap)
{
	while (*fmt) {
		const char *spec = fmt, *s;
		char tmp[24], *num;
		unsigned width = 0;
		int left = 0, prec = -1, lng = 0, size = 0, uc = 0;
		char pad = ' ';
		uint64_t u;
		size_t n;

		if (*fmt != '%') {
			for (s = fmt; *fmt && *fmt != '%'; fmt++)
				;
			put_mem(b, s, (size_t)(fmt - s));
			continue;
		}
		fmt++;
		for (;; fmt++) {
			if (*fmt == '-')
				left = 1;
			else if (*fmt == '0')
				pad = '0';
			else
				break;
		}
		if (*fmt == '*') {
			int w = va_arg(ap, int);

			if (w < 0) {
				left = 1;
				w = -w;
			}
			width = (unsigned)w;
			fmt++;
		} else {
			while (*fmt >= '0' && *fmt <= '9' && width < 100000)
				width = width * 10 + (unsigned)(*fmt++ - '0');
		}
		if (*fmt == '.') {
			fmt++;
			if (*fmt == '*') {
				prec = va_arg(ap, int);
				fmt++;
			} else {
				prec = 0;
				while (*fmt >= '0' && *fmt <= '9' && prec < 100000)
					prec = prec * 10 + (*fmt++ - '0');
			}
		}
		if (left)
			pad = ' ';
		/* lng: 1 = long, 2 = long long / intmax_t; size: 1 = size_t / ptrdiff_t */
		if (fmt[0] == 'h') {
			fmt += fmt[1] == 'h' ? 2 : 1; /* promoted to int anyway */
		} else if (fmt[0] == 'l') {
			lng = fmt[1] == 'l' ? 2 : 1;
			fmt += lng;
		} else if (fmt[0] == 'j') {
			lng = 2;
			fmt++;
		} else if (fmt[0] == 'z' || fmt[0] == 't') {
			size = 1;
			fmt++;
		}
		switch (*fmt) {
		case '%':
			hb_buf_putc(b, '%');
			break;
		case 'c':
			tmp[0] = (char)va_arg(ap, int);
			put_padded(b, tmp, 1, width, left, ' ');
			break;
		case 's':
			s = va_arg(ap, const char *);
			if (!s)
				s = "(null)";
			if (prec >= 0) {
				const char *end = memchr(s, 0, (size_t)prec);

				n = end ? (size_t)(end - s) : (size_t)prec;
			} else {
				n = strlen(s);
			}
			put_padded(b, s, n, width, left, ' ');
			break;
		case 'd':
		case 'i': {
			int64_t v;

			if (lng == 2)
				v = va_arg(ap, long long);
			else if (lng == 1)
				v = va_arg(ap, long);
			else if (size)
				v = va_arg(ap, ssize_t);
			else
				v = va_arg(ap, int);
			num = itoa(tmp, v);
			put_padded(b, num, (size_t)(tmp + 24 - num), width, left, pad);
			break;
		}
		case 'X':
			uc = 1;
			/* fall through */
		case 'u':
		case 'x':
			if (lng == 2)
				u = va_arg(ap, unsigned long long);
			else if (lng == 1)
				u = va_arg(ap, unsigned long);
			else if (size)
				u = va_arg(ap, size_t);
			else
				u = va_arg(ap, unsigned);
			num = utoa(tmp, u, *fmt == 'u' ? 10 : 16);
			if (uc)
				for (char *q = num; q < tmp + 24; q++)
					if (*q >= 'a')
						*q = (char)(*q - 'a' + 'A');
			put_padded(b, num, (size_t)(tmp + 24 - num), width, left, pad);
			break;
		case 'p':
			u = (uintptr_t)va_arg(ap, void *);
			if (!u) {
				put_padded(b, "(nil)", 5, width, left, ' ');
				break;
			}
			num = utoa(tmp, u, 16);
			*--num = 'x';
			*--num = '0';
			put_padded(b, num, (size_t)(tmp + 24 - num), width, left, ' ');
			break;
		default:
			/* Unknown: copy "%..." up to and including this character. */
			if (*fmt)
				fmt++;
			put_mem(b, spec, (size_t)(fmt - spec));
			continue;
		}
		fmt++;
	}
}

void hb_buf_fmt(struct hb_buf *b, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	hb_buf_vfmt(b, fmt, ap);
	va_end(ap);
}

const char *hb_buf_str(struct hb_buf *b)
{
	if (!b->cap)
		return "";
	b->p[b->len] = 0;
	return b->p;
}
