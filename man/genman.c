/*
 * genman.c - the parts of the man pages that come from the config table.
 *
 * Build-time tool (never installed): reads a man page template on stdin
 * and writes it to stdout with each marker line replaced:
 *   @OPTIONS@    the wrapper's options (hbshim(1)), from hb_options[]
 *   @VARIABLES@  every HBSHIM_* variable (hbshim(7)), from hb_options[]
 *   @VERSION@    anywhere in a line: the library version
 * so the pages and --help cannot drift apart: both print the same table.
 */
#include <stdio.h>
#include <string.h>

#include "hb.h"
#include "hbshim.h"

/* Text as roff: backslashes and hyphens escaped, no control line. */
static void roff(const char *s)
{
	if (*s == '.' || *s == '\'')
		fputs("\\&", stdout);
	for (; *s; s++) {
		if (*s == '\\')
			fputs("\\e", stdout);
		else if (*s == '-')
			fputs("\\-", stdout);
		else
			putchar(*s);
	}
}

static void options(void)
{
	for (int i = 0; i < hb_noptions; i++) {
		const struct hb_option *o = &hb_options[i];

		if (!o->option)
			continue;
		if (o->flags & HB_OPTF_FLAG) {
			fputs(".TP\n.B ", stdout);
			roff(o->option);
		} else {
			fputs(".TP\n.BI \"", stdout);
			roff(o->option);
			fputs(" \" ", stdout);
			roff(o->metavar);
		}
		putchar('\n');
		roff(o->doc);
		fputs(".\nSets\n.BR ", stdout);
		roff(o->env);
		fputs(" ;\ndefault: ", stdout);
		roff(o->deflt);
		fputs(".\n", stdout);
		if (o->flags & HB_OPTF_SEMI)
			fputs("May be given more than once; the values are joined with semicolons.\n",
			      stdout);
		else if (o->flags & HB_OPTF_REPEATABLE)
			fputs("May be given more than once; the values are joined with commas.\n",
			      stdout);
	}
}

static void variables(void)
{
	for (int i = 0; i < hb_noptions; i++) {
		const struct hb_option *o = &hb_options[i];

		fputs(".TP\n.B ", stdout);
		roff(o->env);
		putchar('\n');
		roff(o->doc);
		fputs(".\nAccepted: ", stdout);
		roff(o->expect);
		fputs(".\nDefault: ", stdout);
		roff(o->deflt);
		fputs(".\n", stdout);
		if (o->option) {
			fputs("Wrapper option:\n.BR ", stdout);
			roff(o->option);
			fputs(" .\n", stdout);
		}
	}
}

int main(void)
{
	char line[4096];

	while (fgets(line, sizeof(line), stdin)) {
		char *at;

		if (!strcmp(line, "@OPTIONS@\n")) {
			options();
			continue;
		}
		if (!strcmp(line, "@VARIABLES@\n")) {
			variables();
			continue;
		}
		while ((at = strstr(line, "@VERSION@")) != NULL) {
			fwrite(line, 1, (size_t)(at - line), stdout);
			fputs(HBSHIM_VERSION_STRING, stdout);
			memmove(line, at + 9, strlen(at + 9) + 1);
		}
		fputs(line, stdout);
	}
	return ferror(stdout) ? 1 : 0;
}
