// SPDX-License-Identifier: GPL-2.0-or-later
// The telemetry forwarder: a process of its own (`node forwarder.js`,
// started by reporter.ts while the helper is still privileged), between the
// sandboxed helper and Sentry. It reads the helper's scrubbed reports from
// its standard input, one JSON line each (report.ts), and sends them to the
// policy's DSN with the Sentry SDK.
//
// It is never privileged: it starts as the sandbox account (or the helper's
// own unprivileged ids), with no capability, NO_NEW_PRIVS and its seccomp
// filter already installed by its launcher, a deny list
// (seccomp/forwarder.policy): no UNIX socket (so never passt's repair
// socket), no signal, ptrace or resource change aimed at another process,
// no descriptor owner that would make the kernel signal one (the helper
// runs as the same account). Its first step (sandbox.ts) adds the
// execve denial, makes it not dumpable and checks all that on every thread.
// It never holds passt's socket: it starts before the helper connects, and
// keeps no descriptor but its standard input (the pipe) and /dev/null as
// output and error: it closes anything the helper's caller let through
// first, and the helper's standard error (lent as descriptor 3 to say why
// the set-up failed) once set up.
//
// The SDK is loaded only when the first report arrives: a run without a
// failure never loads it. At the end of its input it sends what it holds
// within FLUSH_TIMEOUT_MS and exits; an end of input without the helper's
// "end" line means the helper was killed, which is reported too.
//
// Anything wrong with the forwarder's set-up (its configuration, its
// privileges, its filter) is one line on the helper's standard error and
// exit 1: the helper goes on serving passt without it. Later failures (a
// Sentry out of reach) cost reports, and are not said anywhere.
import * as fs from 'node:fs';
import type { Event, StackFrame } from '@sentry/node';
import { HelperError } from '../errors';
import { completeForwarderSandbox } from './sandbox';
import { FLUSH_TIMEOUT_MS, type ChannelLine, type ForwarderConfig, type ReportLine } from './report';

type Sentry = typeof import('@sentry/node');

const STDIN = 0;
const STDERR = 2;
/**
 * The helper's standard error, lent for the set-up alone (reporter.ts):
 * closed once privileges are gone and the filter is in place, before the
 * SDK is loaded or any report read. The forwarder's own standard error is
 * /dev/null.
 */
const SETUP_ERRORS = 3;
let setupErrors: number | undefined = SETUP_ERRORS;
/** A line from the helper is a few kilobytes (scrub.ts cuts messages and stacks); anything far larger is not one. */
const MAX_LINE_BYTES = 1 << 20;
/** The forwarder's own hard stop after its input ends, a little past the flush bound. */
const HARD_STOP_MS = FLUSH_TIMEOUT_MS + 200;

function say(message: string): void {
  if (setupErrors === undefined) return;
  try {
    fs.writeSync(setupErrors, `passt-repair (telemetry forwarder): ${message}\n`);
  } catch {
    // full (it is the helper's, non-blocking) or not there: nothing else to tell it with
  }
}

function fail(message: string): never {
  say(message);
  process.exit(1);
}

/**
 * Closes every descriptor above standard error (but the set-up's) that came through execve():
 * whatever the helper's own caller left open without O_CLOEXEC (which Node's
 * spawn passes on). Node's own descriptors are all O_CLOEXEC; an inherited
 * one never is, or it would not be here (/proc/self/fdinfo shows the flag).
 */
function closeInheritedDescriptors(): void {
  const O_CLOEXEC = 0o2000000;
  for (const entry of fs.readdirSync('/proc/self/fd')) {
    const fd = Number(entry);
    if (fd <= STDERR || fd === SETUP_ERRORS) continue;
    let flags: number;
    try {
      const line = /^flags:\s*([0-7]+)$/m.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
      if (line === null) continue;
      flags = parseInt(line[1]!, 8);
    } catch {
      continue; // the directory's own descriptor, closed once listed
    }
    if ((flags & O_CLOEXEC) === 0) fs.closeSync(fd);
  }
}

function isConfig(value: unknown): value is ForwarderConfig {
  const config = value as Partial<ForwarderConfig> | null;
  return (
    typeof config === 'object' &&
    config !== null &&
    config.type === 'config' &&
    typeof config.dsn === 'string' &&
    typeof config.environment === 'string' &&
    typeof config.release === 'string'
  );
}

/**
 * The first line, read before anything else (blocking: the helper writes it
 * right after starting the forwarder). Returns it with whatever came after it.
 */
function readConfig(): { config: ForwarderConfig; rest: Buffer } {
  const chunk = Buffer.alloc(64 * 1024);
  let received = Buffer.alloc(0);
  for (;;) {
    let count: number;
    try {
      count = fs.readSync(STDIN, chunk, 0, chunk.length, null);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EINTR') continue;
      fail(`cannot read the configuration from the helper: ${(error as Error).message}`);
    }
    if (count === 0) fail('the helper closed the channel before sending the configuration');
    received = Buffer.concat([received, chunk.subarray(0, count)]);
    const newline = received.indexOf(0x0a);
    if (newline < 0) {
      if (received.length > MAX_LINE_BYTES) fail('the configuration line is too long');
      continue;
    }
    let config: unknown;
    try {
      config = JSON.parse(received.subarray(0, newline).toString('utf8'));
    } catch {
      fail('the configuration line is not JSON');
    }
    if (!isConfig(config)) fail('the configuration line lacks "dsn", "environment" or "release"');
    return { config, rest: received.subarray(newline + 1) };
  }
}

/** "request refused: descriptor 3 of 3 ..." and "... descriptor 1 of 2 ..." are one issue: numbers out. */
export function messageTemplate(message: string): string {
  return message.replace(/\b\d+\b/g, 'N');
}

class Forwarder {
  #sentry: Sentry | undefined;
  #ended = false;
  #finishing = false;

  constructor(readonly config: ForwarderConfig) {}

  /** The SDK, loaded and set up on first use: a run without a failure never pays for it. */
  #load(): Sentry {
    if (this.#sentry !== undefined) return this.#sentry;
    const sentry = require('@sentry/node') as Sentry;
    sentry.init({
      dsn: this.config.dsn,
      release: `passt-repair@${this.config.release}`,
      environment: this.config.environment,
      // Nothing is collected but what the helper sends: no integration (no
      // console, HTTP, process or module data, no global error handlers), no
      // tracing, no sessions, no client reports, no breadcrumbs, no personal
      // data, no host name (not among what the policy's "include" can allow).
      defaultIntegrations: false,
      integrations: [],
      dataCollection: {
        userInfo: false,
        cookies: false,
        httpHeaders: false,
        httpBodies: [],
        urlQueryParams: false,
        stackFrameVariables: false,
        frameContextLines: 0,
      },
      includeServerName: false,
      sendClientReports: false,
      // No OpenTelemetry: no tracing, no require hooks.
      skipOpenTelemetrySetup: true,
      maxBreadcrumbs: 0,
      shutdownTimeout: FLUSH_TIMEOUT_MS,
    });
    this.#sentry = sentry;
    return sentry;
  }

  #capture(report: Omit<ReportLine, 'type' | 'exitCode'> & { exitCode: number | undefined }): void {
    try {
      const sentry = this.#load();
      const tags: Record<string, string> = { phase: report.phase, exit_code: report.exitCode === undefined ? 'unknown' : String(report.exitCode) };
      if (report.gate !== undefined) tags.gate = report.gate;
      const event: Event = {
        level: report.level,
        message: report.message,
        timestamp: report.time,
        logger: 'passt-repair',
        tags,
        // A refusal or a failure the helper put into words is one issue per
        // phase, gate and message (numbers aside); an internal error is
        // grouped by its stack, as Sentry does by default.
        fingerprint:
          report.error === undefined
            ? ['passt-repair', report.phase, report.gate ?? '-', messageTemplate(report.message)]
            : ['{{ default }}', report.phase],
      };
      if (report.error !== undefined) {
        const frames: StackFrame[] = sentry.defaultStackParser(report.error.stack);
        event.exception = {
          values: [
            {
              type: report.error.type,
              value: report.message.replace(/^internal error: /, ''),
              mechanism: { type: 'passt-repair', handled: false },
              ...(frames.length > 0 ? { stacktrace: { frames } } : {}),
            },
          ],
        };
      }
      sentry.captureEvent(event);
    } catch (error) {
      say(`cannot send a report: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  line(text: string): void {
    if (this.#ended || text.trim() === '') return;
    let value: ChannelLine;
    try {
      value = JSON.parse(text) as ChannelLine;
    } catch {
      say('a line from the helper is not JSON; ignored');
      return;
    }
    if (value.type === 'report') this.#capture(value);
    else if (value.type === 'end') this.#ended = true;
  }

  /** The end of input: the helper is done, or dead. Sends what is pending, within the bound, and exits. */
  async finish(): Promise<void> {
    if (this.#finishing) return;
    this.#finishing = true;
    setTimeout(() => process.exit(0), HARD_STOP_MS).unref();
    if (!this.#ended)
      this.#capture({
        level: 'fatal',
        phase: 'internal',
        message: "the helper ended without a final report (killed, e.g. by its seccomp filter's SIGSYS, or by a signal)",
        exitCode: undefined,
        time: Date.now() / 1000,
      });
    if (this.#sentry !== undefined) await this.#sentry.close(FLUSH_TIMEOUT_MS);
    process.exit(0);
  }
}

function main(): void {
  try {
    completeForwarderSandbox();
  } catch (error) {
    fail(error instanceof HelperError ? error.message : `cannot complete its sandbox: ${error instanceof Error ? error.message : String(error)}`);
  }
  closeInheritedDescriptors();
  const { config, rest } = readConfig();
  // Set up: from here on it holds nothing of the helper's but the pipe.
  try {
    fs.closeSync(SETUP_ERRORS);
  } catch {
    // not lent (the helper had no standard error)
  }
  setupErrors = undefined;

  const forwarder = new Forwarder(config);
  let pending = '';
  const take = (text: string): void => {
    pending += text;
    let newline: number;
    while ((newline = pending.indexOf('\n')) >= 0) {
      forwarder.line(pending.slice(0, newline));
      pending = pending.slice(newline + 1);
    }
    if (pending.length > MAX_LINE_BYTES) {
      say('a line from the helper is too long; dropped');
      pending = '';
    }
  };
  take(rest.toString('utf8'));
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', take);
  process.stdin.on('end', () => void forwarder.finish());
  process.stdin.on('error', () => void forwarder.finish());
}

main();
