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
#include <sys/mman.h>

#include "hb.h"
#include "hbshim.h"

int hb_enabled;

/* One page mapped with MADV_WIPEONFORK, holding VM_TOKEN: a process with
 * memory of its own (fork, or clone without CLONE_VM) sees it zeroed, a
 * process that runs in ours (vfork, CLONE_VM) sees the token. This tells
 * the two apart with one load and no system call, where kcmp may be
 * refused (Docker's default seccomp profile, without CAP_SYS_PTRACE) or
 * missing. NULL when the kernel has no MADV_WIPEONFORK (before 4.14). */
#define VM_TOKEN 0x6862736869766d31ull /* "hbshivm1" */
static volatile uint64_t *vm_probe;

static void vm_probe_init(void)
{
	uint64_t *p = hb_os_mmap(4096);

	if (!p)
		return;
	if (hb_os_madvise(p, 4096, MADV_WIPEONFORK) < 0) {
		hb_os_munmap(p, 4096);
		return;
	}
	*p = VM_TOKEN;
	vm_probe = p;
}

static void pid_after_fork(void)
{
	hb_self_pid = hb_os_getpid();
	hb_vfork_mark = 0;
	if (vm_probe)
		*vm_probe = VM_TOKEN; /* wiped in this child */
}

/* pid is not the pid we recorded: 1 if this process shares our memory
 * with the recorded one (a vfork child, which must change nothing), 0 if
 * it has its own (a raw clone's child, no fork handler ran: it takes the
 * pid as its own). The probe page answers; without it, kcmp(KCMP_VM).
 * Unknown (neither): 1, change nothing, and the mark makes hb_fd_conn
 * check a connection's socket before this process uses it. */
int hb_vfork_check(int pid)
{
	long r;

	if (vm_probe)
		r = *vm_probe == VM_TOKEN ? 0 : 3;
	else
		r = hb_os_kcmp(pid, hb_self_pid, KCMP_VM, 0, 0);
	if (r > 0) {
		/* A clone with CLONE_FILES shares the parent's fd table: the
		 * fds are then the parent's, not ours to close. Only kcmp
		 * tells; when it cannot (refused, the parent gone), they are
		 * taken as shared. */
		int own_files = hb_os_kcmp(pid, hb_self_pid, KCMP_FILES, 0, 0) > 0;

		hb_self_pid = pid;
		hb_vfork_mark = 0;
		if (vm_probe)
			*vm_probe = VM_TOKEN; /* our own page now */
		/* The parent may still hold every connection: as after fork. */
		hb_thread_after_clone(own_files);
		return 0;
	}
	hb_vfork_mark = pid;
	return 1;
}

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
	hb_out_init();
	vm_probe_init();
	pthread_atfork(NULL, NULL, pid_after_fork);
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
