// SPDX-License-Identifier: GPL-2.0-or-later
// A policy nested far deeper than any real one (20,000 levels) is a located
// error with the documented exit (2 when serving, 1 for --check-policy), not
// a stack overflow reported as an internal error.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MAX_NESTING_DEPTH } from '../src/policy/json';
import { HELPER, startHelper } from './passt-double/passt-double';
import { temporaryDirectory } from './lib';

function writeRaw(dir: string, text: string): string {
  const file = path.join(dir, 'policy.json');
  fs.writeFileSync(file, text, { mode: 0o644 });
  return file;
}

for (const [open, close] of [['[', ']'], ['{"a":', '}']] as const) {
  t.test(`20,000 nested ${open === '[' ? 'arrays' : 'objects'}: FILE:LINE:COL, the documented exit`, async (t) => {
    const dir = temporaryDirectory();
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
    // On the second line, so that the column and line are both checked.
    const file = writeRaw(dir, `{"version": 1, "rules": [],\n "sandbox": ${open.repeat(20_000)}1${close.repeat(20_000)}}\n`);
    // "sandbox": starts at column 13; its value is level 1 (the document is
    // level 0), so the bracket opening level MAX_NESTING_DEPTH is refused.
    const column = 13 + (MAX_NESTING_DEPTH - 1) * open.length;
    const located = `passt-repair: ${file}:2:${column}: invalid JSON: nested deeper than ${MAX_NESTING_DEPTH} levels`;
    for (const [args, exit] of [[['--check-policy', '--policy', file], 1], [['--policy', file, path.join(dir, 'passt.repair')], 2]] as const) {
      const { code, signal, stderr } = await startHelper(args, [HELPER]).exited;
      t.equal(signal, null);
      t.equal(code, exit, `${args[0]}: exit ${exit}`);
      t.ok(stderr.split('\n').includes(located), 'the located line');
      t.notMatch(stderr, /internal error|RangeError/);
    }
  });
}

t.test(`${MAX_NESTING_DEPTH} levels are still parsed (then judged by the schema)`, async (t) => {
  const dir = temporaryDirectory();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = writeRaw(dir, `{"version": 1, "rules": [], "x": ${'['.repeat(MAX_NESTING_DEPTH - 1)}${']'.repeat(MAX_NESTING_DEPTH - 1)}}\n`);
  const { code, stderr } = await startHelper(['--check-policy', '--policy', file], [HELPER]).exited;
  t.equal(code, 1);
  t.notMatch(stderr, /nested deeper/, 'the depth is allowed');
  t.match(stderr, /x/, 'the schema refuses the unknown key instead');
});
