// SPDX-License-Identifier: GPL-2.0-or-later
// The passt side, for the demo, the tests and the benchmark. Never loaded by
// the helper. It listens where passt would, sends requests of any shape
// (including malformed ones) with SCM_RIGHTS, and moves a TCP connection's
// state between processes with TCP_REPAIR_QUEUE, TCP_QUEUE_SEQ and friends,
// as passt's migration does.
#include <napi.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <linux/netlink.h>
#include <linux/sockios.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

namespace {

Napi::Value Fail(Napi::Env env, const std::string &what, int error) {
  Napi::Error failure = Napi::Error::New(env, what + ": " + strerror(error));
  failure.Value().Set("errno", error);
  failure.ThrowAsJavaScriptException();
  return env.Undefined();
}

int Int(const Napi::CallbackInfo &info, size_t i) { return info[i].As<Napi::Number>().Int32Value(); }

std::vector<int> Ints(const Napi::Value &value) {
  Napi::Array array = value.As<Napi::Array>();
  std::vector<int> out(array.Length());
  for (uint32_t i = 0; i < array.Length(); i++) out[i] = array.Get(i).As<Napi::Number>().Int32Value();
  return out;
}

uint64_t NowNs() {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<uint64_t>(now.tv_sec) * 1000000000u + now.tv_nsec;
}

int SetInt(int fd, int level, int name, int value) { return setsockopt(fd, level, name, &value, sizeof(value)); }
int GetInt(int fd, int level, int name, int *value) {
  socklen_t length = sizeof(*value);
  return getsockopt(fd, level, name, value, &length);
}

// Waits for `events` on fd; false on timeout.
bool WaitFor(int fd, short events, int timeout_ms) {
  struct pollfd p = {fd, events, 0};
  int r;
  do r = poll(&p, 1, timeout_ms);
  while (r < 0 && errno == EINTR);
  return r > 0;
}

// The address of `path`, or false when it does not fit in sun_path.
bool UnixAddress(const std::string &path, struct sockaddr_un *address) {
  *address = {};
  address->sun_family = AF_UNIX;
  if (path.size() >= sizeof(address->sun_path)) return false;
  memcpy(address->sun_path, path.c_str(), path.size() + 1);
  return true;
}

// bindUnix(path): a bound AF_UNIX stream socket that does not listen yet:
// connecting to it is refused, as between passt's bind() and listen().

Napi::Value BindUnix(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>();
  struct sockaddr_un address;
  if (!UnixAddress(path, &address)) return Fail(env, "path too long for sun_path", ENAMETOOLONG);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Fail(env, "socket", errno);
  if (bind(fd, reinterpret_cast<sockaddr *>(&address), sizeof(address)) < 0) {
    int error = errno;
    close(fd);
    return Fail(env, "bind " + path, error);
  }
  return Napi::Number::New(env, fd);
}

// startListening(fd): passt accepts one helper at a time, hence backlog 1.
Napi::Value StartListening(const Napi::CallbackInfo &info) {
  if (listen(Int(info, 0), 1) < 0) return Fail(info.Env(), "listen", errno);
  return info.Env().Undefined();
}

// listenUnix(path): a listening AF_UNIX stream socket, as passt creates.
Napi::Value ListenUnix(const Napi::CallbackInfo &info) {
  Napi::Value fd = BindUnix(info);
  if (info.Env().IsExceptionPending()) return fd;
  if (listen(fd.As<Napi::Number>().Int32Value(), 1) < 0) {
    int error = errno;
    close(fd.As<Napi::Number>().Int32Value());
    return Fail(info.Env(), "listen", error);
  }
  return fd;
}

// renameExchange(a, b): renameat2(RENAME_EXCHANGE), the attacker's atomic
// swap of a directory with a symlink (no moment where either name is gone).
Napi::Value RenameExchange(const Napi::CallbackInfo &info) {
  std::string a = info[0].As<Napi::String>();
  std::string b = info[1].As<Napi::String>();
  if (renameat2(AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), RENAME_EXCHANGE) < 0) return Fail(info.Env(), "renameat2 " + a, errno);
  return info.Env().Undefined();
}

// fillBacklog(path): connects to the listener at `path` without blocking
// until the kernel says its backlog is full (EAGAIN); returns the connected
// descriptors, which the caller closes. A stray socket planted to stall a
// helper whose connect() blocks.
Napi::Value FillBacklog(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>();
  struct sockaddr_un address;
  if (!UnixAddress(path, &address)) return Fail(env, "path too long for sun_path", ENAMETOOLONG);
  Napi::Array fds = Napi::Array::New(env);
  for (uint32_t count = 0; count < 64; count++) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return Fail(env, "socket", errno);
    if (connect(fd, reinterpret_cast<sockaddr *>(&address), sizeof(address)) == 0) {
      fds.Set(count, fd);
      continue;
    }
    int error = errno;
    close(fd);
    if (error == EAGAIN) return fds;
    return Fail(env, "connect " + path, error);
  }
  return Fail(env, "backlog never filled", EOVERFLOW);
}

// accept(listenFd, timeoutMs): the helper's connection, or -1 on timeout.
Napi::Value Accept(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int listener = Int(info, 0);
  if (!WaitFor(listener, POLLIN, Int(info, 1))) return Napi::Number::New(env, -1);
  int fd = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) return Fail(env, "accept", errno);
  return Napi::Number::New(env, fd);
}

// sendRequest(fd, bytes, fds, shape): one sendmsg. `shape` bends the request
// out of the protocol for tests: rightsMessages splits the descriptors over
// several SCM_RIGHTS headers, credentials adds an SCM_CREDENTIALS header.
Napi::Value SendRequest(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = Int(info, 0);
  Napi::Buffer<uint8_t> bytes = info[1].As<Napi::Buffer<uint8_t>>();
  std::vector<int> fds = Ints(info[2]);
  int rights_messages = 1;
  bool credentials = false;
  if (info.Length() > 3 && info[3].IsObject()) {
    Napi::Object shape = info[3].As<Napi::Object>();
    if (shape.Has("rightsMessages")) rights_messages = shape.Get("rightsMessages").As<Napi::Number>().Int32Value();
    if (shape.Has("credentials")) credentials = shape.Get("credentials").As<Napi::Boolean>();
  }
  // Headers are laid out by hand: CMSG_NXTHDR refuses to step past the
  // length filled so far, and the length is what is being built.
  std::vector<uint64_t> control((CMSG_SPACE(sizeof(int) * fds.size()) * (rights_messages > 0 ? rights_messages : 1) +
                                 CMSG_SPACE(sizeof(struct ucred))) / sizeof(uint64_t) + 1);
  char *base = reinterpret_cast<char *>(control.data());
  size_t used = 0;
  auto add = [&](int type, const void *payload, size_t length) {
    struct cmsghdr *cmsg = reinterpret_cast<struct cmsghdr *>(base + used);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = type;
    cmsg->cmsg_len = CMSG_LEN(length);
    memcpy(CMSG_DATA(cmsg), payload, length);
    used += CMSG_SPACE(length);
  };
  size_t start = 0;
  for (int part = 0; part < rights_messages && !fds.empty(); part++) {
    size_t end = part == rights_messages - 1 ? fds.size() : start + fds.size() / rights_messages;
    add(SCM_RIGHTS, fds.data() + start, sizeof(int) * (end - start));
    start = end;
  }
  if (credentials) {
    struct ucred own = {getpid(), getuid(), getgid()};
    add(SCM_CREDENTIALS, &own, sizeof(own));
  }
  struct iovec iov = {bytes.Data(), bytes.Length()};
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = used ? base : nullptr;
  msg.msg_controllen = used;
  ssize_t sent;
  do sent = sendmsg(fd, &msg, MSG_NOSIGNAL);
  while (sent < 0 && errno == EINTR);
  if (sent < 0) return Fail(env, "sendmsg", errno);
  return Napi::Number::New(env, static_cast<double>(sent));
}

// receiveReply(fd, timeoutMs): the reply byte, null on EOF or reset,
// undefined on timeout.
Napi::Value ReceiveReply(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = Int(info, 0);
  if (!WaitFor(fd, POLLIN, Int(info, 1))) return env.Undefined();
  int8_t byte;
  ssize_t got;
  do got = recv(fd, &byte, 1, 0);
  while (got < 0 && errno == EINTR);
  if (got == 0 || (got < 0 && errno == ECONNRESET)) return env.Null();
  if (got < 0) return Fail(env, "recv", errno);
  return Napi::Number::New(env, byte);
}

// One well-formed request (command byte, `count` descriptors in one
// SCM_RIGHTS message) and its reply, timed on the monotonic clock from the
// sendmsg to the reply, as passt's repair_flush() waits. Returns the reply
// byte, or -256 on EOF and -257 on a failure (errno set).
constexpr int kClosed = -256, kFailed = -257;
int TimedRequest(int fd, int8_t command, const int *fds, size_t count, uint64_t *elapsed) {
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * 253)];
  struct iovec iov = {&command, 1};
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = CMSG_SPACE(sizeof(int) * count);
  struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof(int) * count);
  memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * count);
  uint64_t start = NowNs();
  if (sendmsg(fd, &msg, MSG_NOSIGNAL) < 0) return kFailed;
  int8_t reply;
  ssize_t got;
  do got = recv(fd, &reply, 1, 0);
  while (got < 0 && errno == EINTR);
  *elapsed = NowNs() - start;
  if (got == 0 || (got < 0 && errno == ECONNRESET)) return kClosed;
  if (got < 0) return kFailed;
  return reply;
}

// roundTrip(fd, command, fds): send a well-formed request and wait for its
// reply, timed on the monotonic clock; returns [reply or null, nanoseconds].
Napi::Value RoundTrip(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  std::vector<int> fds = Ints(info[2]);
  if (fds.empty() || fds.size() > 253) return Fail(env, "roundTrip needs 1 to 253 descriptors", EINVAL);
  uint64_t elapsed = 0;
  int reply = TimedRequest(Int(info, 0), static_cast<int8_t>(Int(info, 1)), fds.data(), fds.size(), &elapsed);
  if (reply == kFailed) return Fail(env, "roundTrip", errno);
  Napi::Array result = Napi::Array::New(env, 2);
  result.Set(0u, reply == kClosed ? env.Null() : Napi::Value(Napi::Number::New(env, reply)));
  result.Set(1u, Napi::Number::New(env, static_cast<double>(elapsed)));
  return result;
}

// switchAll(fd, command, fds): every descriptor in `fds` sent with `command`
// in batches of 253 (the last one shorter), each waiting for its reply, as
// passt's migration does, in a native loop so that the benchmark's own side
// adds no JavaScript between batches. Returns { reply, ns }: the round trip
// of each batch, and the first reply that was not `command` (null on EOF),
// with the batches before it, or reply === command when all were confirmed.
Napi::Value SwitchAll(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const int fd = Int(info, 0);
  const int8_t command = static_cast<int8_t>(Int(info, 1));
  std::vector<int> fds = Ints(info[2]);
  std::vector<double> times;
  int reply = command;
  for (size_t first = 0; first < fds.size() && reply == command; first += 253) {
    uint64_t elapsed = 0;
    reply = TimedRequest(fd, command, fds.data() + first, std::min<size_t>(253, fds.size() - first), &elapsed);
    if (reply == kFailed) return Fail(env, "switchAll", errno);
    if (reply == command) times.push_back(static_cast<double>(elapsed));
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("reply", reply == kClosed ? env.Null() : Napi::Value(Napi::Number::New(env, reply)));
  Napi::Array ns = Napi::Array::New(env, times.size());
  for (size_t i = 0; i < times.size(); i++) ns.Set(static_cast<uint32_t>(i), times[i]);
  result.Set("ns", ns);
  return result;
}

// repairState(fd): getsockopt TCP_REPAIR, the state the tests verify.
Napi::Value RepairState(const Napi::CallbackInfo &info) {
  int value = 0;
  socklen_t length = sizeof(value);
  if (getsockopt(Int(info, 0), SOL_TCP, TCP_REPAIR, &value, &length) < 0)
    return Fail(info.Env(), "getsockopt TCP_REPAIR", errno);
  return Napi::Number::New(info.Env(), value);
}

// timeCall(call, fd, count): `count` calls of one of the protocol loop's
// system calls in a tight loop, for the benchmark's per-call cost of the
// seccomp filter; returns nanoseconds per call, or throws on the first
// failure. `fd` is a TCP socket for the socket options, one end of an empty
// AF_UNIX socket pair for the rest: recvmsg and ppoll find nothing queued
// and return at once, sendto sends nothing (zero bytes: the call and the
// filter without the copy), close_range closes a range nothing is open in.
Napi::Value TimeCall(const Napi::CallbackInfo &info) {
  const std::string call = info[0].As<Napi::String>();
  const int fd = Int(info, 1), count = Int(info, 2);
  char byte = 0;
  struct pollfd watched = {fd, POLLIN, 0};
  const struct timespec no_wait = {0, 0};
  int value = 1;
  auto once = [&](int i) -> bool {
    if (call == "getsockopt SO_PROTOCOL") return GetInt(fd, SOL_SOCKET, SO_PROTOCOL, &value) == 0;
    if (call == "getsockopt TCP_REPAIR") return GetInt(fd, SOL_TCP, TCP_REPAIR, &value) == 0;
    if (call == "setsockopt TCP_REPAIR") return SetInt(fd, SOL_TCP, TCP_REPAIR, i % 2 == 0 ? 1 : -1) == 0;
    if (call == "recvmsg") {
      struct iovec iov = {&byte, 1};
      struct msghdr msg = {};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      return recvmsg(fd, &msg, MSG_DONTWAIT) < 0 && errno == EAGAIN;
    }
    if (call == "sendto") return send(fd, &byte, 0, MSG_NOSIGNAL | MSG_DONTWAIT) == 0;
    if (call == "close_range") return close_range(1 << 20, (1 << 20) + 1, 0) == 0;
    if (call == "ppoll") return ppoll(&watched, 1, &no_wait, nullptr) >= 0;
    errno = EINVAL;
    return false;
  };
  uint64_t start = NowNs();
  for (int i = 0; i < count; i++)
    if (!once(i)) return Fail(info.Env(), call, errno);
  return Napi::Number::New(info.Env(), static_cast<double>(NowNs() - start) / count);
}

// tcpSocket(family): a fresh TCP socket, for the migration's target side.
Napi::Value TcpSocket(const Napi::CallbackInfo &info) {
  int fd = socket(Int(info, 0) == 6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
  if (fd < 0) return Fail(info.Env(), "socket", errno);
  return Napi::Number::New(info.Env(), fd);
}

// otherSocket(kind): descriptors that are not TCP stream sockets, for tests.
Napi::Value OtherSocket(const Napi::CallbackInfo &info) {
  std::string kind = info[0].As<Napi::String>();
  int fd = -1;
  if (kind == "udp") fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  else if (kind == "unix") fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  else if (kind == "raw-tcp") fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_TCP);
  else if (kind == "mptcp") fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 262 /* IPPROTO_MPTCP */);
  else if (kind == "rtnetlink") fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);

  // IPPROTO_SMC (Linux 6.11+): SOL_TCP options reach an inner TCP socket.
  else if (kind == "smc") fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 256 /* IPPROTO_SMC */);
  else return Fail(info.Env(), "unknown kind " + kind, EINVAL);
  if (fd < 0) return Fail(info.Env(), "socket " + kind, errno);
  return Napi::Number::New(info.Env(), fd);
}

// socketPair(): an AF_UNIX stream socket pair [passt's end, the helper's
// end], for driving the helper's request handler in-process (test/fuzz.test.ts).
Napi::Value SocketPair(const Napi::CallbackInfo &info) {
  int ends[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) < 0) return Fail(info.Env(), "socketpair", errno);
  Napi::Array pair = Napi::Array::New(info.Env(), 2);
  pair.Set(0u, ends[0]);
  pair.Set(1u, ends[1]);
  return pair;
}

// sendRaw(fd, bytes, control): one sendmsg(2) with `control` as the control
// buffer exactly as given (headers laid out, or mislaid, by the caller),
// without waiting. Returns the bytes sent, or -errno: the kernel refuses
// many malformed control buffers itself, which is an outcome for the fuzz.
Napi::Value SendRaw(const Napi::CallbackInfo &info) {
  Napi::Buffer<uint8_t> bytes = info[1].As<Napi::Buffer<uint8_t>>();
  Napi::Buffer<uint8_t> given = info[2].As<Napi::Buffer<uint8_t>>();
  // An aligned copy: the kernel reads cmsghdr fields in place.
  std::vector<uint64_t> control(given.Length() / sizeof(uint64_t) + 1);
  memcpy(control.data(), given.Data(), given.Length());
  struct iovec iov = {bytes.Data(), bytes.Length()};
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = given.Length() ? control.data() : nullptr;
  msg.msg_controllen = given.Length();
  ssize_t sent;
  do sent = sendmsg(Int(info, 0), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
  while (sent < 0 && errno == EINTR);
  return Napi::Number::New(info.Env(), static_cast<double>(sent < 0 ? -errno : sent));
}

// epollInstance(): an epoll descriptor, one more kind of descriptor to send.
Napi::Value EpollInstance(const Napi::CallbackInfo &info) {
  int fd = epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0) return Fail(info.Env(), "epoll_create1", errno);
  return Napi::Number::New(info.Env(), fd);
}

// Peeks a repair queue's whole content (the socket is in repair mode).
bool PeekQueue(int fd, int queue, int size, std::string *out) {
  if (SetInt(fd, SOL_TCP, TCP_REPAIR_QUEUE, queue) < 0) return false;
  out->assign(size, '\0');
  if (size == 0) return true;
  ssize_t got = recv(fd, &(*out)[0], size, MSG_PEEK | MSG_DONTWAIT);
  if (got < 0) return false;
  out->resize(got);
  return true;
}

Napi::Value Address(Napi::Env env, const sockaddr_storage &s) {
  char text[INET6_ADDRSTRLEN] = "";
  Napi::Object out = Napi::Object::New(env);
  if (s.ss_family == AF_INET6) {
    auto a = reinterpret_cast<const sockaddr_in6 *>(&s);
    inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof(text));
    out.Set("port", ntohs(a->sin6_port));
  } else {
    auto a = reinterpret_cast<const sockaddr_in *>(&s);
    inet_ntop(AF_INET, &a->sin_addr, text, sizeof(text));
    out.Set("port", ntohs(a->sin_port));
  }
  out.Set("address", text);
  out.Set("family", s.ss_family == AF_INET6 ? 6 : 4);
  return out;
}

bool ParseAddress(Napi::Object from, sockaddr_storage *s, socklen_t *length) {
  std::string text = from.Get("address").As<Napi::String>();
  int port = from.Get("port").As<Napi::Number>().Int32Value();
  memset(s, 0, sizeof(*s));
  if (from.Get("family").As<Napi::Number>().Int32Value() == 6) {
    auto a = reinterpret_cast<sockaddr_in6 *>(s);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    *length = sizeof(*a);
    return inet_pton(AF_INET6, text.c_str(), &a->sin6_addr) == 1;
  }
  auto a = reinterpret_cast<sockaddr_in *>(s);
  a->sin_family = AF_INET;
  a->sin_port = htons(port);
  *length = sizeof(*a);
  return inet_pton(AF_INET, text.c_str(), &a->sin_addr) == 1;
}

// dumpConnection(fd): everything a target needs to take the connection over,
// read while the socket is in repair mode (as passt's source does).
Napi::Value DumpConnection(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = Int(info, 0);
  Napi::Object state = Napi::Object::New(env);
  sockaddr_storage local = {}, remote = {};
  socklen_t length = sizeof(local);
  if (getsockname(fd, reinterpret_cast<sockaddr *>(&local), &length) < 0) return Fail(env, "getsockname", errno);
  length = sizeof(remote);
  if (getpeername(fd, reinterpret_cast<sockaddr *>(&remote), &length) < 0) return Fail(env, "getpeername", errno);
  state.Set("local", Address(env, local));
  state.Set("remote", Address(env, remote));

  int outq = 0, inq = 0, unsent = 0;
  if (ioctl(fd, SIOCOUTQ, &outq) < 0 || ioctl(fd, SIOCINQ, &inq) < 0 || ioctl(fd, SIOCOUTQNSD, &unsent) < 0)
    return Fail(env, "ioctl queue sizes", errno);
  std::string send_queue, receive_queue;
  int send_seq, receive_seq;
  if (!PeekQueue(fd, TCP_SEND_QUEUE, outq, &send_queue) || GetInt(fd, SOL_TCP, TCP_QUEUE_SEQ, &send_seq) < 0 ||
      !PeekQueue(fd, TCP_RECV_QUEUE, inq, &receive_queue) || GetInt(fd, SOL_TCP, TCP_QUEUE_SEQ, &receive_seq) < 0)
    return Fail(env, "reading repair queues", errno);
  // TCP_QUEUE_SEQ gives the sequence after the queued data; the target
  // restores the start and lets the queue refill it.
  state.Set("sendSeq", static_cast<double>(static_cast<uint32_t>(send_seq - static_cast<int>(send_queue.size()))));
  state.Set("receiveSeq",
            static_cast<double>(static_cast<uint32_t>(receive_seq - static_cast<int>(receive_queue.size()))));
  state.Set("sendQueue", Napi::Buffer<char>::Copy(env, send_queue.data(), send_queue.size()));
  state.Set("receiveQueue", Napi::Buffer<char>::Copy(env, receive_queue.data(), receive_queue.size()));
  state.Set("unsent", unsent);

  struct tcp_info tcpi = {};
  length = sizeof(tcpi);
  int mss = 0, timestamp = 0;
  struct tcp_repair_window window = {};
  socklen_t window_length = sizeof(window);
  if (getsockopt(fd, SOL_TCP, TCP_INFO, &tcpi, &length) < 0 || GetInt(fd, SOL_TCP, TCP_MAXSEG, &mss) < 0 ||
      GetInt(fd, SOL_TCP, TCP_TIMESTAMP, &timestamp) < 0 ||
      getsockopt(fd, SOL_TCP, TCP_REPAIR_WINDOW, &window, &window_length) < 0)
    return Fail(env, "reading TCP options", errno);
  state.Set("mss", mss);
  state.Set("timestamp", static_cast<double>(static_cast<uint32_t>(timestamp)));
  state.Set("options", tcpi.tcpi_options);
  state.Set("sendWscale", tcpi.tcpi_snd_wscale);
  state.Set("receiveWscale", tcpi.tcpi_rcv_wscale);
  Napi::Array w = Napi::Array::New(env, 5);
  w.Set(0u, static_cast<double>(window.snd_wl1));
  w.Set(1u, static_cast<double>(window.snd_wnd));
  w.Set(2u, static_cast<double>(window.max_window));
  w.Set(3u, static_cast<double>(window.rcv_wnd));
  w.Set(4u, static_cast<double>(window.rcv_wup));
  state.Set("window", w);
  return state;
}

uint32_t U32(Napi::Object o, const char *key) {
  return static_cast<uint32_t>(o.Get(key).As<Napi::Number>().Int64Value());
}

// restoreConnection(fd, state): before the helper's TCP_REPAIR_OFF, rebuild
// the connection on a fresh socket already put in repair mode by the helper.
Napi::Value RestoreConnection(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = Int(info, 0);
  Napi::Object state = info[1].As<Napi::Object>();
  Napi::Buffer<char> send_queue = state.Get("sendQueue").As<Napi::Buffer<char>>();
  Napi::Buffer<char> receive_queue = state.Get("receiveQueue").As<Napi::Buffer<char>>();

  if (SetInt(fd, SOL_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE) < 0 ||
      SetInt(fd, SOL_TCP, TCP_QUEUE_SEQ, static_cast<int>(U32(state, "sendSeq"))) < 0 ||
      SetInt(fd, SOL_TCP, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE) < 0 ||
      SetInt(fd, SOL_TCP, TCP_QUEUE_SEQ, static_cast<int>(U32(state, "receiveSeq"))) < 0)
    return Fail(env, "setting sequence numbers", errno);

  sockaddr_storage local, remote;
  socklen_t local_length, remote_length;
  if (!ParseAddress(state.Get("local").As<Napi::Object>(), &local, &local_length) ||
      !ParseAddress(state.Get("remote").As<Napi::Object>(), &remote, &remote_length))
    return Fail(env, "addresses", EINVAL);
  // In repair mode bind() may take the port the source still holds, and
  // connect() sends no SYN: the socket simply becomes ESTABLISHED.
  if (bind(fd, reinterpret_cast<sockaddr *>(&local), local_length) < 0) return Fail(env, "bind", errno);
  if (connect(fd, reinterpret_cast<sockaddr *>(&remote), remote_length) < 0) return Fail(env, "connect", errno);

  int options = state.Get("options").As<Napi::Number>().Int32Value();
  std::vector<struct tcp_repair_opt> repair;
  repair.push_back({TCPOPT_MAXSEG, U32(state, "mss")});
  if (options & TCPI_OPT_WSCALE)
    repair.push_back({TCPOPT_WINDOW, U32(state, "sendWscale") | (U32(state, "receiveWscale") << 16)});
  if (options & TCPI_OPT_SACK) repair.push_back({TCPOPT_SACK_PERMITTED, 0});
  if (options & TCPI_OPT_TIMESTAMPS) repair.push_back({TCPOPT_TIMESTAMP, 0});
  if (setsockopt(fd, SOL_TCP, TCP_REPAIR_OPTIONS, repair.data(), repair.size() * sizeof(repair[0])) < 0)
    return Fail(env, "TCP_REPAIR_OPTIONS", errno);
  if (SetInt(fd, SOL_TCP, TCP_TIMESTAMP, static_cast<int>(U32(state, "timestamp"))) < 0)
    return Fail(env, "TCP_TIMESTAMP", errno);

  // In repair mode, send() on a selected queue fills it without transmitting.
  struct Refill { int queue; const char *data; size_t size; } refills[] = {
      {TCP_SEND_QUEUE, send_queue.Data(), send_queue.Length()},
      {TCP_RECV_QUEUE, receive_queue.Data(), receive_queue.Length()}};
  for (const Refill &refill : refills) {
    if (refill.size == 0) continue;
    if (SetInt(fd, SOL_TCP, TCP_REPAIR_QUEUE, refill.queue) < 0) return Fail(env, "TCP_REPAIR_QUEUE", errno);
    if (send(fd, refill.data, refill.size, 0) != static_cast<ssize_t>(refill.size))
      return Fail(env, "refilling a queue", errno);
  }
  // After the refill: the kernel refuses an rcv_wup beyond rcv_nxt, and
  // rcv_nxt only passes the queued bytes once they are back in the queue.
  Napi::Array w = state.Get("window").As<Napi::Array>();
  struct tcp_repair_window window = {};
  window.snd_wl1 = static_cast<uint32_t>(w.Get(0u).As<Napi::Number>().Int64Value());
  window.snd_wnd = static_cast<uint32_t>(w.Get(1u).As<Napi::Number>().Int64Value());
  window.max_window = static_cast<uint32_t>(w.Get(2u).As<Napi::Number>().Int64Value());
  window.rcv_wnd = static_cast<uint32_t>(w.Get(3u).As<Napi::Number>().Int64Value());
  window.rcv_wup = static_cast<uint32_t>(w.Get(4u).As<Napi::Number>().Int64Value());
  if (setsockopt(fd, SOL_TCP, TCP_REPAIR_WINDOW, &window, sizeof(window)) < 0)
    return Fail(env, "TCP_REPAIR_WINDOW", errno);

  if (SetInt(fd, SOL_TCP, TCP_REPAIR_QUEUE, TCP_NO_QUEUE) < 0) return Fail(env, "TCP_REPAIR_QUEUE", errno);
  return env.Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("bindUnix", Napi::Function::New(env, BindUnix));
  exports.Set("startListening", Napi::Function::New(env, StartListening));
  exports.Set("listenUnix", Napi::Function::New(env, ListenUnix));
  exports.Set("accept", Napi::Function::New(env, Accept));
  exports.Set("renameExchange", Napi::Function::New(env, RenameExchange));
  exports.Set("fillBacklog", Napi::Function::New(env, FillBacklog));
  exports.Set("sendRequest", Napi::Function::New(env, SendRequest));
  exports.Set("receiveReply", Napi::Function::New(env, ReceiveReply));
  exports.Set("roundTrip", Napi::Function::New(env, RoundTrip));
  exports.Set("switchAll", Napi::Function::New(env, SwitchAll));
  exports.Set("repairState", Napi::Function::New(env, RepairState));
  exports.Set("timeCall", Napi::Function::New(env, TimeCall));
  exports.Set("tcpSocket", Napi::Function::New(env, TcpSocket));
  exports.Set("otherSocket", Napi::Function::New(env, OtherSocket));
  exports.Set("socketPair", Napi::Function::New(env, SocketPair));
  exports.Set("sendRaw", Napi::Function::New(env, SendRaw));
  exports.Set("epollInstance", Napi::Function::New(env, EpollInstance));
  exports.Set("dumpConnection", Napi::Function::New(env, DumpConnection));
  exports.Set("restoreConnection", Napi::Function::New(env, RestoreConnection));
  return exports;
}

}  // namespace

NODE_API_MODULE(passt_double, Init)
