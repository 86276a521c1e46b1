/*
 * init.c - library constructor, destructor and the public query API.
 *
 * The constructor binds the real symbols and parses the configuration once
 * (programs such as nginx clear their environment before forking workers,
 * which must keep it). It creates no thread and allocates nothing. Until it
 * has run (calls from other libraries' constructors), every interposer
 * passes straight through.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/auxv.h>

#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/kcmp.h>

#include "hb.h"
#include "hbshim.h"

int hb_enabled;
int hb_self_pid;

static void pid_after_fork(void)
{
	hb_self_pid = hb_os_getpid();
}

/* pid is not the pid we recorded: 1 if this process shares our memory
 * with the recorded one (a vfork child, which must change nothing), 0 if
 * it has its own (a raw clone's child, no fork handler ran: it takes the
 * pid as its own). Unknown (no kcmp, not permitted): 1, change nothing. */
int hb_vfork_check(int pid)
{
	long r = syscall(SYS_kcmp, pid, hb_self_pid, KCMP_VM, 0, 0);

	if (r == 0)
		return 1;
	if (r > 0) {
		hb_self_pid = pid;
		return 0;
	}
	return 1;
}

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
	hb_self_pid = hb_os_getpid();
	pthread_atfork(NULL, NULL, pid_after_fork);
	pthread_atfork(hb_out_atfork_prepare, hb_out_atfork_parent, hb_out_atfork_child);
	hb_real_bind();
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
	hb_ka_derive(hb_cfg.interval_ms, hb_cfg.timeout_ms, &hb_ka_cfg);
	/* Framed connections: the kernel's keepalive is only a backstop and
	 * must never fire before the heartbeat timeout (2 x timeout). */
	hb_ka_derive(hb_cfg.interval_ms, hb_cfg.timeout_ms * 2, &hb_ka_frame_cfg);
	hb_enabled = !hb_cfg.disabled;
	if (hb_enabled) {
		const char *inh = getenv("HBSHIM_INHERIT");

		if (inh) {
			/* Framed connections handed over by exec. */
			if (hb_inherit_import(inh) < 0)
				hb_log(HB_LOG_WARN, "HBSHIM_INHERIT is malformed: ignored");
			unsetenv("HBSHIM_INHERIT");
			hb_stdio_adopt();
		}
	}
	if (hb_enabled && hb_cfg.control_path[0])
		hb_fault_ctl_start(); /* HBSHIM_CONTROL */
	hb_store_release(&init_state, 2);
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
