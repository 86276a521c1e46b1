/*
 * proc.c - which process this is: whether the shim is active in it, the pid
 * that owns the shim's state, and the vfork check (with the one question a
 * vfork child asks before it uses a connection: is fd still its socket).
 *
 * Part of the OS layer: it calls only os.c. What the state above must do
 * when a raw clone's child finds it has memory of its own (the background
 * thread and the fd table start over, as after fork) is a hook the
 * constructor registers (hb_proc_init), not a call up.
 */
#include <linux/kcmp.h>
#include <signal.h>
#include <sys/mman.h>

#include "hb_os.h"

int hb_enabled;
int hb_self_pid;
__thread int hb_vfork_mark __attribute__((tls_model("initial-exec")));

/* One page mapped with MADV_WIPEONFORK, holding VM_TOKEN: a process with
 * memory of its own (fork, or clone without CLONE_VM) sees it zeroed, a
 * process that runs in ours (vfork, CLONE_VM) sees the token. This tells
 * the two apart with one load and no system call, where kcmp may be
 * refused (Docker's default seccomp profile, without CAP_SYS_PTRACE) or
 * missing. NULL when the kernel has no MADV_WIPEONFORK (before 4.14). */
#define VM_TOKEN 0x6862736869766d31ull /* "hbshivm1" */
static volatile uint64_t *vm_probe;

static void (*clone_hook)(int own_files);

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

void hb_proc_init(void (*on_clone)(int own_files))
{
	clone_hook = on_clone;
	hb_self_pid = hb_os_getpid();
	vm_probe_init();
}

void hb_proc_after_fork(void)
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
		if (clone_hook)
			clone_hook(own_files);
		return 0;
	}
	hb_vfork_mark = pid;
	return 1;
}

int hb_vforked(void)
{
	int pid;

	if (!hb_self_pid)
		return 0;
	pid = hb_os_getpid();
	return HB_UNLIKELY(pid != hb_self_pid) && hb_vfork_check(pid);
}

int hb_vfork_same_socket(int fd, uint64_t cookie)
{
	if (hb_os_getpid() == hb_self_pid) {
		/* The owner again: the child that set the mark on this
		 * thread has exec'd or exited (vfork suspends the thread
		 * until then), and the entries are right here. */
		hb_vfork_mark = 0;
		return 1;
	}
	/* Not the owner: a close here was not recorded, so the number may
	 * name another file now. Only the same socket is the connection. */
	return cookie && hb_os_cookie(fd) == cookie;
}

int hb_proc_handlers_restart(void)
{
	for (int sig = 1; sig < NSIG; sig++) {
		struct sigaction sa;

		if (sig == SIGKILL || sig == SIGSTOP || sigaction(sig, NULL, &sa) < 0)
			continue;
		if (!(sa.sa_flags & SA_SIGINFO) &&
		    (sa.sa_handler == SIG_DFL || sa.sa_handler == SIG_IGN))
			continue;
		if (!(sa.sa_flags & SA_RESTART))
			return 0;
	}
	return 1;
}
