// SPDX-License-Identifier: GPL-2.0-or-later
// The helper's native surface. Everything it exports is typed in
// src/native.d.ts; each function lives in the file of its concern.
#include <napi.h>

namespace passt_repair {
Napi::Value ConnectToSocketFile(const Napi::CallbackInfo &info);
Napi::Value ServeRequests(const Napi::CallbackInfo &info);
Napi::Value SendFailure(const Napi::CallbackInfo &info);
Napi::Value StartWorker(const Napi::CallbackInfo &info);
Napi::Value CatchSignals(const Napi::CallbackInfo &info);
Napi::Value PendingSignalValue(const Napi::CallbackInfo &info);
Napi::Value PeerCredentials(const Napi::CallbackInfo &info);
Napi::Value ApplyCredentials(const Napi::CallbackInfo &info);
Napi::Value ApplyToCallingThread(const Napi::CallbackInfo &info);
Napi::Value ReadOwnCredentials(const Napi::CallbackInfo &info);
Napi::Value HoldThreads(const Napi::CallbackInfo &info);
Napi::Value ReleaseThreads(const Napi::CallbackInfo &info);
Napi::Value ExportDenyList(const Napi::CallbackInfo &info);
Napi::Value MakeNotDumpable(const Napi::CallbackInfo &info);
Napi::Value PrepareSeccompFilter(const Napi::CallbackInfo &info);
Napi::Value LoadSeccompFilter(const Napi::CallbackInfo &info);
Napi::Value CheckIoUring(const Napi::CallbackInfo &info);
Napi::Value SetNonBlocking(const Napi::CallbackInfo &info);
Napi::Value WriteSome(const Napi::CallbackInfo &info);
Napi::Value MakePipe(const Napi::CallbackInfo &info);
Napi::Value WaitWritable(const Napi::CallbackInfo &info);
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
  exports.Set("serveRequests", Napi::Function::New(env, passt_repair::ServeRequests));
  exports.Set("sendFailure", Napi::Function::New(env, passt_repair::SendFailure));
  exports.Set("startWorker", Napi::Function::New(env, passt_repair::StartWorker));
  exports.Set("catchSignals", Napi::Function::New(env, passt_repair::CatchSignals));
  exports.Set("pendingSignal", Napi::Function::New(env, passt_repair::PendingSignalValue));
  exports.Set("peerCredentials", Napi::Function::New(env, passt_repair::PeerCredentials));
  exports.Set("applyCredentials", Napi::Function::New(env, passt_repair::ApplyCredentials));
  exports.Set("applyToCallingThread", Napi::Function::New(env, passt_repair::ApplyToCallingThread));
  exports.Set("readOwnCredentials", Napi::Function::New(env, passt_repair::ReadOwnCredentials));
  exports.Set("holdThreads", Napi::Function::New(env, passt_repair::HoldThreads));
  exports.Set("releaseThreads", Napi::Function::New(env, passt_repair::ReleaseThreads));
  exports.Set("exportDenyList", Napi::Function::New(env, passt_repair::ExportDenyList));
  exports.Set("makeNotDumpable", Napi::Function::New(env, passt_repair::MakeNotDumpable));
  exports.Set("prepareSeccompFilter", Napi::Function::New(env, passt_repair::PrepareSeccompFilter));
  exports.Set("loadSeccompFilter", Napi::Function::New(env, passt_repair::LoadSeccompFilter));
  exports.Set("checkIoUring", Napi::Function::New(env, passt_repair::CheckIoUring));
  exports.Set("setNonBlocking", Napi::Function::New(env, passt_repair::SetNonBlocking));
  exports.Set("writeSome", Napi::Function::New(env, passt_repair::WriteSome));
  exports.Set("makePipe", Napi::Function::New(env, passt_repair::MakePipe));
  exports.Set("waitWritable", Napi::Function::New(env, passt_repair::WaitWritable));
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
