// SPDX-License-Identifier: GPL-2.0-or-later
// Requests from passt, each handled whole: wait, receive, validate, apply,
// reply.
//
// Done in native code so that a batch of 253 descriptors costs no crossing
// from JavaScript per descriptor, and a run of batches none per batch: one
// call serves requests for as long as passt keeps sending them, up to the
// count JavaScript asks for (its turn for the event loop), and returns when
// passt goes quiet, when the command changes (a line for the audit log) or
// when anything ends the session. Each request is either completed and
// confirmed, or the call throws with every socket of that request put back as
// it was, and with the requests confirmed before it (none after it is read);
// every descriptor received is closed on every path. A signal
// (native/signals.cc) is only looked at before a request is read: once read,
// a request is finished or rolled back whatever arrives.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>

#include "errors.h"
#include "signals.h"
#include "worker.h"

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
  // The helper's copies go; passt keeps its own. Descriptors received in one
  // SCM_RIGHTS message take the lowest free numbers, in order, so a batch is
  // almost always one contiguous run: one close_range(2) instead of up to
  // 253 close(2) calls. A range covers only numbers this request received.
  ~ReceivedDescriptors() {
    if (count_ == 0) return;
    int sorted[kCapacity];
    std::copy(fds_, fds_ + count_, sorted);
    if (!std::is_sorted(sorted, sorted + count_)) std::sort(sorted, sorted + count_);
    for (int first = 0; first < count_;) {
      int last = first;
      while (last + 1 < count_ && sorted[last + 1] == sorted[last] + 1) last++;
      // close_range(2) (Linux 5.9+); close(2) one by one where it is missing.
      if (close_range(sorted[first], sorted[last], 0) < 0)
        for (int i = first; i <= last; i++) close(sorted[i]);
      first = last + 1;
    }
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
  const int *data() const { return fds_; }
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

// Puts sockets [begin, end) back to their recorded state; returns how many
// could not be restored.
int RollBack(const int *fds, const int *previous, int begin, int end) {
  int failures = 0;
  for (int i = begin; i < end; i++)
    if (RestoreRepair(fds[i], previous[i]) < 0) failures++;
  return failures;
}

// A batch's per-descriptor work, in pieces of kPiece descriptors, on two
// threads (RunOnTwoThreads: this one and the worker). The loop's thread takes
// pieces from the first up, the worker from the last down, until they meet:
// so in the apply step each thread mostly switches the sockets it checked,
// whose kernel objects (the file's reference count, the socket) are still in
// its CPU's cache, rather than the other CPU's, and no counter shared by
// both is written for every piece. Measured against handing out pieces in
// index order from one counter: the check step of a full batch 97-111 ->
// 86-100 µs, the apply step of TCP_REPAIR_ON 50-58 -> 37-46 µs. Below
// kSplitFrom descriptors waking the worker costs more than it saves: this
// thread does it all.
constexpr int kPiece = 16;
constexpr int kSplitFrom = 2 * kPiece;

struct Failure {
  int index = -1;  // -1: none
  int error = 0;   // errno (each thread has its own)
  int protocol = -1;  // a check's: what SO_PROTOCOL read; -1: not a socket
};

class Batch {
 public:
  enum class Step { kCheck, kApply };

  Batch(const int *fds, int count, int command) : fds_(fds), count_(count), command_(command) {}
  Batch(const Batch &) = delete;
  Batch &operator=(const Batch &) = delete;

  // Runs `step` on every descriptor, on two threads for a large batch. Each
  // piece stops at its first failure, and once one has failed no piece after
  // it is started, while every piece before it still is: so the failure
  // with the lowest index (FirstFailure) is the one a single thread going in
  // order would have met first.
  void Run(Step step) {
    step_ = step;
    first_failed_.store(Pieces(), std::memory_order_relaxed);
    for (int piece = 0; piece < Pieces(); piece++) {
      pieces_[piece].done = piece * kPiece;
      pieces_[piece].failure = {};
      pieces_[piece].taken.store(false, std::memory_order_relaxed);
    }
    if (count_ < kSplitFrom) TakePieces(this, false);
    else RunOnTwoThreads(TakePieces, this);
  }
  const Failure *FirstFailure() const {
    for (int piece = 0; piece < Pieces(); piece++)
      if (pieces_[piece].failure.index >= 0) return &pieces_[piece].failure;
    return nullptr;
  }
  // After kApply: how many sockets were switched, and how many of those
  // could not be put back (all of them are tried).
  void RollBackSwitched(int *switched, int *unrestored) const {
    *switched = *unrestored = 0;
    for (int piece = 0; piece < Pieces(); piece++) {
      const int begin = piece * kPiece;
      *switched += pieces_[piece].done - begin;
      *unrestored += RollBack(fds_, previous_, begin, pieces_[piece].done);
    }
  }
  // The repair state of each socket before the batch, for a rollback.
  const int *previous() const { return previous_; }

 private:
  // A cache line each, written only by the thread that took it (once both
  // may have tried `taken`): the two threads' pieces sit side by side, and a
  // line shared between them would move from one CPU to the other on every
  // write.
  struct alignas(64) Piece {
    std::atomic<bool> taken{false};  // by either thread, once per step
    int done = 0;  // kApply: the sockets [start of the piece, done) are switched
    Failure failure;
  };

  int Pieces() const { return (count_ + kPiece - 1) / kPiece; }

  // One thread's run: upwards from the first piece on the loop's thread,
  // downwards from the last on the worker. A piece the other thread took
  // means they have met: every piece beyond it is the other's. Pieces after
  // the lowest failure are skipped; the worker, going down, still goes on
  // to those before it.
  static void TakePieces(void *context, bool on_worker) {
    Batch &batch = *static_cast<Batch *>(context);
    const int count = batch.Pieces();
    for (int turn = 0; turn < count; turn++) {
      const int piece = on_worker ? count - 1 - turn : turn;
      if (piece > batch.first_failed_.load(std::memory_order_relaxed)) {
        if (on_worker) continue;
        return;
      }
      Piece &mine = batch.pieces_[piece];
      if (mine.taken.exchange(true, std::memory_order_relaxed)) return;
      const int begin = piece * kPiece;
      const int end = std::min(begin + kPiece, batch.count_);
      if (batch.step_ == Step::kCheck) batch.CheckPiece(begin, end, &mine);
      else batch.ApplyPiece(begin, end, &mine);
      if (mine.failure.index >= 0) {
        int lowest = batch.first_failed_.load(std::memory_order_relaxed);
        while (piece < lowest && !batch.first_failed_.compare_exchange_weak(lowest, piece, std::memory_order_relaxed)) {
        }
      }
    }
  }

  // Checks descriptors [begin, end), recording each one's repair state;
  // stops at the first that is not a TCP socket (ServeOne says why these
  // two calls prove one).
  void CheckPiece(int begin, int end, Piece *piece) {
    for (int i = begin; i < end; i++) {
      int protocol;
      if (GetIntOption(fds_[i], SOL_SOCKET, SO_PROTOCOL, &protocol) < 0) {
        piece->failure = {i, errno, -1};
        return;
      }
      if (protocol != IPPROTO_TCP || GetIntOption(fds_[i], SOL_TCP, TCP_REPAIR, &previous_[i]) < 0) {
        piece->failure = {i, 0, protocol};
        return;
      }
    }
  }

  // Switches sockets [begin, end); stops at the first that fails.
  void ApplyPiece(int begin, int end, Piece *piece) {
    int i = begin;
    for (; i < end && SetRepair(fds_[i], command_) == 0; i++) {
    }
    if (i < end) piece->failure = {i, errno, -1};
    piece->done = i;
  }

  const int *fds_;
  const int count_;
  const int command_;
  Step step_ = Step::kCheck;
  // The lowest piece that failed this step; Pieces() while none has.
  std::atomic<int> first_failed_{0};
  Piece pieces_[(SCM_MAX_FD + kPiece - 1) / kPiece];
  // kPiece ints to a cache line: each piece's states on a line of its own.
  static_assert(kPiece * sizeof(int) % 64 == 0, "a piece's states fill whole cache lines");
  alignas(64) int previous_[SCM_MAX_FD];
};

int TcpState(int fd) {
  struct tcp_info info = {};
  socklen_t length = sizeof(info);
  if (getsockopt(fd, SOL_TCP, TCP_INFO, &info, &length) < 0) return -1;
  return info.tcpi_state;
}

// The byte sent before closing on any failure once a session has begun
// (sent by SendFailure). passt's repair_flush() reads one byte after each
// request and compares it with the command it sent; a recv() that returns 0
// is not an error there, so a bare close could be read as a stale success.
// 0x80 (-128 as passt's int8_t) can never equal a command passt sends
// (1, 0 or -1, the only values the kernel accepts), is the farthest value
// from all three, and is itself refused as an unknown command: no request
// this helper answers can be echoed with it.
constexpr int8_t kFailureByte = static_cast<int8_t>(0x80);

struct timespec Now() {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);  // answered by the vDSO
  return now;
}

double Milliseconds(const struct timespec &from, const struct timespec &to) {
  return static_cast<double>(to.tv_sec - from.tv_sec) * 1e3 +
         static_cast<double>(to.tv_nsec - from.tv_nsec) / 1e6;
}

enum class Wait { kReady, kSignal, kTimeout, kFailed };

// What serving one request came to.
enum class Outcome { kServed, kClosed, kSignal, kTimeout, kFailed };

// The rule's limits (src/limits.ts) as they stand for the next request.
struct Limits {
  uint32_t allowed_commands;  // bit command + 1 for each command allowed
  int max_sockets;            // per request
  double sockets_left;        // in the session; Infinity: no limit
};

// A request served and confirmed.
struct Served {
  int command;
  int sockets;
  double nanoseconds;  // the helper's own time on it: arrival to reply
};

// Consecutive requests with the same command, as JavaScript summarises them
// for the audit log.
struct Run {
  int command;
  int requests;
  double sockets;
  double nanoseconds;
};

// Waits until passt's socket is readable, a signal is recorded, or
// `wait_ms` (negative: no limit; 0: only a look at what is queued) has
// passed. ppoll(2) watches the socket and the signal self-pipe together, so
// a signal handled on any thread ends the wait; EINTR (a signal handled on
// this thread) is checked the same way.
Wait WaitForRequest(int sock, double wait_ms) {
  const struct timespec start = Now();
  for (;;) {
    if (PendingSignal() != 0) return Wait::kSignal;
    struct timespec left_time;
    struct timespec *timeout = nullptr;
    bool last_look = false;
    if (wait_ms >= 0) {
      double left = wait_ms - Milliseconds(start, Now());
      if (left <= 0) {
        left = 0;  // the time is up: one look without waiting
        last_look = true;
      }
      left_time.tv_sec = static_cast<time_t>(left / 1e3);
      left_time.tv_nsec = static_cast<long>((left - left_time.tv_sec * 1e3) * 1e6);
      timeout = &left_time;
    }
    struct pollfd watched[2] = {{sock, POLLIN, 0}, {SignalWakeFd(), POLLIN, 0}};
    const int ready = ppoll(watched, SignalWakeFd() < 0 ? 1 : 2, timeout, nullptr);
    if (ready < 0 && errno != EINTR) return Wait::kFailed;  // errno says why
    if (ready > 0 && watched[0].revents != 0 && PendingSignal() == 0) return Wait::kReady;
    if (last_look && PendingSignal() == 0) return Wait::kTimeout;
    // Otherwise: a signal (checked at the top), EINTR, or the time is up
    // (checked at the top, against the clock).
  }
}

// One request: waits for it (at most `wait_ms`; negative: no limit),
// receives it, checks its shape, the rule's `limits` and every descriptor,
// applies TCP_REPAIR to all of its sockets or to none, and replies. On
// kFailed a JavaScript exception is pending. Its descriptors are closed on
// return (ReceivedDescriptors), after the reply.
Outcome ServeOne(Napi::Env env, int sock, double wait_ms, bool expect_wait, const Limits &limits, Served *served) {
  const uint32_t allowed_commands = limits.allowed_commands;
  const int max_sockets = limits.max_sockets;
  const double sockets_left = limits.sockets_left;

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

  // Between requests: a recorded signal ends the session before anything
  // more is read.
  if (PendingSignal() != 0) return Outcome::kSignal;
  // recvmsg(2): the request and its descriptors, close-on-exec from the
  // start, never blocking (the wait is ppoll(2)'s, which also watches for
  // signals). Right after a reply passt has almost never sent the next
  // request yet (it must first read the reply): ppoll first then, rather
  // than a recvmsg that fails with EAGAIN before it; otherwise (the first
  // request of a call, after JavaScript ran) recvmsg first, since back-to-back
  // batches may already be queued.
  ssize_t received = -1;
  bool wait = expect_wait;
  if (!expect_wait) {
    do received = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    while (received < 0 && errno == EINTR);
    wait = received < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }
  if (wait) {
    switch (WaitForRequest(sock, wait_ms)) {
      case Wait::kSignal:
        return Outcome::kSignal;
      case Wait::kTimeout:
        return Outcome::kTimeout;
      case Wait::kFailed:
        ThrowFailure(env, "WAIT_FAILED", errno);
        return Outcome::kFailed;
      case Wait::kReady:
        break;
    }
    msg.msg_controllen = sizeof(control);
    do received = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    while (received < 0 && errno == EINTR);
  }
  const int receive_error = errno;
  // The audit log's per-command time is the helper's own work, from the
  // request's arrival to the reply, not the time spent waiting for passt.
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
    if (receive_error == ECONNRESET) return Outcome::kClosed;
    ThrowFailure(env, "RECEIVE_FAILED", receive_error);
    return Outcome::kFailed;
  }
  if (received == 0 && fds.count() == 0) return Outcome::kClosed;  // passt is done

  if (msg.msg_flags & MSG_CTRUNC) {
    ThrowFailure(env, "CONTROL_TRUNCATED", 0, {{"descriptors", fds.count()}});
    return Outcome::kFailed;
  }
  if (received != 1) {
    ThrowFailure(env, "WRONG_LENGTH", 0, {{"bytes", static_cast<int>(received)}});
    return Outcome::kFailed;
  }
  const int command = static_cast<int8_t>(data[0]);
  if (control_messages == 0) {
    ThrowFailure(env, "NO_DESCRIPTORS", 0, {{"command", command}});
    return Outcome::kFailed;
  }
  if (foreign_control || control_messages > 1 || fds.overflowed()) {
    ThrowFailure(env, "UNEXPECTED_CONTROL", 0,
                 {{"controlMessages", control_messages}, {"descriptors", fds.count()}});
    return Outcome::kFailed;
  }
  if (fds.count() < 1 || fds.count() > SCM_MAX_FD) {
    ThrowFailure(env, "WRONG_DESCRIPTOR_COUNT", 0, {{"descriptors", fds.count()}});
    return Outcome::kFailed;
  }
  if (!IsRepairCommand(command)) {
    ThrowFailure(env, "UNKNOWN_COMMAND", 0, {{"command", command}, {"descriptors", fds.count()}});
    return Outcome::kFailed;
  }
  // The rule's limits (src/limits.ts): bit command + 1 of allowedCommands.
  if ((allowed_commands & (1u << (command + 1))) == 0) {
    ThrowFailure(env, "COMMAND_NOT_ALLOWED", 0,
                 {{"command", command}, {"allowedCommands", static_cast<int>(allowed_commands)}});
    return Outcome::kFailed;
  }
  if (fds.count() > max_sockets) {
    ThrowFailure(env, "TOO_MANY_SOCKETS", 0, {{"descriptors", fds.count()}, {"limit", max_sockets}});
    return Outcome::kFailed;
  }
  if (fds.count() > sockets_left) {
    ThrowFailure(env, "SESSION_SOCKETS_EXCEEDED", 0,
                 {{"descriptors", fds.count()}, {"left", static_cast<int>(sockets_left)}});
    return Outcome::kFailed;
  }

  // Every descriptor must be a TCP socket before any of them is touched. Two
  // getsockopt(2) calls establish that, and the second also records the
  // state to roll back to:
  // - SOL_SOCKET/SO_PROTOCOL is IPPROTO_TCP (ENOTSOCK: not a socket at all);
  // - SOL_TCP/TCP_REPAIR is readable, which only TCP's own getsockopt
  //   (do_tcp_getsockopt) answers.
  // Why the pair proves a TCP socket, by what else could pass one half:
  // - AF_INET/AF_INET6 SOCK_STREAM TCP: protocol 6 (also when created with
  //   protocol 0) and TCP_REPAIR readable: accepted, as it should be.
  // - IPPROTO_SMC (AF_INET, SOCK_STREAM, 256; Linux 6.11+) and AF_SMC: SOL_TCP
  //   options are forwarded to an inner TCP socket, so TCP_REPAIR reads, but
  //   SO_PROTOCOL is 256 (or SMCPROTO_SMC/SMC6, 0/1): refused. The old check
  //   (SO_DOMAIN AF_INET or AF_INET6) let IPPROTO_SMC through.
  // - MPTCP (IPPROTO_MPTCP, 262): refused by SO_PROTOCOL.
  // - Raw IP sockets of protocol 6 (SOCK_RAW, IPPROTO_TCP): SO_PROTOCOL is 6,
  //   but raw sockets hand any level but SOL_RAW to ip_getsockopt or
  //   ipv6_getsockopt, which refuse SOL_TCP: refused by TCP_REPAIR.
  // - AF_PACKET with ethertype 0x0600 (SO_PROTOCOL reads 6), AF_NETLINK's
  //   NETLINK_XFRM (6), AF_CAN's CAN_ISOTP (6), Bluetooth's BTPROTO_HIDP
  //   (6): each family's getsockopt accepts only its own level, never
  //   SOL_TCP: refused by TCP_REPAIR.
  // - AF_UNIX: protocol 0, and SOL_TCP is refused too.
  // - UDP, SCTP, DCCP...: other protocol numbers.
  // Two system calls per descriptor, as before: at 253 descriptors this is
  // most of the helper's round trip (see the benchmark), so a large batch
  // is shared between two threads (Batch, native/worker.cc): every
  // descriptor is checked before any socket is touched, and a refusal names
  // the first descriptor at fault, as a single thread would.
  Batch batch(fds.data(), fds.count(), command);
  batch.Run(Batch::Step::kCheck);
  const Failure *unfit = batch.FirstFailure();
  if (unfit != nullptr) {
    const int i = unfit->index;
    if (unfit->protocol < 0) {
      ThrowFailure(env, "NOT_A_SOCKET", unfit->error, {{"index", i}, {"descriptors", fds.count()}});
      return Outcome::kFailed;
    }
    // Off the hot path: what the descriptor is, for the message.
    int domain = -1, type = -1;
    GetIntOption(fds[i], SOL_SOCKET, SO_DOMAIN, &domain);
    GetIntOption(fds[i], SOL_SOCKET, SO_TYPE, &type);
    ThrowFailure(env, "NOT_TCP", 0,
                 {{"index", i}, {"descriptors", fds.count()}, {"domain", domain},
                  {"type", type}, {"protocol", unfit->protocol}});
    return Outcome::kFailed;
  }

  batch.Run(Batch::Step::kApply);
  const Failure *failed = batch.FirstFailure();
  if (failed != nullptr) {
    const int state = TcpState(fds[failed->index]);
    int switched, unrestored;
    batch.RollBackSwitched(&switched, &unrestored);
    ThrowFailure(env, "REPAIR_FAILED", failed->error,
                 {{"index", failed->index}, {"descriptors", fds.count()}, {"command", command},
                  {"tcpState", state}, {"rolledBack", switched - unrestored},
                  {"unrestored", unrestored}});
    return Outcome::kFailed;
  }

  // send(2): the confirmation, the same byte. MSG_NOSIGNAL: a vanished passt
  // is an error to handle, not a SIGPIPE. The descriptors are closed after
  // the reply (by ReceivedDescriptors): off passt's critical path, and still
  // at hand for a rollback if the reply cannot be delivered.
  const int8_t reply = static_cast<int8_t>(command);
  ssize_t sent;
  do sent = send(sock, &reply, sizeof(reply), MSG_NOSIGNAL);
  while (sent < 0 && errno == EINTR);
  if (sent != sizeof(reply)) {
    const int error = sent < 0 ? errno : EIO;
    const int unrestored = RollBack(fds.data(), batch.previous(), 0, fds.count());
    ThrowFailure(env, "REPLY_FAILED", error,
                 {{"descriptors", fds.count()}, {"command", command},
                  {"rolledBack", fds.count() - unrestored}, {"unrestored", unrestored}});
    return Outcome::kFailed;
  }

  served->command = command;
  served->sockets = fds.count();
  served->nanoseconds = Milliseconds(arrived, Now()) * 1e6;
  return Outcome::kServed;
}

Napi::Array RunsToJs(Napi::Env env, const Run *runs, int count) {
  Napi::Array array = Napi::Array::New(env, count);
  for (int i = 0; i < count; i++) {
    Napi::Object run = Napi::Object::New(env);
    run.Set("command", runs[i].command);
    run.Set("requests", runs[i].requests);
    run.Set("sockets", runs[i].sockets);
    run.Set("nanoseconds", runs[i].nanoseconds);
    array.Set(static_cast<uint32_t>(i), run);
  }
  return array;
}

}  // namespace

// serveRequests(sock, waitMs, nextWaitMs, sessionLeftMs, allowedCommands,
// maxSockets, socketsLeft, maxRequests): see src/native.d.ts. The limits are
// the rule's (src/limits.ts), enforced here before any socket of a request is
// touched; the session's total and deadline as they stand before each one.
Napi::Value ServeRequests(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const int sock = info[0].As<Napi::Number>().Int32Value();
  const double wait_ms = info[1].As<Napi::Number>().DoubleValue();
  const double next_wait_ms = info[2].As<Napi::Number>().DoubleValue();
  const double session_left_ms = info[3].As<Napi::Number>().DoubleValue();
  Limits limits = {info[4].As<Napi::Number>().Uint32Value(), info[5].As<Napi::Number>().Int32Value(),
                   info[6].As<Napi::Number>().DoubleValue()};
  const int max_requests = info[7].As<Napi::Number>().Int32Value();

  const struct timespec start = Now();
  // The end of the last reply (or the call's start): what the idle timeout
  // counts from.
  struct timespec idle_since = start;
  // At most two: the call returns once the command changes.
  Run runs[2];
  int run_count = 0;
  const char *end = "yield";
  for (int served_count = 0; served_count < max_requests;) {
    double wait = served_count == 0 ? wait_ms : next_wait_ms;
    // The session's deadline holds for a queued request too: none is read
    // once it has passed.
    if (session_left_ms != HUGE_VAL) {
      const double left = session_left_ms - Milliseconds(start, Now());
      if (left <= 0) {
        end = "timeout";
        break;
      }
      if (wait < 0 || wait > left) wait = left;
    }
    Served served = {};
    const Outcome outcome = ServeOne(env, sock, wait, served_count > 0, limits, &served);
    if (outcome == Outcome::kFailed) {
      // The requests confirmed before this one, for the session's counts
      // and the audit log.
      Napi::Error failure = env.GetAndClearPendingException();
      failure.Value().Set("served", RunsToJs(env, runs, run_count));
      failure.ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (outcome != Outcome::kServed) {
      end = outcome == Outcome::kClosed ? "closed" : outcome == Outcome::kSignal ? "signal" : "timeout";
      break;
    }
    served_count++;
    idle_since = Now();
    limits.sockets_left -= served.sockets;
    if (run_count == 0 || runs[run_count - 1].command != served.command) runs[run_count++] = {served.command, 0, 0, 0};
    Run &run = runs[run_count - 1];
    run.requests++;
    run.sockets += served.sockets;
    run.nanoseconds += served.nanoseconds;
    if (run_count == 2) {
      end = "command";
      break;
    }
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("end", end);
  result.Set("runs", RunsToJs(env, runs, run_count));
  result.Set("waitedMs", Milliseconds(idle_since, Now()));
  return result;
}

// sendFailure(sock): the failure byte (kFailureByte above), sent once before
// the helper closes passt's connection for any reason but passt's own EOF.
// send(2) with MSG_DONTWAIT (never wait on a passt that stopped reading) and
// MSG_NOSIGNAL (a vanished passt is no SIGPIPE). Best effort: a peer that is
// gone reads nothing either way. Returns whether the byte went out.
Napi::Value SendFailure(const Napi::CallbackInfo &info) {
  const int sock = info[0].As<Napi::Number>().Int32Value();
  const int8_t byte = kFailureByte;
  ssize_t sent;
  do sent = send(sock, &byte, sizeof(byte), MSG_NOSIGNAL | MSG_DONTWAIT);
  while (sent < 0 && errno == EINTR);
  return Napi::Boolean::New(info.Env(), sent == sizeof(byte));
}

}  // namespace passt_repair
