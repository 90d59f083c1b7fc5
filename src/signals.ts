// SIGTERM, SIGINT and SIGHUP in every phase of a serving run. native/signals.cc
// only records them (and wakes whoever waits); the run acts on them where it
// can stop cleanly:
// - while waiting for passt's socket (the event loop runs): untilSignalled()
//   ends the wait;
// - between two synchronous gates: checkSignals();
// - while serving: the protocol loop, between requests (src/protocol.ts).
// Each ends in a Stopped error: the end line names the signal, exit 128 + N.
import * as net from 'node:net';
import { native } from './addon';
import { Stopped } from './errors';

/** Takes the three signals over from Node.js's handlers (which would end the helper with SIGSYS under gate 3). */
export function catchSignals(): void {
  native.catchSignals();
}

/** Throws Stopped if a signal has been recorded: called between two synchronous steps. */
export function checkSignals(): void {
  const signal = native.pendingSignal();
  if (signal !== 0) throw new Stopped(signal);
}

/**
 * Settles as `work` does, or rejects with Stopped as soon as a signal is
 * recorded, whichever comes first. The event loop watches the self-pipe
 * (its own copy of the read end, closed when the race is over), so the
 * wait ends however the signal arrived.
 */
export async function untilSignalled<T>(work: Promise<T>): Promise<T> {
  checkSignals();
  const watched = new net.Socket({ fd: native.watchSignals(), readable: true, writable: false });
  try {
    const signalled = new Promise<never>((_resolve, reject) => watched.once('data', () => reject(new Stopped(native.pendingSignal()))));
    return await Promise.race([work, signalled]);
  } finally {
    watched.destroy();
  }
}
