/*
 * i_exec.c - interposers for the exec family and posix_spawn: framed
 * connections that survive exec carry their state into the new image
 * (inherit.c) through HBSHIM_INHERIT in the environment it receives.
 *
 * glibc's execl*, execv and execvp reach execve through internal calls we
 * cannot see, so each of them is interposed and routed through one place.
 * Nothing is changed in the calling process: if exec fails, it fails as it
 * would have.
 *
 * system() too, whose shell libc starts unseen, when a framed connection
 * would reach it. Also here: a process that sandboxes itself with seccomp
 * (prctl, and syscall() for SYS_seccomp), before which the shim steps
 * aside.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/seccomp.h>

#include "interpose.h"
#include "os_raw.h"

#define INHERIT_MAX 8192 /* 64 entries of at most ~120 characters */
#define ARGV_STACK 64    /* execl* arguments kept on the stack; more: scratch */

extern char **environ;

/*
 * Scratch memory. These calls run on the caller's stack, which may be a
 * small thread stack (64 KiB), and in a vfork child, which shares the
 * parent's memory and may use nothing but async-signal-safe calls: the new
 * environment vector and HBSHIM_INHERIT (or a long execl argument list) go
 * to an anonymous mapping made for the call and unmapped when the call
 * returns. A mapping made in a vfork child lives in the parent's memory and
 * outlives a successful exec there; each one is parked in the calling
 * thread's slots under the pid that made it (a vfork child runs on its
 * parent thread's TLS), and the next call on that thread from another pid
 * (the parent again, the vfork child having gone) unmaps it. A signal
 * handler's exec nested in an interrupted one has the same pid and leaves
 * the outer call's mapping alone.
 */
#define SCRATCH_SLOTS 4
struct scratch {
	void *p;
	size_t len;
	int pid;
};
static __thread struct scratch parked[SCRATCH_SLOTS] __attribute__((tls_model("initial-exec")));

static void *scratch_get(size_t len, struct scratch *s)
{
	int pid = hb_os_getpid();

	for (int i = 0; i < SCRATCH_SLOTS; i++) {
		if (parked[i].p && parked[i].pid != pid) {
			hb_os_munmap(parked[i].p, parked[i].len);
			parked[i].p = NULL;
		}
	}
	s->len = (len + 4095) & ~(size_t)4095;
	s->pid = pid;
	s->p = s->len >= len ? hb_os_mmap(s->len) : NULL;
	if (!s->p)
		return NULL;
	for (int i = 0; i < SCRATCH_SLOTS; i++) {
		if (!parked[i].p) {
			parked[i] = *s;
			break;
		}
	}
	return s->p;
}

/* Give back s (exec failed, or posix_spawn returned); errno preserved. */
static void scratch_put(struct scratch *s)
{
	if (!s->p)
		return;
	for (int i = 0; i < SCRATCH_SLOTS; i++)
		if (parked[i].p == s->p)
			parked[i].p = NULL;
	hb_os_munmap(s->p, s->len);
	s->p = NULL;
}

/* The environment for the new image: envp with HBSHIM_INHERIT describing
 * our framed connections that survive (dups: the dup2 pairs of a
 * posix_spawn, NULL for exec), any old HBSHIM_INHERIT removed. Returns
 * envp itself when nothing changes (no framed connection was ever seen,
 * the usual case: no mapping), else a vector in s. */
static char *const *new_env(char *const *envp, const int (*dups)[2], int ndups,
			    struct scratch *s)
{
	static char *const empty[] = { NULL };
	size_t cnt = 0, k = 0, ilen = 0;
	int had = 0;
	char **out;
	char *var;

	s->p = NULL;
	if (!envp)
		envp = empty;
	for (; envp[cnt]; cnt++)
		if (!strncmp(envp[cnt], "HBSHIM_INHERIT=", 15))
			had = 1;
	if (!had && !(hb_enabled && hb_load_relaxed(&hb_frame_seen)))
		return envp;
	if (cnt > ((size_t)-1 - INHERIT_MAX) / sizeof(char *) - 2 ||
	    !scratch_get((cnt + 2) * sizeof(char *) + INHERIT_MAX, s))
		return envp; /* no memory: pass it as it is */
	out = s->p;
	var = (char *)(out + cnt + 2);
	if (hb_enabled)
		ilen = hb_inherit_export(var, INHERIT_MAX, dups, ndups);
	if (!ilen && !had) {
		scratch_put(s);
		return envp;
	}
	for (size_t i = 0; i < cnt; i++)
		if (strncmp(envp[i], "HBSHIM_INHERIT=", 15))
			out[k++] = envp[i];
	if (ilen)
		out[k++] = var;
	out[k] = NULL;
	return out;
}

HB_EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
	int (*fn)(const char *, char *const[], char *const[]) = REAL_PTR(execve);
	struct scratch s;
	char *const *env = new_env(envp, NULL, 0, &s);
	int r;

	if (!fn)
		r = LIBC_RET(hb_os_execve(path, argv, env));
	else
		r = fn(path, argv, env);
	scratch_put(&s);
	return r;
}

HB_EXPORT int execv(const char *path, char *const argv[])
{
	return execve(path, argv, environ);
}

HB_EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
	struct scratch s;
	char *const *env = new_env(envp, NULL, 0, &s);
	int r = REAL(execvpe, (errno = ENOSYS, -1), file, argv, env);

	scratch_put(&s);
	return r;
}

HB_EXPORT int execvp(const char *file, char *const argv[])
{
	return execvpe(file, argv, environ);
}

HB_EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
	struct scratch s;
	char *const *env = new_env(envp, NULL, 0, &s);
	int r = REAL(fexecve, (errno = ENOSYS, -1), fd, argv, env);

	scratch_put(&s);
	return r;
}

/* The execl* arguments: arg0 and the variadic ones up to the NULL that
 * ends them; count_args first, then fill_args into a vector of count + 1
 * (on the stack up to ARGV_STACK, else scratch), which also reads execle's
 * envp that follows the NULL. */
static size_t count_args(const char *arg0, va_list ap)
{
	size_t n = 0;

	if (arg0)
		for (n = 1; va_arg(ap, char *) && n < INT_MAX; n++)
			;
	return n;
}

static void fill_args(char **argv, size_t n, const char *arg0, va_list ap, char *const **envp)
{
	argv[0] = (char *)arg0;
	for (size_t i = 1; i < n; i++)
		argv[i] = va_arg(ap, char *);
	argv[n] = NULL;
	if (envp) {
		if (n)
			(void)va_arg(ap, char *); /* the NULL after the arguments */
		*envp = va_arg(ap, char *const *);
	}
}

static char **args_mem(size_t n, char **small, struct scratch *s)
{
	s->p = NULL;
	if (n < ARGV_STACK)
		return small;
	if (n >= INT_MAX) {
		errno = E2BIG; /* glibc's answer */
		return NULL;
	}
	if (!scratch_get((n + 1) * sizeof(char *), s)) {
		errno = ENOMEM;
		return NULL;
	}
	return s->p;
}

/* execl, execlp, execle: which selects the exec call and whether an envp
 * follows the arguments. */
#define EXECL_BODY(first, arg0, call, want_env)                            \
	do {                                                               \
		char *small_[ARGV_STACK], **argv_;                         \
		char *const *envp_ = environ;                              \
		struct scratch s_;                                         \
		va_list ap_;                                               \
		size_t n_;                                                 \
		int r_;                                                    \
                                                                           \
		va_start(ap_, arg0);                                       \
		n_ = count_args(arg0, ap_);                                \
		va_end(ap_);                                               \
		if (!(argv_ = args_mem(n_, small_, &s_)))                  \
			return -1;                                         \
		va_start(ap_, arg0);                                       \
		fill_args(argv_, n_, arg0, ap_, (want_env) ? &envp_ : NULL); \
		va_end(ap_);                                               \
		r_ = call(first, argv_, envp_);                            \
		scratch_put(&s_);                                          \
		return r_;                                                 \
	} while (0)

HB_EXPORT int execl(const char *path, const char *arg0, ...)
{
	EXECL_BODY(path, arg0, execve, 0);
}

HB_EXPORT int execlp(const char *file, const char *arg0, ...)
{
	EXECL_BODY(file, arg0, execvpe, 0);
}

HB_EXPORT int execle(const char *path, const char *arg0, ...)
{
	EXECL_BODY(path, arg0, execve, 1);
}

/* The dup2 actions of a posix_spawn file-actions object: glibc's child
 * runs them itself, where we cannot see them (python's subprocess with
 * close_fds=False, os.posix_spawn: a socket handed over as stdin/stdout).
 * glibc's layout (spawn_int.h, stable for decades: a tag, then the fds).
 * A misreading is harmless: the child adopts a number only if its socket
 * cookie matches. */
#define SPAWN_DUPS_MAX 16
struct spawn_action_glibc {
	int tag; /* 0 close, 1 dup2, 2 open, ... */
	union {
		struct {
			int fd, newfd;
		} dup2;
		struct {
			int fd;
			char *path;
			int oflag;
			unsigned mode;
		} open; /* the largest member: sets size and alignment */
	} a;
};

#ifndef __GLIBC__
static void spawn_shared(int fd, struct hb_conn *c, void *arg)
{
	(void)fd;
	(void)arg;
	if (c->mode == HB_MODE_FRAME)
		hb_frame_mark_shared(c, hb_os_now_ms());
}
#endif

static int spawn_dups(const posix_spawn_file_actions_t *fa, int dups[][2])
{
	int n = 0;
#ifdef __GLIBC__
	const struct spawn_action_glibc *act;
	int used;

	if (!fa)
		return 0;
	used = fa->__used;
	act = (const struct spawn_action_glibc *)fa->__actions;
	if (!act || used <= 0 || used > fa->__allocated || used > 1024)
		return 0;
	for (int i = 0; i < used && n < SPAWN_DUPS_MAX; i++) {
		if (act[i].tag == 1 && act[i].a.dup2.fd >= 0 && act[i].a.dup2.newfd >= 0) {
			dups[n][0] = act[i].a.dup2.fd;
			dups[n][1] = act[i].a.dup2.newfd;
			n++;
		}
	}
#else
	/* musl's child runs the actions with raw system calls and its
	 * layout is private: unknown. Any framed connection may have been
	 * handed over (a dup2 action clears FD_CLOEXEC on the copy), so
	 * each counts as shared: our close then leaves the stream to the
	 * child. The child itself sees such a copy as a plain socket
	 * (README: musl limits). */
	(void)dups;
	if (fa)
		hb_fd_foreach(spawn_shared, NULL);
#endif
	return n;
}

static char *const *spawn_env(char *const *envp, const posix_spawn_file_actions_t *fa,
			      struct scratch *s)
{
	int dups[SPAWN_DUPS_MAX][2];
	int ndups = hb_enabled ? spawn_dups(fa, dups) : 0;

	return new_env(envp, (const int (*)[2])dups, ndups, s);
}

HB_EXPORT int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
			  const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	struct scratch s;
	char *const *env = spawn_env(envp, fa, &s);
	int r = REAL(posix_spawn, ENOSYS, pid, path, fa, attr, argv, env);

	scratch_put(&s);
	return r;
}

HB_EXPORT int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
			   const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	struct scratch s;
	char *const *env = spawn_env(envp, fa, &s);
	int r = REAL(posix_spawnp, ENOSYS, pid, file, fa, attr, argv, env);

	scratch_put(&s);
	return r;
}

/*
 * system(): libc starts its shell through its own internal posix_spawn,
 * which the interposers above never see: a framed connection on an fd that
 * survives exec (a server that runs system("handler") with the connection
 * on stdin and stdout, socat's SYSTEM:) reached the shell with no
 * HBSHIM_INHERIT entry, the shell took it for a raw socket, and its raw
 * bytes broke the framed stream (or made the peer take it for raw). With
 * such a connection in the process, system() is made here as libc makes it
 * (POSIX: "sh -c" command; SIGINT and SIGQUIT ignored and SIGCHLD blocked
 * in the caller while it waits, the shell with the caller's mask and
 * SIGINT/SIGQUIT at their defaults; a cancelled caller kills and reaps the
 * shell), through posix_spawn above. Otherwise libc's own runs. popen()
 * is not covered (README).
 */
static void find_survivor(int fd, struct hb_conn *c, void *arg)
{
	int *found = arg;
	long fl;

	if (*found || c->mode != HB_MODE_FRAME || (hb_load_relaxed(&c->flags) & HB_CF_LOST))
		return;
	fl = hb_os_fcntl(fd, F_GETFD, 0);
	if (fl >= 0 && !(fl & FD_CLOEXEC))
		*found = 1;
}

static pthread_mutex_t system_lock = PTHREAD_MUTEX_INITIALIZER;
static int system_callers; /* under system_lock: calls waiting for a shell */
static struct sigaction system_intr, system_quit; /* the caller's, while ignored */

struct system_call {
	pid_t pid;
	sigset_t omask;
};

/* The signal dispositions and mask as they were before the call: SIGINT
 * and SIGQUIT come back when the last concurrent caller is done. */
static void system_restore(const sigset_t *omask)
{
	pthread_mutex_lock(&system_lock);
	if (--system_callers == 0) {
		sigaction(SIGINT, &system_intr, NULL);
		sigaction(SIGQUIT, &system_quit, NULL);
	}
	pthread_mutex_unlock(&system_lock);
	pthread_sigmask(SIG_SETMASK, omask, NULL);
}

static void system_cancelled(void *arg)
{
	struct system_call *sc = arg;
	int st;

	kill(sc->pid, SIGKILL);
	while (waitpid(sc->pid, &st, 0) < 0 && errno == EINTR)
		;
	system_restore(&sc->omask);
}

static int shim_system(const char *line)
{
	struct sigaction ign;
	struct system_call sc;
	sigset_t chld, reset;
	posix_spawnattr_t attr;
	char *argv[] = { (char *)"sh", (char *)"-c", (char *)line, NULL };
	int status = -1, err;

	memset(&ign, 0, sizeof(ign));
	ign.sa_handler = SIG_IGN;
	sigemptyset(&ign.sa_mask);
	pthread_mutex_lock(&system_lock);
	if (system_callers++ == 0) {
		sigaction(SIGINT, &ign, &system_intr);
		sigaction(SIGQUIT, &ign, &system_quit);
	}
	pthread_mutex_unlock(&system_lock);
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	if (pthread_sigmask(SIG_BLOCK, &chld, &sc.omask) != 0) {
		/* The mask is as it was: only the dispositions go back. */
		pthread_mutex_lock(&system_lock);
		if (--system_callers == 0) {
			sigaction(SIGINT, &system_intr, NULL);
			sigaction(SIGQUIT, &system_quit, NULL);
		}
		pthread_mutex_unlock(&system_lock);
		return -1;
	}
	sigemptyset(&reset);
	if (system_intr.sa_handler != SIG_IGN)
		sigaddset(&reset, SIGINT);
	if (system_quit.sa_handler != SIG_IGN)
		sigaddset(&reset, SIGQUIT);
	posix_spawnattr_init(&attr);
	posix_spawnattr_setsigmask(&attr, &sc.omask);
	posix_spawnattr_setsigdefault(&attr, &reset);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
	err = posix_spawn(&sc.pid, "/bin/sh", NULL, &attr, argv, environ);
	posix_spawnattr_destroy(&attr);
	if (err == 0) {
		pthread_cleanup_push(system_cancelled, &sc);
		while (waitpid(sc.pid, &status, 0) != sc.pid) {
			if (errno != EINTR) {
				status = -1;
				break;
			}
		}
		pthread_cleanup_pop(0);
	} else {
		status = 127 << 8; /* POSIX: as if the shell ran _exit(127) */
	}
	system_restore(&sc.omask);
	if (err)
		errno = err;
	return status;
}

HB_EXPORT int system(const char *line)
{
	int (*fn)(const char *) = REAL_PTR(system);

	if (line && hb_enabled && hb_load_relaxed(&hb_frame_seen) && !hb_vforked()) {
		int found = 0;

		hb_fd_foreach(find_survivor, &found);
		if (found)
			return shim_system(line);
	}
	if (!fn) {
		errno = ENOSYS;
		return -1;
	}
	return fn(line);
}

/*
 * prctl(PR_SET_SECCOMP): the process sandboxes itself (sshd's pre-login
 * child, browsers, sandboxed workers). A seccomp filter applies to the
 * calling thread from then on and typically kills it (SIGSYS) for any
 * system call the program itself does not make: the shim's getsockopt,
 * sendmsg or thread creation would. So the shim steps aside first, while
 * its calls are still allowed: the user timeout it set is taken back (no
 * background thread will look after the window of these connections any
 * more), and so is a receive low-water mark of ours; every fd is
 * forgotten and nothing new is tracked. From then on every call is the
 * application's own. A framed connection leaves framing first: its
 * downgrade frame goes out while the process may still send it, and the
 * peer's frames in flight are decoded with read() alone until the peer's
 * own downgrade frame (hb_frame_leave, downgrade.c). PR_SET_NO_NEW_PRIVS
 * alone restricts no system call (haproxy sets it at startup): nothing
 * changes for it. seccomp(2) has no wrapper in glibc or musl: a filter
 * installed with syscall(SYS_seccomp) (libseccomp on recent kernels) or
 * syscall(SYS_prctl, PR_SET_SECCOMP) is seen by the syscall interposer
 * below.
 */
static void give_back(int fd, struct hb_conn *c, void *arg)
{
	uint32_t fl = hb_load_acquire(&c->flags);

	(void)arg;
	if ((fl & HB_CF_LOST) || !c->cookie || hb_os_cookie(fd) != c->cookie)
		return;
	hb_frame_leave(c, fd, HB_DR_SECCOMP);
	if ((fl & HB_CF_TIMING) && !(fl & HB_APP_USERTIMEOUT))
		hb_os_setsockopt_int(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, 0);
	/* A low-water mark of ours (an accepted connection still waiting for
	 * a hello) would keep short requests from waking the reader. */
	if (!(fl & HB_APP_RCVLOWAT))
		hb_os_setsockopt_int(fd, SOL_SOCKET, SO_RCVLOWAT, 1);
}

static void step_aside(const char *why)
{
	if (!hb_enabled)
		return;
	hb_enabled = 0;
	hb_log(HB_LOG_INFO, "%s: the process sandboxes itself; hbshim steps aside", why);
	hb_fd_foreach(give_back, NULL);
	hb_fd_forget_range(0, HB_FD_MAX - 1);
}

/*
 * Capabilities, the keep-caps flag and the securebits belong to one
 * thread: the background thread is given what the application gives its
 * own (hb_thread_mirror, thread.c), or glibc aborts the program at its
 * next uid change, when the background thread's answer differs from the
 * application thread's (proftpd's mod_cap).
 */
static void mirror_prctl(int option, unsigned long arg, long r)
{
	if (r == 0 && (option == PR_SET_KEEPCAPS || option == PR_SET_SECUREBITS) && hb_enabled)
		hb_thread_mirror(SYS_prctl, option, (long)arg, 0, 0);
}

struct cap_header {
	uint32_t version;
	int pid;
};

static void mirror_capset(const void *hdr, const void *data, long r)
{
	struct cap_header h;

	if (r != 0 || !hdr || !hb_enabled)
		return;
	memcpy(&h, hdr, sizeof(h));
	if (h.pid != 0 && h.pid != (int)hb_self_tid())
		return; /* another process's (refused by the kernel anyway) */
	h.pid = 0;
	hb_thread_mirror(SYS_capset, (long)&h, (long)data, 0, 0);
}

int capset(void *hdr, const void *data); /* libcap's header declares it */

HB_EXPORT int capset(void *hdr, const void *data)
{
	int (*fn)(void *, const void *) = REAL_PTR(capset);
	int r = fn ? fn(hdr, data) : (int)LIBC_RET(hb_os_syscall6(SYS_capset, (long)hdr, (long)data, 0, 0, 0, 0));

	mirror_capset(hdr, data, r);
	return r;
}

HB_EXPORT int prctl(int option, ...)
{
	unsigned long a[4];
	va_list ap;
	int r;

	va_start(ap, option);
	for (int i = 0; i < 4; i++)
		a[i] = va_arg(ap, unsigned long);
	va_end(ap);
	if (option == PR_SET_SECCOMP)
		step_aside("prctl(PR_SET_SECCOMP)");
	r = REAL(prctl, LIBC_RET(hb_os_prctl(option, a[0], a[1], a[2], a[3])), option, a[0], a[1],
		 a[2], a[3]);
	mirror_prctl(option, a[0], r);
	return r;
}

#ifdef HB_RAW_SYSCALL
/*
 * syscall(): only the calls that may install a seccomp filter or enter
 * strict mode (SYS_seccomp's SECCOMP_SET_MODE_FILTER with a program,
 * _STRICT with no flags and no argument; SYS_prctl's PR_SET_SECCOMP, strict
 * or with a program) make the shim step aside first, as for prctl.
 * seccomp's queries (SECCOMP_GET_ACTION_AVAIL, _GET_NOTIF_SIZES) install
 * nothing, and neither do the probes the kernel refuses before looking at
 * a program (libseccomp's seccomp(STRICT, 1, NULL) for EINVAL and
 * seccomp(FILTER, flag, NULL) for EFAULT, asked before any filter).
 * Every call goes on to the next definition with the same six arguments
 * (read as long, as libc's own syscall reads them, whatever the number
 * takes), and its result and errno are the caller's: for any other number
 * the cost is two compares. Built only where os.c makes its own system
 * calls without syscall() (os_raw.h): ours never come back here.
 */
/*
 * A raw clone without CLONE_VM makes a child with memory of its own, like
 * fork, but no fork handler runs (vsftpd makes each session process with
 * syscall(SYS_clone, CLONE_NEWPID | CLONE_NEWIPC | ... | SIGCHLD)). The
 * child finds out by itself (hb_vforked: another pid, memory of its own).
 * The parent must do what its fork's prepare handler would have: the
 * hand-over (share.c, leave.c) marks the connections shared, so that the
 * listener's close of its copy leaves the stream to the child, instead of
 * the framed close's drain and shutdown that ended the child's connection
 * before its banner. And it waits until its background thread runs, if
 * one was just started (hb_thread_wait_begun). A clone with CLONE_VM (a
 * thread, a vfork) is left as it is.
 */
static void before_raw_clone(unsigned long flags)
{
	if ((flags & (CLONE_VM | CLONE_THREAD)) || !hb_enabled)
		return;
	/* The child's libc must not count our thread as still being
	 * created (hb_thread_wait_begun): its first setuid would hang. */
	hb_thread_wait_begun();
	if (hb_load_relaxed(&hb_frame_seen) && !hb_vforked())
		hb_frame_fork_prepare();
}

HB_EXPORT int clone(int (*fn)(void *), void *stack, int flags, void *arg, ...)
{
	int (*real)(int (*)(void *), void *, int, void *, ...) = REAL_PTR(clone);
	void *ptid, *tls, *ctid;
	va_list ap;

	/* glibc reads these three only when flags ask for them; passing on
	 * what the caller left there is what its own wrapper does. */
	va_start(ap, arg);
	ptid = va_arg(ap, void *);
	tls = va_arg(ap, void *);
	ctid = va_arg(ap, void *);
	va_end(ap);
	if (!real) {
		errno = ENOSYS;
		return -1;
	}
	before_raw_clone((unsigned long)flags);
	return real(fn, stack, flags, arg, ptid, tls, ctid);
}

HB_EXPORT long syscall(long number, ...)
{
	long a[6];
	va_list ap;

	va_start(ap, number);
	for (int i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	if (HB_UNLIKELY(number == SYS_clone))
		before_raw_clone((unsigned long)a[0]);
	if (HB_UNLIKELY(number == SYS_seccomp || number == SYS_prctl)) {
		if (number == SYS_seccomp &&
		    ((a[0] == SECCOMP_SET_MODE_FILTER && a[2]) ||
		     (a[0] == SECCOMP_SET_MODE_STRICT && !a[1] && !a[2])))
			step_aside("syscall(SYS_seccomp)");
		else if (number == SYS_prctl && a[0] == PR_SET_SECCOMP &&
			 (a[1] == SECCOMP_MODE_STRICT || (a[1] == SECCOMP_MODE_FILTER && a[2])))
			step_aside("syscall(SYS_prctl, PR_SET_SECCOMP)");
	}
	if (HB_UNLIKELY(number == SYS_capset || number == SYS_prctl)) {
		int saved, r = (int)REAL(syscall,
					 LIBC_RET_SSIZE(hb_os_syscall6(number, a[0], a[1], a[2], a[3],
								       a[4], a[5])),
					 number, a[0], a[1], a[2], a[3], a[4], a[5]);

		saved = errno;
		if (number == SYS_capset)
			mirror_capset((const void *)a[0], (const void *)a[1], r);
		else
			mirror_prctl((int)a[0], (unsigned long)a[1], r);
		errno = saved;
		return r;
	}
	return REAL(syscall, LIBC_RET_SSIZE(hb_os_syscall6(number, a[0], a[1], a[2], a[3], a[4], a[5])),
		    number, a[0], a[1], a[2], a[3], a[4], a[5]);
}
#endif
