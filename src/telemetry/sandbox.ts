// SPDX-License-Identifier: GPL-2.0-or-later
// The telemetry forwarder's first step, before it reads anything from the
// helper or loads anything but its own modules. It starts unprivileged and
// already filtered (src/telemetry/reporter.ts, native/launcher.c); this adds
// what its launcher could not (the execve denial: the launcher still had to
// execute the runtime; not dumpable: execve made it dumpable again) and
// checks the rest on every thread.
import { native } from '../addon';
import { verifyUnprivileged } from '../sandbox/capabilities';
import { installDenyList, loadForwarderExecDenyList } from '../sandbox/seccomp';

export function completeForwarderSandbox(): void {
  installDenyList(loadForwarderExecDenyList());
  native.makeNotDumpable();
  verifyUnprivileged();
}
