// SPDX-License-Identifier: GPL-2.0-or-later
// Gate 1's system calls: opening a path one component at a time, reading
// symlinks and identities of what was opened, and pinning a process whose
// root a path goes through. The walk itself (which component next, where a
// symlink's target goes, what ".." means) is decided in
// src/policy/path-gate.ts; nothing here follows a link on its own, except
// openProcessRoot(), the one deliberate magic-link follow.
//
// Every descriptor returned is O_CLOEXEC and owned by the caller, which
// closes it; every descriptor opened here and not returned is closed on
// every path.
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "errors.h"

namespace passt_repair {

namespace {

int OpenAt2(int dir_fd, const char *name, unsigned long long flags, unsigned long long resolve) {
  struct open_how how = {};
  how.flags = flags;
  how.resolve = resolve;
  int fd;
  do fd = static_cast<int>(syscall(SYS_openat2, dir_fd, name, &how, sizeof(how)));
  while (fd < 0 && errno == EINTR);
  return fd;
}

Napi::Value FdOrThrow(Napi::Env env, int fd, const char *code) {
  if (fd < 0) {
    ThrowFailure(env, code, errno);
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

}  // namespace

// openat2(2) of "/" as this process sees it: where a host path's walk starts.
// O_PATH: the walk only looks things up, it never reads them.
Napi::Value OpenHostRoot(const Napi::CallbackInfo &info) {
  return FdOrThrow(info.Env(), OpenAt2(AT_FDCWD, "/", O_PATH | O_DIRECTORY | O_CLOEXEC, 0), "OPEN_FAILED");
}

// openat2(2) of one path component `name` (no "/", never "." or "..": the
// caller handles those) in the directory `dirFd`. O_PATH | O_NOFOLLOW opens
// a symlink itself rather than its target, so the caller decides about it;
// RESOLVE_NO_SYMLINKS and RESOLVE_NO_MAGICLINKS make sure no link is followed
// behind its back, RESOLVE_BENEATH that nothing outside `dirFd` is reached.
// `sameMount` adds RESOLVE_NO_XDEV (a socket found in a watched directory
// must live on the directory's own mount).
Napi::Value OpenComponent(const Napi::CallbackInfo &info) {
  const int dir_fd = info[0].As<Napi::Number>().Int32Value();
  const std::string name = info[1].As<Napi::String>().Utf8Value();
  const bool same_mount = info[2].As<Napi::Boolean>().Value();
  unsigned long long resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_BENEATH;
  if (same_mount) resolve |= RESOLVE_NO_XDEV;
  return FdOrThrow(info.Env(), OpenAt2(dir_fd, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC, resolve), "OPEN_FAILED");
}

// openat2(2) of "/proc/PID" as a directory: pins that process's proc entry.
// Once the process exits, lookups and reads beneath this descriptor fail
// (ESRCH/ENOENT) instead of reaching a process that recycled the PID.
// RESOLVE_NO_SYMLINKS: "/proc/PID" is never reached through a link.
Napi::Value OpenProcessDirectory(const Napi::CallbackInfo &info) {
  const int pid = info[0].As<Napi::Number>().Int32Value();
  char path[32];
  snprintf(path, sizeof(path), "/proc/%d", pid);
  return FdOrThrow(info.Env(), OpenAt2(AT_FDCWD, path, O_PATH | O_DIRECTORY | O_CLOEXEC, RESOLVE_NO_SYMLINKS), "OPEN_FAILED");
}

// openat2(2) of "root" in a pinned /proc/PID: the one magic link the helper
// follows on purpose, to that process's root directory in its own mount
// namespace. The kernel checks ptrace read access here (CAP_SYS_PTRACE for
// another uid's process).
Napi::Value OpenProcessRoot(const Napi::CallbackInfo &info) {
  const int proc_fd = info[0].As<Napi::Number>().Int32Value();
  return FdOrThrow(info.Env(), OpenAt2(proc_fd, "root", O_PATH | O_DIRECTORY | O_CLOEXEC, 0), "OPEN_FAILED");
}

// openat(2) + read(2) of a file of a pinned /proc/PID ("status",
// "mountinfo"), whole. No link is followed (RESOLVE_NO_SYMLINKS).
Napi::Value ReadProcessFile(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const int proc_fd = info[0].As<Napi::Number>().Int32Value();
  const std::string name = info[1].As<Napi::String>().Utf8Value();
  const int fd = OpenAt2(proc_fd, name.c_str(), O_RDONLY | O_CLOEXEC, RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH);
  if (fd < 0) {
    ThrowFailure(env, "READ_FAILED", errno);
    return env.Undefined();
  }
  std::string text;
  char buffer[8192];
  for (;;) {
    const ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int error = errno;
      close(fd);
      ThrowFailure(env, "READ_FAILED", error);
      return env.Undefined();
    }
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  return Napi::String::New(env, text);
}

// readlinkat(2) with an empty name: the target text of the symlink held by
// the O_PATH descriptor `fd` (what it says, which the caller then walks
// itself; never what the kernel renders for a magic link).
Napi::Value ReadSymlink(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const int fd = info[0].As<Napi::Number>().Int32Value();
  char target[4097];
  const ssize_t n = readlinkat(fd, "", target, sizeof(target));
  if (n < 0) {
    ThrowFailure(env, "READLINK_FAILED", errno);
    return env.Undefined();
  }
  if (static_cast<size_t>(n) >= sizeof(target)) {
    ThrowFailure(env, "READLINK_FAILED", ENAMETOOLONG);
    return env.Undefined();
  }
  return Napi::String::New(env, target, static_cast<size_t>(n));
}

// statx(2) of the object held by `fd` itself (AT_EMPTY_PATH, never a link's
// target): its type, link count, owner and identity. Two descriptors name the
// same object only if device, inode and mount id all agree.
Napi::Value StatObject(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const int fd = info[0].As<Napi::Number>().Int32Value();
  struct statx st = {};
  const unsigned int wanted = STATX_TYPE | STATX_NLINK | STATX_UID | STATX_GID | STATX_INO | STATX_MNT_ID;
  if (statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, wanted, &st) < 0) {
    ThrowFailure(env, "STAT_FAILED", errno);
    return env.Undefined();
  }
  if ((st.stx_mask & wanted) != wanted) {
    ThrowFailure(env, "STAT_INCOMPLETE", 0, {{"mask", static_cast<int>(st.stx_mask)}});
    return env.Undefined();
  }
  Napi::Object object = Napi::Object::New(env);
  object.Set("type", static_cast<double>(st.stx_mode & S_IFMT));
  object.Set("nlink", static_cast<double>(st.stx_nlink));
  object.Set("uid", static_cast<double>(st.stx_uid));
  object.Set("gid", static_cast<double>(st.stx_gid));
  char identity[96];
  snprintf(identity, sizeof(identity), "%u:%u:%llu", st.stx_dev_major, st.stx_dev_minor, static_cast<unsigned long long>(st.stx_ino));
  object.Set("identity", identity);
  object.Set("mountId", static_cast<double>(st.stx_mnt_id));
  return object;
}

// pidfd_open(2): a handle on process `pid` that no other process can ever
// stand for, even after it exits and its PID is reused. Without
// PIDFD_THREAD, a thread's id is refused (EINVAL): `pid` must be a process
// (thread group leader), whose /proc/PID/status and /proc/PID/root are the
// leader's own (a thread may chroot on its own after unshare(CLONE_FS)).
Napi::Value PidfdOpen(const Napi::CallbackInfo &info) {
  const int pid = info[0].As<Napi::Number>().Int32Value();
  const int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  return FdOrThrow(info.Env(), fd, "PIDFD_FAILED");
}

}  // namespace passt_repair
