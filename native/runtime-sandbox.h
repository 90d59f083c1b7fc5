// SPDX-License-Identifier: GPL-2.0-or-later
// The runtime's sandbox before its first instruction: io_uring unavailable
// and a clean environment (native/launcher.c says why). Shared by the
// helper's launcher and the tests' launcher for other scripts
// (test/native/runtime-launcher.c), so that a test runs a script exactly as
// the helper's runtime runs.
#ifndef PASST_REPAIR_RUNTIME_SANDBOX_H
#define PASST_REPAIR_RUNTIME_SANDBOX_H

#include <errno.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JOURNAL_STREAM_PREFIX "JOURNAL_STREAM="

// A filter that allows everything but io_uring_setup(2). libseccomp sets
// PR_SET_NO_NEW_PRIVS first (needed without CAP_SYS_ADMIN); the helper sets
// it anyway, and it takes nothing from a program without file capabilities
// such as node.
static inline int make_io_uring_unavailable(void) {
	scmp_filter_ctx filter = seccomp_init(SCMP_ACT_ALLOW);
	int ok = filter &&
		seccomp_rule_add(filter, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(io_uring_setup), 0) == 0 &&
		seccomp_load(filter) == 0;
	if (filter)
		seccomp_release(filter);
	if (!ok) {
		fprintf(stderr, "passt-repair: cannot make io_uring unavailable (seccomp)\n");
		return -1;
	}
	return 0;
}

// The runtime's whole environment, into `environment` (room for 4 entries).
static inline void clean_environment(char *environment[4]) {
	static char journal_stream[256] = JOURNAL_STREAM_PREFIX;
	environment[0] = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
	environment[1] = "UV_USE_IO_URING=0";
	environment[2] = NULL;
	environment[3] = NULL;
	const char *journal = getenv("JOURNAL_STREAM");
	if (journal && *journal && strlen(journal) < sizeof(journal_stream) - sizeof(JOURNAL_STREAM_PREFIX)) {
		strcat(journal_stream, journal);
		environment[2] = journal_stream;
	}
}

#endif
