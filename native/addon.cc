// The helper's native surface. Everything it exports is typed in
// src/native.d.ts; each function lives in the file of its concern.
#include <napi.h>

namespace passt_repair {
Napi::Value ConnectToSocketFile(const Napi::CallbackInfo &info);
Napi::Value HandleMessage(const Napi::CallbackInfo &info);
Napi::Value PeerCredentials(const Napi::CallbackInfo &info);
Napi::Value ApplyCredentials(const Napi::CallbackInfo &info);
Napi::Value InstallSeccompFilter(const Napi::CallbackInfo &info);
Napi::Value SetNonBlocking(const Napi::CallbackInfo &info);
Napi::Value MakePipe(const Napi::CallbackInfo &info);
Napi::Value OpenHostRoot(const Napi::CallbackInfo &info);
Napi::Value OpenComponent(const Napi::CallbackInfo &info);
Napi::Value OpenProcessDirectory(const Napi::CallbackInfo &info);
Napi::Value OpenProcessRoot(const Napi::CallbackInfo &info);
Napi::Value ReadProcessFile(const Napi::CallbackInfo &info);
Napi::Value ReadSymlink(const Napi::CallbackInfo &info);
Napi::Value StatObject(const Napi::CallbackInfo &info);
Napi::Value PidfdOpen(const Napi::CallbackInfo &info);
}  // namespace passt_repair

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("connectToSocketFile", Napi::Function::New(env, passt_repair::ConnectToSocketFile));
  exports.Set("handleMessage", Napi::Function::New(env, passt_repair::HandleMessage));
  exports.Set("peerCredentials", Napi::Function::New(env, passt_repair::PeerCredentials));
  exports.Set("applyCredentials", Napi::Function::New(env, passt_repair::ApplyCredentials));
  exports.Set("installSeccompFilter", Napi::Function::New(env, passt_repair::InstallSeccompFilter));
  exports.Set("setNonBlocking", Napi::Function::New(env, passt_repair::SetNonBlocking));
  exports.Set("makePipe", Napi::Function::New(env, passt_repair::MakePipe));
  exports.Set("openHostRoot", Napi::Function::New(env, passt_repair::OpenHostRoot));
  exports.Set("openComponent", Napi::Function::New(env, passt_repair::OpenComponent));
  exports.Set("openProcessDirectory", Napi::Function::New(env, passt_repair::OpenProcessDirectory));
  exports.Set("openProcessRoot", Napi::Function::New(env, passt_repair::OpenProcessRoot));
  exports.Set("readProcessFile", Napi::Function::New(env, passt_repair::ReadProcessFile));
  exports.Set("readSymlink", Napi::Function::New(env, passt_repair::ReadSymlink));
  exports.Set("statObject", Napi::Function::New(env, passt_repair::StatObject));
  exports.Set("pidfdOpen", Napi::Function::New(env, passt_repair::PidfdOpen));
  return exports;
}

NODE_API_MODULE(passt_repair, Init)
