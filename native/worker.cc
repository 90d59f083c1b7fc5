// SPDX-License-Identifier: GPL-2.0-or-later
// A second thread for the protocol loop's per-descriptor system calls.
//
// While the VM is stopped passt waits on every reply, and the helper's part
// of that wait is three system calls per descriptor (two getsockopt checks,
// one setsockopt), 759 for a full batch, one after the other. passt itself
// sleeps in recv(2) meanwhile, so a second CPU is usually idle: this thread
// takes pieces of each batch alongside the protocol loop's thread
// (native/protocol.cc hands them out and keeps every guarantee: every
// descriptor checked before any socket is touched, a failure anywhere rolled
// back everywhere). The loop's thread never waits for the worker to start:
// if it has not taken the job by the time the loop's thread has done all
// the work, the job is withdrawn, so a busy machine (no CPU for the worker)
// costs a wake-up call, not a scheduling delay.
//
// The thread is started by the serving helper before the gates
// (startWorker): gate 2 (native/capabilities.cc) changes the credentials of
// every thread in /proc/self/task, this one included, so it holds what the
// main thread holds; gate 3's filter is loaded on every thread at once
// (SECCOMP_FILTER_FLAG_TSYNC), and it forbids clone(2) afterwards. It makes
// only the calls the filter allows (getsockopt, setsockopt, futex). Without
// it (not started, or pthread_create failed) every job runs on the calling
// thread: the same work, serially.
#include <linux/futex.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <cstdint>

#include "errors.h"
#include "worker.h"

namespace passt_repair {
namespace {

// The job, published before `requested` is raised and read after it is seen.
Job job = nullptr;
void *job_context = nullptr;
// Futex words: the generation of the last job asked for, and of the last one
// the worker finished.
std::atomic<uint32_t> requested{0};
std::atomic<uint32_t> finished{0};
// The last generation either taken by the worker or withdrawn by the loop's
// thread, whichever moved it from generation - 1 first (compare-exchange):
// the worker never touches a job withdrawn from it.
std::atomic<uint32_t> taken{0};
bool started = false;

// Moves `taken` from generation - 1 to generation; false if the other
// thread did first.
bool Take(uint32_t generation) {
  uint32_t expected = generation - 1;
  return taken.compare_exchange_strong(expected, generation, std::memory_order_acq_rel);
}

// futex(2), FUTEX_PRIVATE: this process's threads only.
void FutexWait(std::atomic<uint32_t> *word, uint32_t value) {
  syscall(SYS_futex, reinterpret_cast<uint32_t *>(word), FUTEX_WAIT_PRIVATE, value, nullptr, nullptr, 0);
}
void FutexWake(std::atomic<uint32_t> *word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t *>(word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
}

void *WorkerLoop(void *) {
  uint32_t seen = 0;
  for (;;) {
    uint32_t now;
    // A wake-up, a signal (EINTR) or a spurious return: look again.
    while ((now = requested.load(std::memory_order_acquire)) == seen) FutexWait(&requested, seen);
    seen = now;
    // A generation read late may already be withdrawn, or followed by the
    // next one: then Take fails, and the loop looks at `requested` again.
    if (!Take(seen)) continue;
    job(job_context);
    finished.store(seen, std::memory_order_release);
    FutexWake(&finished);
  }
  return nullptr;
}

}  // namespace

void RunOnTwoThreads(Job run, void *context) {
  if (!started) {
    run(context);
    return;
  }
  job = run;
  job_context = context;
  const uint32_t generation = requested.load(std::memory_order_relaxed) + 1;
  requested.store(generation, std::memory_order_release);
  FutexWake(&requested);
  run(context);
  // Nothing is left to take. Withdrawn: the worker never started it. Taken:
  // it is finishing the piece in hand.
  if (Take(generation)) return;
  for (uint32_t done; (done = finished.load(std::memory_order_acquire)) != generation;) FutexWait(&finished, done);
}

// startWorker(): see src/native.d.ts. pthread_create(3) (clone3(2)): a small
// stack, since the thread only loops over descriptors. Returns whether the
// worker runs; a second call changes nothing.
Napi::Value StartWorker(const Napi::CallbackInfo &info) {
  if (!started) {
    pthread_attr_t attributes;
    pthread_t thread;
    if (pthread_attr_init(&attributes) == 0) {
      pthread_attr_setstacksize(&attributes, 128 * 1024);
      started = pthread_create(&thread, &attributes, WorkerLoop, nullptr) == 0;
      pthread_attr_destroy(&attributes);
      if (started) {
        // pthread_setname_np(3) (for another thread: openat(2) and write(2)
        // of /proc/self/task/TID/comm), so that whoever audits the threads
        // can tell it from the runtime's.
        pthread_setname_np(thread, "repair-worker");
        pthread_detach(thread);
      }
    }
  }
  return Napi::Boolean::New(info.Env(), started);
}

}  // namespace passt_repair
