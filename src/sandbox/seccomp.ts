// SPDX-License-Identifier: GPL-2.0-or-later
// Gate 3: the seccomp filter. The allowlist is data (seccomp/allowlist.policy);
// this file reads and checks it, and native/seccomp.cc builds and installs it
// on every thread. The last step before the protocol loop. The telemetry
// forwarder's deny list (seccomp/forwarder.policy) goes the same way.
import * as fs from 'node:fs';
import { constants } from 'node:os';
import * as path from 'node:path';
import { native } from '../addon';
import { HelperError, isNativeFailure, systemMessage } from '../errors';
import type { PreparedSeccompFilter, SeccompRule } from '../native.d';
import type { SandboxSettings } from './settings';

/**
 * seccomp/NAME.policy: the filters' data, one system call a line
 * (seccomp/README.md). A function, not constants: this module is loaded
 * into the start-up snapshot at build time (scripts/build-snapshot.js),
 * where __dirname is not yet the installed package's.
 */
export function seccompFile(name: string): string {
  return path.resolve(__dirname, '../../../seccomp', `${name}.policy`);
}

/** The names an argument filter may use, with the kernel's values (x86_64 and every other Linux). */
const CONSTANTS: Readonly<Record<string, bigint>> = {
  SOL_SOCKET: 1n,
  SO_TYPE: 3n,
  SO_PROTOCOL: 38n,
  SO_DOMAIN: 39n,
  SOL_TCP: 6n,
  TCP_INFO: 11n,
  TCP_REPAIR: 19n,
  F_GETFL: 3n,
  F_SETFL: 4n,
  F_SETOWN: 8n,
  F_SETSIG: 10n,
  F_SETOWN_EX: 15n,
  F_SETLEASE: 1024n,
  F_NOTIFY: 1026n,
  TCGETS: 0x5401n,
  TCSETS: 0x5402n,
  TIOCSPGRP: 0x5410n,
  FIOSETOWN: 0x8901n,
  SIOCSPGRP: 0x8902n,
  AF_UNIX: 1n,
  PRIO_PROCESS: 0n,
  IOPRIO_WHO_PROCESS: 1n,
};

/** One condition of a line: "argument `arg` equals `value`", or with `op` "!=", differs from it (deny lines only). */
export interface PolicyCondition {
  arg: number;
  value: bigint;
  op?: '!=';
}

/** One line of a file in seccomp/, with the file it came from (for errors). */
export interface PolicyRule extends SeccompRule {
  args: PolicyCondition[];
  file: string;
}

/**
 * What a file in seccomp/ is: an allowlist (the helper's: anything not
 * listed kills) or a deny list (the forwarder's: anything not listed is
 * allowed, so every line must deny).
 */
export type PolicyKind = 'allowlist' | 'denylist';

const LINE = /^([a-z0-9_]+)(?:\s*:\s*(.+?))?\s+#\s*(\S.*)$/;
const CONDITION = /^arg([0-5])\s*(==|!=)\s*([A-Z_][A-Z0-9_]*|\d+)$/;
const DENY = /^deny\s+(E[A-Z0-9]+)$/;
const UINT32_MAX = 0xffffffffn;

/**
 * Parses one file of seccomp/; any line it does not understand is an error
 * naming file and line. A line is
 *
 *   NAME                                        # reason
 *   NAME: argN == VALUE && argM == VALUE        # reason (allowed with these arguments)
 *   NAME: deny ERRNO                            # reason (refused with ERRNO)
 *   NAME: argN == VALUE && ... && deny ERRNO    # reason (refused with ERRNO when the conditions hold)
 *
 * A deny line's conditions may also be "argN != VALUE". See seccomp/README.md.
 */
export function parseSeccompPolicy(text: string, file: string, kind: PolicyKind = 'allowlist'): PolicyRule[] {
  const rules: PolicyRule[] = [];
  text.split('\n').forEach((raw, index) => {
    const line = index + 1;
    const trimmed = raw.trim();
    if (trimmed === '' || trimmed.startsWith('#')) return;
    const where = `${file}:${line}`;
    const match = LINE.exec(trimmed);
    if (!match) throw new HelperError(`${where}: expected "NAME  # reason" or "NAME: argN == VALUE && ...  # reason"`);
    const [, syscall, conditions] = match as unknown as [string, string, string | undefined];
    const terms = conditions === undefined ? [] : conditions.split('&&').map((term) => term.trim());
    // "deny ERRNO" is the last term when present.
    const denyMatch = terms.length > 0 ? DENY.exec(terms[terms.length - 1]!) : null;
    let deny: number | undefined;
    if (denyMatch) {
      terms.pop();
      deny = (constants.errno as Record<string, number>)[denyMatch[1]!];
      if (deny === undefined) throw new HelperError(`${where}: unknown error name ${denyMatch[1]}`);
    }
    if (kind === 'denylist' && deny === undefined)
      throw new HelperError(`${where}: a deny list only denies: expected "NAME: deny ERRNO" or "NAME: argN == VALUE && ... && deny ERRNO"`);
    const args = terms.map((term): PolicyCondition => {
      if (DENY.test(term)) throw new HelperError(`${where}: "${term}" must come last, after the conditions`);
      const condition = CONDITION.exec(term);
      if (!condition) throw new HelperError(`${where}: "${term}" is not "argN == VALUE" (or, on a deny line, "argN != VALUE")`);
      const [, arg, op, value] = condition as unknown as [string, string, '==' | '!=', string];
      const number = /^\d+$/.test(value) ? BigInt(value) : CONSTANTS[value];
      if (number === undefined) throw new HelperError(`${where}: unknown constant ${value}`);
      if (op === '!=') {
        // On an allow line, "!=" would let through a value that differs only
        // in bits the kernel ignores (an int argument's upper half).
        if (deny === undefined) throw new HelperError(`${where}: "${term}": "!=" is only for deny lines; an allow line compares with "=="`);
        return { arg: Number(arg), value: number, op };
      }
      // A deny line's "==" compares the lower 32 bits (native/seccomp.cc).
      if (deny !== undefined && number > UINT32_MAX)
        throw new HelperError(`${where}: "${term}": a deny line's "==" compares the argument's lower 32 bits; ${value} does not fit`);
      return { arg: Number(arg), value: number };
    });
    rules.push(deny === undefined ? { syscall, args, line, file } : { syscall, args, line, file, deny });
  });
  return rules;
}

/** Reads and parses seccomp/NAME.policy. */
export function loadSeccompPolicy(name: string, kind: PolicyKind = 'allowlist'): PolicyRule[] {
  if (!/^[a-z0-9-]+$/.test(name)) throw new HelperError(`"${name}" is not the name of a file in seccomp/`);
  const file = seccompFile(name);
  return parseSeccompPolicy(fs.readFileSync(file, 'utf8'), file, kind);
}

/**
 * The helper's allowlist, read while still privileged; with `telemetry`,
 * what the helper needs only when the forwarder exists is added
 * (seccomp/telemetry.policy: reaping it when it exits).
 */
export function loadAllowlist(options: { telemetry?: boolean } = {}): PolicyRule[] {
  const rules = loadSeccompPolicy('allowlist');
  return options.telemetry === true ? [...rules, ...loadSeccompPolicy('telemetry')] : rules;
}

/** The forwarder's deny list (seccomp/forwarder.policy). */
export function loadForwarderDenyList(): PolicyRule[] {
  return loadSeccompPolicy('forwarder', 'denylist');
}

/** What the forwarder adds to it itself (seccomp/forwarder-exec.policy). */
export function loadForwarderExecDenyList(): PolicyRule[] {
  return loadSeccompPolicy('forwarder-exec', 'denylist');
}

/** Puts a failure of native.prepareSeccompFilter or loadSeccompFilter into words, naming the file and line of the rule at fault. */
function filterFailure(error: unknown, rules: readonly SeccompRule[], fallbackFile: string): unknown {
  if (!isNativeFailure(error)) return error;
  const rule = typeof error.index === 'number' ? (rules[error.index] as Partial<PolicyRule> | undefined) : undefined;
  const where = `${rule?.file ?? fallbackFile}:${error.line as number}`;
  if (error.code === 'UNKNOWN_SYSCALL') return new HelperError(`${where}: this platform has no system call "${error.syscall as string}"`);
  if (error.code === 'ALLOW_RULE_IN_DENY_LIST') return new HelperError(`${where}: a deny list only denies`);
  if (error.code === 'IO_URING_OPEN')
    return new HelperError(`descriptor ${error.fd as number} is an io_uring instance, which seccomp cannot filter; start the helper through bin/passt-repair`);
  if (error.line !== undefined) return new HelperError(`${where}: cannot add "${error.syscall as string}" to the seccomp filter (${error.code}): ${systemMessage(error.errno)}`);
  return new HelperError(`cannot install the seccomp filter (${error.code}): ${systemMessage(error.errno)}`);
}

/**
 * Gate 3's first half, before the helper connects: the filter built from the
 * allowlist (read while still privileged, loadAllowlist) and its program
 * generated, so that passt never waits for it. The runtime must not create
 * process.stderr after the filter (Node.js does so with calls the filter
 * forbids): the serving helper replaces it first (RuntimeMessages, src/log).
 */
export function prepareSeccompFilter(settings: SandboxSettings, rules: readonly SeccompRule[]): PreparedSeccompFilter {
  try {
    return native.prepareSeccompFilter(rules, settings.seccomp);
  } catch (error) {
    throw filterFailure(error, rules, seccompFile('allowlist'));
  }
}

/** What gate 3's io_uring check before connecting found (refuseIoUring). */
export interface IoUringCheck {
  /** An io_uring instance could still be created before the filter loads, so the load looks again. */
  creatable: boolean;
}

/**
 * Gate 3's io_uring check, before connecting: refuses if the runtime holds
 * an io_uring instance (operations submitted through one bypass seccomp;
 * bin/passt-repair's launcher keeps libuv from creating any,
 * native/launcher.c). Where io_uring_setup(2) fails with ENOSYS (the
 * launcher's filter, for the process's whole life, or a kernel without
 * io_uring), none can appear later and the load after connect need not
 * list the descriptors again, which costs passt ~50 us.
 */
export function refuseIoUring(): IoUringCheck {
  try {
    return { creatable: native.checkIoUring() };
  } catch (error) {
    throw filterFailure(error, [], seccompFile('allowlist'));
  }
}

/**
 * Gate 3, after the peer check: the prepared filter loaded on every thread,
 * refused if an io_uring instance is open (looked for again only when one
 * could have been created since `ioUring`'s check). After it, any call not
 * in the allowlist ends the process (or, in log mode, is logged by the
 * kernel).
 */
export function installSeccompFilter(filter: PreparedSeccompFilter, ioUring: IoUringCheck): void {
  try {
    native.loadSeccompFilter(filter, ioUring.creatable);
  } catch (error) {
    throw filterFailure(error, [], seccompFile('allowlist'));
  }
}

/**
 * A filter for the forwarder: every call allowed but those `rules` deny
 * (loadForwarderExecDenyList), on every thread; a call through another ABI
 * kills the process. Refused with an io_uring instance open, as gate 3 is:
 * io_uring can create and connect sockets without a system call.
 */
export function installDenyList(rules: readonly SeccompRule[]): void {
  try {
    native.loadSeccompFilter(native.prepareSeccompFilter(rules, 'allow'), true);
  } catch (error) {
    throw filterFailure(error, rules, seccompFile('forwarder-exec'));
  }
}
