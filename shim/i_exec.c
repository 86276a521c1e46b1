/*
 * i_exec.c - interposers for the exec family and posix_spawn: framed
 * connections that survive exec carry their state into the new image
 * (inherit.c) through HBSHIM_INHERIT in the environment it receives.
 *
 * glibc's execl*, execv and execvp reach execve through internal calls we
 * cannot see, so each of them is interposed and routed through one place.
 * Nothing is changed in the calling process: if exec fails, it fails as it
 * would have.
 */
#include <spawn.h>
#include <stdarg.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/prctl.h>

#include "interpose.h"

#define ENV_MAX 8192
#define INHERIT_MAX 8192

extern char **environ;

/* envp with HBSHIM_INHERIT replaced by var (or removed when var is NULL),
 * built in out[max]; returns envp itself when nothing needs changing. */
static char *const *build_env(char *const *envp, char *var, char **out, size_t max)
{
	size_t n = 0, k = 0, cnt = 0;
	int had = 0;

	static char *const empty[] = { NULL };

	if (!envp)
		envp = empty;
	while (envp[cnt])
		cnt++;
	for (size_t i = 0; i < cnt; i++)
		if (!strncmp(envp[i], "HBSHIM_INHERIT=", 15))
			had = 1;
	if (!var && !had)
		return envp;
	if (cnt + 2 > max)
		return envp; /* absurd environment: pass it as it is */
	for (; n < cnt; n++)
		if (strncmp(envp[n], "HBSHIM_INHERIT=", 15))
			out[k++] = envp[n];
	if (var)
		out[k++] = var;
	out[k] = NULL;
	return out;
}

/* newenv: envp with the framed state of our connections (dups: the dup2
 * pairs of a posix_spawn, NULL for exec). */
#define WITH_ENV_DUPS(envp, dups, ndups, newenv)                                 \
	char inherit_[INHERIT_MAX];                                              \
	char *vec_[ENV_MAX];                                                     \
	size_t ilen_ = hb_enabled ? hb_inherit_export(inherit_, sizeof(inherit_), (dups), (ndups)) \
				  : 0;                                           \
	char *const *newenv = build_env((envp), ilen_ ? inherit_ : NULL, vec_, ENV_MAX)
#define WITH_ENV(envp, newenv) WITH_ENV_DUPS(envp, NULL, 0, newenv)

HB_EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
	int (*fn)(const char *, char *const[], char *const[]) = REAL_PTR(execve);
	WITH_ENV(envp, env);

	if (!fn)
		return (int)syscall(SYS_execve, path, argv, env);
	return fn(path, argv, env);
}

HB_EXPORT int execv(const char *path, char *const argv[])
{
	return execve(path, argv, environ);
}

HB_EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
	WITH_ENV(envp, env);

	return REAL(execvpe, (errno = ENOSYS, -1), file, argv, env);
}

HB_EXPORT int execvp(const char *file, char *const argv[])
{
	return execvpe(file, argv, environ);
}

HB_EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
	WITH_ENV(envp, env);

	return REAL(fexecve, (errno = ENOSYS, -1), fd, argv, env);
}

/* Collect the variadic arguments of execl* (NULL-terminated). */
#define COLLECT_ARGS(arg0, argv, ap, max)                       \
	do {                                                    \
		size_t i_ = 0;                                  \
		argv[i_++] = (char *)(arg0);                    \
		while (argv[i_ - 1] && i_ < (max))              \
			argv[i_++] = va_arg(ap, char *);        \
	} while (0)

#define ARG_MAX_L 4096

HB_EXPORT int execl(const char *path, const char *arg0, ...)
{
	char *argv[ARG_MAX_L];
	va_list ap;

	va_start(ap, arg0);
	COLLECT_ARGS(arg0, argv, ap, ARG_MAX_L);
	va_end(ap);
	argv[ARG_MAX_L - 1] = NULL;
	return execve(path, argv, environ);
}

HB_EXPORT int execlp(const char *file, const char *arg0, ...)
{
	char *argv[ARG_MAX_L];
	va_list ap;

	va_start(ap, arg0);
	COLLECT_ARGS(arg0, argv, ap, ARG_MAX_L);
	va_end(ap);
	argv[ARG_MAX_L - 1] = NULL;
	return execvpe(file, argv, environ);
}

HB_EXPORT int execle(const char *path, const char *arg0, ...)
{
	char *argv[ARG_MAX_L];
	char *const *envp;
	va_list ap;

	va_start(ap, arg0);
	COLLECT_ARGS(arg0, argv, ap, ARG_MAX_L);
	envp = va_arg(ap, char *const *);
	va_end(ap);
	argv[ARG_MAX_L - 1] = NULL;
	return execve(path, argv, envp);
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
	(void)fa;
	(void)dups;
#endif
	return n;
}

#define WITH_SPAWN_ENV(envp, fa, newenv)                                         \
	int dups_[SPAWN_DUPS_MAX][2];                                            \
	int ndups_ = hb_enabled ? spawn_dups((fa), dups_) : 0;                   \
	WITH_ENV_DUPS(envp, (const int (*)[2])dups_, ndups_, newenv)

HB_EXPORT int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
			  const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	WITH_SPAWN_ENV(envp, fa, env);

	return REAL(posix_spawn, ENOSYS, pid, path, fa, attr, argv, env);
}

HB_EXPORT int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
			   const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	WITH_SPAWN_ENV(envp, fa, env);

	return REAL(posix_spawnp, ENOSYS, pid, file, fa, attr, argv, env);
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
 * application's own. Framed connections cannot continue in such a process
 * (README). PR_SET_NO_NEW_PRIVS alone restricts no system call (haproxy
 * sets it at startup): nothing changes for it. seccomp(2) has no libc
 * wrapper; a filter installed with syscall(SYS_seccomp) (libseccomp on
 * recent kernels) is not seen.
 */
static void give_back(int fd, struct hb_conn *c, void *arg)
{
	uint32_t fl = hb_load_acquire(&c->flags);

	(void)arg;
	if ((fl & HB_CF_LOST) || !c->cookie || hb_os_cookie(fd) != c->cookie)
		return;
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

HB_EXPORT int prctl(int option, ...)
{
	unsigned long a[4];
	va_list ap;

	va_start(ap, option);
	for (int i = 0; i < 4; i++)
		a[i] = va_arg(ap, unsigned long);
	va_end(ap);
	if (option == PR_SET_SECCOMP)
		step_aside("prctl(PR_SET_SECCOMP)");
	return REAL(prctl, (int)syscall(SYS_prctl, option, a[0], a[1], a[2], a[3]), option, a[0],
		    a[1], a[2], a[3]);
}
