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
// Built beside the addon (binding.gyp); started by bin/passt-repair.
#include <errno.h>
#include <seccomp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
	if (argc < 2) {
		fprintf(stderr, "usage: %s PROGRAM [ARGUMENT...]\n", argv[0]);
		return 2;
	}
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
	// execv(2): the runtime, with the filter inherited.
	execv(argv[1], argv + 1);
	fprintf(stderr, "passt-repair: cannot run %s: %s\n", argv[1], strerror(errno));
	return 1;
}
