// SPDX-License-Identifier: GPL-2.0-or-later
// A second thread for the protocol loop's per-descriptor system calls
// (native/worker.cc).
#pragma once

namespace passt_repair {

// What each thread runs: it takes pieces of the work until none is left
// (native/protocol.cc's Batch hands them out), so a thread that starts late,
// or never, only leaves more to the other. `on_worker` tells the two runs
// apart (false: the calling thread's).
using Job = void (*)(void *context, bool on_worker);

// Runs job(context, false) on the calling thread and, if it wakes in time,
// job(context, true) on the worker too; returns once the calling thread's run is over and the worker
// is not, or no longer, running it. Without a worker, runs it here only.
// One job at a time: the protocol loop calls it from one thread.
void RunOnTwoThreads(Job job, void *context);

}  // namespace passt_repair
