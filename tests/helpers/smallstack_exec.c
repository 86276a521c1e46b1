/*
 * smallstack_exec.c - exec and posix_spawn with a framed connection open,
 * from a thread with a 64 KiB stack (tests/bats/hardening.bats).
 *
 *   smallstack_exec MODE
 *
 * Run with HBSHIM_FRAME='*'. Opens a framed TCP connection to itself on
 * 127.0.0.1 (its client socket survives exec), then, in a thread whose stack
 * is 64 KiB, starts itself again as "child FD" by MODE:
 *   spawn        posix_spawn
 *   fork-execve  fork, then execve in the child
 *   fork-execle  fork, then execle in the child
 *   vfork-execve vfork, then execve in the child, 17 times; the mappings of
 *                the process may not grow by more than 64 KiB from the
 *                second to the last (a leak of the exec scratch memory
 *                would be 17 x 12 KiB or more)
 *   execle-args  (main thread) fork, then execle with 5000 arguments and an
 *                envp that adds HB_T=ok
 * The child prints "CHILD fdmode=<hbshim_fd_mode(FD)> argc=<argc>
 * hb_t=<$HB_T>" (fdmode 2: it adopted the framed connection). The parent
 * prints "STATUS <exit status>" of each child, or "SIGNAL <n>", then
 * "GROWTH <kB>" for vfork-execve, and "DONE". Exit status 2 on a setup error.
 */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static const char *self, *mode;
static char fdarg[16];
static long growth = -1;

static void die(const char *what)
{
	printf("SETUP %s: %s\n", what, strerror(errno));
	fflush(stdout);
	_exit(2);
}

static void report(pid_t pid)
{
	int st;

	if (pid < 0)
		die("start");
	if (waitpid(pid, &st, 0) != pid)
		die("waitpid");
	if (WIFEXITED(st))
		printf("STATUS %d\n", WEXITSTATUS(st));
	else
		printf("SIGNAL %d\n", WTERMSIG(st));
}

static long vm_data_kb(void)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmData:", 7))
			kb = atol(line + 7);
	fclose(f);
	return kb;
}

static void *run(void *arg)
{
	char *argv[] = { (char *)self, "child", fdarg, NULL };
	pid_t pid;

	(void)arg;
	if (!strcmp(mode, "spawn")) {
		int e = posix_spawn(&pid, self, NULL, NULL, argv, environ);

		if (e) {
			errno = e;
			die("posix_spawn");
		}
		report(pid);
	} else if (!strcmp(mode, "fork-execve")) {
		if ((pid = fork()) == 0) {
			execve(self, argv, environ);
			_exit(127);
		}
		report(pid);
	} else if (!strcmp(mode, "fork-execle")) {
		if ((pid = fork()) == 0) {
			execle(self, self, "child", fdarg, (char *)NULL, environ);
			_exit(127);
		}
		report(pid);
	} else if (!strcmp(mode, "vfork-execve")) {
		long before = 0;

		fflush(stdout);
		for (int i = 0; i < 17; i++) {
			int st;

			if (i == 1)
				before = vm_data_kb();
			if ((pid = vfork()) == 0) {
				execve(self, argv, environ);
				_exit(127);
			}
			if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) ||
			    WEXITSTATUS(st)) {
				printf("VFORK %d failed\n", i);
				return NULL;
			}
		}
		growth = vm_data_kb() - before;
	}
	return NULL;
}

static int child(int argc, char **argv)
{
	int (*fdmode)(int) = (int (*)(int))dlsym(RTLD_DEFAULT, "hbshim_fd_mode");
	const char *t = getenv("HB_T");

	printf("CHILD fdmode=%d argc=%d hb_t=%s\n", fdmode ? fdmode(atoi(argv[2])) : -1, argc,
	       t ? t : "-");
	return 0;
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	int ls, cl, sv;
	char buf[16];

	if (argc >= 3 && !strcmp(argv[1], "child"))
		return child(argc, argv);
	if (argc != 2)
		return 2;
	setvbuf(stdout, NULL, _IOLBF, 0);
	alarm(20);
	self = "/proc/self/exe";
	mode = argv[1];
	{
		static char path[4096];
		ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);

		if (n <= 0)
			die("readlink");
		path[n] = 0;
		self = path;
	}
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((ls = socket(AF_INET, SOCK_STREAM, 0)) < 0 || bind(ls, (void *)&sa, sizeof(sa)) ||
	    listen(ls, 1) || getsockname(ls, (void *)&sa, &sl))
		die("listen");
	if ((cl = socket(AF_INET, SOCK_STREAM, 0)) < 0 || connect(cl, (void *)&sa, sizeof(sa)))
		die("connect");
	if ((sv = accept(ls, NULL, NULL)) < 0)
		die("accept");
	if (write(cl, "hello", 5) != 5 || read(sv, buf, sizeof(buf)) != 5 ||
	    write(sv, "x", 1) != 1 || read(cl, buf, sizeof(buf)) != 1)
		die("exchange");
	snprintf(fdarg, sizeof(fdarg), "%d", cl);

	if (!strcmp(mode, "execle-args")) {
		static char *env[4096];
		size_t k = 0;
		pid_t pid;

		for (char **e = environ; *e && k < 4094; e++)
			env[k++] = *e;
		env[k++] = "HB_T=ok";
		env[k] = NULL;
		if ((pid = fork()) == 0) {
			/* execle(self, self, "child", fd, "x" x 4997, NULL, env),
			 * spelled out through a macro: 5000 arguments. */
#define X10 "x", "x", "x", "x", "x", "x", "x", "x", "x", "x"
#define X100 X10, X10, X10, X10, X10, X10, X10, X10, X10, X10
#define X1000 X100, X100, X100, X100, X100, X100, X100, X100, X100, X100
			execle(self, self, "child", fdarg, X1000, X1000, X1000, X1000, X100, X100,
			       X100, X100, X100, X100, X100, X100, X100, X10, X10, X10, X10, X10,
			       X10, X10, X10, X10, "x", "x", "x", "x", "x", "x", "x", (char *)NULL,
			       env);
			_exit(127);
		}
		report(pid);
	} else {
		pthread_attr_t at;
		pthread_t th;

		if (pthread_attr_init(&at) || pthread_attr_setstacksize(&at, 64 * 1024) ||
		    pthread_create(&th, &at, run, NULL) || pthread_join(th, NULL))
			die("thread");
		if (growth >= 0)
			printf("GROWTH %ld\n", growth);
	}
	printf("DONE\n");
	return 0;
}
