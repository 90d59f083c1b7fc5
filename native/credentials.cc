// SPDX-License-Identifier: GPL-2.0-or-later
// Who is behind the connection to passt: SO_PEERCRED, and SO_PEERPIDFD
// where the kernel has it (Linux 6.5 and later).
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "errors.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

namespace passt_repair {

Napi::Value PeerCredentials(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const int sock = info[0].As<Napi::Number>().Int32Value();

  // getsockopt(SO_PEERCRED): the pid, uid and gid passt had when it called
  // listen(); they cannot change afterwards, whatever passt does.
  struct ucred credentials = {};
  socklen_t length = sizeof(credentials);
  if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &credentials, &length) < 0) {
    ThrowFailure(env, "PEERCRED_FAILED", errno);
    return env.Undefined();
  }
  // getsockopt(SO_PEERPIDFD): a pidfd for that same process, which, unlike
  // the pid, cannot be recycled. -1 where the kernel is older.
  int pidfd = -1;
  length = sizeof(pidfd);
  if (getsockopt(sock, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &length) < 0) {
    if (errno != ENOPROTOOPT) {
      ThrowFailure(env, "PEERPIDFD_FAILED", errno);
      return env.Undefined();
    }
    pidfd = -1;
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("pid", static_cast<double>(credentials.pid));
  result.Set("uid", static_cast<double>(credentials.uid));
  result.Set("gid", static_cast<double>(credentials.gid));
  result.Set("pidfd", pidfd);
  return result;
}

}  // namespace passt_repair
