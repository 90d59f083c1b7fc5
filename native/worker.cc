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
// Each thread keeps looking for the other's next move for a while (kSpinNs)
// before it sleeps in FUTEX_WAIT, and the other makes the FUTEX_WAKE call
// only for a thread that sleeps (Signal). Measured with a throwaway counter
// on the benchmark's machine (a virtual machine): a futex wake-up took the
// worker about 30 µs (p50; 12-42 µs p10-p90), and a batch paid it twice
// (the check step, then the apply step) and the loop's thread once more
// (waiting for the worker's last piece). The worker took 6-7 of a full
// batch's 16 pieces per step; the apply step of TCP_REPAIR_ON (67 µs on one
// thread) took longer on two (80-90 µs), and a batch's p50 did not move.
// Awake, it takes the job within a microsecond and about half the pieces.
//
// The thread is started by the serving helper before the gates
// (startWorker): gate 2 (native/capabilities.cc) changes the credentials of
// every thread in /proc/self/task, this one included, so it holds what the
// main thread holds; gate 3's filter is loaded on every thread at once
// (SECCOMP_FILTER_FLAG_TSYNC), and it forbids clone(2) afterwards. It makes
// only the calls the filter allows (getsockopt, setsockopt, futex,
// sched_yield, and clock_gettime where the vDSO cannot answer). Without
// it (not started, or pthread_create failed) every job runs on the calling
// thread: the same work, serially.
#include <linux/futex.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <sched.h>
#include <time.h>

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

// How long a thread looks for the other's next move before it sleeps. The
// gaps it must cover while passt sends batches: a few µs between a batch's
// check and apply steps; one piece (16 descriptors, under 20 µs) while the
// loop's thread waits for the worker's last; and, between passt's batches,
// passt reading the reply and sending the next 253 descriptors and the
// loop's thread receiving them: 60-90 µs on the benchmark's machine (its
// exchange floor). 200 µs covers the longest with room to spare, and bounds
// what a helper spends once passt stops sending: at most 200 µs of one CPU
// after its last request, then both threads sleep (the worker in
// FUTEX_WAIT, the loop's thread in ppoll) until passt sends again. A helper
// between migrations, or waiting in a directory, uses no CPU.
//
// Each look is followed by sched_yield(2): when anything else is runnable
// on the looking thread's CPU (passt, or the loop's thread itself) it runs
// at once instead of waiting for the looker's time slice to end. Measured:
// without it, looking made the benchmark's batch p50 worse than sleeping
// (the scheduler put passt or the loop's thread beside the looking thread);
// with it, better. With nothing else runnable it returns at once.
constexpr int64_t kSpinNs = 200 * 1000;

int64_t NowNs() {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);  // the vDSO; clock_gettime(2) where it cannot
  return static_cast<int64_t>(now.tv_sec) * 1000000000 + now.tv_nsec;
}

// futex(2), FUTEX_PRIVATE: this process's threads only.
void FutexWait(std::atomic<uint32_t> *word, uint32_t value) {
  syscall(SYS_futex, reinterpret_cast<uint32_t *>(word), FUTEX_WAIT_PRIVATE, value, nullptr, nullptr, 0);
}
void FutexWake(std::atomic<uint32_t> *word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t *>(word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
}

// A futex word, and whether the one thread that waits on it sleeps.
struct Signal {
  std::atomic<uint32_t> word{0};
  // Raised by the waiting thread before it sleeps, so that the other makes
  // the wake-up call only then. Both sides are sequentially consistent: the
  // waiter raises this and then reads `word`; the other stores `word` and
  // then reads this. So at least one of them sees the other's store: the
  // waiter sees the new value and does not sleep, or the other sees this
  // flag and wakes it (FUTEX_WAIT returns at once if `word` has changed).
  std::atomic<bool> sleeping{false};

  void Raise(uint32_t value) {
    word.store(value);
    if (sleeping.load()) FutexWake(&word);
  }

  // Returns the first value of `word` for which done(value) holds: looked
  // for during `spin_ns`, then slept for. After a wake-up, a signal (EINTR)
  // or a spurious return: look again.
  template <typename Done>
  uint32_t Await(int64_t spin_ns, Done done) {
    const int64_t until = NowNs() + spin_ns;
    uint32_t now;
    while (!done(now = word.load(std::memory_order_acquire)) && NowNs() < until) {
      sched_yield();  // see kSpinNs
    }
    while (!done(now)) {
      sleeping.store(true);
      now = word.load();
      if (!done(now)) FutexWait(&word, now);
      sleeping.store(false);
      now = word.load(std::memory_order_acquire);
    }
    return now;
  }
};

// The generation of the last job asked for, and of the last one the worker
// finished.
Signal requested;
Signal finished;

void *WorkerLoop(void *) {
  uint32_t seen = 0;
  // Before the first job (start-up, a helper waiting in a directory for
  // passt's socket) there is nothing to look for: it sleeps at once.
  int64_t spin_ns = 0;
  for (;;) {
    const uint32_t last = seen;
    seen = requested.Await(spin_ns, [last](uint32_t now) { return now != last; });
    spin_ns = kSpinNs;
    // A generation read late may already be withdrawn, or followed by the
    // next one: then Take fails, and the loop looks at `requested` again.
    if (!Take(seen)) continue;
    job(job_context, true);
    finished.Raise(seen);
  }
  return nullptr;
}

}  // namespace

void RunOnTwoThreads(Job run, void *context) {
  if (!started) {
    run(context, false);
    return;
  }
  job = run;
  job_context = context;
  const uint32_t generation = requested.word.load(std::memory_order_relaxed) + 1;
  requested.Raise(generation);
  run(context, false);
  // Nothing is left to take. Withdrawn: the worker never started it. Taken:
  // it is finishing the piece in hand.
  if (Take(generation)) return;
  finished.Await(kSpinNs, [generation](uint32_t done) { return done == generation; });
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
