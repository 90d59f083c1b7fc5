// SPDX-License-Identifier: GPL-2.0-or-later
// The helper's side of telemetry: a pipe, set up while the helper is still
// privileged, to a forwarder process (forwarder.ts) that is never privileged
// (spawnForwarder) and sends the reports to Sentry. The helper itself never loads
// the Sentry SDK and never opens a network socket (its seccomp filter
// forbids it); it only writes scrubbed JSON lines to the pipe, and never
// waits to do so: a line the pipe has no room for is dropped and counted.
//
// Loaded only when the policy names a DSN (src/main.ts): with telemetry off,
// neither this module nor child_process is loaded and no process is started.
import { spawn, type ChildProcess, type IOType } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { native } from '../addon';
import { NonBlockingWriter } from '../log/writer';
import type { SentrySettings } from '../policy';
import { lookUpAccount } from '../sandbox/account';
import { loadForwarderDenyList } from '../sandbox/seccomp';
import { FLUSH_TIMEOUT_MS, type EndLine, type FailureReport, type ForwarderConfig, type ReportLine, type Reporter } from './report';
import { scrubReport } from './scrub';

/** dist/src/telemetry/forwarder.js, beside this file. */
export const FORWARDER = path.join(__dirname, 'forwarder.js');
/** The package's root: its files are named relative to it in reports. */
export const PACKAGE_ROOT = path.resolve(__dirname, '../../..');
/** native/launcher.c, which installs the forwarder's filter before its runtime starts. */
const LAUNCHER = path.join(PACKAGE_ROOT, 'build/Release/passt_repair_launcher');

/** What the helper waits for the forwarder beyond its own flush bound: its exit and the SIGCHLD that tells of it. */
const EXIT_GRACE_MS = 500;
/** How often close() tries again to write the end line into a full pipe. */
const RETRY_MS = 10;

/**
 * The forwarder's whole environment: nothing of the helper's (which the
 * launcher already cleaned). No DSN in it nor in the arguments: those are
 * readable in /proc by anyone; the DSN goes through the pipe.
 */
const ENVIRONMENT = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', UV_USE_IO_URING: '0' };

const STDERR = 2;

function isOpen(fd: number): boolean {
  try {
    fs.fstatSync(fd);
    return true;
  } catch {
    return false;
  }
}

/** Whether this process has uid, gid or a group 0: then the forwarder gets the sandbox account's ids. */
function runsPrivileged(): boolean {
  return [process.getuid!(), process.geteuid!(), process.getgid!(), process.getegid!(), ...process.getgroups!()].includes(0);
}

/**
 * Starts `script` on the helper's runtime as the forwarder runs, from its
 * first instruction on: as `user` (the sandbox account) when this process is
 * privileged, else with this process's ids (libuv drops the supplementary
 * groups and calls setgid and setuid before execve, which empties every
 * capability set), then the launcher clears the ambient set, sets
 * NO_NEW_PRIVS and installs the forwarder's filter (seccomp/forwarder.policy,
 * built here as a BPF program and passed on a pipe) before it executes the
 * runtime (native/launcher.c). `stdio` are the child's first descriptors;
 * the filter's pipe comes after them. Throws if it cannot be started so.
 * Exported for the tests, which probe this sandbox from inside it.
 */
export function spawnForwarder(script: string, user: string, stdio: readonly (number | IOType)[]): ChildProcess {
  const account = runsPrivileged() ? lookUpAccount(user) : null;
  const filter = native.makePipe();
  try {
    try {
      // A program is a few hundred bytes, far below a pipe's room; if it
      // ever were not, the export fails instead of waiting.
      native.setNonBlocking(filter.write);
      native.exportDenyList(loadForwarderDenyList(), filter.write);
    } finally {
      fs.closeSync(filter.write);
    }
    return spawn(LAUNCHER, [`--seccomp-fd=${stdio.length}`, script], {
      stdio: [...stdio, filter.read],
      env: ENVIRONMENT,
      cwd: '/',
      ...(account && { uid: account.uid, gid: account.gid }),
    });
  } finally {
    fs.closeSync(filter.read);
  }
}

function line(value: ForwarderConfig | ReportLine | EndLine): string {
  return `${JSON.stringify(value)}\n`;
}

/**
 * Starts the forwarder, before any privilege is dropped (main.ts calls it
 * right after the policy is loaded): setting its ids takes CAP_SETUID and
 * CAP_SETGID. Never throws: if the forwarder cannot be started, reports are
 * dropped (and counted in `dropped`), and the helper serves passt all the
 * same.
 */
export function startReporter(settings: SentrySettings, sandboxUser: string, release: string): Reporter {
  let writer: NonBlockingWriter | undefined;
  let child: ChildProcess | undefined;
  let exited = false;
  let dropped = 0;
  let written = 0;
  let writeEnd: number | undefined;
  try {
    const pipe = native.makePipe();
    writeEnd = pipe.write;
    try {
      // stdin: the pipe's read end (dup2'd onto 0, which clears its
      // O_CLOEXEC); the write end stays behind (O_CLOEXEC), so the
      // forwarder sees the end of input when the helper closes it or dies.
      // Its standard output and error are /dev/null: the helper's standard
      // error (the audit log) is lent to it as descriptor 3 only for saying
      // why its set-up failed, and it closes it before it loads the SDK or
      // reads a report (forwarder.ts). Shared for longer, a forwarder taken
      // over through the SDK could write lines into the audit log, or clear
      // O_NONBLOCK on it (a flag of the open file, not of the descriptor) so
      // that the helper's next log line waits on a stalled reader.
      child = spawnForwarder(FORWARDER, sandboxUser, [pipe.read, 'ignore', 'ignore', isOpen(STDERR) ? STDERR : 'ignore']);
    } finally {
      fs.closeSync(pipe.read);
    }
    // The forwarder must not keep the helper alive: close() waits for it, a bounded time.
    child.unref();
    // A forwarder that could not start or has died costs reports, never the helper.
    child.on('error', () => (exited = true));
    child.on('exit', () => (exited = true));
    native.setNonBlocking(pipe.write);
    writer = new NonBlockingWriter(pipe.write);
    const config: ForwarderConfig = { type: 'config', dsn: settings.dsn, environment: settings.environment, release };
    writer.write(line(config));
  } catch {
    // Not started, or no channel to it: every report is dropped, and the
    // forwarder (if any) sees the end of its input at once and exits.
    writer = undefined;
    if (writeEnd !== undefined) {
      try {
        fs.closeSync(writeEnd);
      } catch {
        // never opened
      }
    }
  }

  let closing: Promise<void> | undefined;

  const reporter: Reporter = {
    get dropped() {
      return dropped;
    },
    report(failure: FailureReport): void {
      try {
        if (writer === undefined || closing !== undefined) throw undefined;
        const scrubbed = scrubReport(failure, { include: settings.include, packageRoot: PACKAGE_ROOT });
        if (writer.write(line({ type: 'report', ...scrubbed, time: Date.now() / 1000 }))) written++;
        else dropped++;
      } catch {
        dropped++;
      }
    },
    close(): Promise<void> {
      closing ??= (async () => {
        if (writer === undefined) return;
        const deadline = Date.now() + FLUSH_TIMEOUT_MS + EXIT_GRACE_MS;
        const end = line({ type: 'end', dropped });
        // The end line tells the forwarder this was an orderly end, not a
        // kill: worth a few tries if the pipe is full for a moment.
        while (!writer.write(end) && !exited && Date.now() < deadline)
          await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
        try {
          fs.closeSync(writer.fd);
        } catch {
          // already gone: nothing to flush
        }
        // Nothing reported, nothing to flush: the forwarder sees the end of
        // its input and exits on its own, the helper need not wait for it.
        if (written === 0 || child === undefined || exited) return;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, Math.max(0, deadline - Date.now()));
          child!.once('exit', () => {
            clearTimeout(timer);
            resolve();
          });
        });
      })();
      return closing;
    },
  };
  return reporter;
}
