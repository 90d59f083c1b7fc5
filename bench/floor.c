/* The C floor of the benchmark: the least a helper can do per request.
 * Connect to the AF_UNIX PATH, then for each request: receive the command
 * byte and its descriptors, set TCP_REPAIR on each, close each, send the
 * byte back. No validation, no rollback, no gates: only the system calls
 * every helper must make, so the real helper's round trip can be compared
 * with it. Exits 0 when passt closes the connection.
 *
 * Built by the benchmark itself: cc -O2 -o build/bench/floor bench/floor.c */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define SCM_MAX_FD 253

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
		for (i = 0; i < n; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(cmsg) + sizeof(int) * i, sizeof(int));
			if (setsockopt(fd, SOL_TCP, TCP_REPAIR, &value, sizeof(value)) < 0) {
				perror("floor: setsockopt TCP_REPAIR");
				return 1;
			}
			close(fd);
		}

		if (send(sock, &command, 1, 0) != 1) {
			perror("floor: send");
			return 1;
		}
	}
}
