// SPDX-License-Identifier: GPL-2.0-or-later
// Who is behind the connection to passt (gate 4, right after connect):
// SO_PEERCRED, the executable of that process for the audit log, and, where
// the kernel has SO_PEERPIDFD (Linux 6.5 and later), whether that very
// process still runs. In one call: passt is already waiting for the reply to
// its first request.
#include <limits.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

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
  // readlink(2) of /proc/PID/exe, for the audit log: readable with
  // CAP_SYS_PTRACE (which the main thread keeps until gate 2's second step:
  // passt runs as another user and makes itself not dumpable), or for our
  // own uid. Read before the pidfd is asked: while that process lives, its
  // pid names no other.
  char path[32];
  snprintf(path, sizeof(path), "/proc/%d/exe", credentials.pid);
  char exe[PATH_MAX];
  const ssize_t exe_length = readlink(path, exe, sizeof(exe));
  if (exe_length > 0 && static_cast<size_t>(exe_length) < sizeof(exe)) result.Set("exe", Napi::String::New(env, exe, static_cast<size_t>(exe_length)));
  if (pidfd >= 0) {
    // pidfd_send_signal(2) with signal 0 sends nothing: ESRCH once the
    // process that listened has exited (passt daemonizes after listening);
    // 0, or EPERM for another user's process, while it runs. Then close(2).
    const bool exited = syscall(SYS_pidfd_send_signal, pidfd, 0, nullptr, 0) < 0 && errno == ESRCH;
    close(pidfd);
    result.Set("alive", !exited);
  }
  return result;
}

}  // namespace passt_repair
