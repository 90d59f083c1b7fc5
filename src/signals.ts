// SPDX-License-Identifier: GPL-2.0-or-later
// SIGTERM, SIGINT and SIGHUP in every phase of a serving run. native/signals.cc
// only records them (and wakes whoever waits); the run acts on them where it
// can stop cleanly:
// - while waiting for passt's socket (the event loop runs): untilSignalled()
//   ends the wait;
// - between two synchronous gates: checkSignals();
// - while serving: the protocol loop, between requests (src/protocol.ts).
// Each ends in a Stopped error: the end line names the signal, exit 128 + N.
import { native } from './addon';
import { Stopped } from './errors';

const CAUGHT = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const;

/** Ends the current untilSignalled() wait, if one is running. */
let endWait: ((stopped: Stopped) => void) | undefined;

/**
 * Takes the three signals over from Node.js's handlers (which re-raise the
 * signal with tgkill: SIGSYS under gate 3). First the event loop's handlers
 * (libuv's: process.on), whose listeners end a wait; then the native ones,
 * which replace them, record the signal for the synchronous phases and call
 * them in turn. The listeners stay for the whole run: removing one would put
 * the default action back over the native handler. They keep nothing alive
 * (Node.js unrefs signal handles).
 */
export function catchSignals(): void {
  for (const name of CAUGHT) process.on(name, () => endWait?.(new Stopped(native.pendingSignal())));
  native.catchSignals();
}

/** Throws Stopped if a signal has been recorded: called between two synchronous steps. */
export function checkSignals(): void {
  const signal = native.pendingSignal();
  if (signal !== 0) throw new Stopped(signal);
}

/** Settles as `work` does, or rejects with Stopped as soon as a signal arrives, whichever comes first. */
export async function untilSignalled<T>(work: Promise<T>): Promise<T> {
  checkSignals();
  try {
    return await Promise.race([work, new Promise<never>((_resolve, reject) => (endWait = reject))]);
  } finally {
    endWait = undefined;
  }
}
