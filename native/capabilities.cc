// SPDX-License-Identifier: GPL-2.0-or-later
// Gate 2's system calls: credentials changed on every thread of the process.
//
// Capabilities, securebits, NO_NEW_PRIVS and (through raw system calls) the
// uid, gid and groups belong to each thread, not to the process, and Node.js
// runs several threads before any JavaScript does. So the first step
// (applyCredentials) has the calling thread apply its change to itself, then
// sends a real-time signal to every other thread listed in /proc/self/task;
// each thread's handler applies the others' change to itself and
// acknowledges. The list is read again until a pass finds no thread it has
// not reached (a thread created meanwhile inherits the old credentials from
// its creator, so it is reached on the next pass). A thread that does not
// acknowledge in time makes the whole call fail: the helper then exits
// rather than run with one privileged thread.
//
// The other threads take the final state in that first step; only the
// calling (main) thread keeps what connecting needs. The second step is
// then the main thread's alone (applyToCallingThread), with no signal: its
// result is read back with system calls (readOwnCredentials), and the
// threads verified after the first step are held (holdThreads) so that
// releaseThreads finds any thread started since, even one that reuses the
// id of a thread that has exited.
//
// What to keep is decided in src/sandbox/capabilities.ts; this file only
// carries it out.
#include <dirent.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/futex.h>
#include <linux/securebits.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "errors.h"

namespace passt_repair {
namespace {

// glibc keeps SIGRTMIN's first two values for itself (SIGCANCEL, SIGSETXID);
// SIGRTMIN as a function already skips them. Nothing in Node.js 24 or libuv
// uses SIGRTMIN+3; the code checks that no handler is installed anyway.
int BroadcastSignal() { return SIGRTMIN + 3; }

constexpr int kMaxThreads = 256;
constexpr long kAcknowledgeTimeoutNs = 2'000'000'000L;

// The change every thread applies. Written before any thread is signalled and
// only read afterwards; the signal delivery orders the accesses.
struct CredentialChange {
  uint64_t keep;           // capabilities left in the effective and permitted sets
  int last_capability;     // /proc/sys/kernel/cap_last_cap
  bool lock_securebits;    // needs CAP_SETPCAP
  bool drop_bounding_set;  // needs CAP_SETPCAP
  uint64_t bounding;       // capabilities the bounding set keeps, when it is dropped
  bool change_ids;
  uid_t uid;
  gid_t gid;
  std::vector<gid_t> groups;
};

// What the signalled threads apply (the calling thread applies its own).
CredentialChange g_change;
// The first failure on any thread: which step, and errno.
std::atomic<int> g_failed_step{0};
std::atomic<int> g_failed_errno{0};
// Threads that have applied the change.
std::atomic<pid_t> g_done[kMaxThreads];
std::atomic<int> g_done_count{0};

enum Step {
  kNone = 0,
  kSecurebits,
  kBoundingSet,
  kSetgroups,
  kSetresgid,
  kSetresuid,
  kCapget,
  kCapset,
  kAmbient,
  kNoNewPrivs,
};

const char *StepName(int step) {
  switch (step) {
    case kSecurebits: return "PR_SET_SECUREBITS";
    case kBoundingSet: return "PR_CAPBSET_DROP";
    case kSetgroups: return "setgroups";
    case kSetresgid: return "setresgid";
    case kSetresuid: return "setresuid";
    case kCapget: return "capget";
    case kCapset: return "capset";
    case kAmbient: return "PR_CAP_AMBIENT_CLEAR_ALL";
    case kNoNewPrivs: return "PR_SET_NO_NEW_PRIVS";
    default: return "none";
  }
}

void RecordFailure(int step, int error) {
  int expected = kNone;
  if (g_failed_step.compare_exchange_strong(expected, step)) g_failed_errno.store(error);
}

// Raw syscall() only: glibc's setresuid() and friends would broadcast to every
// thread with their own signal from inside this handler, and none of these
// calls may allocate or take a lock. Async-signal-safe throughout.
void ApplyToThisThread(const CredentialChange &c) {
  // prctl(2) PR_SET_SECUREBITS: no capabilities for uid 0 on execve
  // (NOROOT), none lost or gained when the uid changes (NO_SETUID_FIXUP, which
  // lets the uid change below keep CAP_NET_ADMIN), no keep-caps, no ambient
  // raise; each locked so it can never be undone.
  if (c.lock_securebits &&
      syscall(SYS_prctl, PR_SET_SECUREBITS,
              SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP | SECBIT_NO_SETUID_FIXUP_LOCKED |
                  SECBIT_KEEP_CAPS_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED,
              0, 0, 0) < 0)
    return RecordFailure(kSecurebits, errno);
  // prctl(2) PR_CAPBSET_DROP: the bounding set limits what any later execve()
  // could grant. Needs CAP_SETPCAP, so it comes before capset() drops it.
  // Each drop replaces the thread's credentials (prepare_creds and
  // commit_creds), even for a capability already out of the set, so only
  // those PR_CAPBSET_READ finds in it are dropped. The bounding set keeps
  // its own list: it limits what execve() grants, not what this thread
  // holds, so the main thread takes its final one before connecting.
  if (c.drop_bounding_set)
    for (int cap = 0; cap <= c.last_capability; cap++)
      if (!(c.bounding & (uint64_t{1} << cap)) && syscall(SYS_prctl, PR_CAPBSET_READ, cap, 0, 0, 0) != 0 &&
          syscall(SYS_prctl, PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
        return RecordFailure(kBoundingSet, errno);
  if (c.change_ids) {
    // setgroups(2), setresgid(2), setresuid(2): this thread only (the raw
    // system calls). Groups and gid first: changing them needs CAP_SETGID,
    // which is still there; NO_SETUID_FIXUP keeps every capability across
    // the uid change.
    if (syscall(SYS_setgroups, c.groups.size(), c.groups.data()) < 0) return RecordFailure(kSetgroups, errno);
    if (syscall(SYS_setresgid, c.gid, c.gid, c.gid) < 0) return RecordFailure(kSetresgid, errno);
    if (syscall(SYS_setresuid, c.uid, c.uid, c.uid) < 0) return RecordFailure(kSetresuid, errno);
  }
  // capget(2), capset(2): effective and permitted become what is kept (of
  // what this thread has: capset cannot add), inheritable becomes empty.
  struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (syscall(SYS_capget, &header, data) < 0) return RecordFailure(kCapget, errno);
  for (int i = 0; i < _LINUX_CAPABILITY_U32S_3; i++) {
    const uint32_t keep = static_cast<uint32_t>(c.keep >> (32 * i));
    data[i].permitted &= keep;
    data[i].effective = data[i].permitted;
    data[i].inheritable = 0;
  }
  if (syscall(SYS_capset, &header, data) < 0) return RecordFailure(kCapset, errno);
  // prctl(2) PR_CAP_AMBIENT_CLEAR_ALL: ambient capabilities only matter for
  // execve(), which the helper never calls; none are kept.
  if (syscall(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
    return RecordFailure(kAmbient, errno);
  // prctl(2) PR_SET_NO_NEW_PRIVS: per thread too; nothing this thread might
  // execute could gain a privilege (set-user-ID, file capabilities).
  if (syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) return RecordFailure(kNoNewPrivs, errno);
}

// fetch_add gives each thread its own slot; a slot still 0 reads as "not yet".
// The count is also the futex the broadcasting thread sleeps on
// (WaitForAcknowledgement): an int the kernel can compare.
int *DoneCountFutex() {
  static_assert(sizeof(std::atomic<int>) == sizeof(int) && std::atomic<int>::is_always_lock_free);
  return reinterpret_cast<int *>(&g_done_count);
}

void Acknowledge() {
  const int mine = g_done_count.fetch_add(1);
  if (mine < kMaxThreads) g_done[mine].store(static_cast<pid_t>(syscall(SYS_gettid)));
  // futex(2) FUTEX_WAKE: the broadcasting thread, if it sleeps on the count
  // (async-signal-safe: one system call).
  syscall(SYS_futex, DoneCountFutex(), FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
}

void OnBroadcastSignal(int) {
  const int saved_errno = errno;
  ApplyToThisThread(g_change);
  Acknowledge();
  errno = saved_errno;
}

bool HasAcknowledged(pid_t tid) {
  const int count = g_done_count.load();
  for (int i = 0; i < count && i < kMaxThreads; i++)
    if (g_done[i].load() == tid) return true;
  return false;
}

// The threads of this process, from /proc/self/task (opendir(3): openat(2),
// getdents64(2), close(2)). Empty if it cannot be read.
std::vector<pid_t> ListThreads() {
  std::vector<pid_t> threads;
  DIR *dir = opendir("/proc/self/task");
  if (!dir) return threads;
  while (struct dirent *entry = readdir(dir))
    if (entry->d_name[0] != '.') threads.push_back(static_cast<pid_t>(atoi(entry->d_name)));
  closedir(dir);
  return threads;
}

bool ThreadExists(pid_t tid) {
  // tgkill(2) with signal 0: ESRCH once the thread has exited.
  return syscall(SYS_tgkill, getpid(), tid, 0) == 0;
}

// Sleeps until another thread acknowledges (it wakes the count's futex) or
// 100 us pass (a thread that exits without acknowledging wakes no one):
// passt waits for this step, and a fixed sleep would add its length to it.
void WaitForAcknowledgement() {
  const int seen = g_done_count.load();
  struct timespec pause = {0, 100'000};
  // futex(2) FUTEX_WAIT: returns at once if the count changed since `seen`.
  syscall(SYS_futex, DoneCountFutex(), FUTEX_WAIT_PRIVATE, seen, &pause, nullptr, 0);
}

long NowNs() {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return now.tv_sec * 1'000'000'000L + now.tv_nsec;
}

uint64_t CapabilityMask(const Napi::Array &capabilities) {
  uint64_t mask = 0;
  for (uint32_t i = 0; i < capabilities.Length(); i++)
    mask |= uint64_t{1} << capabilities.Get(i).As<Napi::Number>().Uint32Value();
  return mask;
}

void ReadChange(const Napi::Object &change, CredentialChange *c) {
  c->keep = CapabilityMask(change.Get("keep").As<Napi::Array>());
  c->last_capability = change.Get("lastCapability").As<Napi::Number>().Int32Value();
  c->lock_securebits = change.Get("lockSecurebits").As<Napi::Boolean>().Value();
  const Napi::Value bounding = change.Get("bounding");
  c->drop_bounding_set = bounding.IsArray();
  c->bounding = c->drop_bounding_set ? CapabilityMask(bounding.As<Napi::Array>()) : 0;
  const Napi::Value ids = change.Get("ids");
  c->change_ids = ids.IsObject();
  c->groups.clear();
  if (c->change_ids) {
    const Napi::Object account = ids.As<Napi::Object>();
    c->uid = account.Get("uid").As<Napi::Number>().Uint32Value();
    c->gid = account.Get("gid").As<Napi::Number>().Uint32Value();
    const Napi::Array groups = account.Get("groups").As<Napi::Array>();
    for (uint32_t i = 0; i < groups.Length(); i++) c->groups.push_back(groups.Get(i).As<Napi::Number>().Uint32Value());
  }
}

// Throws the failure ApplyToThisThread recorded, if any; returns whether it did.
bool ThrowRecordedFailure(Napi::Env env) {
  if (g_failed_step.load() == kNone) return false;
  Napi::Error failure = Napi::Error::New(env, "CREDENTIALS_FAILED");
  failure.Value().Set("code", "CREDENTIALS_FAILED");
  failure.Value().Set("step", StepName(g_failed_step.load()));
  failure.Value().Set("errno", g_failed_errno.load());
  failure.ThrowAsJavaScriptException();
  return true;
}

// prctl(2) PR_SET_DUMPABLE 0, for the whole process: no core dump, no
// ptrace attach by the new uid, /proc/PID files owned by root. After the
// ids: changing the effective uid (of any thread) resets it.
bool MakeProcessNotDumpable(Napi::Env env) {
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0) return true;
  ThrowFailure(env, "NOT_DUMPABLE_FAILED", errno);
  return false;
}

}  // namespace

// applyCredentials(own, others): see src/native.d.ts.
Napi::Value ApplyCredentials(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  CredentialChange own;
  ReadChange(info[0].As<Napi::Object>(), &own);
  ReadChange(info[1].As<Napi::Object>(), &g_change);
  g_failed_step.store(kNone);
  g_failed_errno.store(0);
  g_done_count.store(0);
  for (std::atomic<pid_t> &slot : g_done) slot.store(0);  // no thread id left from an earlier call
  std::atomic_thread_fence(std::memory_order_seq_cst);    // the change is visible before any thread is signalled

  const int signal_number = BroadcastSignal();
  // sigaction(2): the handler, with every signal blocked while it runs.
  struct sigaction action = {}, previous = {};
  action.sa_handler = OnBroadcastSignal;
  action.sa_flags = SA_RESTART;
  sigfillset(&action.sa_mask);
  if (sigaction(signal_number, &action, &previous) < 0) {
    ThrowFailure(env, "BROADCAST_FAILED", errno);
    return env.Undefined();
  }
  if (previous.sa_handler != SIG_DFL) {
    sigaction(signal_number, &previous, nullptr);
    ThrowFailure(env, "BROADCAST_SIGNAL_IN_USE", 0, {{"signal", signal_number}});
    return env.Undefined();
  }

  ApplyToThisThread(own);
  Acknowledge();

  const pid_t self = getpid();
  std::vector<pid_t> signalled;
  pid_t unresponsive = 0;
  // A thread that could not be signalled in the last pass, and why: the
  // read-back would catch it too, but only the errno says what to fix.
  pid_t unsignalled = 0;
  int unsignalled_errno = 0;
  for (;;) {
    int reached_now = 0;
    unsignalled = 0;
    for (pid_t tid : ListThreads()) {
      if (HasAcknowledged(tid)) continue;
      bool already = false;
      for (pid_t s : signalled) already = already || s == tid;
      if (already) continue;
      // tgkill(2): this thread of this process, nothing else. ESRCH: it has
      // exited since it was listed. Anything else (EAGAIN: no room to queue
      // a real-time signal, RLIMIT_SIGPENDING) leaves it unchanged.
      if (syscall(SYS_tgkill, self, tid, signal_number) == 0) {
        signalled.push_back(tid);
        reached_now++;
      } else if (errno != ESRCH && unsignalled == 0) {
        unsignalled = tid;
        unsignalled_errno = errno;
      }
    }
    if (reached_now == 0) break;
    const long deadline = NowNs() + kAcknowledgeTimeoutNs;
    for (pid_t tid : signalled) {
      while (!HasAcknowledged(tid) && ThreadExists(tid) && NowNs() < deadline) WaitForAcknowledgement();
      if (!HasAcknowledged(tid) && ThreadExists(tid)) unresponsive = tid;
    }
    if (unresponsive != 0 || g_done_count.load() >= kMaxThreads) break;
  }
  if (unresponsive != 0) {
    // The handler stays: the signal is still pending on that thread, and
    // the default action would end the process before the message is said.
    ThrowFailure(env, "THREAD_UNRESPONSIVE", 0, {{"tid", unresponsive}, {"signal", signal_number}});
    return env.Undefined();
  }
  // Every signal sent was handled (or its thread is gone), so the default
  // action can come back.
  sigaction(signal_number, &previous, nullptr);
  if (unsignalled != 0) {
    ThrowFailure(env, "SIGNAL_FAILED", unsignalled_errno, {{"tid", unsignalled}, {"signal", signal_number}});
    return env.Undefined();
  }
  if (g_done_count.load() >= kMaxThreads) {
    ThrowFailure(env, "TOO_MANY_THREADS", 0, {{"threads", kMaxThreads}});
    return env.Undefined();
  }
  if (ThrowRecordedFailure(env) || !MakeProcessNotDumpable(env)) return env.Undefined();
  return Napi::Number::New(env, g_done_count.load());
}

// applyToCallingThread(change): see src/native.d.ts. The second step: the
// other threads took their final state in the first.
Napi::Value ApplyToCallingThread(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  CredentialChange change;
  ReadChange(info[0].As<Napi::Object>(), &change);
  g_failed_step.store(kNone);
  g_failed_errno.store(0);
  ApplyToThisThread(change);
  if (!ThrowRecordedFailure(env)) MakeProcessNotDumpable(env);
  return env.Undefined();
}

// readOwnCredentials(): see src/native.d.ts. The calling thread's
// credentials, each read with the system call that answers for this thread
// alone (the raw calls: glibc's wrappers of these only read, but say so).
Napi::Value ReadOwnCredentials(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  // capget(2): effective, permitted and inheritable sets.
  struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (syscall(SYS_capget, &header, data) < 0) {
    ThrowFailure(env, "READ_CREDENTIALS_FAILED", errno);
    return env.Undefined();
  }
  uint64_t effective = 0, permitted = 0, inheritable = 0;
  for (int i = 0; i < _LINUX_CAPABILITY_U32S_3; i++) {
    effective |= uint64_t{data[i].effective} << (32 * i);
    permitted |= uint64_t{data[i].permitted} << (32 * i);
    inheritable |= uint64_t{data[i].inheritable} << (32 * i);
  }
  // prctl(2) PR_CAPBSET_READ and PR_CAP_AMBIENT_IS_SET, one capability at a
  // time up to `lastCapability` (/proc/sys/kernel/cap_last_cap): the
  // bounding and ambient sets.
  const int last_capability = info[0].As<Napi::Number>().Int32Value();
  uint64_t bounding = 0, ambient = 0;
  for (int cap = 0; cap <= last_capability; cap++) {
    const long in_bounding = syscall(SYS_prctl, PR_CAPBSET_READ, cap, 0, 0, 0);
    const long in_ambient = syscall(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, cap, 0, 0);
    if (in_bounding < 0 || in_ambient < 0) {
      ThrowFailure(env, "READ_CREDENTIALS_FAILED", errno, {{"capability", cap}});
      return env.Undefined();
    }
    if (in_bounding) bounding |= uint64_t{1} << cap;
    if (in_ambient) ambient |= uint64_t{1} << cap;
  }
  // getresuid(2), getresgid(2): real, effective, saved. setfsuid(2) and
  // setfsgid(2) with -1, which no id can be, change nothing and return the
  // filesystem ids. getgroups(2): the supplementary groups.
  uid_t ruid, euid, suid;
  gid_t rgid, egid, sgid;
  if (syscall(SYS_getresuid, &ruid, &euid, &suid) < 0 || syscall(SYS_getresgid, &rgid, &egid, &sgid) < 0) {
    ThrowFailure(env, "READ_CREDENTIALS_FAILED", errno);
    return env.Undefined();
  }
  const long fsuid = syscall(SYS_setfsuid, -1);
  const long fsgid = syscall(SYS_setfsgid, -1);
  std::vector<gid_t> groups(static_cast<size_t>(std::max(0L, syscall(SYS_getgroups, 0, nullptr))));
  const long group_count = syscall(SYS_getgroups, groups.size(), groups.data());
  // prctl(2) PR_GET_NO_NEW_PRIVS.
  const long no_new_privs = syscall(SYS_prctl, PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);
  if (group_count < 0 || no_new_privs < 0) {
    ThrowFailure(env, "READ_CREDENTIALS_FAILED", errno);
    return env.Undefined();
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("effective", Napi::BigInt::New(env, effective));
  result.Set("permitted", Napi::BigInt::New(env, permitted));
  result.Set("inheritable", Napi::BigInt::New(env, inheritable));
  result.Set("bounding", Napi::BigInt::New(env, bounding));
  result.Set("ambient", Napi::BigInt::New(env, ambient));
  const auto list = [&](std::initializer_list<double> values) {
    Napi::Array array = Napi::Array::New(env, values.size());
    uint32_t i = 0;
    for (double value : values) array.Set(i++, value);
    return array;
  };
  result.Set("uids", list({double(ruid), double(euid), double(suid), double(fsuid)}));
  result.Set("gids", list({double(rgid), double(egid), double(sgid), double(fsgid)}));
  Napi::Array group_list = Napi::Array::New(env, group_count);
  for (long i = 0; i < group_count; i++) group_list.Set(static_cast<uint32_t>(i), static_cast<double>(groups[i]));
  result.Set("groups", group_list);
  result.Set("noNewPrivs", static_cast<double>(no_new_privs));
  return result;
}

// The whole text of "status" beneath the held /proc/self/task/TID `dir_fd`
// (openat(2), read(2), close(2)). Returns 0, or the errno: ENOENT or ESRCH
// when the thread has exited (lookups beneath the held directory fail
// then); anything else (EMFILE, ENOMEM, ...) is a failure to read a live
// thread, which must never pass for an exit: that thread would go unchecked.
int ReadStatus(int dir_fd, std::string *text) {
  const int fd = openat(dir_fd, "status", O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return errno;
  char buffer[4096];
  ssize_t n;
  int error = 0;
  while ((n = read(fd, buffer, sizeof(buffer))) != 0) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      error = errno;
      break;
    }
    text->append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  return error;
}

// holdThreads(): see src/native.d.ts. open(2) O_PATH of /proc/self/task/TID
// for every thread listed: once that thread exits, lookups beneath the
// descriptor fail, whatever thread takes its id later. Its status is read
// through that descriptor, so it is the held thread's. On a failure every
// descriptor opened here is closed.
Napi::Value HoldThreads(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Napi::Array held = Napi::Array::New(env);
  std::vector<int> opened;
  for (pid_t tid : ListThreads()) {
    char path[48];
    snprintf(path, sizeof(path), "/proc/self/task/%d", tid);
    const int fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT) continue;  // exited since it was listed
      const int error = errno;
      for (int done : opened) close(done);
      ThrowFailure(env, "HOLD_THREAD_FAILED", error, {{"tid", tid}});
      return env.Undefined();
    }
    opened.push_back(fd);
    Napi::Object thread = Napi::Object::New(env);
    thread.Set("tid", tid);
    thread.Set("fd", fd);
    std::string status;
    const int error = ReadStatus(fd, &status);
    if (error == 0) {
      thread.Set("status", status);
    } else if (error != ENOENT && error != ESRCH) {
      for (int done : opened) close(done);
      ThrowFailure(env, "HOLD_THREAD_FAILED", error, {{"tid", tid}});
      return env.Undefined();
    }
    held.Set(held.Length(), thread);
  }
  if (opened.empty()) {
    ThrowFailure(env, "HOLD_THREAD_FAILED", ENOENT);
    return env.Undefined();
  }
  return held;
}

// releaseThreads(held): see src/native.d.ts. Each thread listed now must be
// one of `held` (by id) whose held entry still answers: fstatat(2) of its
// "status" looks it up beneath the held directory, which fails (ENOENT,
// ESRCH) once that thread has exited, even if another took its id. Then
// close(2) of every held descriptor, on every path: here rather than one
// call from JavaScript each, as passt waits for gate 2's second step.
Napi::Value ReleaseThreads(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const Napi::Array held = info[0].As<Napi::Array>();
  std::vector<std::pair<pid_t, int>> known;
  for (uint32_t i = 0; i < held.Length(); i++) {
    const Napi::Object thread = held.Get(i).As<Napi::Object>();
    known.emplace_back(thread.Get("tid").As<Napi::Number>().Int32Value(), thread.Get("fd").As<Napi::Number>().Int32Value());
  }
  const std::vector<pid_t> listed = ListThreads();
  std::vector<pid_t> unknown;
  for (pid_t tid : listed) {
    bool same = false;
    for (const auto &[known_tid, fd] : known) {
      struct stat st;
      if (known_tid == tid) same = fstatat(fd, "status", &st, AT_SYMLINK_NOFOLLOW) == 0;
    }
    if (!same) unknown.push_back(tid);
  }
  for (const auto &[known_tid, fd] : known) close(fd);
  if (listed.empty()) {
    ThrowFailure(env, "LIST_THREADS_FAILED", ENOENT);
    return env.Undefined();
  }
  Napi::Array result = Napi::Array::New(env, unknown.size());
  for (uint32_t i = 0; i < unknown.size(); i++) result.Set(i, unknown[i]);
  return result;
}

}  // namespace passt_repair

namespace passt_repair {

// makeNotDumpable(): see src/native.d.ts. For the telemetry forwarder,
// started unprivileged (execve(2) made it dumpable again): it cannot use
// applyCredentials, whose signals to its threads its filter denies.
Napi::Value MakeNotDumpable(const Napi::CallbackInfo &info) {
  // No ptrace attach by another process of its uid either.
  MakeProcessNotDumpable(info.Env());
  return info.Env().Undefined();
}

}  // namespace passt_repair
