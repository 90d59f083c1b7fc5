// Connecting to passt's UNIX socket.
//
// The caller opens the socket file itself (O_PATH, no symlink at the end) and
// hands over that descriptor. Connecting through /proc/self/fd/N reaches
// exactly the inode that was opened and checked, whatever happens to the path
// afterwards, and works for paths longer than sun_path's 108 bytes.
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
  // executed with it.
  const int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (sock < 0) {
    ThrowFailure(env, "SOCKET_FAILED", errno);
    return env.Undefined();
  }
  // connect(2): blocking on a UNIX stream socket returns at once, accepted
  // into the backlog or refused.
  int result;
  do result = connect(sock, reinterpret_cast<struct sockaddr *>(&address), sizeof(address));
  while (result < 0 && errno == EINTR);
  if (result < 0) {
    const int error = errno;
    close(sock);
    ThrowFailure(env, "CONNECT_FAILED", error);
    return env.Undefined();
  }
  return Napi::Number::New(env, sock);
}

}  // namespace passt_repair
