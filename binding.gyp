# SPDX-License-Identifier: GPL-2.0-or-later
{
  "targets": [
    {
      "target_name": "passt_repair",
      "sources": [
        "native/addon.cc",
        "native/connect.cc",
        "native/resolve.cc",
        "native/protocol.cc",
        "native/credentials.cc",
        "native/capabilities.cc",
        "native/seccomp.cc",
        "native/descriptors.cc",
        "native/signals.cc",
        "native/worker.cc"
      ],
      "libraries": [
        "-lseccomp"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_DISABLE_CPP_EXCEPTIONS",
        "NODE_ADDON_API_DISABLE_DEPRECATED"
      ],
      "cflags_cc": [
        "-std=c++17",
        "-O2",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-fstack-protector-strong",
        "-D_FORTIFY_SOURCE=2"
      ],
      "ldflags": [
        "-Wl,-z,relro,-z,now"
      ]
    },
    {
      "target_name": "passt_repair_launcher",
      "type": "executable",
      "sources": [
        "native/launcher.c",
        "native/runtime-sandbox.h"
      ],
      "cflags": [
        "-O2",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-fstack-protector-strong",
        "-D_FORTIFY_SOURCE=2"
      ],
      "ldflags": [
        "-Wl,-z,relro,-z,now"
      ],
      "libraries": [
        "-lseccomp"
      ]
    }
  ]
}
