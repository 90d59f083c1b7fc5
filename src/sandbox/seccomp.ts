// Gate 3: the seccomp filter. The allowlist is data (seccomp/allowlist.policy);
// this file reads and checks it, and native/seccomp.cc builds and installs it
// on every thread. The last step before the protocol loop.
import * as fs from 'node:fs';
import { constants } from 'node:os';
import * as path from 'node:path';
import { native } from '../addon';
import { HelperError, isNativeFailure, systemMessage } from '../errors';
import type { SeccompRule } from '../native.d';
import type { SandboxSettings } from './settings';

export const ALLOWLIST = path.resolve(__dirname, '../../../seccomp/allowlist.policy');

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
  TCGETS: 0x5401n,
  TCSETS: 0x5402n,
};

const LINE = /^([a-z0-9_]+)(?:\s*:\s*(.+?))?\s+#\s*(\S.*)$/;
const CONDITION = /^arg([0-5])\s*==\s*([A-Z_][A-Z0-9_]*|\d+)$/;
const DENY = /^deny\s+(E[A-Z0-9]+)$/;

/** Parses the allowlist; any line it does not understand is an error naming file and line. */
export function parseAllowlist(text: string, file: string): SeccompRule[] {
  const rules: SeccompRule[] = [];
  text.split('\n').forEach((raw, index) => {
    const line = index + 1;
    const trimmed = raw.trim();
    if (trimmed === '' || trimmed.startsWith('#')) return;
    const where = `${file}:${line}`;
    const match = LINE.exec(trimmed);
    if (!match) throw new HelperError(`${where}: expected "NAME  # reason" or "NAME: argN == VALUE && ...  # reason"`);
    const [, syscall, conditions] = match as unknown as [string, string, string | undefined];
    const deny = DENY.exec(conditions?.trim() ?? '');
    if (deny) {
      const errno = (constants.errno as Record<string, number>)[deny[1]!];
      if (errno === undefined) throw new HelperError(`${where}: unknown error name ${deny[1]}`);
      rules.push({ syscall, args: [], line, deny: errno });
      return;
    }
    const args = (conditions === undefined ? [] : conditions.split('&&')).map((text) => {
      const condition = CONDITION.exec(text.trim());
      if (!condition) throw new HelperError(`${where}: "${text.trim()}" is not "argN == VALUE"`);
      const [, arg, value] = condition as unknown as [string, string, string];
      const number = /^\d+$/.test(value) ? BigInt(value) : CONSTANTS[value];
      if (number === undefined) throw new HelperError(`${where}: unknown constant ${value}`);
      return { arg: Number(arg), value: number };
    });
    rules.push({ syscall, args, line });
  });
  return rules;
}

export function loadAllowlist(): SeccompRule[] {
  return parseAllowlist(fs.readFileSync(ALLOWLIST, 'utf8'), ALLOWLIST);
}

/**
 * Fails closed if the runtime holds an io_uring instance: operations
 * submitted through one bypass seccomp. bin/passt-repair's launcher keeps
 * libuv from creating any (native/launcher.c).
 */
export function assertNoIoUring(): void {
  for (const entry of fs.readdirSync('/proc/self/fd')) {
    let target: string;
    try {
      target = fs.readlinkSync(`/proc/self/fd/${entry}`);
    } catch {
      continue; // the directory's own descriptor, closed once listed
    }
    if (target === 'anon_inode:[io_uring]')
      throw new HelperError(
        `descriptor ${entry} is an io_uring instance, which seccomp cannot filter; start the helper through bin/passt-repair`,
      );
  }
}

/** Gate 3, with the allowlist read before the privileges went (loadAllowlist). After it, any call not in the allowlist ends the process (or, in log mode, is logged by the kernel). */
export function installSeccompFilter(settings: SandboxSettings, rules: readonly SeccompRule[]): void {
  assertNoIoUring();
  // Node creates process.stderr on first use, with calls the filter forbids
  // (ioctl FIONBIO, getsockname for a socket such as journald's). The
  // helper's messages after this point need it: create it now.
  void process.stderr;
  try {
    native.installSeccompFilter(rules, settings.seccomp);
  } catch (error) {
    if (!isNativeFailure(error)) throw error;
    if (error.code === 'UNKNOWN_SYSCALL')
      throw new HelperError(`${ALLOWLIST}:${error.line as number}: this platform has no system call "${error.syscall as string}"`);
    throw new HelperError(`cannot install the seccomp filter (${error.code}): ${systemMessage(error.errno)}`);
  }
}
