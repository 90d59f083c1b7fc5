// SPDX-License-Identifier: GPL-2.0-or-later
// Lines written to a descriptor that never make the writer wait: standard
// error for the audit log, the pipe to the telemetry forwarder. The
// descriptor is non-blocking (native/descriptors.cc); a line the reader has
// no room for is dropped and counted rather than waited for, because passt
// waits on every reply and a stalled reader must not stall the migration.
import { constants } from 'node:os';
import { native } from '../addon';

/** Failures after which the next line may still get through. */
const RETRY_LATER = new Set([constants.errno.EAGAIN, constants.errno.EWOULDBLOCK, constants.errno.EINTR]);

export class NonBlockingWriter {
  #pending: Buffer = Buffer.alloc(0);
  #dropped = 0;
  /** Why writing failed for good (not for want of room), an errno: the reader is gone, a file-size limit, ... */
  #failure: number | undefined;

  constructor(readonly fd: number) {}

  /** Lines dropped so far: no room in the reader's buffer, or the reader is gone. */
  get dropped(): number {
    return this.#dropped;
  }

  /** The errno that ended all writing, if one did: every line since has been dropped. */
  get failure(): number | undefined {
    return this.#failure;
  }

  /** Writes `line` (which ends in a newline) now, or drops it. Returns false when dropped. */
  write(line: string): boolean {
    if (this.#failure !== undefined || !this.#flushPending()) {
      this.#dropped++;
      return false;
    }
    // The line goes to the native call as a string, encoded there: a
    // Buffer.from() per line took a slice of Node's shared 8 KiB pool, and a
    // pool that outlived two scavenges was promoted with its memory outside
    // the heap, freed only by a major GC; with a line per request when passt
    // alternates commands, that was the growth of issue 13.
    const written = this.#writeSome(line);
    if (written === undefined) {
      this.#dropped++;
      return false;
    }
    // A reader that took part of the line gets the rest before any other
    // line: lines are never cut or interleaved, only dropped whole.
    // Not Buffer.from(): a buffer of its own, not a slice of the pool (above).
    const length = Buffer.byteLength(line);
    if (written < length) {
      const bytes = Buffer.allocUnsafeSlow(length);
      bytes.write(line);
      this.#pending = bytes.subarray(written);
    }
    return true;
  }

  /** Sends what a partial write left; true when nothing is left. */
  #flushPending(): boolean {
    if (this.#pending.length === 0) return true;
    const written = this.#writeSome(this.#pending);
    if (written === undefined) return false;
    this.#pending = this.#pending.subarray(written);
    return this.#pending.length === 0;
  }

  /** Bytes written, or undefined when none could be (would block, or the reader is gone). */
  #writeSome(data: Buffer | string): number | undefined {
    // Not fs.writeSync: it throws on EAGAIN, and an exception per dropped
    // line made memory grow while the reader stalled (native/descriptors.cc).
    const result = native.writeSome(this.fd, data);
    if (result >= 0) return result;
    if (!RETRY_LATER.has(-result)) this.#failure = -result;
    return undefined;
  }
}
