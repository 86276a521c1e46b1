/*
 * log.c - logging that is safe inside someone else's process.
 *
 * A line is formatted on the stack by fmt.c (no malloc, no stdio, no
 * locale), prefixed "hbshim[pid]: level: ", and written with one raw write
 * to stderr or appended to HBSHIM_LOG_FILE (opened, written and closed per
 * line, so the shim never holds an fd the application could close or reuse;
 * outfile.c: never blocking, never raising a signal, dropped and counted
 * when it cannot be written).
 * A per-thread guard drops a line logged while another is being written (a
 * signal handler interrupting the logger), and a rate cap of LOG_BURST lines
 * per second keeps a misbehaving peer from filling the disk.
 */
#include <errno.h>

#include "hb.h"

#define LOG_BURST 50

int hb_log_level = HB_LOG_WARN;

static __thread int in_log __attribute__((tls_model("initial-exec")));
static _Atomic uint64_t window_sec;
static _Atomic uint32_t window_count;
static _Atomic uint32_t dropped;

static const char *level_name(int level)
{
	switch (level) {
	case HB_LOG_ERROR: return "error";
	case HB_LOG_WARN: return "warn";
	case HB_LOG_INFO: return "info";
	default: return "debug";
	}
}

/* Admit a line under the rate cap; any thread. */
static int admit(void)
{
	uint64_t sec = hb_os_now_ms() / 1000;
	uint64_t cur = hb_load_relaxed(&window_sec);

	if (cur != sec && hb_cas_strong_acq_rel(&window_sec, &cur, sec))
		hb_store_relaxed(&window_count, 0);
	if (hb_add_relaxed(&window_count, 1) < LOG_BURST)
		return 1;
	hb_add_relaxed(&dropped, 1);
	hb_stat_add(HB_ST_LOG_DROP_RATE, 1);
	return 0;
}

__attribute__((noinline, cold)) void hb_log_refused(int kind, const char *path)
{
	char line[HB_PATH_MAX + 200];
	struct hb_buf b;

	hb_buf_init(&b, line, sizeof(line));
	if (!hb_out_take_warning(kind, path, &b))
		return;
	if (kind == HB_OUT_LOG)
		hb_log_stderr(hb_buf_str(&b)); /* the log file is the refused path */
	else
		hb_log(HB_LOG_WARN, "%s", hb_buf_str(&b));
}

/* One line to HBSHIM_LOG_FILE or standard error (outfile.c: never blocks,
 * no signal); a line that could not be written is counted. */
static void emit(const char *s, size_t n)
{
	int r;

	if (hb_cfg.log_file[0]) {
		r = hb_out_append(HB_OUT_LOG, hb_cfg.log_file, s, n);
		if (r == -EACCES)
			hb_log_refused(HB_OUT_LOG, hb_cfg.log_file);
	} else {
		r = hb_out_stderr(s, n);
	}
	if (r < 0)
		hb_stat_add(HB_ST_LOG_DROP_WRITE, 1);
}

void hb_log_write(int level, const char *fmt, ...)
{
	char line[512];
	struct hb_buf b;
	va_list ap;
	uint32_t lost;

	if (in_log || !admit())
		return;
	in_log = 1;
	hb_buf_init(&b, line, sizeof(line));
	hb_buf_fmt(&b, "hbshim[%d]: %s: ", hb_os_getpid(), level_name(level));
	va_start(ap, fmt);
	hb_buf_vfmt(&b, fmt, ap);
	va_end(ap);
	lost = hb_xchg_acq_rel(&dropped, 0);
	if (lost)
		hb_buf_fmt(&b, " (%u earlier lines dropped by the rate cap)", lost);
	if (b.len >= b.cap - 1)
		b.len = b.cap - 2;
	hb_buf_putc(&b, '\n');
	emit(b.p, b.len);
	in_log = 0;
}

void hb_log_stderr(const char *line)
{
	char buf[640];
	struct hb_buf b;

	hb_buf_init(&b, buf, sizeof(buf));
	hb_buf_fmt(&b, "hbshim[%d]: %s", hb_os_getpid(), line);
	if (b.len >= b.cap - 1)
		b.len = b.cap - 2;
	hb_buf_putc(&b, '\n');
	if (hb_out_stderr(b.p, b.len) < 0)
		hb_stat_add(HB_ST_LOG_DROP_WRITE, 1);
}
