// Gate 3's system calls: the seccomp filter, built with libseccomp from the
// allowlist in seccomp/ (parsed and checked in src/sandbox/seccomp.ts) and
// installed on every thread at once.
#include <seccomp.h>

#include <cerrno>
#include <string>

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

void ThrowForRule(Napi::Env env, const char *code, int error, const std::string &syscall_name, uint32_t line) {
  Napi::Error failure = Napi::Error::New(env, code);
  failure.Value().Set("code", code);
  if (error != 0) failure.Value().Set("errno", error);
  failure.Value().Set("syscall", syscall_name);
  failure.Value().Set("line", line);
  failure.ThrowAsJavaScriptException();
}

}  // namespace

// installSeccompFilter(rules, mode): see src/native.d.ts.
Napi::Value InstallSeccompFilter(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const Napi::Array rules = info[0].As<Napi::Array>();
  const bool log_only = info[1].As<Napi::String>().Utf8Value() == "log";

  // Everything not allowed below ends the whole process (SIGSYS), or in the
  // administrator's log mode is allowed and logged by the kernel.
  FilterContext filter(log_only ? SCMP_ACT_LOG : SCMP_ACT_KILL_PROCESS);
  if (!filter.get()) {
    ThrowFailure(env, "SECCOMP_INIT_FAILED", 0);
    return env.Undefined();
  }
  // Installed on every thread of the process in one step (SECCOMP_FILTER_FLAG_TSYNC),
  // which fails if any thread cannot take it.
  int error = seccomp_attr_set(filter.get(), SCMP_FLTATR_CTL_TSYNC, 1);
  if (error < 0) {
    ThrowFailure(env, "SECCOMP_ATTRIBUTE_FAILED", -error);
    return env.Undefined();
  }

  for (uint32_t i = 0; i < rules.Length(); i++) {
    const Napi::Object rule = rules.Get(i).As<Napi::Object>();
    const std::string name = rule.Get("syscall").As<Napi::String>().Utf8Value();
    const uint32_t line = rule.Get("line").As<Napi::Number>().Uint32Value();
    const int number = seccomp_syscall_resolve_name(name.c_str());
    if (number == __NR_SCMP_ERROR) {
      ThrowForRule(env, "UNKNOWN_SYSCALL", 0, name, line);
      return env.Undefined();
    }
    const Napi::Array conditions = rule.Get("args").As<Napi::Array>();
    if (conditions.Length() > 6) {
      ThrowForRule(env, "TOO_MANY_CONDITIONS", 0, name, line);
      return env.Undefined();
    }
    // Every condition is "argument N equals VALUE"; all of a rule's
    // conditions must hold; several rules for one call are alternatives.
    struct scmp_arg_cmp compare[6];
    for (uint32_t c = 0; c < conditions.Length(); c++) {
      const Napi::Object condition = conditions.Get(c).As<Napi::Object>();
      const unsigned argument = condition.Get("arg").As<Napi::Number>().Uint32Value();
      bool lossless = false;
      const uint64_t value = condition.Get("value").As<Napi::BigInt>().Uint64Value(&lossless);
      compare[c] = SCMP_CMP(argument, SCMP_CMP_EQ, value);
    }
    // A "deny" rule refuses the call with an errno: it does nothing, and the
    // process lives on (see seccomp/allowlist.policy for which calls and why).
    const uint32_t action = rule.Has("deny") && rule.Get("deny").IsNumber()
                                ? SCMP_ACT_ERRNO(rule.Get("deny").As<Napi::Number>().Uint32Value())
                                : SCMP_ACT_ALLOW;
    error = seccomp_rule_add_exact_array(filter.get(), action, number, conditions.Length(), compare);
    if (error < 0) {
      ThrowForRule(env, "SECCOMP_RULE_FAILED", -error, name, line);
      return env.Undefined();
    }
  }

  // seccomp(2) SECCOMP_SET_MODE_FILTER with TSYNC, after PR_SET_NO_NEW_PRIVS
  // (libseccomp's default, already set by gate 2).
  error = seccomp_load(filter.get());
  if (error < 0) {
    ThrowFailure(env, "SECCOMP_LOAD_FAILED", -error);
    return env.Undefined();
  }
  return env.Undefined();
}

}  // namespace passt_repair
