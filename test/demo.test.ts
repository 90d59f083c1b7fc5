// SPDX-License-Identifier: GPL-2.0-or-later
// The demo's migration as a test: a live TCP connection moves from the source
// process to the target process through the real helper, and the server
// never notices.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { migrate } from '../demo/demo';
import { ROOT } from './passt-double/passt-double';
import { unusualLines } from './lib';

t.test('the migration keeps the connection: bytes before, in the queue, after, and back', async (t) => {
  const steps: string[] = [];
  const report = await migrate((line) => steps.push(line));

  t.same(
    [report.helperExits.source.code, report.helperExits.target.code],
    [0, 0],
    'both helpers exit 0 when passt closes their connection',
  );
  for (const role of ['source', 'target'] as const) {
    t.same(unusualLines(report.helperExits[role].stderr), [], `the ${role} helper logs only routine lines`);
    t.match(report.helperExits[role].stderr, /^passt-repair: TCP_REPAIR_ON: \d+ request\(s\), \d+ socket\(s\)/m, `the ${role} helper logs its TCP_REPAIR_ON`);
  }

  t.match(report.received.byServerBefore, /before migration/, 'the server received the source before migration');
  t.match(report.received.bySourceBefore, /before migration/, 'the source received the server before migration');
  t.match(report.received.byTargetFromQueue, /receive queue/, "the source's unread bytes reached the target");
  t.match(report.received.byTargetAfter, /after migration/, 'the target received the server after migration');
  t.match(report.received.byServerAfter, /from the target/, 'the server received the target after migration');

  t.equal(report.connectionsAccepted, 1, 'the server accepted exactly one connection');
  t.ok(report.sameServerConnection, "the target's bytes arrived on the source's server-side net.Socket");
  t.equal(report.targetLocalPort, report.sourceLocalPort, "the target took over the source's port");
  t.equal(report.serverRemotePort, report.sourceLocalPort, "the server's connection comes from that port");
  t.same(report.serverConnectionEvents, [], 'the server saw no end, close or error');

  if (process.getuid!() === 0) {
    t.ok(report.rolesUnprivileged, "passt's part ran unprivileged");
    for (const side of ['source', 'target'] as const) {
      t.equal(report.roles[side].uid, 65534, `the ${side} ran as nobody`);
      t.equal(BigInt(`0x${report.roles[side].capEff}`), 0n, `the ${side} had no effective capability`);
    }
  }
  t.match(steps[0], /^ 1\. /, 'steps are numbered');
});

t.test('npm run demo prints its steps and a success line, and exits 0', async (t) => {
  const demo = spawnSync(process.execPath, [path.join(ROOT, 'dist/demo/demo.js')], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  t.equal(demo.status, 0, `exit 0 (stderr: ${demo.stderr})`);
  t.equal(demo.stderr, '', 'nothing on stderr');
  t.match(demo.stdout, /^ 1\. TCP server listening on 127\.0\.0\.1:\d+/m);
  t.match(demo.stdout, /TCP_REPAIR_ON \(1\).*reply 1/);
  t.match(demo.stdout, /TCP_REPAIR_OFF \(0\); reply 0/);
  t.match(demo.stdout, /^helper exit codes: source 0, target 0$/m);
  t.match(demo.stdout, /^SUCCESS: /m);
});
