// SPDX-License-Identifier: GPL-2.0-or-later
// What the policy file decides about the sandbox (its "sandbox" object).
export interface SandboxSettings {
  /**
   * The unprivileged account a helper started as root becomes, as the
   * policy names it; undefined: the default (account.ts, chooseSandboxAccount).
   */
  user: string | undefined;
  /** What the seccomp filter does with a call not in seccomp/: end the process, or only log it. */
  seccomp: 'kill' | 'log';
}
