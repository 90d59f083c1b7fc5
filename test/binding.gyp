# SPDX-License-Identifier: GPL-2.0-or-later
# The test and benchmark doubles' native code: built by "npm run build:test",
# never packed. The helper's own build is ../binding.gyp.
{
  "targets": [
    {
      "target_name": "passt_double",
      "sources": [
        "native/passt-double.cc"
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
        "-Werror"
      ]
    },
    {
      "target_name": "passt_syscall_probe",
      "sources": [
        "native/syscall-probe.cc"
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
        "-Werror"
      ]
    },
    {
      "target_name": "runtime_launcher",
      "type": "executable",
      "sources": [
        "native/runtime-launcher.c",
        "../native/runtime-sandbox.h"
      ],
      "cflags": [
        "-O2",
        "-Wall",
        "-Wextra",
        "-Werror"
      ],
      "libraries": [
        "-lseccomp"
      ]
    }
  ]
}
