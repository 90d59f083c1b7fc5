// SPDX-License-Identifier: GPL-2.0-or-later
// Errors cross into JavaScript as plain data: a stable code and the numbers
// that explain it. The wording lives in src/errors.ts, in one place.
#pragma once
#include <napi.h>

#include <cerrno>
#include <initializer_list>
#include <utility>

namespace passt_repair {

using Field = std::pair<const char *, int>;

// Throws a JavaScript Error whose `code` is `code`, whose `errno` is the
// system error (when nonzero) and which carries the given numeric fields.
inline void ThrowFailure(Napi::Env env, const char *code, int error,
                         std::initializer_list<Field> fields = {}) {
  Napi::Error failure = Napi::Error::New(env, code);
  Napi::Object object = failure.Value();
  object.Set("code", code);
  if (error != 0) object.Set("errno", error);
  for (const Field &field : fields) object.Set(field.first, field.second);
  failure.ThrowAsJavaScriptException();
}

}  // namespace passt_repair
