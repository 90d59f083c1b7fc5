// SPDX-License-Identifier: GPL-2.0-or-later
// Path patterns cannot be stalled: matching costs time proportional to the
// pattern's length times the path's, whatever an attacker names. Compared
// with a straightforward reference on random patterns and paths, timed as
// ratios to a plain match of similar length in the same run, and end to end
// with near-miss sockets planted in a directory the helper waits in.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { acceptHelper, awaitReply, passt, startHelper, TCP_REPAIR_ON, writePolicy } from './passt-double/passt-double';
import { loopbackConnections, temporaryDirectory } from './lib';
import { compilePattern } from '../src/policy/pattern';
import { explainPath } from '../src/policy/explain';
import { parsePolicy } from '../src/policy/load';

/** The documented semantics, written out as directly as possible (exponential: small inputs only). */
function referenceMatch(pattern: string, subject: string): boolean {
  const glob = (g: string[], s: string[]): boolean => {
    if (g.length === 0) return s.length === 0;
    if (g[0] === '*') return glob(g.slice(1), s) || (s.length > 0 && glob(g, s.slice(1)));
    if (s.length === 0) return false;
    return (g[0] === '?' || g[0] === s[0]) && glob(g.slice(1), s.slice(1));
  };
  const segments = (p: string[], s: string[]): boolean => {
    if (p.length === 0) return s.length === 0;
    if (p[0] === '**') return segments(p.slice(1), s) || (s.length > 0 && s[0] !== '' && segments(p, s.slice(1)));
    return s.length > 0 && glob(Array.from(p[0]!), Array.from(s[0]!)) && segments(p.slice(1), s.slice(1));
  };
  return subject.startsWith('/') && segments(pattern.slice(1).split('/'), subject.slice(1).split('/'));
}

/** A seeded generator (mulberry32): the same cases in every run, so a failure can be replayed. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

t.test('the matcher agrees with the reference on 20,000 random patterns and paths', async (t) => {
  const next = random(15);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!;
  const word = (alphabet: readonly string[], max: number) => Array.from({ length: Math.floor(next() * (max + 1)) }, () => pick(alphabet)).join('');
  let matched = 0;
  let disagreements = 0;
  for (let i = 0; i < 20_000; i++) {
    const patternSegments = Array.from({ length: 1 + Math.floor(next() * 4) }, () => (next() < 0.2 ? '**' : word(['a', 'b', '*', '?', '-', '😀'], 4) || 'a'));
    const pattern = `/${patternSegments.join('/')}`;
    const subject = `/${Array.from({ length: 1 + Math.floor(next() * 5) }, () => word(['a', 'b', '-', '😀'], 4)).join('/')}`;
    const expected = referenceMatch(pattern, subject);
    if (compilePattern(pattern)(subject) !== expected && disagreements++ < 10) t.fail(`${pattern} ~ ${subject}: the reference says ${expected}`);
    if (expected) matched++;
  }
  t.equal(disagreements, 0, 'no disagreement');
  t.ok(matched > 500, `both outcomes are well represented (${matched} matches)`);
});

/** The fastest of five rounds of `repeat` calls, in nanoseconds: the least disturbed by other load. */
function fastest(repeat: number, work: () => unknown): number {
  let best = Infinity;
  for (let round = 0; round < 5; round++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < repeat; i++) work();
    best = Math.min(best, Number(process.hrtime.bigint() - start));
  }
  return best;
}

// Each worst case from the review against a plain pattern matching a path of
// the same length. A backtracking matcher takes seconds to hours on these.
const RATIO = 50;
const WORST_CASES: { name: string; pattern: string; subject: string; plain: string; plainSubject: string }[] = [
  {
    name: 'DIR/*-*-*-*-*.vm.repair against a 240-character near miss',
    pattern: '/run/passt/*-*-*-*-*.vm.repair',
    subject: `/run/passt/${'-'.repeat(233)}.repair`,
    plain: '/run/passt/*.repair',
    plainSubject: `/run/passt/${'a'.repeat(233)}.repair`,
  },
  {
    name: '*a*a*a*a*ab against a 250-character segment',
    pattern: '/run/*a*a*a*a*ab',
    subject: `/run/${'a'.repeat(250)}`,
    plain: '/run/*b',
    plainSubject: `/run/${'a'.repeat(249)}b`,
  },
  {
    name: 'five ** at depth 200',
    pattern: '/**/a/**/a/**/a/**/a/**/b',
    subject: '/a'.repeat(200),
    plain: '/**/b',
    plainSubject: `${'/a'.repeat(199)}/b`,
  },
];

for (const { name, pattern, subject, plain, plainSubject } of WORST_CASES) {
  t.test(`no stall: ${name}`, async (t) => {
    const attack = compilePattern(pattern);
    const baseline = compilePattern(plain);
    t.equal(attack(subject), false, 'a near miss');
    t.equal(baseline(plainSubject), true, 'the baseline matches');
    const attackNs = fastest(200, () => attack(subject));
    const baselineNs = fastest(200, () => baseline(plainSubject));
    t.ok(attackNs < RATIO * baselineNs, `within ${RATIO}x of a plain match: ${(attackNs / baselineNs).toFixed(1)}x`);
  });
}

t.test('no stall: --explain on a 12,000-rule policy of near-miss patterns', async (t) => {
  const dir = temporaryDirectory();
  t.teardown(() => fs.rmSync(dir, { recursive: true }));
  const subject = path.join(dir, `${'-'.repeat(200)}.repair`);
  const policyOf = (socketPattern: (i: number) => string) =>
    parsePolicy('p.json', JSON.stringify({ version: 1, rules: Array.from({ length: 12_000 }, (_, i) => ({ name: `r${i}`, sockets: [socketPattern(i)], peer: {} })) }));
  const attack = policyOf((i) => `${dir}/*-*-*-*-${i}.vm.repair`);
  const plain = policyOf((i) => `${dir}/${i}.repair`);
  const explained = explainPath(attack, subject);
  t.equal(explained.allowed, false);
  t.match(explained.text, /no rule of p\.json allows it as a socket\n$/);
  const attackNs = fastest(1, () => explainPath(attack, subject));
  const plainNs = fastest(1, () => explainPath(plain, subject));
  t.ok(attackNs < RATIO * plainNs, `within ${RATIO}x of a policy of plain patterns: ${(attackNs / plainNs).toFixed(1)}x`);
});

t.test('directory mode: three planted 240-character near misses are skipped and the real socket is served', async (t) => {
  const dir = temporaryDirectory();
  const policyDir = temporaryDirectory();
  const loopback = await loopbackConnections(1);
  t.teardown(async () => {
    await loopback.close();
    fs.rmSync(dir, { recursive: true });
    fs.rmSync(policyDir, { recursive: true });
  });
  const policy = writePolicy(policyDir, { version: 1, rules: [{ name: 'vms', directories: [dir], sockets: [`${dir}/*-*-*-*-*.vm.repair`], peer: {} }] });
  // Names longer than sun_path: bound under a short name, then renamed. They
  // sort before the real socket, so the helper meets them first.
  const planted = [1, 2, 3].map((i) => `${'-'.repeat(232)}${i}.repair`);
  const descriptors: number[] = [];
  for (const name of planted) {
    descriptors.push(passt.bindUnix(path.join(dir, 'short')));
    fs.renameSync(path.join(dir, 'short'), path.join(dir, name));
  }
  const listener = passt.listenUnix(path.join(dir, 'a-b-c-d-e.vm.repair'));
  descriptors.push(listener);
  t.teardown(() => descriptors.forEach((fd) => fs.closeSync(fd)));
  const helper = startHelper(['--policy', policy, dir]);
  // A hang guard, not a measurement: a backtracking matcher takes hours here.
  const sock = await acceptHelper(listener, 120_000);
  passt.sendRequest(sock, Buffer.from([TCP_REPAIR_ON]), loopback.fds);
  t.equal(await awaitReply(sock), TCP_REPAIR_ON, 'the real socket is served');
  fs.closeSync(sock);
  const { code, stderr } = await helper.exited;
  t.equal(code, 0);
  const lines = stderr.split('\n');
  const skipped = lines.flatMap((line, i) => (line.startsWith(`passt-repair: skipping ${dir}/-`) ? [i] : []));
  const connected = lines.findIndex((line) => line.startsWith(`passt-repair: connected to ${dir}/a-b-c-d-e.vm.repair`));
  t.equal(skipped.length, 3, 'each planted name is skipped with a warning');
  t.ok(connected > Math.max(...skipped), 'then the real socket is connected to');
});
