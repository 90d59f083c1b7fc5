// One request from passt, handled whole: receive, validate, apply, reply.
//
// Done in a single native call so that a batch of 253 descriptors costs one
// crossing from JavaScript, not one per descriptor. The function either
// returns the batch it completed and confirmed, or throws with every socket it
// touched put back as it was; it closes every descriptor it received on every
// path.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cstdint>

#include "errors.h"

#ifndef SCM_MAX_FD
#define SCM_MAX_FD 253  // include/net/scm.h, not exported to user space
#endif

namespace passt_repair {
namespace {

// Owns the descriptors of one request and closes them all on every exit.
class ReceivedDescriptors {
 public:
  ReceivedDescriptors() = default;
  ReceivedDescriptors(const ReceivedDescriptors &) = delete;
  ReceivedDescriptors &operator=(const ReceivedDescriptors &) = delete;
  ~ReceivedDescriptors() {
    // close(2): the helper's copies; passt keeps its own.
    for (int i = 0; i < count_; i++) close(fds_[i]);
  }
  // Returns false when more arrived than a request may carry; they are still
  // kept so that they are closed.
  bool Add(int fd) {
    if (count_ == kCapacity) {
      close(fd);
      overflowed_ = true;
      return false;
    }
    fds_[count_++] = fd;
    return true;
  }
  int count() const { return count_; }
  bool overflowed() const { return overflowed_; }
  int operator[](int i) const { return fds_[i]; }

 private:
  // A second SCM_RIGHTS message is refused, but its descriptors must be
  // received (and closed), so there is room for more than one request's worth.
  static constexpr int kCapacity = 2 * SCM_MAX_FD;
  int fds_[kCapacity];
  int count_ = 0;
  bool overflowed_ = false;
};

bool IsRepairCommand(int command) {
  return command == TCP_REPAIR_ON || command == TCP_REPAIR_OFF || command == TCP_REPAIR_OFF_NO_WP;
}

int GetIntOption(int fd, int level, int name, int *value) {
  socklen_t length = sizeof(*value);
  return getsockopt(fd, level, name, value, &length);
}

// setsockopt(2) SOL_TCP/TCP_REPAIR: the one thing this helper exists to do.
int SetRepair(int fd, int value) {
  return setsockopt(fd, SOL_TCP, TCP_REPAIR, &value, sizeof(value));
}

// Leaving repair mode on the way back uses TCP_REPAIR_OFF_NO_WP: a rollback
// must not put a window probe on the wire for a change that never happened.
int RestoreRepair(int fd, int previous) {
  return SetRepair(fd, previous ? TCP_REPAIR_ON : TCP_REPAIR_OFF_NO_WP);
}

// Puts sockets [0, count) back to their recorded state; returns how many
// could not be restored.
int RollBack(const ReceivedDescriptors &fds, const int *previous, int count) {
  int failures = 0;
  for (int i = 0; i < count; i++)
    if (RestoreRepair(fds[i], previous[i]) < 0) failures++;
  return failures;
}

int TcpState(int fd) {
  struct tcp_info info = {};
  socklen_t length = sizeof(info);
  if (getsockopt(fd, SOL_TCP, TCP_INFO, &info, &length) < 0) return -1;
  return info.tcpi_state;
}

}  // namespace

static struct timespec Now() {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return now;
}

Napi::Value HandleMessage(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const int sock = info[0].As<Napi::Number>().Int32Value();

  // Room for one full SCM_RIGHTS message and then some, so that anything
  // beyond a well-formed request is seen and refused rather than truncated.
  alignas(struct cmsghdr) char control[2 * CMSG_SPACE(sizeof(int) * SCM_MAX_FD)];
  // Two bytes of room: a second byte in the same read means the request was
  // longer than the one command byte the protocol allows.
  char data[2];
  struct iovec iov = {data, sizeof(data)};
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);  // set anew for every request

  // recvmsg(2): the request and its descriptors, close-on-exec from the start.
  ssize_t received;
  do received = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  while (received < 0 && errno == EINTR);
  const int receive_error = errno;
  // The audit log's per-command time is the helper's own work, from the
  // request's arrival to the reply, not the time spent waiting for passt.
  // clock_gettime(2) is answered by the vDSO.
  const struct timespec arrived = Now();

  ReceivedDescriptors fds;
  int control_messages = 0;
  bool foreign_control = false;
  for (struct cmsghdr *cmsg = received < 0 ? nullptr : CMSG_FIRSTHDR(&msg); cmsg;
       cmsg = CMSG_NXTHDR(&msg, cmsg)) {
    control_messages++;
    if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) {
      foreign_control = true;
      continue;
    }
    const size_t payload = cmsg->cmsg_len - CMSG_LEN(0);
    const int *incoming = reinterpret_cast<const int *>(CMSG_DATA(cmsg));
    for (size_t i = 0; i < payload / sizeof(int); i++) fds.Add(incoming[i]);
  }

  if (received < 0) {
    if (receive_error == ECONNRESET) return env.Null();
    ThrowFailure(env, "RECEIVE_FAILED", receive_error);
    return env.Undefined();
  }
  if (received == 0 && fds.count() == 0) return env.Null();  // passt is done

  if (msg.msg_flags & MSG_CTRUNC) {
    ThrowFailure(env, "CONTROL_TRUNCATED", 0, {{"descriptors", fds.count()}});
    return env.Undefined();
  }
  if (received != 1) {
    ThrowFailure(env, "WRONG_LENGTH", 0, {{"bytes", static_cast<int>(received)}});
    return env.Undefined();
  }
  const int command = static_cast<int8_t>(data[0]);
  if (control_messages == 0) {
    ThrowFailure(env, "NO_DESCRIPTORS", 0, {{"command", command}});
    return env.Undefined();
  }
  if (foreign_control || control_messages > 1 || fds.overflowed()) {
    ThrowFailure(env, "UNEXPECTED_CONTROL", 0,
                 {{"controlMessages", control_messages}, {"descriptors", fds.count()}});
    return env.Undefined();
  }
  if (fds.count() < 1 || fds.count() > SCM_MAX_FD) {
    ThrowFailure(env, "WRONG_DESCRIPTOR_COUNT", 0, {{"descriptors", fds.count()}});
    return env.Undefined();
  }
  if (!IsRepairCommand(command)) {
    ThrowFailure(env, "UNKNOWN_COMMAND", 0, {{"command", command}, {"descriptors", fds.count()}});
    return env.Undefined();
  }

  // Every descriptor must be a TCP socket (AF_INET or AF_INET6, SOCK_STREAM,
  // IPPROTO_TCP) before any of them is touched. Two getsockopt(2) calls
  // establish that, and the second also records the state to roll back to:
  // - SO_DOMAIN is AF_INET or AF_INET6 (ENOTSOCK: not a socket at all);
  // - SOL_TCP/TCP_REPAIR is readable: among those families only the TCP
  //   protocol (SOCK_STREAM, IPPROTO_TCP) answers it; UDP, raw sockets of
  //   protocol TCP, and MPTCP refuse it. (AF_SMC, which forwards SOL_TCP to
  //   an inner TCP socket, is what the domain check is for.)
  // Two system calls per descriptor instead of four: at 253 descriptors a
  // request that is most of the helper's round trip (see the benchmark).
  int previous[SCM_MAX_FD];
  for (int i = 0; i < fds.count(); i++) {
    int domain;
    if (GetIntOption(fds[i], SOL_SOCKET, SO_DOMAIN, &domain) < 0) {
      ThrowFailure(env, "NOT_A_SOCKET", errno, {{"index", i}, {"descriptors", fds.count()}});
      return env.Undefined();
    }
    if ((domain != AF_INET && domain != AF_INET6) ||
        GetIntOption(fds[i], SOL_TCP, TCP_REPAIR, &previous[i]) < 0) {
      // Off the hot path: what the descriptor is, for the message.
      int type = -1, protocol = -1;
      GetIntOption(fds[i], SOL_SOCKET, SO_TYPE, &type);
      GetIntOption(fds[i], SOL_SOCKET, SO_PROTOCOL, &protocol);
      ThrowFailure(env, "NOT_TCP", 0,
                   {{"index", i}, {"descriptors", fds.count()}, {"domain", domain},
                    {"type", type}, {"protocol", protocol}});
      return env.Undefined();
    }
  }

  for (int i = 0; i < fds.count(); i++) {
    if (SetRepair(fds[i], command) < 0) {
      const int error = errno;
      const int state = TcpState(fds[i]);
      const int unrestored = RollBack(fds, previous, i);
      ThrowFailure(env, "REPAIR_FAILED", error,
                   {{"index", i}, {"descriptors", fds.count()}, {"command", command},
                    {"tcpState", state}, {"rolledBack", i - unrestored},
                    {"unrestored", unrestored}});
      return env.Undefined();
    }
  }

  // send(2): the confirmation, the same byte. MSG_NOSIGNAL: a vanished passt
  // is an error to handle, not a SIGPIPE. The descriptors are closed after
  // the reply: off passt's critical path, and still at hand for a rollback if
  // the reply cannot be delivered.
  const int8_t reply = static_cast<int8_t>(command);
  ssize_t sent;
  do sent = send(sock, &reply, sizeof(reply), MSG_NOSIGNAL);
  while (sent < 0 && errno == EINTR);
  if (sent != sizeof(reply)) {
    const int error = sent < 0 ? errno : EIO;
    const int unrestored = RollBack(fds, previous, fds.count());
    ThrowFailure(env, "REPLY_FAILED", error,
                 {{"descriptors", fds.count()}, {"command", command},
                  {"rolledBack", fds.count() - unrestored}, {"unrestored", unrestored}});
    return env.Undefined();
  }

  const struct timespec replied = Now();
  Napi::Object done = Napi::Object::New(env);
  done.Set("command", command);
  done.Set("sockets", fds.count());
  done.Set("nanoseconds", static_cast<double>(replied.tv_sec - arrived.tv_sec) * 1e9 +
                              static_cast<double>(replied.tv_nsec - arrived.tv_nsec));
  return done;
}

}  // namespace passt_repair
