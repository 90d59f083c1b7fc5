// SPDX-License-Identifier: GPL-2.0-or-later
// Test-only addon (test/seccomp.test.ts): makes one forbidden system call by
// name, with plausible arguments, so that a process under the helper's
// filter can show it dies on it. Never loaded by the helper. Also the
// attacker's half of test/forwarder-sandbox.test.ts (ArrangeSignal).
#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <linux/io_uring.h>
#include <napi.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace {

// getpid(2) through the i386 ABI (int 0x80, number 20 there): an allowed
// call by another door, which the filter must not treat as allowed.
long I386Getpid() {
#if defined(__x86_64__)
  long result;
  asm volatile("int $0x80" : "=a"(result) : "a"(20L) : "memory");
  return result;
#else
  return -ENOSYS;
#endif
}

// Returns the call's result (-errno on failure), if the process survives it.
long Attempt(const std::string &name, int sock) {
  char buffer[16];
  struct iovec local = {buffer, sizeof(buffer)}, remote = {buffer, sizeof(buffer)};
  struct sockaddr_in loopback = {};
  loopback.sin_family = AF_INET;
  loopback.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int one = 1;
  struct io_uring_params params = {};
  const char *const no_arguments[] = {"/bin/true", nullptr};
  long result = -ENOSYS;
  if (name == "socket") result = syscall(SYS_socket, AF_INET, SOCK_STREAM, 0);
  else if (name == "socketpair") { int pair[2]; result = syscall(SYS_socketpair, AF_UNIX, SOCK_STREAM, 0, pair); }
  else if (name == "connect") result = syscall(SYS_connect, sock, &loopback, sizeof(loopback));
  else if (name == "bind") result = syscall(SYS_bind, sock, &loopback, sizeof(loopback));
  else if (name == "listen") result = syscall(SYS_listen, sock, 1);
  else if (name == "accept4") result = syscall(SYS_accept4, sock, nullptr, nullptr, 0);
  else if (name == "open") result = syscall(SYS_open, "/etc/passwd", O_RDONLY);
  else if (name == "openat") result = syscall(SYS_openat, AT_FDCWD, "/etc/passwd", O_RDONLY);
  else if (name == "openat2") { long how[3] = {O_RDONLY, 0, 0}; result = syscall(SYS_openat2, AT_FDCWD, "/etc/passwd", how, sizeof(how)); }
  else if (name == "creat") result = syscall(SYS_creat, "/tmp/passt-repair-probe", 0600);
  else if (name == "execve") result = syscall(SYS_execve, "/bin/true", no_arguments, nullptr);
  else if (name == "execveat") result = syscall(SYS_execveat, AT_FDCWD, "/bin/true", no_arguments, nullptr, 0);
  else if (name == "fork") result = syscall(SYS_fork);
  else if (name == "clone3") result = syscall(SYS_clone3, nullptr, 0);
  else if (name == "ptrace") result = syscall(SYS_ptrace, PTRACE_TRACEME, 0, 0, 0);
  else if (name == "process_vm_readv") result = syscall(SYS_process_vm_readv, getppid(), &local, 1, &remote, 1, 0);
  else if (name == "process_vm_writev") result = syscall(SYS_process_vm_writev, getppid(), &local, 1, &remote, 1, 0);
  else if (name == "setuid") result = syscall(SYS_setuid, 0);
  else if (name == "setresuid") result = syscall(SYS_setresuid, 0, 0, 0);
  else if (name == "setgid") result = syscall(SYS_setgid, 0);
  else if (name == "setgroups") result = syscall(SYS_setgroups, 0, nullptr);
  else if (name == "capset") result = syscall(SYS_capset, nullptr, nullptr);
  else if (name == "unshare") result = syscall(SYS_unshare, CLONE_NEWNET);
  else if (name == "setns") result = syscall(SYS_setns, -1, 0);
  else if (name == "bpf") result = syscall(SYS_bpf, 0, nullptr, 0);
  else if (name == "io_uring_setup") result = syscall(SYS_io_uring_setup, 1, &params);
  else if (name == "io_uring_enter") result = syscall(SYS_io_uring_enter, -1, 0, 0, 0, nullptr, 0);
  else if (name == "io_uring_register") result = syscall(SYS_io_uring_register, -1, 0, nullptr, 0);
  else if (name == "mount") result = syscall(SYS_mount, "none", "/tmp", "tmpfs", 0, nullptr);
  else if (name == "prctl") result = syscall(SYS_prctl, PR_SET_DUMPABLE, 1, 0, 0, 0);
  else if (name == "getpid through the i386 ABI") return I386Getpid();
  else if (name == "setsockopt SOL_SOCKET SO_REUSEADDR")
    result = syscall(SYS_setsockopt, sock, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  else if (name == "setsockopt SOL_TCP TCP_NODELAY")
    result = syscall(SYS_setsockopt, sock, SOL_TCP, TCP_NODELAY, &one, sizeof(one));
  else if (name == "setsockopt SOL_TCP TCP_REPAIR")  // the one allowed: the control
    result = syscall(SYS_setsockopt, sock, SOL_TCP, TCP_REPAIR, &one, sizeof(one));
  else return -EINVAL - 1000;  // a name this probe does not know
  return result < 0 ? -errno : result;
}

Napi::Value AttemptSyscall(const Napi::CallbackInfo &info) {
  const std::string name = info[0].As<Napi::String>().Utf8Value();
  const int sock = info[1].As<Napi::Number>().Int32Value();
  return Napi::Number::New(info.Env(), static_cast<double>(Attempt(name, sock)));
}

// arrangeSignal(how, pid): the attack of a process of the helper's uid on
// the helper: make the kernel send SIGKILL to `pid` through a descriptor of
// its own. `how` names the step that makes `pid` the descriptor's owner:
// "F_SETOWN" or "F_SETOWN_EX" (a pipe), "FIOSETOWN" or "SIOCSPGRP" (a
// socket pair). Then F_SETSIG SIGKILL, O_ASYNC, and a write that makes the
// read end readable, which signals its owner. Returns each step's result
// (0, or -errno): [owner, F_SETSIG, O_ASYNC, write]. A last step,
// "TIOCSPGRP", only tries that ioctl (-ENOTTY on a pipe when allowed).
Napi::Value ArrangeSignal(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const std::string how = info[0].As<Napi::String>().Utf8Value();
  pid_t pid = info[1].As<Napi::Number>().Int32Value();
  int ends[2];
  const bool socket_pair = how == "FIOSETOWN" || how == "SIOCSPGRP";
  if ((socket_pair ? socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) : pipe2(ends, O_CLOEXEC)) < 0) {
    Napi::Error::New(env, "no pipe or socket pair").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto result = [](long value) { return value < 0 ? -errno : 0; };
  long owner;
  if (how == "F_SETOWN") owner = result(fcntl(ends[0], F_SETOWN, pid));
  else if (how == "F_SETOWN_EX") {
    struct f_owner_ex target = {F_OWNER_PID, pid};
    owner = result(fcntl(ends[0], F_SETOWN_EX, &target));
  } else if (how == "FIOSETOWN") owner = result(ioctl(ends[0], FIOSETOWN, &pid));
  else if (how == "SIOCSPGRP") owner = result(ioctl(ends[0], SIOCSPGRP, &pid));
  else if (how == "TIOCSPGRP") owner = result(ioctl(ends[0], TIOCSPGRP, &pid));
  else owner = -EINVAL - 1000;
  Napi::Array steps = Napi::Array::New(env);
  steps.Set(0u, Napi::Number::New(env, static_cast<double>(owner)));
  if (how != "TIOCSPGRP") {
    steps.Set(1u, Napi::Number::New(env, static_cast<double>(result(fcntl(ends[0], F_SETSIG, SIGKILL)))));
    steps.Set(2u, Napi::Number::New(env, static_cast<double>(result(fcntl(ends[0], F_SETFL, O_ASYNC | O_NONBLOCK)))));
    steps.Set(3u, Napi::Number::New(env, static_cast<double>(result(write(ends[1], "x", 1)))));
  }
  close(ends[0]);
  close(ends[1]);
  return steps;
}

// A TCP socket made before the filter, for the calls that need one.
Napi::Value TcpSocket(const Napi::CallbackInfo &info) {
  return Napi::Number::New(info.Env(), socket(AF_INET, SOCK_STREAM, 0));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("attemptSyscall", Napi::Function::New(env, AttemptSyscall));
  exports.Set("tcpSocket", Napi::Function::New(env, TcpSocket));
  exports.Set("arrangeSignal", Napi::Function::New(env, ArrangeSignal));
  return exports;
}

}  // namespace

NODE_API_MODULE(passt_syscall_probe, Init)
