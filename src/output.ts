// SPDX-License-Identifier: GPL-2.0-or-later
// The answers of --help, --version, --check-policy and --explain on standard
// output. An answer is written whole or the run fails: a cut --explain loses
// its verdict, the last line, and exit 0 would still say all is well.
// Standard output may be non-blocking (a pipe shared with standard error,
// which the audit log makes non-blocking), so a write that would block
// waits for room. The audit log's lines follow their own rule instead (a
// line with no room is dropped whole and counted: src/log/writer.ts), since
// passt waits on a serving helper; nothing waits on these answers.
import * as fs from 'node:fs';
import { native } from './addon';
import { HelperError, systemMessage } from './errors';

const STDOUT = 1;

/** Writes `text` whole to standard output, or throws a HelperError saying why it could not. */
export function writeAnswer(text: string): void {
  const bytes = Buffer.from(text);
  let written = 0;
  try {
    while (written < bytes.length) {
      try {
        written += fs.writeSync(STDOUT, bytes, written);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'EAGAIN' || code === 'EWOULDBLOCK') native.waitWritable(STDOUT);
        else if (code !== 'EINTR') throw error;
      }
    }
  } catch (error) {
    // Node's fs errors carry a negative errno, the addon's a positive one.
    const errno = (error as { errno?: unknown }).errno;
    const reason = typeof errno === 'number' ? systemMessage(Math.abs(errno)) : String(error);
    throw new HelperError(`cannot write the answer to standard output (${written} of ${bytes.length} bytes written): ${reason}`);
  }
}
