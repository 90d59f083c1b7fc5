// SPDX-License-Identifier: GPL-2.0-or-later
// Descriptors the helper writes to without ever waiting: standard error for
// the audit log, and the pipe to the telemetry forwarder. A stalled reader
// must never stall passt's migration, so writes that would block fail with
// EAGAIN instead and the line is dropped (src/log/writer.ts).
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <string>

#include "errors.h"

namespace passt_repair {

// fcntl(F_GETFL/F_SETFL): sets O_NONBLOCK on `fd`. Returns whether it was
// clear before. Node.js puts standard error's flags back as they were at
// exit, so the caller's shared descriptor is left as found.
Napi::Value SetNonBlocking(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const int fd = info[0].As<Napi::Number>().Int32Value();
  const int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || (!(flags & O_NONBLOCK) && fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)) {
    ThrowFailure(env, "FCNTL_FAILED", errno);
    return env.Undefined();
  }
  return Napi::Boolean::New(env, !(flags & O_NONBLOCK));
}

// write(2) once: the bytes written, or -errno. Never throws: a reader with
// no room fails every write with EAGAIN, possibly on every request, and an
// exception per failed write (fs.writeSync's) made the helper's memory grow
// for as long as the reader stalled (the benchmark's soak). A string is
// written as UTF-8, encoded here: no buffer in the JavaScript heap for a
// line (issue 13), and one call for the audit log's "connected" line, which
// passt waits for, instead of encoding it into a buffer first.
Napi::Value WriteSome(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const int fd = info[0].As<Napi::Number>().Int32Value();
  ssize_t written;
  if (info[1].IsString()) {
    const std::string text = info[1].As<Napi::String>().Utf8Value();
    written = write(fd, text.data(), text.size());
  } else {
    const Napi::Buffer<uint8_t> bytes = info[1].As<Napi::Buffer<uint8_t>>();
    written = write(fd, bytes.Data(), bytes.Length());
  }
  return Napi::Number::New(env, written < 0 ? -errno : static_cast<double>(written));
}

// pipe2(O_CLOEXEC): a one-way channel to a child process, set up before the
// sandbox. The write end is made non-blocking by the caller; the read end
// becomes the child's standard input (dup2 in spawn clears O_CLOEXEC there).
Napi::Value MakePipe(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) < 0) {
    ThrowFailure(env, "PIPE_FAILED", errno);
    return env.Undefined();
  }
  Napi::Object ends = Napi::Object::New(env);
  ends.Set("read", fds[0]);
  ends.Set("write", fds[1]);
  return ends;
}

// poll(POLLOUT): waits until `fd` has room. The answers of --help,
// --version, --check-policy and --explain must arrive whole (src/output.ts)
// even on a descriptor someone made non-blocking (Node's own stdout stream,
// or standard error shared with the audit log's): waiting here rather than
// retrying write() keeps a slow reader from costing a busy loop. No protocol
// is running then, so waiting is harmless. Returns once writable, or on an
// error or hang-up, which the next write() reports.
Napi::Value WaitWritable(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  struct pollfd p = {info[0].As<Napi::Number>().Int32Value(), POLLOUT, 0};
  int r;
  do r = poll(&p, 1, -1);
  while (r < 0 && errno == EINTR);
  if (r < 0) ThrowFailure(env, "POLL_FAILED", errno);
  return env.Undefined();
}

}  // namespace passt_repair
