// SPDX-License-Identifier: GPL-2.0-or-later
// What a failure report may carry out of the machine (src/telemetry/scrub.ts),
// on the helper's real messages.
import t from 'tap';
import * as path from 'node:path';
import { ROOT } from './passt-double/passt-double';
import {
  MAX_MESSAGE_LENGTH,
  relativeToPackage,
  scrubIds,
  scrubPaths,
  scrubPids,
  scrubReport,
  scrubText,
  type Known,
} from '../src/telemetry/scrub';
import type { SentryInclude } from '../src/policy';

const NOTHING: Known = { paths: [], ids: [], pids: [] };
const include = (...what: SentryInclude[]) => new Set<SentryInclude>(what);
const scrub = (text: string, known: Known = NOTHING, ...what: SentryInclude[]) =>
  scrubText(text, { include: include(...what), known, packageRoot: ROOT });

t.test('absolute paths become [path]; things that only look like paths stay', async (t) => {
  const cases: [string, string][] = [
    ['cannot connect to /run/user/1000/passt/vm.repair: Connection refused', 'cannot connect to [path]: Connection refused'],
    ['/tmp/d/vm.repair: no rule of /etc/passt-repair/policy.json allows connecting to this socket', '[path]: no rule of [path] allows connecting to this socket'],
    // A pattern cannot know where a path with a space ends: the known paths (next test) can.
    ['cannot open /srv/a dir/x.repair', 'cannot open [path] dir/x.repair'],
    ['rule "vm": "/run/**/*.repair" matches', 'rule "vm": "[path]" matches'],
    ['(/tmp/x:12:3)', '([path]:12:3)'],
    ['at file:///opt/app/x.js:1:2', 'at [path]:1:2'],
    ['path=/var/lib/x,other', 'path=[path],other'],
    ['a single segment /vm.repair too', 'a single segment [path] too'],
  ];
  for (const [input, expected] of cases) t.equal(scrubPaths(input, []), expected, input);
  for (const untouched of [
    'expected 1 TCP_REPAIR_ON, 0 TCP_REPAIR_OFF or -1 TCP_REPAIR_OFF_NO_WP',
    'TCP_REPAIR_ON/OFF',
    'descriptor 1/2 and 3 / 4',
    'I/O error, and/or',
    'at process.processTicksAndRejections (node:internal/process/task_queues:105:5)',
    'http-like a/b',
  ])
    t.equal(scrubPaths(untouched, []), untouched, `untouched: ${untouched}`);
});

t.test('known paths are replaced as given, relative or with spaces, whole and only whole', async (t) => {
  t.equal(scrubPaths('cannot open passt.repair: No such file or directory', ['passt.repair']), 'cannot open [path]: No such file or directory');
  t.equal(scrubPaths('cannot open /srv/a dir/x.repair: denied', ['/srv/a dir/x.repair']), 'cannot open [path]: denied');
  // A known path inside a longer one is not cut out of it: the longer one goes whole.
  t.equal(scrubPaths('/tmp/ab/c and /tmp/a', ['/tmp/a']), '[path] and [path]');
  t.equal(scrubPaths('passt-repair: repair', ['repair']), 'passt-repair: [path]');
  // "/" or "." would hit every separator; the pattern still sees real paths.
  t.equal(scrubPaths('a / b at /x', ['/', '.']), 'a / b at [path]');
});

t.test('files of the package stay, relative to its root, so that Sentry can group by frame', async (t) => {
  const stack = [
    'TypeError: Cannot read properties of undefined (reading \'fd\')',
    `    at serve (${path.join(ROOT, 'dist/src/protocol.js')}:31:20)`,
    `    at ${path.join(ROOT, 'dist/src/main.js')}:12:3`,
    `    at file://${path.join(ROOT, 'dist/src/x.mjs')}:1:1`,
    '    at /usr/lib/other/thing.js:5:5',
    '    at process.processTicksAndRejections (node:internal/process/task_queues:105:5)',
  ].join('\n');
  t.equal(
    scrub(stack),
    [
      'TypeError: Cannot read properties of undefined (reading \'fd\')',
      '    at serve (dist/src/protocol.js:31:20)',
      '    at dist/src/main.js:12:3',
      '    at dist/src/x.mjs:1:1',
      '    at [path]:5:5',
      '    at process.processTicksAndRejections (node:internal/process/task_queues:105:5)',
    ].join('\n'),
  );
  t.equal(relativeToPackage(`${ROOT}2/x.js ${ROOT}/y.js`, ROOT), `${ROOT}2/x.js y.js`, 'only the root itself, not a sibling with a longer name');
  // With paths included, the frames are relative all the same, and other paths stay.
  t.equal(scrub(`at ${ROOT}/dist/src/main.js:1:1 on /tmp/x.repair`, NOTHING, 'paths'), 'at dist/src/main.js:1:1 on /tmp/x.repair');
});

t.test('uids and gids: the helper\'s messages, and known ids anywhere', async (t) => {
  const peerRefusal =
    'gate 4 (peer) refused: peer refused on /tmp/d/vm.repair: pid 4321, uid 65534, gid 65534; rule "vm": uid 65534 is not in uids [12345]; rule "b": gid 65534 is not in gids [0, 12345]';
  t.equal(
    scrubIds(peerRefusal, []),
    'gate 4 (peer) refused: peer refused on /tmp/d/vm.repair: pid 4321, uid [id], gid [id]; rule "vm": uid [id] is not in uids [[id]]; rule "b": gid [id] is not in gids [[id]]',
  );
  t.equal(scrubIds('rule "vm": uid 1000 does not own the socket (uid 1001 does)', []), 'rule "vm": uid [id] does not own the socket (uid [id] does)');
  t.equal(scrubIds('/etc/p.json: owned by uid 1000; a policy and every directory above it must be owned by root or uid 65534', []), '/etc/p.json: owned by uid [id]; a policy and every directory above it must be owned by root or uid [id]');
  t.equal(scrubIds('thread 77 kept privileges: Uid is 0,0,0,0, expected 65534,65534,65534,65534', []), 'thread 77 kept privileges: Uid is [id], expected [id]');
  t.equal(scrubIds('the sandbox account "x" has uid or group 0: it must be an unprivileged account', []), 'the sandbox account "x" has uid or group [id]: it must be an unprivileged account');
  t.equal(scrubIds('a peer that has uid 1 or 2, has gid 3', []), 'a peer that has uid [id], has gid [id]');
  // Known ids wherever they stand alone, even in a path; not inside other numbers; never 0.
  t.equal(scrubIds('/run/user/1000/passt 10000 1000.5 v1000 1000', [1000, 0]), '/run/user/[id]/passt 10000 1000.5 v1000 [id]');
  t.equal(scrubIds('expected 1 TCP_REPAIR_ON, 0 TCP_REPAIR_OFF', [0]), 'expected 1 TCP_REPAIR_ON, 0 TCP_REPAIR_OFF');
});

t.test('pids: "pid N", thread ids, and known pids anywhere', async (t) => {
  t.equal(scrubPids('peer refused on x: pid 4321 (exited since it listened), uid 1', []), 'peer refused on x: pid [pid] (exited since it listened), uid 1');
  t.equal(scrubPids('thread 5678 did not answer signal 37: cannot drop its privileges', []), 'thread [pid] did not answer signal 37: cannot drop its privileges');
  t.equal(scrubPids('start: pid 99, /proc/4321/exe 4321', [4321, 1]), 'start: pid [pid], /proc/[pid]/exe [pid]');
  t.equal(scrubPids('descriptor 1 of 1', [1]), 'descriptor 1 of 1', 'pid 1 (init) is no one\'s secret and is not replaced as a bare number');
});

t.test('what the policy includes stays; everything else goes', async (t) => {
  const known: Known = { paths: ['/tmp/d/vm.repair', 'vm.repair'], ids: [65534], pids: [4321] };
  const message = 'peer refused on /tmp/d/vm.repair: pid 4321, uid 65534, gid 65534';
  t.equal(scrub(message, known), 'peer refused on [path]: pid [pid], uid [id], gid [id]');
  t.equal(scrub(message, known, 'paths'), 'peer refused on /tmp/d/vm.repair: pid [pid], uid [id], gid [id]');
  t.equal(scrub(message, known, 'ids'), 'peer refused on [path]: pid [pid], uid 65534, gid 65534');
  t.equal(scrub(message, known, 'pids'), 'peer refused on [path]: pid 4321, uid [id], gid [id]');
  t.equal(scrub(message, known, 'paths', 'ids', 'pids'), message);
});

t.test('scrubReport: message and stack scrubbed, then cut; no known values travel', async (t) => {
  const report = scrubReport(
    {
      level: 'fatal',
      phase: 'serve',
      message: `internal error: boom at /srv/secret/x.repair ${'x'.repeat(10_000)}`,
      exitCode: 1,
      error: { type: 'TypeError', stack: `TypeError: boom at /srv/secret/x.repair\n    at f (${ROOT}/dist/src/main.js:1:2)` },
      known: { paths: ['/srv/secret/x.repair'], ids: [4242], pids: [999] },
    },
    { include: include(), packageRoot: ROOT },
  );
  t.equal(report.message.length, MAX_MESSAGE_LENGTH);
  t.match(report.message, /^internal error: boom at \[path\] x+…$/);
  t.same(report.error, { type: 'TypeError', stack: 'TypeError: boom at [path]\n    at f (dist/src/main.js:1:2)' });
  t.notOk('known' in report);
  t.notMatch(JSON.stringify(report), /secret|4242|999/);
  const refusal = scrubReport({ level: 'error', phase: 'peer', gate: 'peer', message: 'm', exitCode: 1, known: { paths: [], ids: [], pids: [] } }, { include: include(), packageRoot: ROOT });
  t.same(refusal, { level: 'error', phase: 'peer', gate: 'peer', message: 'm', exitCode: 1 });
});
