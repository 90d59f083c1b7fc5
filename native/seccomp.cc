// SPDX-License-Identifier: GPL-2.0-or-later
// Gate 3's system calls: the seccomp filter, built with libseccomp from the
// allowlist in seccomp/ (parsed and checked in src/sandbox/seccomp.ts) and
// installed on every thread at once. The same calls build the telemetry
// forwarder's filter, a deny list on top of "allow everything else"
// (seccomp/forwarder.policy, mode "allow").
//
// In two steps, so that passt never waits for the filter to be built: the
// helper prepares it (rules added, BPF generated) before it connects, and
// only loads the finished program after the peer check.
#include <dirent.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fcntl.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "errors.h"

namespace passt_repair {
namespace {

// Frees the filter context on every path.
class FilterContext {
 public:
  explicit FilterContext(uint32_t default_action) : ctx_(seccomp_init(default_action)) {}
  FilterContext(const FilterContext &) = delete;
  FilterContext &operator=(const FilterContext &) = delete;
  ~FilterContext() {
    if (ctx_) seccomp_release(ctx_);
  }
  scmp_filter_ctx get() const { return ctx_; }

 private:
  scmp_filter_ctx ctx_;
};

void ThrowForRule(Napi::Env env, const char *code, int error, const std::string &syscall_name, uint32_t line, uint32_t index) {
  Napi::Error failure = Napi::Error::New(env, code);
  failure.Value().Set("code", code);
  if (error != 0) failure.Value().Set("errno", error);
  failure.Value().Set("syscall", syscall_name);
  failure.Value().Set("line", line);
  // Which rule: the caller knows which file it came from.
  failure.Value().Set("index", index);
  failure.ThrowAsJavaScriptException();
}

// The action when no rule matches, by mode: "kill" (the helper), "log" (the
// administrator's log mode), "allow" (a deny list: the forwarder).
uint32_t DefaultAction(const std::string &mode) {
  if (mode == "log") return SCMP_ACT_LOG;
  if (mode == "allow") return SCMP_ACT_ALLOW;
  return SCMP_ACT_KILL_PROCESS;
}

// The generated program, owned by the JavaScript object prepareSeccompFilter
// returns: opaque there, so nothing but a prepared filter can be loaded.
struct PreparedFilter {
  std::vector<struct sock_filter> program;
  bool loaded = false;
};

// Reads the BPF program libseccomp generates for `filter`
// (seccomp_export_bpf(3) writes it to a descriptor). Through a pipe (pipe2(2),
// write(2), read(2), close(2)): a program is at most BPF_MAXINSNS (4096)
// instructions, 32 KiB, less than a pipe holds, so the write never blocks.
int ExportProgram(scmp_filter_ctx filter, std::vector<struct sock_filter> *program) {
  int ends[2];
  if (pipe2(ends, O_CLOEXEC) < 0) return -errno;
  int error = seccomp_export_bpf(filter, ends[1]);
  close(ends[1]);
  std::vector<char> bytes;
  if (error == 0) {
    char chunk[4096];
    ssize_t got;
    while ((got = read(ends[0], chunk, sizeof(chunk))) > 0) bytes.insert(bytes.end(), chunk, chunk + got);
    if (got < 0) error = -errno;
  }
  close(ends[0]);
  if (error < 0) return error;
  if (bytes.empty() || bytes.size() % sizeof(struct sock_filter) != 0) return -EINVAL;
  program->resize(bytes.size() / sizeof(struct sock_filter));
  memcpy(program->data(), bytes.data(), bytes.size());
  return 0;
}

// Sets the filter's attributes and adds `rules` to `filter`, which was made
// with DefaultAction(mode). On a failure it has thrown and returns false.
bool AddRules(Napi::Env env, const FilterContext &filter, const Napi::Array &rules, bool deny_list) {
  // A call through another ABI (i386's int 0x80, x32) has other numbers and
  // would miss every rule: a deny list would let it through, and an
  // allowlist's default would kill only the calling thread. libseccomp sends
  // those to the "bad architecture" action; make it end the whole process.
  int error = seccomp_attr_set(filter.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
  if (error < 0) {
    ThrowFailure(env, "SECCOMP_ATTRIBUTE_FAILED", -error);
    return false;
  }
  // libseccomp's binary tree (optimisation level 2): the program finds any
  // system call in about log2(N) comparisons. The kernel runs the program
  // once for every system call number when the filter is loaded (to fill
  // its action cache), and that load is on passt's wait for the first reply:
  // 60-65 µs with the tree against about 100 µs for a list tested in the
  // allowlist's order (level 1, the protocol loop's calls first through
  // syscall priorities), median of 15 starts. The list reached the loop's
  // hot calls in 17, 14 and 15 BPF instructions against the tree's 24, 21
  // and 22, a difference below the benchmark's noise per call (its
  // "seccomp filter per call" line), about 3 µs in a batch of 253.
  error = seccomp_attr_set(filter.get(), SCMP_FLTATR_CTL_OPTIMIZE, 2);
  if (error < 0) {
    ThrowFailure(env, "SECCOMP_ATTRIBUTE_FAILED", -error);
    return false;
  }
  for (uint32_t i = 0; i < rules.Length(); i++) {
    const Napi::Object rule = rules.Get(i).As<Napi::Object>();
    const std::string name = rule.Get("syscall").As<Napi::String>().Utf8Value();
    const uint32_t line = rule.Get("line").As<Napi::Number>().Uint32Value();
    const int number = seccomp_syscall_resolve_name(name.c_str());
    if (number == __NR_SCMP_ERROR) {
      ThrowForRule(env, "UNKNOWN_SYSCALL", 0, name, line, i);
      return false;
    }
    const Napi::Array conditions = rule.Get("args").As<Napi::Array>();
    if (conditions.Length() > 6) {
      ThrowForRule(env, "TOO_MANY_CONDITIONS", 0, name, line, i);
      return false;
    }
    // A "deny" rule refuses the call with an errno: it does nothing, and the
    // process lives on (see seccomp/allowlist.policy for which calls and why).
    const bool deny = rule.Has("deny") && rule.Get("deny").IsNumber();
    if (deny_list && !deny) {
      // Allowing is what a deny list does by default: such a line says nothing.
      ThrowForRule(env, "ALLOW_RULE_IN_DENY_LIST", 0, name, line, i);
      return false;
    }
    const uint32_t action = deny ? SCMP_ACT_ERRNO(rule.Get("deny").As<Napi::Number>().Uint32Value()) : SCMP_ACT_ALLOW;
    // Every condition is "argument N equals VALUE" (or, on a deny rule,
    // "differs from VALUE"); all of a rule's conditions must hold; several
    // rules for one call are alternatives.
    struct scmp_arg_cmp compare[6];
    for (uint32_t c = 0; c < conditions.Length(); c++) {
      const Napi::Object condition = conditions.Get(c).As<Napi::Object>();
      const unsigned argument = condition.Get("arg").As<Napi::Number>().Uint32Value();
      bool lossless = false;
      const uint64_t value = condition.Get("value").As<Napi::BigInt>().Uint64Value(&lossless);
      const bool not_equal = condition.Has("op") && condition.Get("op").As<Napi::String>().Utf8Value() == "!=";
      if (not_equal) {
        // All 64 bits: a value differing only in bits the kernel ignores
        // (an int argument's upper half) is denied too, never let through.
        compare[c] = SCMP_CMP(argument, SCMP_CMP_NE, value);
      } else if (deny) {
        // "== VALUE" on a deny rule compares the lower 32 bits only: the
        // kernel reads an int argument (socket's family, a pid) from them,
        // so a caller setting the upper half must not slip past the rule.
        compare[c] = SCMP_CMP(argument, SCMP_CMP_MASKED_EQ, 0xffffffffULL, value);
      } else {
        // On an allow rule all 64 bits must match: anything else is not allowed.
        compare[c] = SCMP_CMP(argument, SCMP_CMP_EQ, value);
      }
    }
    error = seccomp_rule_add_exact_array(filter.get(), action, number, conditions.Length(), compare);
    if (error < 0) {
      ThrowForRule(env, "SECCOMP_RULE_FAILED", -error, name, line, i);
      return false;
    }
  }
  return true;
}

// The descriptor of an io_uring instance this process holds, or -1: none,
// or (with `*error` set to errno) the table could not be listed. Operations submitted through a ring
// are not system calls, so no filter sees them: the helper's launcher keeps
// libuv from creating one (native/launcher.c), and a runtime started some
// other way is caught here. opendir(3) of /proc/self/fd (openat(2),
// getdents64(2), closedir(3): close(2)); readlinkat(2) of each entry, whose
// target names an anonymous inode's kind.
int FindIoUring(int *error) {
  *error = 0;
  DIR *table = opendir("/proc/self/fd");
  if (!table) {
    *error = errno;
    return -1;
  }
  int found = -1;
  while (struct dirent *entry = readdir(table)) {
    if (entry->d_name[0] == '.') continue;
    char target[64];
    const ssize_t length = readlinkat(dirfd(table), entry->d_name, target, sizeof(target) - 1);
    if (length < 0) continue;  // the listing's own descriptor, or one closed meanwhile
    target[length] = '\0';
    if (strcmp(target, "anon_inode:[io_uring]") == 0) {
      found = atoi(entry->d_name);
      break;
    }
  }
  closedir(table);
  return found;
}

// Whether io_uring_setup(2) could still create an instance: not when it
// fails with ENOSYS, which only a seccomp filter (bin/passt-repair's
// launcher's, native/runtime-sandbox.h, on this process for its whole life)
// or a kernel without io_uring answers; both last. EPERM
// (kernel.io_uring_disabled) can change. Entries 0 and no parameters: no
// instance is ever made by this probe.
bool IoUringCreatable() {
  return !(syscall(SYS_io_uring_setup, 0, nullptr) < 0 && errno == ENOSYS);
}

// Throws IO_URING_OPEN (with `fd`) or LIST_DESCRIPTORS_FAILED; returns
// whether the process holds no io_uring instance.
bool NoIoUring(Napi::Env env) {
  int list_error;
  const int io_uring = FindIoUring(&list_error);
  if (list_error != 0) {
    ThrowFailure(env, "LIST_DESCRIPTORS_FAILED", list_error);
    return false;
  }
  if (io_uring >= 0) {
    ThrowFailure(env, "IO_URING_OPEN", 0, {{"fd", io_uring}});
    return false;
  }
  return true;
}

}  // namespace

// checkIoUring(): see src/native.d.ts. The probe first, then the listing:
// an instance that cannot be created after the probe and is not there at
// the listing is not there later.
Napi::Value CheckIoUring(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const bool creatable = IoUringCreatable();
  if (!NoIoUring(env)) return env.Undefined();
  return Napi::Boolean::New(env, creatable);
}

// prepareSeccompFilter(rules, mode): see src/native.d.ts.
Napi::Value PrepareSeccompFilter(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const Napi::Array rules = info[0].As<Napi::Array>();
  const std::string mode = info[1].As<Napi::String>().Utf8Value();

  // Everything not allowed below ends the whole process (SIGSYS), or in the
  // administrator's log mode is allowed and logged by the kernel; in "allow"
  // mode everything not denied below is allowed.
  FilterContext filter(DefaultAction(mode));
  if (!filter.get()) {
    ThrowFailure(env, "SECCOMP_INIT_FAILED", 0);
    return env.Undefined();
  }
  if (!AddRules(env, filter, rules, mode == "allow")) return env.Undefined();

  PreparedFilter *prepared = new PreparedFilter();
  const int error = ExportProgram(filter.get(), &prepared->program);
  if (error < 0) {
    delete prepared;
    ThrowFailure(env, "SECCOMP_EXPORT_FAILED", -error);
    return env.Undefined();
  }
  return Napi::External<PreparedFilter>::New(env, prepared, [](Napi::Env, PreparedFilter *done) { delete done; });
}

// loadSeccompFilter(prepared, checkIoUring): see src/native.d.ts.
Napi::Value LoadSeccompFilter(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  PreparedFilter *prepared = info[0].As<Napi::External<PreparedFilter>>().Data();
  if (prepared->loaded) {
    ThrowFailure(env, "SECCOMP_ALREADY_LOADED", 0);
    return env.Undefined();
  }
  // Listed again unless checkIoUring found, before connecting, that no
  // instance can appear (the caller says which).
  if (info[1].As<Napi::Boolean>().Value() && !NoIoUring(env)) return env.Undefined();
  // prctl(2) PR_SET_NO_NEW_PRIVS: required to load a filter without
  // CAP_SYS_ADMIN (gate 2 has set it on every thread already).
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
    ThrowFailure(env, "SECCOMP_LOAD_FAILED", errno);
    return env.Undefined();
  }
  struct sock_fprog program = {};
  program.len = static_cast<unsigned short>(prepared->program.size());
  program.filter = prepared->program.data();
  // seccomp(2) SECCOMP_SET_MODE_FILTER with SECCOMP_FILTER_FLAG_TSYNC: on
  // every thread of the process in one step; it fails, returning the id of
  // the thread at fault, if any thread cannot take it.
  const long result = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &program);
  if (result != 0) {
    ThrowFailure(env, "SECCOMP_LOAD_FAILED", result < 0 ? errno : ESRCH, {{"thread", static_cast<int>(result)}});
    return env.Undefined();
  }
  prepared->loaded = true;
  return env.Undefined();
}

// exportDenyList(rules, fd): see src/native.d.ts. The telemetry forwarder's
// filter, built here while the helper is privileged and installed by the
// launcher before the forwarder's runtime starts (native/launcher.c).
Napi::Value ExportDenyList(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const Napi::Array rules = info[0].As<Napi::Array>();
  const int fd = info[1].As<Napi::Number>().Int32Value();

  FilterContext filter(DefaultAction("allow"));
  if (!filter.get()) {
    ThrowFailure(env, "SECCOMP_INIT_FAILED", 0);
    return env.Undefined();
  }
  if (!AddRules(env, filter, rules, true)) return env.Undefined();
  // write(2) of the BPF program (struct sock_filter[]) to `fd`; the caller
  // owns and closes it.
  const int error = seccomp_export_bpf(filter.get(), fd);
  if (error < 0) {
    ThrowFailure(env, "SECCOMP_EXPORT_FAILED", -error);
    return env.Undefined();
  }
  return env.Undefined();
}

}  // namespace passt_repair
