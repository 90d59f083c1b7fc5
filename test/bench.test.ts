// SPDX-License-Identifier: GPL-2.0-or-later
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT, NODE } from './passt-double/passt-double';
import { HELPER_NODE_FLAGS, type BenchResult, type SoakResult } from './bench/bench';

const BENCH = path.join(ROOT, 'dist/test/bench/bench.js');

function bench(...args: string[]) {
  return spawnSync(NODE, [BENCH, ...args], { encoding: 'utf8', timeout: 180_000 });
}

// Figures only: no timing thresholds here, timed assertions are flaky on a shared machine.
t.test('a small run reports every figure, verifies every socket and gives numeric ratios', async (t) => {
  const run = bench('--connections', '300', '--rounds', '2', '--spawns', '2', '--json');
  t.equal(run.status, 0, run.stderr);
  const result = JSON.parse(run.stdout) as BenchResult;
  t.same(result.parameters, { connections: 300, rounds: 2, spawns: 2, batchSize: 253 });

  for (const key of ['passtRepair', 'cFloor', 'cFloorChecked', 'cFloorLateClose', 'exchangeFloor', 'bareNode'] as const) {
    for (const field of ['startupMs', 'rssAtStartMiB', 'peakRssMiB'] as const) {
      t.ok(result.helpers[key][field] > 0, `${key}.${field} is a positive number`);
    }
  }
  for (const key of ['passtRepair', 'cFloor', 'cFloorChecked', 'cFloorLateClose', 'exchangeFloor'] as const) {
    const helper = result.helpers[key];
    for (const field of ['firstRequestUs', 'batchP50Us', 'batchP99Us', 'socketsPerSecond', 'onOffMs'] as const) {
      t.type(helper[field], 'number', `${key}.${field}`);
      t.ok(helper[field]! > 0, `${key}.${field} is positive`);
    }
    // 300 sockets are one full batch (and a short one) per pass; 2 rounds of ON and OFF are 4 passes.
    t.equal(helper.batches, 4, `${key} timed every full batch`);
    t.ok(helper.batchP99Us! >= helper.batchP50Us!, `${key} p99 >= p50`);
  }
  t.equal(result.helpers.bareNode.batchP50Us, undefined, 'the bare Node.js floor switches no sockets');
  t.equal(result.helpers.bareNode.firstRequestUs, undefined, 'the bare Node.js floor takes no request');

  // A warm-up round and 2 timed rounds, ON and OFF, for each of the 4 helpers that switch (the exchange floor does not).
  t.same(result.verification, { sockets: 300, passes: 24, checks: 7200, allVerified: true });

  for (const name of ['batchP50', 'socketsPerSecond', 'onOff', 'firstRequest', 'startup', 'peakRss'] as const) {
    const target = result.targets[name];
    t.ok(Number.isFinite(target.ratio) && target.ratio > 0, `${name} ratio is a number`);
    t.type(target.pass, 'boolean');
  }
  for (const name of ['batchP50', 'socketsPerSecond', 'onOff'] as const) {
    t.match(result.targets[name].description, /checked C floor/);
    const ratio = result.againstBareFloor[name];
    t.ok(Number.isFinite(ratio.ratio) && ratio.ratio > 0, `against the bare floor: ${name} ratio is a number`);
    t.match(ratio.description, / C floor$/);
  }
  for (const set of [result.design.floor, result.design.helperOverDesign])
    for (const name of ['batchP50', 'socketsPerSecond', 'onOff'] as const) t.ok(Number.isFinite(set[name].ratio) && set[name].ratio > 0, `design: ${name} ratio is a number`);
  t.ok(Number.isFinite(result.design.helperOverDesign.batchP50AddedUs), "the helper's own overhead in µs is a number");
  for (const [name, value] of Object.entries(result.perDescriptorNs)) t.ok(Number.isFinite(value), `per descriptor: ${name} is a number`);
  for (const costs of [result.filter.bare, result.filter.filtered]) {
    t.same(Object.keys(costs), ['getsockopt SO_PROTOCOL', 'getsockopt TCP_REPAIR', 'setsockopt TCP_REPAIR', 'recvmsg', 'sendto', 'close_range', 'ppoll'], 'every hot call is timed');
    for (const value of Object.values(costs)) t.ok(value > 0, 'a system call costs some ns');
  }
  t.ok(Number.isFinite(result.filter.perBatchUs), "the filter's cost per batch is a number");
  t.ok(result.passtSide.batchP50Us > 0 && result.passtSide.shareOfHelper > 0, "passt's side has its own floor");
});

t.test('the human-readable table names every target with PASS or MISS', async (t) => {
  const run = bench('--connections', '20', '--rounds', '1', '--spawns', '1');
  t.equal(run.status, 0, run.stderr);
  for (const label of ['passt-repair', 'C floor', "C floor with the helper's checks", 'C floor, checked, closes after the reply', 'exchange floor', 'bare Node.js floor'])
    t.match(run.stdout, label);
  t.equal(run.stdout.match(/ (PASS|MISS)$/gm)?.length, 6);
  t.match(run.stdout, /^the design in C \(C floor, checked, closes after the reply\) \/ checked C floor: batch p50 \d+\.\d\dx, sockets\/s \d+\.\d\dx, ON\+OFF \d+\.\d\dx$/m);
  t.match(run.stdout, /^passt-repair \/ that design floor \(the helper's own overhead\): batch p50 \d+\.\d\dx, .*; batch p50 [+-]\d+\.\d µs$/m);
  t.match(run.stdout, /^against the bare C floor \(as passt's C helper\): batch p50 \/ C floor \d+\.\d\dx, /m);
  t.match(
    run.stdout,
    /^seccomp filter per call: getsockopt SO_PROTOCOL [+-]\d+ ns, getsockopt TCP_REPAIR [+-]\d+ ns, setsockopt TCP_REPAIR [+-]\d+ ns, recvmsg [+-]\d+ ns, sendto [+-]\d+ ns, close_range [+-]\d+ ns, ppoll [+-]\d+ ns; per batch of 20 [+-]\d+\.\d µs$/m,
  );
  t.match(run.stdout, /^passt's side \(exchange floor: receive, close, reply\): batch p50 \d+\.\d µs, \d+% of the helper's$/m);
});

t.test('a short soak samples the helper and judges its operations and RSS growth', async (t) => {
  const run = bench('--soak', '--minutes', '0.05', '--connections', '300', '--json');
  t.equal(run.status, 0, run.stderr);
  const result = JSON.parse(run.stdout) as SoakResult;
  t.same(result.parameters, { connections: 300, minutes: 0.05, helper: 'bin/passt-repair' });
  t.ok(result.operations > 0 && result.operations === result.requests * 150, 'every request switched 150 sockets (2 batches ON then OFF)');
  t.ok(result.samples.length >= 2, `${result.samples.length} samples`);
  for (const figure of [result.rssMB, result.descriptors, result.socketsPerSecond]) {
    t.ok(figure.max >= figure.end && figure.max >= figure.start, 'max is the largest');
    t.ok(figure.start > 0, 'a positive start');
  }
  t.equal(result.targets.rssGrowth.pass, false, 'a soak shorter than a minute cannot show the growth after it');
  t.type(result.targets.operations.pass, 'boolean');
  const text = bench('--soak', '--minutes', '0.05', '--connections', '20');
  t.equal(text.status, 0, text.stderr);
  t.equal(text.stdout.match(/ (PASS|MISS)$/gm)?.length, 2);
  t.match(text.stdout, /^RSS MB +[\d.]+ +[\d.]+ +[\d.]+ +[\d.]+$/m);
});

t.test('the bare Node.js floor runs with the flags the launcher gives the helper', async (t) => {
  const launcher = fs.readFileSync(path.join(ROOT, 'native/launcher.c'), 'utf8');
  const launcherFlags = launcher.match(/NODE_FLAGS\[\] = \{ ([^}]*) \}/)?.[1]?.split(',').map((flag) => flag.trim().replace(/^"|"$/g, ''));
  t.same(launcherFlags, HELPER_NODE_FLAGS);
  // The launcher gives the runtime its clean environment (native/runtime-sandbox.h).
  t.match(fs.readFileSync(path.join(ROOT, 'native/runtime-sandbox.h'), 'utf8'), /"UV_USE_IO_URING=0"/);
});

t.test('bad options are usage errors (exit 2)', async (t) => {
  for (const args of [['--connections', '0'], ['--rounds', 'many'], ['--connections', '1000000'], ['--frobnicate'], ['--minutes', '3'], ['--soak', '--spawns', '2'], ['--soak', '--minutes', '0']]) {
    const run = bench(...args);
    t.equal(run.status, 2, `exit 2 for ${args.join(' ')}`);
    t.match(run.stderr, /^bench: /);
  }
});
