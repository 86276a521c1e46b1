/*
 * test_fmt.c - the bounded string builder (shim/fmt.c): numbers, printf
 * subset, JSON escaping, address formatting, truncation at cap.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>
#include <cmocka.h>

#include "hb.h"

/* Every test writes into mem[0..cap) and checks that mem[cap..] is intact. */
#define GUARD 16
static char mem[256 + GUARD];
static struct hb_buf b;
static size_t cap;

static void start(size_t c)
{
	cap = c;
	memset(mem, '#', sizeof(mem));
	hb_buf_init(&b, mem, c);
}

/* The buffer holds exactly want, and nothing was written past cap. */
static void expect(const char *want)
{
	size_t i, n = strlen(want);

	assert_int_equal(b.len, n);
	assert_string_equal(hb_buf_str(&b), want);
	for (i = cap; i < cap + GUARD; i++)
		if (mem[i] != '#')
			fail_msg("byte %zu past cap %zu was written", i - cap, cap);
}

/* hb_buf_vfmt without the compiler's printf check, for unknown conversions. */
static void fmt_raw(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	hb_buf_vfmt(&b, fmt, ap);
	va_end(ap);
}

static void test_puts_putc(void **state)
{
	(void)state;
	start(64);
	expect("");
	hb_buf_puts(&b, "abc");
	hb_buf_putc(&b, '-');
	hb_buf_puts(&b, "");
	hb_buf_puts(&b, NULL);
	expect("abc-(null)");
}

static void test_numbers(void **state)
{
	(void)state;
	start(128);
	hb_buf_putu(&b, 0);
	hb_buf_putc(&b, ' ');
	hb_buf_putu(&b, 42);
	hb_buf_putc(&b, ' ');
	hb_buf_putu(&b, UINT64_MAX);
	expect("0 42 18446744073709551615");

	start(128);
	hb_buf_puti(&b, 0);
	hb_buf_putc(&b, ' ');
	hb_buf_puti(&b, -1);
	hb_buf_putc(&b, ' ');
	hb_buf_puti(&b, -1234567);
	hb_buf_putc(&b, ' ');
	hb_buf_puti(&b, INT64_MIN);
	hb_buf_putc(&b, ' ');
	hb_buf_puti(&b, INT64_MAX);
	expect("0 -1 -1234567 -9223372036854775808 9223372036854775807");

	start(128);
	hb_buf_putx(&b, 0);
	hb_buf_putc(&b, ' ');
	hb_buf_putx(&b, 255);
	hb_buf_putc(&b, ' ');
	hb_buf_putx(&b, 0xdeadbeef);
	hb_buf_putc(&b, ' ');
	hb_buf_putx(&b, UINT64_MAX);
	expect("0 ff deadbeef ffffffffffffffff");
}

static void test_truncation(void **state)
{
	(void)state;
	start(8);
	hb_buf_puts(&b, "hello world");
	expect("hello w");
	hb_buf_putc(&b, '!');
	hb_buf_putu(&b, 7);
	hb_buf_fmt(&b, "%d", 1);
	expect("hello w");

	start(8);
	hb_buf_puts(&b, "1234567");
	expect("1234567");
	start(8);
	hb_buf_puts(&b, "123456");
	hb_buf_putc(&b, 'x');
	hb_buf_putc(&b, 'y');
	expect("123456x");

	start(6);
	hb_buf_puti(&b, INT64_MIN);
	expect("-9223");
	start(4);
	hb_buf_putu(&b, UINT64_MAX);
	expect("184");
	start(5);
	hb_buf_putx(&b, UINT64_MAX);
	expect("ffff");

	/* cap 1 holds only the NUL; cap 0 and NULL memory hold nothing. */
	start(1);
	hb_buf_puts(&b, "abc");
	hb_buf_putc(&b, 'x');
	expect("");
	start(0);
	hb_buf_puts(&b, "abc");
	assert_int_equal(b.len, 0);
	assert_string_equal(hb_buf_str(&b), "");
	assert_int_equal(mem[0], '#');
	hb_buf_init(&b, NULL, 100);
	hb_buf_puts(&b, "abc");
	hb_buf_fmt(&b, "%s %d", "x", 5);
	hb_buf_json_str(&b, "\"");
	assert_int_equal(b.len, 0);
	assert_string_equal(hb_buf_str(&b), "");
}

static void test_fmt_conversions(void **state)
{
	int x = 0;

	(void)state;
	start(256);
	hb_buf_fmt(&b, "[%s|%c|%d|%i|%u]", "str", 'Z', -5, 42, UINT_MAX);
	expect("[str|Z|-5|42|4294967295]");

	/* Through fmt_raw: the compiler rightly objects to a literal NULL %s. */
	start(256);
	fmt_raw("[%s|%5s]", (const char *)NULL, (const char *)NULL);
	expect("[(null)|(null)]");

	start(256);
	hb_buf_fmt(&b, "%d %d %ld %ld", INT_MIN, INT_MAX, LONG_MIN, LONG_MAX);
	expect("-2147483648 2147483647 -9223372036854775808 9223372036854775807");

	start(256);
	hb_buf_fmt(&b, "%lu %lld %llu", ULONG_MAX, LLONG_MIN, ULLONG_MAX);
	expect("18446744073709551615 -9223372036854775808 18446744073709551615");

	start(256);
	hb_buf_fmt(&b, "%zu %zd %zd %zu", (size_t)0, (ssize_t)-3, (ssize_t)SSIZE_MAX, SIZE_MAX);
	expect("0 -3 9223372036854775807 18446744073709551615");

	start(256);
	hb_buf_fmt(&b, "%x %x %lx %lx %X", 0u, 0xdeadbeefu, 0x0123456789abcdefUL, ULONG_MAX,
		   0xabcdu);
	expect("0 deadbeef 123456789abcdef ffffffffffffffff ABCD");

	start(256);
	hb_buf_fmt(&b, "%p %p %%d %d%%", (void *)0x1234, (void *)NULL, 7);
	expect("0x1234 (nil) %d 7%");

	start(256);
	hb_buf_fmt(&b, "%p", (void *)&x);
	assert_true(strncmp(mem, "0x", 2) == 0);

	start(256);
	hb_buf_fmt(&b, "%hd %hhu %jd %td %lli", (short)-2, (unsigned char)200, (intmax_t)-9,
		   (ptrdiff_t)-10, -11LL);
	expect("-2 200 -9 -10 -11");
}

static void test_fmt_width_precision(void **state)
{
	(void)state;
	start(256);
	hb_buf_fmt(&b, "[%5d][%-5d][%05d][%05d][%2d]", 42, 42, 42, -42, 12345);
	expect("[   42][42   ][00042][-0042][12345]");

	start(256);
	hb_buf_fmt(&b, "[%08x][%-4s][%4s][%.3s][%.*s][%.10s][%*d][%-*d]", 0xbeefu, "ab", "ab",
		   "abcdef", 2, "xyz", "short", 4, 7, 3, 8);
	expect("[0000beef][ab  ][  ab][abc][xy][short][   7][8  ]");

	start(256);
	hb_buf_fmt(&b, "[%3c][%-3c][%8p]", 'a', 'b', (void *)0xff);
	expect("[  a][b  ][    0xff]");

	/* A huge width stops at the end of the buffer. */
	start(10);
	hb_buf_fmt(&b, "%*d", 1000000000, 1);
	expect("         ");
}

static void test_fmt_unknown_and_truncation(void **state)
{
	(void)state;
	start(256);
	fmt_raw("a%qb %d %", 5);
	expect("a%qb 5 %");

	start(256);
	fmt_raw("%f|%o|%lq|%s", "ok");
	expect("%f|%o|%lq|ok");

	start(6);
	hb_buf_fmt(&b, "%d-%s", 12345, "xyz");
	expect("12345");

	start(9);
	hb_buf_fmt(&b, "hbshim[%d]: %s", 1234, "fatal");
	expect("hbshim[1");

	start(64);
	hb_buf_fmt(&b, "hbshim[%d]: %s \"%s\"\n", 77, "bind", "connect");
	expect("hbshim[77]: bind \"connect\"\n");
}

static void test_json(void **state)
{
	(void)state;
	start(256);
	hb_buf_json_str(&b, "plain text / é");
	expect("plain text / é");

	start(256);
	hb_buf_json_str(&b, "a\"b\\c");
	expect("a\\\"b\\\\c");

	start(256);
	hb_buf_json_str(&b, "\n\r\t\b\f");
	expect("\\n\\r\\t\\b\\f");

	start(256);
	hb_buf_json_str(&b, "\x01x\x1f\x7f\x1b");
	expect("\\u0001x\\u001f\x7f\\u001b");

	start(256);
	hb_buf_json_str(&b, NULL);
	expect("(null)");

	start(256);
	hb_buf_json_str(&b, "");
	expect("");
}

static void test_json_truncation(void **state)
{
	(void)state;
	/* "a" fits, the escape \" does not: nothing after it may appear. */
	start(3);
	hb_buf_json_str(&b, "a\"b");
	expect("a");
	hb_buf_putc(&b, 'z');
	expect("a");

	start(4);
	hb_buf_json_str(&b, "a\"b");
	expect("a\\\"");

	start(6);
	hb_buf_json_str(&b, "ab\x01");
	expect("ab");
	start(9);
	hb_buf_json_str(&b, "ab\x01");
	expect("ab\\u0001");

	start(5);
	hb_buf_json_str(&b, "abcdefgh");
	expect("abcd");
}

/* ------------------------------------------------------------- addresses */

static struct sockaddr_storage ss;

static const struct sockaddr *sa4(const char *a, int port)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

	memset(&ss, 0, sizeof(ss));
	sin->sin_family = AF_INET;
	sin->sin_port = htons((uint16_t)port);
	assert_int_equal(inet_pton(AF_INET, a, &sin->sin_addr), 1);
	return (const struct sockaddr *)&ss;
}

static const struct sockaddr *sa6(const char *a, int port, uint32_t scope)
{
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

	memset(&ss, 0, sizeof(ss));
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons((uint16_t)port);
	sin6->sin6_scope_id = scope;
	assert_int_equal(inet_pton(AF_INET6, a, &sin6->sin6_addr), 1);
	return (const struct sockaddr *)&ss;
}

static void addr4(const char *a, int port, const char *want)
{
	start(128);
	hb_buf_addr(&b, sa4(a, port), sizeof(struct sockaddr_in));
	expect(want);
}

static void addr6(const char *a, int port, const char *want)
{
	start(128);
	hb_buf_addr(&b, sa6(a, port, 0), sizeof(struct sockaddr_in6));
	expect(want);
}

static void test_addr_ipv4(void **state)
{
	(void)state;
	addr4("1.2.3.4", 80, "1.2.3.4:80");
	addr4("0.0.0.0", 0, "0.0.0.0:0");
	addr4("255.255.255.255", 65535, "255.255.255.255:65535");
	addr4("10.0.100.7", 8080, "10.0.100.7:8080");
}

static void test_addr_ipv6(void **state)
{
	(void)state;
	addr6("::1", 443, "[::1]:443");
	addr6("::", 1, "[::]:1");
	addr6("1::", 1, "[1::]:1");
	addr6("2001:db8::1", 80, "[2001:db8::1]:80");
	addr6("2001:DB8::ABCD", 80, "[2001:db8::abcd]:80");
	addr6("1:2:3:4:5:6:7:8", 9, "[1:2:3:4:5:6:7:8]:9");
	/* A single zero group is not shortened. */
	addr6("2001:db8:0:1:1:1:1:1", 9, "[2001:db8:0:1:1:1:1:1]:9");
	/* The longest run is shortened, the first one on a tie. */
	addr6("2001:0:0:1:0:0:0:1", 9, "[2001:0:0:1::1]:9");
	addr6("2001:db8:0:0:1:0:0:1", 9, "[2001:db8::1:0:0:1]:9");
	addr6("0:0:1:0:0:0:0:0", 9, "[0:0:1::]:9");
	addr6("0:0:0:1:0:0:0:1", 9, "[::1:0:0:0:1]:9");
	/* Leading zeros of a group are dropped. */
	addr6("fe80:0001:0010:0100::", 9, "[fe80:1:10:100::]:9");
	addr6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535,
	      "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535");
	/* IPv4-mapped addresses in mixed notation. */
	addr6("::ffff:1.2.3.4", 80, "[::ffff:1.2.3.4]:80");
	addr6("::ffff:0.0.0.0", 80, "[::ffff:0.0.0.0]:80");

	start(128);
	hb_buf_addr(&b, sa6("fe80::1", 22, 3), sizeof(struct sockaddr_in6));
	expect("[fe80::1%3]:22");
}

static void test_addr_other(void **state)
{
	struct sockaddr_un sun;

	(void)state;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	start(64);
	hb_buf_addr(&b, (struct sockaddr *)&sun, sizeof(sun));
	expect("?");
	start(64);
	hb_buf_addr(&b, NULL, 0);
	expect("?");
	/* Too short for its family. */
	start(64);
	hb_buf_addr(&b, sa4("1.2.3.4", 80), sizeof(struct sockaddr_in) - 1);
	expect("?");
	start(64);
	hb_buf_addr(&b, sa6("::1", 80, 0), sizeof(struct sockaddr_in6) - 1);
	expect("?");
	/* Truncated like everything else. */
	start(8);
	hb_buf_addr(&b, sa6("2001:db8::1", 80, 0), sizeof(struct sockaddr_in6));
	expect("[2001:d");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_puts_putc),
		cmocka_unit_test(test_numbers),
		cmocka_unit_test(test_truncation),
		cmocka_unit_test(test_fmt_conversions),
		cmocka_unit_test(test_fmt_width_precision),
		cmocka_unit_test(test_fmt_unknown_and_truncation),
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_json_truncation),
		cmocka_unit_test(test_addr_ipv4),
		cmocka_unit_test(test_addr_ipv6),
		cmocka_unit_test(test_addr_other),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
