/*
 * hbshim.c - the command-line wrapper: hbshim [OPTIONS] [--] COMMAND [ARGS...]
 *
 * Turns options into HBSHIM_* variables, validates the resulting environment
 * with the library's own parser (config.c), puts libhbshim.so first in
 * LD_PRELOAD and execs COMMAND. It is an ordinary program: stdio and malloc
 * are fine here. Exit status follows env(1): 2 for a usage or configuration
 * error, 126 when COMMAND cannot be run, 127 when it is not found, otherwise
 * whatever COMMAND returns (it replaces this process).
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "hbshim.h"
#include "hb.h"

#ifndef HB_LIBDIR
#define HB_LIBDIR "/usr/local/lib"
#endif

#define LIBNAME "libhbshim.so"
#define EXIT_USAGE 2

static void usage_error(const char *what, const char *arg)
{
	fprintf(stderr, "hbshim: %s%s%s (try 'hbshim --help')\n", what, arg ? ": " : "",
		arg ? arg : "");
	exit(EXIT_USAGE);
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n);

	if (!p) {
		fprintf(stderr, "hbshim: out of memory\n");
		exit(EXIT_USAGE);
	}
	return p;
}

static char *xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;

	return memcpy(xmalloc(n), s, n);
}

static void help(void)
{
	int i, any;

	printf("usage: hbshim [OPTIONS] [--] COMMAND [ARGS...]\n"
	       "       hbshim ctl PATH list|add RULE|remove NAME|trigger NAME\n"
	       "\n"
	       "Run COMMAND with libhbshim preloaded: TCP connections get heartbeats (kernel\n"
	       "keepalive, or heartbeat frames with peers that speak them) and deadlines, and\n"
	       "a dead peer makes blocked calls fail instead of hanging forever.\n"
	       "\n"
	       "Each option sets the environment variable shown beside it; setting the\n"
	       "variable directly has the same effect, and an option wins over it.\n"
	       "Durations: 250ms, 5s, 1m, 2h, or a bare number of seconds.\n"
	       "\n"
	       "Options:\n");
	for (i = 0; i < hb_noptions; i++) {
		const struct hb_option *d = &hb_options[i];
		char left[64];

		if (!d->option)
			continue;
		if (d->flags & HB_OPTF_FLAG)
			snprintf(left, sizeof(left), "%s", d->option);
		else
			snprintf(left, sizeof(left), "%s %s", d->option, d->metavar);
		printf("  %-28s %s\n", left, d->doc);
		printf("  %-28s (default: %s; env %s%s)\n", "", d->deflt, d->env,
		       !(d->flags & HB_OPTF_REPEATABLE) ? ""
		       : d->flags & HB_OPTF_SEMI   ? "; repeatable, joined with ';'"
						   : "; repeatable, joined with ','");
	}
	printf("  %-28s %s\n", "--help", "print this help and exit");
	printf("  %-28s %s\n", "--version", "print the version and exit");
	for (i = 0, any = 0; i < hb_noptions; i++) {
		const struct hb_option *d = &hb_options[i];

		if (d->option)
			continue;
		if (!any++)
			printf("\nEnvironment only:\n");
		printf("  %-28s %s (default: %s)\n", d->env, d->doc, d->deflt);
	}
	printf("\n"
	       "The library is looked up as $HBSHIM_LIBRARY, then " LIBNAME " beside this\n"
	       "program, then in ../lib/ relative to it, then in " HB_LIBDIR ".\n"
	       "\n"
	       "Exit status: that of COMMAND; 2 for a usage or configuration error,\n"
	       "126 if COMMAND cannot be run, 127 if it is not found.\n");
	exit(0);
}

static const struct hb_option *find_option(const char *name, size_t len)
{
	int i;

	for (i = 0; i < hb_noptions; i++) {
		const char *o = hb_options[i].option;

		if (o && strlen(o) == len && !strncmp(o, name, len))
			return &hb_options[i];
	}
	return NULL;
}

/* Append item to the sep-joined list *list (malloc'd, or NULL). */
static void join(char **list, const char *item, char sep)
{
	size_t old = *list ? strlen(*list) : 0, n = strlen(item);
	char *p = xmalloc(old + n + 2);

	if (old) {
		memcpy(p, *list, old);
		p[old++] = sep;
	}
	memcpy(p + old, item, n + 1);
	free(*list);
	*list = p;
}

/*
 * Consume the options at the front of argv, setting their variables.
 * Returns the index of COMMAND in argv.
 */
static int parse_args(int argc, char **argv)
{
	char *joined[64] = { NULL }; /* repeatable options' values, by table row */
	int i;

	if (hb_noptions > (int)(sizeof(joined) / sizeof(joined[0]))) {
		fprintf(stderr, "hbshim: internal error: too many options\n");
		exit(EXIT_USAGE);
	}

	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *eq, *val;
		const struct hb_option *d;
		size_t len;

		if (!strcmp(a, "--")) {
			i++;
			break;
		}
		if (a[0] != '-' || !a[1])
			break; /* the first word that is not an option is COMMAND */
		if (!strcmp(a, "--help") || !strcmp(a, "-h"))
			help();
		if (!strcmp(a, "--version")) {
			printf("hbshim " HBSHIM_VERSION_STRING "\n");
			exit(0);
		}
		eq = strchr(a, '=');
		len = eq ? (size_t)(eq - a) : strlen(a);
		d = a[1] == '-' ? find_option(a, len) : NULL;
		if (!d)
			usage_error("unknown option", a);
		if (eq) {
			val = eq + 1;
		} else if (d->flags & HB_OPTF_FLAG) {
			val = "1";
		} else {
			if (i + 1 >= argc) {
				fprintf(stderr, "hbshim: option %s needs a value (try 'hbshim --help')\n",
					d->option);
				exit(EXIT_USAGE);
			}
			val = argv[++i];
		}
		if (d->flags & HB_OPTF_REPEATABLE) {
			char **list = &joined[d - hb_options];

			if (val[0])
				join(list, val, d->flags & HB_OPTF_SEMI ? ';' : ',');
			else if (!*list)
				*list = xstrdup(""); /* --frame= clears the variable */
			continue;
		}
		if (setenv(d->env, val, 1) < 0)
			goto fail;
	}
	for (int k = 0; k < hb_noptions; k++) {
		if (joined[k] && setenv(hb_options[k].env, joined[k], 1) < 0)
			goto fail;
		free(joined[k]);
	}
	return i;
fail:
	fprintf(stderr, "hbshim: cannot set the environment: %s\n", strerror(errno));
	exit(EXIT_USAGE);
}

static const char *env_get(const char *name)
{
	return getenv(name);
}

static int is_file(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, R_OK) == 0;
}

/* realpath of dir + "/" + rest when that is a readable file, else NULL. */
static char *try_lib(const char *dir, const char *rest)
{
	char path[PATH_MAX];
	int n = snprintf(path, sizeof(path), "%s/%s", dir, rest);

	if (n < 0 || (size_t)n >= sizeof(path) || !is_file(path))
		return NULL;
	return realpath(path, NULL);
}

/* The absolute path of libhbshim.so (malloc'd); exits when there is none. */
static char *find_library(void)
{
	const char *env = getenv("HBSHIM_LIBRARY");
	char exe[PATH_MAX], *slash, *lib;
	ssize_t n;

	if (env && env[0]) {
		errno = 0;
		if (!is_file(env) || !(lib = realpath(env, NULL))) {
			fprintf(stderr, "hbshim: HBSHIM_LIBRARY=%s: %s\n", env,
				errno ? strerror(errno) : "not a regular file");
			exit(EXIT_USAGE);
		}
		return lib;
	}
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = 0;
		slash = strrchr(exe, '/');
		if (slash) {
			*slash = 0;
			if ((lib = try_lib(exe[0] ? exe : "/", LIBNAME)))
				return lib;
			if ((lib = try_lib(exe[0] ? exe : "/", "../lib/" LIBNAME)))
				return lib;
		}
	}
	if ((lib = try_lib(HB_LIBDIR, LIBNAME)))
		return lib;
	fprintf(stderr, "hbshim: cannot find " LIBNAME " (looked beside %s, in ../lib/ "
		"relative to it and in " HB_LIBDIR "); set HBSHIM_LIBRARY\n",
		n > 0 ? "this program" : "this program (unknown location)");
	exit(EXIT_USAGE);
}

/* An LD_PRELOAD entry that is (another copy of) the shim: two would clash. */
static int is_shim(const char *entry, size_t len, const struct stat *lib)
{
	char path[PATH_MAX];
	struct stat st;
	size_t nl = strlen(LIBNAME);

	if (len >= nl && !strncmp(entry + len - nl, LIBNAME, nl) &&
	    (len == nl || entry[len - nl - 1] == '/'))
		return 1;
	if (len >= sizeof(path))
		return 0;
	memcpy(path, entry, len);
	path[len] = 0;
	return stat(path, &st) == 0 && st.st_dev == lib->st_dev && st.st_ino == lib->st_ino;
}

/*
 * New LD_PRELOAD: lib, then the entries that were there, in their order,
 * minus any copy of the shim (two copies would clash). A sanitizer runtime
 * already listed ends up second; its link-order check must be off
 * (ASAN_OPTIONS=verify_asan_link_order=0), which the test suite does. The
 * loader splits the list on ':' and ' ', so lib itself must contain neither.
 */
static void set_preload(const char *lib)
{
	const char *old = getenv("LD_PRELOAD"), *p;
	size_t liblen = strlen(lib), len = liblen;
	char *out = xmalloc(liblen + (old ? strlen(old) : 0) + 2);
	struct stat st;

	if (strpbrk(lib, ": ")) {
		fprintf(stderr, "hbshim: %s: LD_PRELOAD cannot name a path with ':' or ' ' in it\n",
			lib);
		exit(EXIT_USAGE);
	}
	if (stat(lib, &st) < 0)
		memset(&st, 0, sizeof(st));
	memcpy(out, lib, liblen);
	for (p = old; p && *p;) {
		size_t n = strcspn(p, ": ");

		if (n && !is_shim(p, n, &st)) {
			out[len++] = ':';
			memcpy(out + len, p, n);
			len += n;
		}
		p += n;
		if (*p)
			p++;
	}
	out[len] = 0;
	if (setenv("LD_PRELOAD", out, 1) < 0) {
		fprintf(stderr, "hbshim: cannot set LD_PRELOAD: %s\n", strerror(errno));
		exit(EXIT_USAGE);
	}
	free(out);
}

/* Where execvp will find cmd (malloc'd), or NULL. */
static char *resolve(const char *cmd)
{
	const char *path = getenv("PATH"), *p;
	char buf[PATH_MAX];

	if (strchr(cmd, '/'))
		return strdup(cmd);
	if (!path)
		path = "/bin:/usr/bin"; /* glibc execvp's default */
	for (p = path;;) {
		size_t n = strcspn(p, ":");
		int len = n ? snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, p, cmd)
			    : snprintf(buf, sizeof(buf), "%s", cmd); /* empty = cwd */

		if (len > 0 && (size_t)len < sizeof(buf) && access(buf, X_OK) == 0) {
			struct stat st;

			if (stat(buf, &st) == 0 && S_ISREG(st.st_mode))
				return strdup(buf);
		}
		if (!p[n])
			return NULL;
		p += n + 1;
	}
}

/*
 * Which libc an ELF file is built for: a program by its interpreter
 * (PT_INTERP), a library by the libc it needs (DT_NEEDED). The glibc and
 * musl loaders each refuse the other's libraries ("invalid ELF header",
 * "Error relocating"), and a library of another architecture is refused as
 * well: such a command would not start with the shim preloaded.
 */
enum { ELF_UNKNOWN, ELF_GLIBC, ELF_MUSL, ELF_STATIC };
static const char *const libc_names[] = { "unknown", "glibc", "musl", "static" };

struct elf_info {
	int libc;          /* ELF_* */
	unsigned machine;  /* e_machine, 0 unknown */
	char name[128];    /* the interpreter or library that told */
};

static int libc_of(const char *path)
{
	const char *b = strrchr(path, '/');

	b = b ? b + 1 : path;
	if (!strncmp(b, "ld-musl-", 8) || !strncmp(b, "libc.musl-", 10) || !strcmp(b, "libc.so"))
		return ELF_MUSL;
	if (!strncmp(b, "ld-linux", 8) || !strncmp(b, "ld64.so.", 8) || !strcmp(b, "libc.so.6"))
		return ELF_GLIBC;
	return ELF_UNKNOWN;
}

static int rd(int fd, uint64_t off, void *buf, size_t n)
{
	return off < (uint64_t)INT64_MAX && pread(fd, buf, n, (off_t)off) == (ssize_t)n ? 0 : -1;
}

/* A NUL-terminated string of at most len - 1 bytes at off. */
static void rd_str(int fd, uint64_t off, char *s, size_t len)
{
	ssize_t n = off < (uint64_t)INT64_MAX ? pread(fd, s, len - 1, (off_t)off) : -1;

	s[n > 0 ? n : 0] = 0;
	s[strnlen(s, len - 1)] = 0;
}

static void elf_info(const char *path, struct elf_info *e)
{
	static const unsigned char native_data[2] = { ELFDATA2LSB, ELFDATA2MSB };
	const uint16_t one = 1;
	unsigned char id[EI_NIDENT];
	uint64_t phoff, phnum, phent, dynoff = 0, dynsz = 0, strtab = 0, need[16];
	uint64_t lv[16], lo[16], ls[16];
	int fd, is64, nload = 0, nneed = 0;

	memset(e, 0, sizeof(*e));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	if (rd(fd, 0, id, sizeof(id)) < 0 || memcmp(id, ELFMAG, SELFMAG) ||
	    id[EI_DATA] != native_data[*(const uint8_t *)&one ? 0 : 1] ||
	    (id[EI_CLASS] != ELFCLASS64 && id[EI_CLASS] != ELFCLASS32))
		goto out;
	is64 = id[EI_CLASS] == ELFCLASS64;
	if (is64) {
		Elf64_Ehdr h;

		if (rd(fd, 0, &h, sizeof(h)) < 0)
			goto out;
		phoff = h.e_phoff, phnum = h.e_phnum, phent = h.e_phentsize, e->machine = h.e_machine;
	} else {
		Elf32_Ehdr h;

		if (rd(fd, 0, &h, sizeof(h)) < 0)
			goto out;
		phoff = h.e_phoff, phnum = h.e_phnum, phent = h.e_phentsize, e->machine = h.e_machine;
	}
	if (phnum > 256 || phent < (is64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr)))
		goto out;
	for (uint64_t i = 0; i < phnum; i++) {
		uint64_t type, off, vaddr, filesz;

		if (is64) {
			Elf64_Phdr p;

			if (rd(fd, phoff + i * phent, &p, sizeof(p)) < 0)
				goto out;
			type = p.p_type, off = p.p_offset, vaddr = p.p_vaddr, filesz = p.p_filesz;
		} else {
			Elf32_Phdr p;

			if (rd(fd, phoff + i * phent, &p, sizeof(p)) < 0)
				goto out;
			type = p.p_type, off = p.p_offset, vaddr = p.p_vaddr, filesz = p.p_filesz;
		}
		if (type == PT_INTERP) {
			rd_str(fd, off, e->name, filesz < sizeof(e->name) ? filesz + 1 : sizeof(e->name));
			e->libc = libc_of(e->name);
			goto out;
		}
		if (type == PT_DYNAMIC)
			dynoff = off, dynsz = filesz;
		if (type == PT_LOAD && nload < 16)
			lv[nload] = vaddr, lo[nload] = off, ls[nload++] = filesz;
	}
	if (!dynsz) {
		e->libc = ELF_STATIC; /* no loader at all: LD_PRELOAD means nothing */
		goto out;
	}
	/* A library: the libc among its first DT_NEEDED entries. */
	for (uint64_t at = 0; at < dynsz && at < 64 * 1024; at += is64 ? 16 : 8) {
		uint64_t tag, val;

		if (is64) {
			Elf64_Dyn d;

			if (rd(fd, dynoff + at, &d, sizeof(d)) < 0)
				break;
			tag = (uint64_t)d.d_tag, val = d.d_un.d_val;
		} else {
			Elf32_Dyn d;

			if (rd(fd, dynoff + at, &d, sizeof(d)) < 0)
				break;
			tag = (uint64_t)d.d_tag, val = d.d_un.d_val;
		}
		if (tag == DT_NULL)
			break;
		if (tag == DT_STRTAB)
			strtab = val;
		else if (tag == DT_NEEDED && nneed < 16)
			need[nneed++] = val;
	}
	for (int i = 0; i < nload; i++) {
		if (strtab < lv[i] || strtab - lv[i] >= ls[i])
			continue;
		for (int k = 0; k < nneed; k++) {
			rd_str(fd, lo[i] + (strtab - lv[i]) + need[k], e->name, sizeof(e->name));
			if ((e->libc = libc_of(e->name)) != ELF_UNKNOWN)
				goto out;
		}
		break;
	}
	e->name[0] = 0;
out:
	close(fd);
}

/* The ELF that will run cmd: cmd itself, or the interpreter on its "#!"
 * line, followed up to 4 levels ("/usr/bin/env NAME" looks NAME up in
 * PATH). Anything else (env with options, a deeper chain) is unknown. */
static void command_info(const char *cmd, struct elf_info *e, char **shown)
{
	char *path = resolve(cmd), line[256], *p, *q;
	int fd, depth = 0;
	ssize_t n;

	memset(e, 0, sizeof(*e));
	*shown = path;
again:
	if (!path || (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return;
	n = read(fd, line, sizeof(line) - 1);
	close(fd);
	if (n < 2 || line[0] != '#' || line[1] != '!') {
		elf_info(path, e);
		return;
	}
	if (++depth > 4)
		return;
	line[n] = 0;
	line[strcspn(line, "\n")] = 0;
	p = line + 2 + strspn(line + 2, " \t");
	q = p + strcspn(p, " \t");
	if (*q) {
		*q++ = 0;
		q += strspn(q, " \t");
		q[strcspn(q, " \t")] = 0;
	}
	if (!strcmp(p, "/usr/bin/env") || !strcmp(p, "/bin/env")) {
		if (!*q || *q == '-')
			return; /* env with options: not followed */
		p = q;
	}
	free(path);
	*shown = path = resolve(p);
	goto again;
}

/* Exits 126 when the library cannot be loaded into the command: a glibc
 * program and a musl library (or the reverse), or two architectures. The
 * program would not start at all ("invalid ELF header"), or run without
 * the shim; neither is what was asked for. A statically linked command
 * runs, with a warning: no loader reads LD_PRELOAD there. */
static void check_libc(const char *lib, const char *cmd)
{
	struct elf_info l, c;
	char *path;

	elf_info(lib, &l);
	command_info(cmd, &c, &path);
	if (l.machine && c.machine && l.machine != c.machine) {
		fprintf(stderr, "hbshim: %s: %s is built for another architecture (ELF machine %u) "
			"than %s (%u): use an hbshim built for it\n", cmd, path, c.machine, lib,
			l.machine);
		exit(126);
	} else if (c.libc == ELF_STATIC) {
		fprintf(stderr, "hbshim: warning: %s is statically linked: LD_PRELOAD does not "
			"apply to it, the shim will not be active\n", path);
	} else if ((l.libc == ELF_GLIBC || l.libc == ELF_MUSL) &&
		   (c.libc == ELF_GLIBC || c.libc == ELF_MUSL) && l.libc != c.libc) {
		fprintf(stderr, "hbshim: %s: %s is a %s program (%s) but %s is built for %s: "
			"its loader cannot load it; use an hbshim built for %s\n", cmd, path,
			libc_names[c.libc], c.name, lib, libc_names[l.libc], libc_names[c.libc]);
		exit(126);
	}
	free(path);
}

static void warn_setid(const char *cmd)
{
	char *path = resolve(cmd);
	struct stat st;

	if (path && stat(path, &st) == 0 && (st.st_mode & (S_ISUID | S_ISGID)))
		fprintf(stderr, "hbshim: warning: %s is setuid/setgid: the dynamic loader "
			"ignores LD_PRELOAD for it, the shim will not be active\n", path);
	free(path);
}

/*
 * "hbshim ctl PATH CMD...": send CMD (its words joined by spaces) to the
 * HBSHIM_CONTROL socket PATH of a running program and print the answer.
 * Exit status 0 when it starts with "ok", 1 otherwise, 2 when PATH cannot
 * be reached.
 */
static int ctl(int argc, char **argv)
{
	struct sockaddr_un un;
	char buf[4096], line[1024];
	size_t len = 0;
	ssize_t r;
	int fd, ok = -1;

	if (argc < 4)
		usage_error("usage: hbshim ctl PATH list|add RULE|remove NAME|trigger NAME", NULL);
	for (int i = 3; i < argc; i++) {
		size_t n = strlen(argv[i]);

		if (len + n + 2 > sizeof(line))
			usage_error("control command too long", NULL);
		if (i > 3)
			line[len++] = ' ';
		memcpy(line + len, argv[i], n);
		len += n;
	}
	line[len++] = '\n';
	memset(&un, 0, sizeof(un));
	un.sun_family = AF_UNIX;
	if (strlen(argv[2]) >= sizeof(un.sun_path))
		usage_error("control socket path too long", argv[2]);
	strcpy(un.sun_path, argv[2]);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&un, sizeof(un)) < 0) {
		fprintf(stderr, "hbshim: ctl: %s: %s\n", argv[2], strerror(errno));
		return EXIT_USAGE;
	}
	/* A refusal may come (and the socket close) before the command is
	 * sent: no SIGPIPE, read the answer anyway. */
	if (send(fd, line, len, MSG_NOSIGNAL) != (ssize_t)len && errno != EPIPE &&
	    errno != ECONNRESET) {
		fprintf(stderr, "hbshim: ctl: %s: %s\n", argv[2], strerror(errno));
		return EXIT_USAGE;
	}
	while ((r = read(fd, buf, sizeof(buf))) > 0) {
		if (ok < 0)
			ok = r >= 2 && buf[0] == 'o' && buf[1] == 'k';
		fwrite(buf, 1, (size_t)r, stdout);
	}
	close(fd);
	return ok == 1 ? 0 : 1;
}

int main(int argc, char **argv)
{
	struct hb_config cfg;
	char err[512], *lib;
	int cmd, err_no;

	if (argc > 1 && !strcmp(argv[1], "ctl"))
		return ctl(argc, argv);
	cmd = parse_args(argc, argv);
	if (cmd >= argc)
		usage_error("missing command", NULL);
	if (hb_config_parse(&cfg, env_get, err, sizeof(err)) < 0) {
		fprintf(stderr, "hbshim: %s\n", err);
		return EXIT_USAGE;
	}
	lib = find_library();
	check_libc(lib, argv[cmd]);
	set_preload(lib);
	free(lib);
	warn_setid(argv[cmd]);
	execvp(argv[cmd], argv + cmd);
	err_no = errno;
	fprintf(stderr, "hbshim: cannot run %s: %s\n", argv[cmd], strerror(err_no));
	/* As env(1): not found is 127, found but not runnable is 126. */
	return err_no == ENOENT ? 127 : 126;
}
