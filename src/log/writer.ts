// Lines written to a descriptor that never make the writer wait: standard
// error for the audit log, the pipe to the telemetry forwarder. The
// descriptor is non-blocking (native/descriptors.cc); a line the reader has
// no room for is dropped and counted rather than waited for, because passt
// waits on every reply and a stalled reader must not stall the migration.
import * as fs from 'node:fs';

export class NonBlockingWriter {
  #pending: Buffer = Buffer.alloc(0);
  #dropped = 0;
  /** Why writing failed for good (not for want of room): the reader is gone, a file-size limit, ... */
  #failure: NodeJS.ErrnoException | undefined;

  constructor(readonly fd: number) {}

  /** Lines dropped so far: no room in the reader's buffer, or the reader is gone. */
  get dropped(): number {
    return this.#dropped;
  }

  /** The error that ended all writing, if one did: every line since has been dropped. */
  get failure(): NodeJS.ErrnoException | undefined {
    return this.#failure;
  }

  /** Writes `line` (which ends in a newline) now, or drops it. Returns false when dropped. */
  write(line: string): boolean {
    if (this.#failure !== undefined || !this.#flushPending()) {
      this.#dropped++;
      return false;
    }
    const bytes = Buffer.from(line);
    const written = this.#writeSome(bytes);
    if (written === undefined) {
      this.#dropped++;
      return false;
    }
    // A reader that took part of the line gets the rest before any other
    // line: lines are never cut or interleaved, only dropped whole.
    if (written < bytes.length) this.#pending = bytes.subarray(written);
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
  #writeSome(bytes: Buffer): number | undefined {
    try {
      return fs.writeSync(this.fd, bytes);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'EAGAIN' && code !== 'EWOULDBLOCK' && code !== 'EINTR') this.#failure = error as NodeJS.ErrnoException;
      return undefined;
    }
  }
}
