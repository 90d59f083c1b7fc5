// SPDX-License-Identifier: GPL-2.0-or-later
/* The C floor of the benchmark: the least a helper can do per request.
 * Connect to the AF_UNIX PATH, then for each request: receive the command
 * byte and its descriptors, set TCP_REPAIR on each, close each, send the
 * byte back. No validation, no rollback, no gates: only the system calls
 * every helper must make, so the real helper's round trip can be compared
 * with it. Exits 0 when passt closes the connection.
 *
 * Built with -DCHECKED, it also makes, per descriptor and before any
 * setsockopt, the helper's two checks: getsockopt SO_PROTOCOL, which must be
 * IPPROTO_TCP (ENOTSOCK: not a socket; an SMC or MPTCP socket has another
 * protocol), and getsockopt SOL_TCP/TCP_REPAIR (answered by TCP only; the
 * previous state, which the helper keeps for a rollback). The difference
 * between the two floors is the cost of the validation itself; the rest of
 * the helper's round trip is JavaScript, N-API and seccomp.
 *
 * Built with -DCHECKED -DLATE_CLOSE, it is the helper's own design in C: the
 * same checks, setsockopt on each descriptor, the reply, and only then the
 * descriptors closed with close_range(2), one call per contiguous run (as
 * native/protocol.cc does). What the design itself reaches: the real
 * helper's distance from this floor is its own overhead (Node.js, N-API,
 * JavaScript, seccomp, its wait for a request).
 *
 * Built with -DEXCHANGE, it switches nothing: it receives the descriptors,
 * closes them and replies. That is passt's side of the exchange and the
 * descriptors' passage through the kernel, which every helper pays: the
 * benchmark's own floor.
 *
 * Built by the benchmark itself: cc -O2 [-DCHECKED [-DLATE_CLOSE] | -DEXCHANGE]
 * -o test/build/bench/floor[-checked|-late-close|-exchange] test/bench/floor.c */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#ifdef LATE_CLOSE
#include <linux/close_range.h>
#include <sys/syscall.h>
#endif
#include <unistd.h>

#define SCM_MAX_FD 253

#ifdef CHECKED
/* The helper's checks: what it does to each descriptor before setsockopt. */
static int check(int fd, int *previous) {
	int protocol;
	socklen_t length = sizeof(protocol);

	if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &length) < 0) {
		perror("floor: getsockopt SO_PROTOCOL");
		return -1;
	}
	if (protocol != IPPROTO_TCP) {
		fprintf(stderr, "floor: descriptor %d is not a TCP socket\n", fd);
		return -1;
	}
	length = sizeof(*previous);
	if (getsockopt(fd, SOL_TCP, TCP_REPAIR, previous, &length) < 0) {
		perror("floor: getsockopt TCP_REPAIR");
		return -1;
	}
	return 0;
}
#endif

int main(int argc, char **argv) {
	struct sockaddr_un address = { .sun_family = AF_UNIX };
	int sock;

	if (argc != 2 || strlen(argv[1]) >= sizeof(address.sun_path)) {
		fprintf(stderr, "usage: floor PATH (shorter than %zu bytes)\n", sizeof(address.sun_path));
		return 2;
	}
	strcpy(address.sun_path, argv[1]);
	sock = socket(AF_UNIX, SOCK_STREAM, 0);
	if (sock < 0 || connect(sock, (struct sockaddr *)&address, sizeof(address)) < 0) {
		perror("floor: connect");
		return 1;
	}

	for (;;) {
		union {
			char buffer[CMSG_SPACE(sizeof(int) * SCM_MAX_FD)];
			struct cmsghdr align;
		} control;
		int8_t command;
		struct iovec iov = { &command, 1 };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
		struct cmsghdr *cmsg;
		ssize_t got;
		int n, i, value;
#ifdef CHECKED
		int previous[SCM_MAX_FD];
#endif

		/* recvmsg overwrites msg_controllen with what arrived. */
		msg.msg_control = control.buffer;
		msg.msg_controllen = sizeof(control.buffer);
		got = recvmsg(sock, &msg, 0);
		if (got == 0)
			return 0;
		if (got < 0) {
			perror("floor: recvmsg");
			return 1;
		}

		cmsg = CMSG_FIRSTHDR(&msg);
		n = cmsg ? (int)((cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int)) : 0;
		value = command;
#ifdef CHECKED
		/* As the helper does: every descriptor is checked before any is touched. */
		for (i = 0; i < n; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(cmsg) + sizeof(int) * i, sizeof(int));
			if (check(fd, &previous[i]) < 0)
				return 1;
		}
#endif
		for (i = 0; i < n; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(cmsg) + sizeof(int) * i, sizeof(int));
#ifndef EXCHANGE
			if (setsockopt(fd, SOL_TCP, TCP_REPAIR, &value, sizeof(value)) < 0) {
				perror("floor: setsockopt TCP_REPAIR");
				return 1;
			}
#else
			(void)value;
#endif
#ifndef LATE_CLOSE
			close(fd);
#endif
		}

		if (send(sock, &command, 1, 0) != 1) {
			perror("floor: send");
			return 1;
		}
#ifdef LATE_CLOSE
		/* After the reply: one close_range per run of consecutive numbers. */
		for (i = 0; i < n;) {
			int first, last;

			memcpy(&first, CMSG_DATA(cmsg) + sizeof(int) * i, sizeof(int));
			last = first;
			for (i++; i < n; i++) {
				int next;

				memcpy(&next, CMSG_DATA(cmsg) + sizeof(int) * i, sizeof(int));
				if (next != last + 1)
					break;
				last = next;
			}
			if (syscall(SYS_close_range, first, last, 0) < 0) {
				perror("floor: close_range");
				return 1;
			}
		}
#endif
	}
}
