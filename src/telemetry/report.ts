// SPDX-License-Identifier: GPL-2.0-or-later
// What the helper hands to the telemetry forwarder about a failed run. The
// reporter (reporter.ts) scrubs it as the policy says before it leaves the
// helper; the forwarder (forwarder.ts) turns it into a Sentry event.
import type { Gate, Phase } from '../errors';

export interface FailureReport {
  /** "fatal": an internal error or a crash; "error": a refusal or a failure the helper put into words. */
  level: 'fatal' | 'error';
  phase: Phase;
  gate?: Gate;
  /** The same one-line message the audit log carries, unscrubbed. */
  message: string;
  exitCode: number;
  /** An internal error's type and stack. */
  error?: { type: string; stack: string };
  /** Values this run knows to be sensitive, scrubbed wherever they appear unless the policy includes them. */
  known: { paths: string[]; ids: number[]; pids: number[] };
}

export interface Reporter {
  /** Queues a report for the forwarder. Never blocks: a full pipe drops it. */
  report(failure: FailureReport): void;
  /**
   * Tells the forwarder the run is over and, if anything was reported,
   * waits at most a bounded time (FLUSH_TIMEOUT_MS and a little) for it to
   * send what it holds and exit. Never rejects. Call it on every way out of
   * a run: an end of input without it reads as the helper having been killed.
   */
  close(): Promise<void>;
  /** Reports that could not be written to the forwarder: the pipe was full, or the forwarder is gone. */
  readonly dropped: number;
}

/**
 * How long the forwarder may take, once the helper is done, to send what it
 * holds; the helper waits for it that long (and a little more), never longer.
 */
export const FLUSH_TIMEOUT_MS = 2000;

// The channel: a pipe from the helper to the forwarder's standard input, one
// JSON object a line. The helper writes without ever waiting
// (src/log/writer.ts): a line the pipe has no room for is dropped.

/** The first line: what the forwarder needs to reach Sentry. */
export interface ForwarderConfig {
  type: 'config';
  dsn: string;
  environment: string;
  /** The package's version: the events' release is "passt-repair@VERSION". */
  release: string;
}

/** A failure, scrubbed as the policy says (src/telemetry/scrub.ts); no `known`. */
export interface ReportLine {
  type: 'report';
  level: FailureReport['level'];
  phase: Phase;
  gate?: Gate;
  message: string;
  exitCode: number;
  error?: { type: string; stack: string };
  /** When the helper reported it, in seconds since the epoch (the event's timestamp). */
  time: number;
}

/** The last line: the helper is done. End of input without it means the helper was killed. */
export interface EndLine {
  type: 'end';
  /** Reports the helper could not write (the pipe was full or the forwarder gone). */
  dropped: number;
}

export type ChannelLine = ForwarderConfig | ReportLine | EndLine;
