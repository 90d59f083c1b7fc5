// SPDX-License-Identifier: GPL-2.0-or-later
// The audit log, on standard error: what the helper did and why, one line an
// event. Text for people by default, or one JSON object a line with stable
// field names (passt-repair(1) lists them) for log pipelines. Under systemd
// each line starts with a syslog priority, so the journal keeps the severity.
//
// It never blocks the protocol: standard error is non-blocking when it is a
// pipe or a socket, and a line the reader has no room for is dropped and
// counted (writer.ts); the last line reports how many.
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import { constants } from 'node:os';
import { native } from '../addon';
import { systemMessage } from '../errors';
import type { LogFormat } from '../policy';
import { escapeLine } from './escape';
import { NonBlockingWriter } from './writer';

export type Level = 'info' | 'warning' | 'error';

/** The events and, in passt-repair(1), their fields. */
export type LogEvent = 'start' | 'connected' | 'command' | 'warning' | 'refused' | 'error' | 'end';

export type Fields = Record<string, string | number | undefined>;

// sd-daemon(3): the syslog priorities the journal reads from a "<N>" prefix.
const PRIORITIES: Readonly<Record<Level, number>> = { error: 3, warning: 4, info: 6 };

const STDERR = 2;

/**
 * True when standard error is the journal stream systemd set up for us:
 * JOURNAL_STREAM names its device and inode (systemd.exec(5)); a descriptor
 * redirected since then is not the journal, whatever the variable says.
 */
function isJournalStream(stats: fs.BigIntStats): boolean {
  const stream = process.env.JOURNAL_STREAM;
  return stream !== undefined && stream === `${stats.dev}:${stats.ino}`;
}

export class AuditLog {
  readonly #writer: NonBlockingWriter;
  readonly #journal: boolean;
  #format: LogFormat;

  constructor(format: LogFormat) {
    this.#format = format;
    let stats: fs.BigIntStats | undefined;
    try {
      stats = fs.fstatSync(STDERR, { bigint: true });
    } catch {
      stats = undefined; // closed: every line is dropped
    }
    this.#journal = stats !== undefined && isJournalStream(stats);
    // A pipe or a socket can stall when its reader does; a terminal or a
    // file is left as it is (a terminal's flags are shared with the shell).
    if (stats !== undefined && (stats.isFIFO() || stats.isSocket())) native.setNonBlocking(STDERR);
    this.#writer = new NonBlockingWriter(STDERR);
  }

  /** The policy's format, unless the command line chose one. */
  set format(format: LogFormat) {
    this.#format = format;
  }

  /** Lines dropped so far because standard error had no room. */
  get dropped(): number {
    return this.#writer.dropped;
  }

  /**
   * Why the audit log is lost, if it is: writing to standard error failed
   * with an error (the reader is gone, RLIMIT_FSIZE reached: EFBIG, as
   * SIGXFSZ is ignored), and no line since got through.
   */
  get lost(): string | undefined {
    const failure = this.#writer.failure;
    if (failure === undefined) return undefined;
    const reason = systemMessage(failure);
    return failure === constants.errno.EFBIG ? `${reason}: the file-size limit (RLIMIT_FSIZE, ulimit -f) is reached` : reason;
  }

  /**
   * Writes one event. `message` is one line, or several (a policy's schema
   * errors, one a line like a compiler's; a stack): in the text format each
   * is escaped (escape.ts), so no value in it can start a line of its own;
   * in JSON each is a record of its own, its "message" (and "reason") that
   * line, so that a log pipeline sees one problem a record.
   */
  write(level: Level, event: LogEvent, message: string | readonly string[], fields: Fields = {}): void {
    const messageLines = typeof message === 'string' ? [message] : message;
    let lines: string[];
    if (this.#format === 'json') {
      const record: Record<string, unknown> = { time: new Date().toISOString(), level, event };
      for (const [name, value] of Object.entries(fields)) if (value !== undefined) record[name] = value;
      const several = messageLines.length > 1 && record.reason !== undefined;
      lines = messageLines.map((line) => JSON.stringify(several ? { ...record, reason: line, message: line } : { ...record, message: line }));
    } else {
      lines = messageLines.map((line) => `passt-repair: ${escapeLine(line)}`);
    }
    const prefix = this.#journal ? `<${PRIORITIES[level]}>` : '';
    this.#writer.write(lines.map((line) => `${prefix}${line}\n`).join(''));
  }
}

/**
 * What the serving helper puts in place of process.stderr: the runtime's own
 * messages (a warning from process.emitWarning, printed with console.error)
 * become "warning" events of the audit log, escaped like any other line.
 *
 * Node.js creates process.stderr on first use, and for a pipe or a socket
 * that loads its stream and net modules (about 7 ms, before connect) and
 * makes calls the seccomp filter forbids (ioctl FIONBIO; getsockname on a
 * socket such as the journal's), so a warning or a fatal exception after
 * the filter would end the helper with SIGSYS instead of a message. This
 * stand-in needs neither: it has what the runtime's callers use (write, the
 * events console.error listens for, isTTY for the colour check of a fatal
 * exception's stack, which Node.js itself prints to descriptor 2).
 */
export class RuntimeMessages extends EventEmitter {
  readonly fd = STDERR;
  readonly isTTY = false;
  readonly writable = true;

  constructor(private readonly log: AuditLog) {
    super();
  }

  write(chunk: unknown, encoding?: unknown, callback?: unknown): boolean {
    const text = Buffer.isBuffer(chunk) ? chunk.toString('utf8') : String(chunk);
    const lines = text.split('\n').filter((line) => line !== '');
    if (lines.length > 0) this.log.write('warning', 'warning', lines);
    const done = typeof encoding === 'function' ? encoding : callback;
    // As a stream does: with null, no error (console.error checks for null).
    if (typeof done === 'function') process.nextTick(done as (error: null) => void, null);
    return true;
  }

  /** Puts it in place of process.stderr, before anything has created the runtime's own. */
  install(): void {
    Object.defineProperty(process, 'stderr', { value: this, configurable: true, enumerable: true, writable: false });
  }
}
