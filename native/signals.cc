// SPDX-License-Identifier: GPL-2.0-or-later
// SIGTERM, SIGINT and SIGHUP: recorded, then acted on where the helper can
// stop cleanly (between requests, between two gates, or by the event loop
// while waiting for passt's socket).
//
// Node.js's own handlers for SIGINT and SIGTERM re-raise the signal with
// tgkill(2), which the seccomp filter kills (SIGSYS), and a default action
// ends the helper in the middle of a batch. These handlers replace both:
// they only record the signal and write one byte to a self-pipe, which is
// async-signal-safe, so a signal delivered to ANY thread of the process
// (the kernel picks one that does not block it) wakes the protocol loop's
// ppoll(2). They then call the handler they replaced: the event loop's
// (libuv's, installed just before by src/signals.ts's process.on
// listeners), which writes to libuv's own self-pipe and so ends a wait on
// the event loop. That order is src/signals.ts's to keep: Node.js's
// built-in handlers, which re-raise, must never be the ones replaced.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>

#include "errors.h"
#include "signals.h"

namespace passt_repair {
namespace {

constexpr int kCaught[] = {SIGTERM, SIGINT, SIGHUP};

volatile sig_atomic_t pending = 0;
int wake_read = -1;
int wake_write = -1;
// The handlers replaced, by position in kCaught.
struct sigaction replaced[sizeof(kCaught) / sizeof(kCaught[0])];

void Record(int signal) {
  const int saved = errno;  // the interrupted code may be about to read it
  if (pending == 0) pending = signal;  // the first one names the end
  const char byte = 0;
  // write(2) to the non-blocking self-pipe: a full pipe (EAGAIN) already
  // holds a wake-up, so a failure here loses nothing.
  ssize_t ignored = write(wake_write, &byte, 1);
  (void)ignored;
  errno = saved;
  for (size_t i = 0; i < sizeof(kCaught) / sizeof(kCaught[0]); i++) {
    // libuv registers a plain handler (no SA_SIGINFO); anything else is
    // not chained.
    if (kCaught[i] != signal || (replaced[i].sa_flags & SA_SIGINFO) ||
        replaced[i].sa_handler == SIG_DFL || replaced[i].sa_handler == SIG_IGN)
      continue;
    replaced[i].sa_handler(signal);
  }
}

}  // namespace

int PendingSignal() { return pending; }
int SignalWakeFd() { return wake_read; }

// catchSignals(): installs the handlers, once (the first call's replaced
// handlers are the ones chained).
Napi::Value CatchSignals(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (wake_read >= 0) return env.Undefined();
  int ends[2];
  // pipe2(2): non-blocking so that the handler never waits; close-on-exec
  // like every other descriptor of the helper.
  if (pipe2(ends, O_CLOEXEC | O_NONBLOCK) < 0) {
    ThrowFailure(env, "PIPE_FAILED", errno);
    return env.Undefined();
  }
  wake_read = ends[0];
  wake_write = ends[1];
  struct sigaction action = {};
  action.sa_handler = Record;
  // The three are blocked while one is being recorded.
  sigemptyset(&action.sa_mask);
  for (int signal : kCaught) sigaddset(&action.sa_mask, signal);
  // SA_RESTART: the runtime's own threads see no EINTR from a signal that
  // only asks the helper to stop; ppoll(2) returns EINTR regardless.
  action.sa_flags = SA_RESTART;
  for (size_t i = 0; i < sizeof(kCaught) / sizeof(kCaught[0]); i++) {
    // sigaction(2): cannot fail for these signals with a valid handler.
    if (sigaction(kCaught[i], &action, &replaced[i]) < 0) {
      ThrowFailure(env, "SIGACTION_FAILED", errno, {{"signal", kCaught[i]}});
      return env.Undefined();
    }
  }
  return env.Undefined();
}

// pendingSignal(): the signal recorded, or 0.
Napi::Value PendingSignalValue(const Napi::CallbackInfo &info) {
  return Napi::Number::New(info.Env(), pending);
}

}  // namespace passt_repair
