// SPDX-License-Identifier: GPL-2.0-or-later
// Answers on standard output arrive whole, or the run fails saying so: a
// 12,000-rule --explain (close to 900 kB) through a pipe whose reader is
// slow to start, alone and with standard error sharing the pipe (the audit
// log makes it non-blocking), and through a pipe whose reader is gone.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { HELPER } from './passt-double/passt-double';
import { temporaryDirectory } from './lib';
import { explainPath } from '../src/policy/explain';
import { loadPolicy } from '../src/policy/load';

const dir = temporaryDirectory();
t.teardown(() => fs.rmSync(dir, { recursive: true }));
// The last rule allows the path: the verdict, the last line, says so and the exit status is 0.
// Written compactly: a policy is at most 1 MiB.
const policy = path.join(dir, 'policy.json');
fs.writeFileSync(
  policy,
  JSON.stringify({ version: 1, rules: Array.from({ length: 12_000 }, (_, i) => ({ name: `vm${i}`, sockets: [`/run/passt/vm${i}/*.repair`], peer: {} })) }),
  { mode: 0o644 },
);
const subject = '/run/passt/vm11999/x.repair';
const expected = explainPath(loadPolicy(policy), subject).text;

/** Runs the helper's --explain inside `sh -c SCRIPT`, where "$@" is the command; returns what the test read. */
function throughShell(script: string) {
  const result = spawnSync('sh', ['-c', script, 'sh', HELPER, '--policy', policy, '--explain', subject], { encoding: 'utf8', maxBuffer: 64 << 20 });
  return { stdout: result.stdout, stderr: result.stderr, status: result.status };
}

t.test('a big --explain through a pipe whose reader starts late arrives whole, verdict and exit 0 included', async (t) => {
  t.ok(expected.length > 4 * 65_536, `bigger than a pipe's buffer (${expected.length} bytes)`);
  t.match(expected, /allowed as a socket by rule "vm11999" of .*\n$/);
  // The reader sleeps first: the pipe fills up at once, and a single write would be cut at 64 KiB.
  const alone = throughShell('{ "$@"; echo "exit $?" >&2; } | { sleep 1; cat; }');
  t.equal(alone.stdout.length, expected.length, 'every byte arrived');
  t.equal(alone.stdout, expected, 'the answer, unchanged');
  t.equal(alone.stderr, 'exit 0\n', 'exit 0, nothing on stderr');
  // Standard error on the same pipe: the audit log sets O_NONBLOCK on it, which stdout then shares.
  const shared = throughShell('{ "$@" 2>&1; echo "exit $?" >&2; } | { sleep 1; cat; }');
  t.equal(shared.stdout, expected, 'whole when stdout shares a non-blocking pipe with stderr');
  t.equal(shared.stderr, 'exit 0\n');
});

t.test('an answer that cannot be written whole fails with a message and exit 1', async (t) => {
  // The reader exits without reading: once it is gone, a write fails with EPIPE.
  const gone = throughShell('{ "$@"; echo "exit $?" >&2; } | true');
  t.match(
    gone.stderr,
    new RegExp(`^passt-repair: cannot write the answer to standard output \\(\\d+ of ${Buffer.byteLength(expected)} bytes written\\): broken pipe\nexit 1\n$`),
  );
});
