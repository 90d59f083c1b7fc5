// passt-repair-launcher NODE ARGS...: runs the helper's Node.js runtime with
// io_uring unavailable from its first instruction.
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
// It also gives the runtime a clean environment, as `env -i` would (one exec
// fewer at start-up): the helper usually runs as root, and NODE_OPTIONS,
// NODE_PATH or anything else from a caller must not reach it. Only a fixed
// PATH, UV_USE_IO_URING=0 and the caller's JOURNAL_STREAM (for logging to the
// journal under systemd) are passed on.
//
// And it closes every descriptor above standard error that its caller let
// it inherit (close_inherited_descriptors below), refuses resource limits
// too low for the runtime to start or for a full batch of passt's sockets
// (check_resource_limits), and ignores SIGXFSZ (ignore_file_size_signal).
//
// passt-repair-launcher --seccomp-fd=N NODE ARGS...: the same, for the
// telemetry forwarder (src/telemetry/reporter.ts), which the helper starts
// already under the sandbox account (see enter_forwarder_sandbox below).
//
// Built beside the addon (binding.gyp); started by bin/passt-repair.
#define _GNU_SOURCE
#include <errno.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define JOURNAL_STREAM_PREFIX "JOURNAL_STREAM="
#define SECCOMP_FD_OPTION "--seccomp-fd="

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

int main(int argc, char **argv) {
	if (argc > 2 && strncmp(argv[1], SECCOMP_FD_OPTION, strlen(SECCOMP_FD_OPTION)) == 0) {
		if (enter_forwarder_sandbox(atoi(argv[1] + strlen(SECCOMP_FD_OPTION))) < 0) return 1;
		argv++;
		argc--;
	}
	if (argc < 2) {
		fprintf(stderr, "usage: %s [--seccomp-fd=N] PROGRAM [ARGUMENT...]\n", argv[0]);
		return 2;
	}
	if (close_inherited_descriptors() < 0 || check_resource_limits() < 0 || ignore_file_size_signal() < 0) return 1;
	// A filter that allows everything but io_uring_setup(2). libseccomp sets
	// PR_SET_NO_NEW_PRIVS first (needed without CAP_SYS_ADMIN); the helper
	// sets it anyway, and it takes nothing from a program without file
	// capabilities such as node.
	scmp_filter_ctx filter = seccomp_init(SCMP_ACT_ALLOW);
	if (!filter ||
	    seccomp_rule_add(filter, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(io_uring_setup), 0) < 0 ||
	    seccomp_load(filter) < 0) {
		fprintf(stderr, "passt-repair: cannot make io_uring unavailable (seccomp)\n");
		return 1;
	}
	seccomp_release(filter);

	// The runtime's whole environment.
	static char journal_stream[256] = JOURNAL_STREAM_PREFIX;
	char *environment[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "UV_USE_IO_URING=0", NULL, NULL };
	const char *journal = getenv("JOURNAL_STREAM");
	if (journal && *journal && strlen(journal) < sizeof(journal_stream) - sizeof(JOURNAL_STREAM_PREFIX)) {
		strcat(journal_stream, journal);
		environment[2] = journal_stream;
	}
	// execve(2): the runtime, with the filter inherited.
	execve(argv[1], argv + 1, environment);
	fprintf(stderr, "passt-repair: cannot run %s: %s\n", argv[1], strerror(errno));
	return 1;
}
