// SPDX-License-Identifier: GPL-2.0-or-later
// Connecting to passt's UNIX socket.
//
// The caller opens the socket file itself (O_PATH, gate 1 in
// src/policy/path-gate.ts) and hands over that descriptor. Connecting through
// /proc/self/fd/N reaches exactly the inode that was opened and checked,
// whatever happens to the path afterwards, and works for paths longer than
// sun_path's 108 bytes.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "errors.h"

namespace passt_repair {

Napi::Value ConnectToSocketFile(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const int path_fd = info[0].As<Napi::Number>().Int32Value();

  struct sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  snprintf(address.sun_path, sizeof(address.sun_path), "/proc/self/fd/%d", path_fd);

  // socket(2): the one connection to passt; CLOEXEC because nothing is ever
  // executed with it. NONBLOCK for connect() alone: a listener whose backlog
  // is full (a stray socket planted to stall the helper) then fails at once
  // with EAGAIN instead of blocking past --timeout.
  const int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (sock < 0) {
    ThrowFailure(env, "SOCKET_FAILED", errno);
    return env.Undefined();
  }
  // connect(2): non-blocking on a UNIX stream socket it returns at once:
  // accepted into the backlog, refused (ECONNREFUSED) or busy (EAGAIN).
  int result;
  do result = connect(sock, reinterpret_cast<struct sockaddr *>(&address), sizeof(address));
  while (result < 0 && errno == EINTR);
  if (result < 0) {
    const int error = errno;
    close(sock);
    ThrowFailure(env, "CONNECT_FAILED", error);
    return env.Undefined();
  }
  // fcntl(F_SETFL): blocking again, as the protocol loop expects
  // (native/protocol.cc waits for each request in recvmsg()).
  const int flags = fcntl(sock, F_GETFL);
  if (flags < 0 || fcntl(sock, F_SETFL, flags & ~O_NONBLOCK) < 0) {
    const int error = errno;
    close(sock);
    ThrowFailure(env, "FCNTL_FAILED", error);
    return env.Undefined();
  }
  return Napi::Number::New(env, sock);
}

}  // namespace passt_repair
