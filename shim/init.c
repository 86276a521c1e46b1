/*
 * init.c - library constructor, destructor and the public query API.
 *
 * The constructor binds the real symbols and parses the configuration once
 * (programs such as nginx clear their environment before forking workers,
 * which must keep it). It allocates nothing and creates no thread, except
 * the background thread when HBSHIM_CONTROL asks for a control socket. Until it
 * has run (calls from other libraries' constructors), every interposer
 * passes straight through.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/auxv.h>

#include <pthread.h>
#include <unistd.h>

#include "hb.h"
#include "hbshim.h"

/*
 * Take over the framed connections handed over by exec (HBSHIM_INHERIT) and
 * decide whether this program is in scope (HBSHIM_ONLY_CMDS,
 * HBSHIM_SKIP_CMDS; its name is the basename of argv[0], as libfaketime's
 * FAKETIME_ONLY_CMDS reads it: "python3" for "python3 app.py", the applet
 * for a busybox symlink). 1: be active. Out of scope, the process is
 * passive as with HBSHIM_DISABLE=1 and leaves its environment (LD_PRELOAD,
 * HBSHIM_*) as it is, so a program in scope further down still gets the
 * shim; except when it holds framed connections from the image that exec'd
 * it: read raw, their frames would reach it as data, so it stays active.
 */
static int import_and_scope(void)
{
	const char *inh = getenv("HBSHIM_INHERIT");
	const char *name = program_invocation_short_name ? program_invocation_short_name : "";
	int admitted = hb_scope_admits(&hb_cfg, name), n = 0;

	if (inh) {
		/* A bad entry is ignored with a warning. */
		n = hb_inherit_import(inh);
		if (admitted || n > 0) {
			unsetenv("HBSHIM_INHERIT");
			hb_stdio_adopt();
			if (!admitted)
				hb_log(HB_LOG_INFO, "%s is out of scope but holds %d framed "
				       "connection(s) from the program that exec'd it: "
				       "hbshim stays active", name, n);
			return 1;
		}
	} else if (admitted) {
		return 1;
	}
	hb_log(HB_LOG_DEBUG, "%s is out of scope (HBSHIM_ONLY_CMDS, HBSHIM_SKIP_CMDS): passive",
	       name);
	return 0;
}

/* How often the background thread looks at the HBSHIM_CONTROL socket: the
 * longest a control command waits for its answer. */
#define CONTROL_STEP_MS 100

static _Atomic int init_state; /* 0 none, 1 running, 2 done */

static const char *env_get(const char *name)
{
	return getenv(name);
}

void hb_init(void)
{
	char err[400];
	int expect = 0;

	if (!hb_cas_strong_acq_rel(&init_state, &expect, 1))
		return;
	hb_proc_init(hb_thread_after_clone);
	hb_out_init();
	pthread_atfork(NULL, NULL, hb_proc_after_fork);
	pthread_atfork(hb_out_atfork_prepare, hb_out_atfork_parent, hb_out_atfork_child);
	hb_real_bind();
	hb_conn_on_reap(hb_thread_wake);
	hb_thread_set_frame_ops(&hb_frame_ops);
	if (getauxval(AT_SECURE)) {
		/* setuid/setgid: the environment is not to be trusted (it names
		 * files we would write as the new user). Stay out of the way. */
		hb_store_release(&init_state, 2);
		return;
	}
	if (hb_config_parse(&hb_cfg, env_get, err, sizeof(err)) < 0) {
		struct hb_buf b;
		char line[480];

		hb_buf_init(&b, line, sizeof(line));
		hb_buf_fmt(&b, "%s (hbshim disabled: the program runs without it)", err);
		hb_log_stderr(hb_buf_str(&b));
		hb_cfg.disabled = 1;
		hb_cfg.events_file[0] = hb_cfg.stats_file[0] = hb_cfg.log_file[0] = 0;
		hb_store_release(&init_state, 2);
		return;
	}
	hb_log_level = hb_cfg.log_level;
	hb_ka_init(hb_cfg.interval_ms, hb_cfg.timeout_ms);
	hb_enabled = !hb_cfg.disabled && import_and_scope();
	if (!hb_enabled)
		hb_cfg.disabled = 1;
	else
		hb_dg_init();
	hb_store_release(&init_state, 2);
	if (hb_enabled && hb_cfg.control_path[0] && hb_fault_ctl_start() == 0) {
		/* HBSHIM_CONTROL: the background thread serves the listener,
		 * started now so that a program that has not made a connection
		 * yet answers too (the one thread this constructor may start,
		 * and only when control is asked for). */
		hb_thread_set_periodic_step(hb_fault_ctl_step, CONTROL_STEP_MS);
		hb_thread_ensure();
	}
	hb_log(HB_LOG_DEBUG, "loaded: interval %u ms, timeout %u ms, keepalive %d/%d/%d, "
			     "user timeout %u ms", hb_cfg.interval_ms, hb_cfg.timeout_ms,
	       hb_ka_cfg.idle_s, hb_ka_cfg.intvl_s, hb_ka_cfg.cnt, hb_ka_cfg.user_timeout_ms);
}

__attribute__((constructor)) static void hb_ctor(void)
{
	hb_init();
}

__attribute__((destructor)) static void hb_dtor(void)
{
	if (!hb_enabled)
		return;
	hb_stdio_flush();
	hb_fdopen_flush();
	hb_frame_at_exit();
	hb_stats_flush();
}

HB_EXPORT const char *hbshim_version(void)
{
	return HBSHIM_VERSION_STRING;
}

HB_EXPORT int hbshim_active(void)
{
	return hb_enabled;
}

HB_EXPORT int hbshim_fd_mode(int fd)
{
	struct hb_conn *c = hb_fd_conn(fd);

	if (!c || (hb_load_relaxed(&c->flags) & HB_CF_LOST))
		return HBSHIM_MODE_NONE;
	return hb_conn_public_mode(c);
}
