// SPDX-License-Identifier: GPL-2.0-or-later
// runtime-launcher PROGRAM [ARGUMENT...]: runs PROGRAM (the helper's Node.js
// runtime, with a test's own script) in the sandbox the helper's launcher
// gives its runtime (native/runtime-sandbox.h: io_uring unavailable, a clean
// environment). The helper's launcher only ever runs dist/src/main.js; the
// tests that probe the runtime's sandbox with other scripts run them here.
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../../native/runtime-sandbox.h"

int main(int argc, char **argv) {
	if (argc < 2) {
		fprintf(stderr, "usage: %s PROGRAM [ARGUMENT...]\n", argv[0]);
		return 2;
	}
	if (make_io_uring_unavailable() < 0)
		return 1;
	char *environment[4];
	clean_environment(environment);
	// execve(2): the program, with the filter inherited.
	execve(argv[1], argv + 1, environment);
	fprintf(stderr, "runtime-launcher: cannot run %s: %s\n", argv[1], strerror(errno));
	return 1;
}
