// The helper's native surface. Everything it exports is typed in
// src/native.d.ts; each function lives in the file of its concern.
#include <napi.h>

namespace passt_repair {
Napi::Value ConnectToSocketFile(const Napi::CallbackInfo &info);
Napi::Value HandleMessage(const Napi::CallbackInfo &info);
Napi::Value PeerCredentials(const Napi::CallbackInfo &info);
Napi::Value ApplyCredentials(const Napi::CallbackInfo &info);
Napi::Value PrepareSeccompFilter(const Napi::CallbackInfo &info);
Napi::Value LoadSeccompFilter(const Napi::CallbackInfo &info);
Napi::Value SetNonBlocking(const Napi::CallbackInfo &info);
Napi::Value WriteSome(const Napi::CallbackInfo &info);
Napi::Value MakePipe(const Napi::CallbackInfo &info);
}  // namespace passt_repair

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("connectToSocketFile", Napi::Function::New(env, passt_repair::ConnectToSocketFile));
  exports.Set("handleMessage", Napi::Function::New(env, passt_repair::HandleMessage));
  exports.Set("peerCredentials", Napi::Function::New(env, passt_repair::PeerCredentials));
  exports.Set("applyCredentials", Napi::Function::New(env, passt_repair::ApplyCredentials));
  exports.Set("prepareSeccompFilter", Napi::Function::New(env, passt_repair::PrepareSeccompFilter));
  exports.Set("loadSeccompFilter", Napi::Function::New(env, passt_repair::LoadSeccompFilter));
  exports.Set("setNonBlocking", Napi::Function::New(env, passt_repair::SetNonBlocking));
  exports.Set("writeSome", Napi::Function::New(env, passt_repair::WriteSome));
  exports.Set("makePipe", Napi::Function::New(env, passt_repair::MakePipe));
  return exports;
}

NODE_API_MODULE(passt_repair, Init)
