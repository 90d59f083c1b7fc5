// SPDX-License-Identifier: GPL-2.0-or-later
// npm run bench: plays passt against the real helper and the floors written
// for the comparison (test/bench/floor.c, built four times: bare, as passt's
// C helper behaves; with the helper's per-descriptor checks; with those
// checks and the helper's design, descriptors closed after the reply; and
// switching nothing, the benchmark's own side; test/bench/bare-node.ts), then prints
// each helper's figures and the ratios against the project's targets, and
// what the seccomp filter costs per call (test/bench/filter-cost.ts).
// passt's side runs in native loops (test/native/passt-double.cc).
//
// npm run bench -- --soak: one long session of the real helper with
// alternating commands, its memory, descriptors and throughput sampled.
//
// Exits 0 whatever the figures (it is a measurement); 1 if something broke
// (a socket in the wrong repair state, a helper that died or misbehaved);
// 2 on a usage error.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { HOT_CALLS, type CallCosts } from './filter-cost';
import { HELPER, ROOT, TCP_REPAIR_OFF, TCP_REPAIR_OFF_NO_WP, TCP_REPAIR_ON, passt, writePolicy, NODE, RUNTIME_LAUNCHER } from '../passt-double/passt-double';

const SCM_MAX_FD = 253;
const DEFAULT_ROUNDS = 5;
const DEFAULT_SPAWNS = 15;
// 16 full batches: the "4,048 sockets ON then OFF" figure, and a few hundred
// batches per helper in a run of about two minutes.
const DEFAULT_CONNECTION_CAP = 4048;
const DEFAULT_SOAK_MINUTES = 10;
const DEFAULT_SOAK_CONNECTIONS = 2000;
const SOAK_SAMPLE_MS = 1000;
/** The soak's memory target: RSS grows less than this after its first minute (bytes). */
const SOAK_GROWTH_LIMIT_BYTES = 2e6;
const SOAK_MIN_OPERATIONS = 10_000_000;
/** getsockopt calls per timed loop of the filter probe. */
const FILTER_PROBE_CALLS = 200_000;
/** What a helper's stderr keeps for the failure message: its last lines, never all of a long run's. */
const STDERR_TAIL = 64 * 1024;
// Descriptors the benchmark keeps for itself beyond the connections: Node's
// own, the listeners, the helpers' connections and their stdio pipes.
const DESCRIPTOR_HEADROOM = 512;
const CONNECT_TIMEOUT_MS = 10_000;
const EXIT_TIMEOUT_MS = 10_000;

const C_FLOOR_SOURCE = path.join(ROOT, 'test/bench/floor.c');
const C_FLOOR = path.join(ROOT, 'test/build/bench/floor');
// The same source built with -DCHECKED: the helper's two getsockopt checks per descriptor.
const C_FLOOR_CHECKED = path.join(ROOT, 'test/build/bench/floor-checked');
// With -DCHECKED -DLATE_CLOSE: the helper's design in C (checks, setsockopt, reply, then close_range).
const C_FLOOR_LATE_CLOSE = path.join(ROOT, 'test/build/bench/floor-late-close');
// And with -DEXCHANGE: receive, close, reply; passt's side and the kernel's passage of the descriptors.
const C_FLOOR_EXCHANGE = path.join(ROOT, 'test/build/bench/floor-exchange');
const BARE_NODE = path.join(ROOT, 'dist/test/bench/bare-node.js');
const FILTER_COST = path.join(ROOT, 'dist/test/bench/filter-cost.js');

/** The Node.js flags and environment the launcher (native/launcher.c) gives the helper (test/bench.test.ts checks they stay in step). */
export const HELPER_NODE_FLAGS = ['--disable-sigusr1', '--disallow-code-generation-from-strings'];
export const HELPER_ENVIRONMENT = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', UV_USE_IO_URING: '0' };

const USAGE = `Usage: node dist/test/bench/bench.js [--connections N] [--rounds R] [--spawns S] [--json]
       node dist/test/bench/bench.js --soak [--minutes M] [--connections N] [--helper PATH] [--json]

Plays passt against bin/passt-repair, minimal C helpers (test/bench/floor.c) and a
bare Node.js process (test/bench/bare-node.ts), and prints the ratios to the targets.

  --connections N  loopback TCP connections to switch (default: what
                   RLIMIT_NOFILE allows, at most ${DEFAULT_CONNECTION_CAP}; ${DEFAULT_SOAK_CONNECTIONS} in a soak)
  --rounds R       timed ON/OFF rounds per helper after a warm-up round (default ${DEFAULT_ROUNDS})
  --spawns S       start-ups (each with a first request) timed per helper; the median counts (default ${DEFAULT_SPAWNS})
  --soak           one session of the helper for M minutes, each batch switched ON then
                   OFF, its RSS, descriptors and throughput sampled every second
  --minutes M      the soak's length (default ${DEFAULT_SOAK_MINUTES})
  --helper PATH    the helper the soak runs (default bin/passt-repair; another build of it, to compare)
  --json           print the results as one JSON object
`;

interface HelperSpec {
  key: 'passtRepair' | 'cFloor' | 'cFloorChecked' | 'cFloorLateClose' | 'exchangeFloor' | 'bareNode';
  label: string;
  command: string[];
  env: NodeJS.ProcessEnv;
  /** Whether it is sent requests (the bare Node.js floor only connects). */
  takesRequests: boolean;
  /** Whether it switches the sockets it is sent (the exchange floor only closes them). */
  switchesSockets: boolean;
}

/** The helpers in the comparison; the real one runs under `policy` with the production sandbox defaults. */
function helperSpecs(policy: string): HelperSpec[] {
  return [
    // The launcher clears the environment itself.
    { key: 'passtRepair', label: 'passt-repair', command: [HELPER, '--policy', policy], env: process.env, takesRequests: true, switchesSockets: true },
    { key: 'cFloor', label: 'C floor', command: [C_FLOOR], env: HELPER_ENVIRONMENT, takesRequests: true, switchesSockets: true },
    {
      key: 'cFloorChecked',
      label: "C floor with the helper's checks",
      command: [C_FLOOR_CHECKED],
      env: HELPER_ENVIRONMENT,
      takesRequests: true,
      switchesSockets: true,
    },
    {
      key: 'cFloorLateClose',
      label: 'C floor, checked, closes after the reply',
      command: [C_FLOOR_LATE_CLOSE],
      env: HELPER_ENVIRONMENT,
      takesRequests: true,
      switchesSockets: true,
    },
    {
      key: 'exchangeFloor',
      label: 'exchange floor (nothing switched)',
      command: [C_FLOOR_EXCHANGE],
      env: HELPER_ENVIRONMENT,
      takesRequests: true,
      switchesSockets: false,
    },
    // Launched directly, not through a launcher: see test/bench/bare-node.ts. The clean
    // environment also keeps a caller's NODE_OPTIONS (tap sets some) off this floor.
    {
      key: 'bareNode',
      label: 'bare Node.js floor',
      command: [NODE, ...HELPER_NODE_FLAGS, BARE_NODE],
      env: HELPER_ENVIRONMENT,
      takesRequests: false,
      switchesSockets: false,
    },
  ];
}

/** Something that makes the figures meaningless: reported, and the run exits 1. */
class BenchBroke extends Error {}
class UsageError extends Error {}

interface Options {
  connections: number;
  rounds: number;
  spawns: number;
  json: boolean;
  /** Present for a soak. */
  soak?: { minutes: number; helper: string };
}

interface Launched {
  spec: HelperSpec;
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
  connection: number;
  listener: number;
  socketPath: string;
}

interface StartUp {
  ms: number;
  rssMiB: number;
  /** Accept to the first reply, a full batch sent right after accepting (helpers that take requests). */
  firstRequestNs?: number | undefined;
}

interface SwitchingFigures {
  /** Round trips of full batches (min(SCM_MAX_FD, connections) descriptors): what the percentiles describe. */
  fullBatchesNs: number[];
  /** Every round trip, the last short batch of each pass included. */
  totalNs: number;
  sockets: number;
  /** Each timed round's ON pass plus OFF pass over every connection, round trips only. */
  onOffNs: number[];
  peakRssMiB: number;
}

// ---------------------------------------------------------------- set-up

/** The soft and hard RLIMIT_NOFILE of this process, as the kernel reports them. */
function openFileLimits(): { soft: number; hard: number } {
  const line = fs.readFileSync('/proc/self/limits', 'utf8').match(/^Max open files\s+(\S+)\s+(\S+)/m);
  const value = (text: string | undefined) => (text === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(text));
  return { soft: value(line?.[1]), hard: value(line?.[2]) };
}

/** Raises the soft RLIMIT_NOFILE to the hard one (Node.js does so at start-up; this covers a runtime that does not). */
function raiseOpenFileLimit(): number {
  const limits = openFileLimits();
  if (limits.soft < limits.hard) {
    spawnSync('prlimit', ['--pid', String(process.pid), `--nofile=${limits.hard}:${limits.hard}`], { stdio: 'inherit' });
  }
  return openFileLimits().soft;
}

function parseOptions(args: string[]): Options {
  let values;
  try {
    values = parseArgs({
      args,
      strict: true,
      options: {
        connections: { type: 'string' },
        rounds: { type: 'string' },
        spawns: { type: 'string' },
        soak: { type: 'boolean', default: false },
        minutes: { type: 'string' },
        helper: { type: 'string' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', default: false },
      },
    }).values;
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  if (values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const positive = (name: string, text: string | undefined, fallback: number, pattern = /^[1-9][0-9]*$/): number => {
    if (text === undefined) return fallback;
    if (!pattern.test(text)) throw new UsageError(`--${name} needs a number greater than 0, not "${text}"`);
    return Number(text);
  };
  if (!values.soak) {
    for (const name of ['minutes', 'helper'] as const)
      if (values[name] !== undefined) throw new UsageError(`--${name} is for a soak (--soak)`);
  } else {
    for (const name of ['rounds', 'spawns'] as const)
      if (values[name] !== undefined) throw new UsageError(`--${name} is not for a soak`);
  }
  // Each connection costs two descriptors here: both ends stay in this process.
  const maxConnections = Math.floor((raiseOpenFileLimit() - DESCRIPTOR_HEADROOM) / 2);
  const fallback = Math.min(values.soak ? DEFAULT_SOAK_CONNECTIONS : DEFAULT_CONNECTION_CAP, maxConnections);
  const connections = positive('connections', values.connections, fallback);
  if (connections > maxConnections) {
    throw new UsageError(`--connections ${connections} exceeds what RLIMIT_NOFILE allows here (${maxConnections})`);
  }
  const options: Options = {
    connections,
    rounds: positive('rounds', values.rounds, DEFAULT_ROUNDS),
    spawns: positive('spawns', values.spawns, DEFAULT_SPAWNS),
    json: values.json,
  };
  if (values.soak) {
    const helper = path.resolve(values.helper ?? HELPER);
    if (!fs.existsSync(helper)) throw new UsageError(`--helper ${values.helper}: no such file`);
    options.soak = { minutes: positive('minutes', values.minutes, DEFAULT_SOAK_MINUTES, /^(?:[1-9][0-9]*(?:\.[0-9]+)?|0\.[0-9]*[1-9][0-9]*)$/), helper };
  }
  return options;
}

/** Compiles the C floors (bare, -DCHECKED, -DCHECKED -DLATE_CLOSE, -DEXCHANGE) when a binary is missing or older than the source. */
function buildCFloors(): void {
  const floors = [
    [C_FLOOR, []],
    [C_FLOOR_CHECKED, ['-DCHECKED']],
    [C_FLOOR_LATE_CLOSE, ['-DCHECKED', '-DLATE_CLOSE']],
    [C_FLOOR_EXCHANGE, ['-DEXCHANGE']],
  ] as const;
  for (const [binary, defines] of floors) {
    const built = fs.statSync(binary, { throwIfNoEntry: false });
    if (built && built.mtimeMs >= fs.statSync(C_FLOOR_SOURCE).mtimeMs) continue;
    fs.mkdirSync(path.dirname(binary), { recursive: true });
    const result = spawnSync('cc', ['-O2', '-Wall', ...defines, '-o', binary, C_FLOOR_SOURCE], { stdio: 'inherit' });
    if (result.status !== 0) throw new BenchBroke(`cc could not build ${binary} from ${C_FLOOR_SOURCE}`);
  }
}

/** The descriptor under a connected net.Socket. The passt double has no connect(), and libuv exposes it here. */
function descriptorOf(socket: net.Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new BenchBroke('a loopback connection has no descriptor');
  return fd;
}

/**
 * Opens `count` loopback TCP connections and keeps both ends. Only the client
 * ends' descriptors are handed to helpers; the accepted ends just keep each
 * connection established.
 */
async function openLoopbackConnections(count: number): Promise<{ fds: number[]; close: () => void }> {
  const accepted: net.Socket[] = [];
  const server = net.createServer({ pauseOnConnect: true }, (socket) => accepted.push(socket));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0, backlog: 1024 }, resolve);
  });
  const { port } = server.address() as net.AddressInfo;
  const clients: net.Socket[] = [];
  // In steps, so the accept backlog never overflows.
  const STEP = 512;
  for (let opened = 0; opened < count; opened += STEP) {
    const step = Array.from({ length: Math.min(STEP, count - opened) }, () =>
      new Promise<net.Socket>((resolve, reject) => {
        const socket = net.connect({ host: '127.0.0.1', port }, () => resolve(socket));
        socket.once('error', reject);
      }),
    );
    clients.push(...(await Promise.all(step)));
  }
  while (accepted.length < count) await new Promise((resolve) => setImmediate(resolve));
  for (const client of clients) client.pause();
  return {
    fds: clients.map(descriptorOf),
    close: () => {
      for (const socket of [...clients, ...accepted]) socket.destroy();
      server.close();
    },
  };
}

// ---------------------------------------------------------------- helpers' lives

/** Helpers connected to passt's side and not yet released. */
const connected = new Set<Launched>();

/** A field of /proc/PID/status in kB (VmHWM: peak resident set; VmRSS: resident set now). */
function statusKiB(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  const match = fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm'));
  if (!match) throw new BenchBroke(`no ${field} in /proc/${pid}/status`);
  return Number(match[1]);
}

/** /proc/PID/status VmHWM: the peak resident set so far, in MiB. */
function peakRssMiB(pid: number): number {
  return statusKiB(pid, 'VmHWM') / 1024;
}

/**
 * Starts a helper and waits for it to connect. The spawn-to-accept time is
 * measured with a blocking accept: nothing else runs meanwhile, and polling
 * would add its interval to the figure.
 */
function launch(spec: HelperSpec, directory: string): { launched: Launched; startUpMs: number } {
  const socketPath = path.join(directory, `${spec.key}.repair`);
  fs.rmSync(socketPath, { force: true });
  const listener = passt.listenUnix(socketPath);
  const started = process.hrtime.bigint();
  const child = spawn(spec.command[0]!, [...spec.command.slice(1), socketPath], {
    env: spec.env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const connection = passt.accept(listener, CONNECT_TIMEOUT_MS);
  const startUpMs = Number(process.hrtime.bigint() - started) / 1e6;
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-STDERR_TAIL)));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal, stderr })),
  );
  if (connection < 0) {
    child.kill('SIGKILL');
    fs.closeSync(listener);
    throw new BenchBroke(`${spec.label} did not connect within ${CONNECT_TIMEOUT_MS} ms`);
  }
  const launched = { spec, child, exited, connection, listener, socketPath };
  connected.add(launched);
  return { launched, startUpMs };
}

/** Closes passt's side (once), which tells the helper it is done. */
function release(launched: Launched): void {
  if (!connected.delete(launched)) return;
  fs.closeSync(launched.connection);
  fs.closeSync(launched.listener);
  fs.rmSync(launched.socketPath, { force: true });
}

/** After a failure: no helper may outlive the run or keep it from exiting. */
function abandonAll(): void {
  for (const launched of connected) {
    release(launched);
    launched.child.kill('SIGKILL');
  }
}

/** Tells the helper it is done and checks that it exited 0. */
async function finish(launched: Launched): Promise<void> {
  release(launched);
  const timeout = setTimeout(() => launched.child.kill('SIGKILL'), EXIT_TIMEOUT_MS);
  const { code, signal, stderr } = await launched.exited;
  clearTimeout(timeout);
  if (code !== 0) {
    const how = signal ? `was killed by ${signal}` : `exited ${code}`;
    throw new BenchBroke(`${launched.spec.label} ${how} after passt closed the connection${stderr ? `: ${stderr.trim()}` : ''}`);
  }
}

/** A helper that stopped replying: wait for its account of why, then report it. */
async function brokeDuring(launched: Launched, what: string): Promise<never> {
  release(launched);
  const timeout = setTimeout(() => launched.child.kill('SIGKILL'), EXIT_TIMEOUT_MS);
  const { code, signal, stderr } = await launched.exited;
  clearTimeout(timeout);
  const how = signal ? `killed by ${signal}` : `exit ${code}`;
  throw new BenchBroke(`${launched.spec.label} ${what} (${how})${stderr ? `: ${stderr.trim()}` : ''}`);
}

/** One request and its reply; a helper that replies anything else ends the run. */
async function request(launched: Launched, command: number, fds: number[]): Promise<number> {
  const [reply, ns] = passt.roundTrip(launched.connection, command, fds);
  if (reply !== command) {
    await brokeDuring(launched, reply === null ? `closed the connection on command ${command}` : `replied ${reply} to command ${command}`);
  }
  return ns;
}

/**
 * Each spawn is timed from spawn to accept; a helper that takes requests is
 * then sent a full batch at once, as passt does after accepting it, and that
 * round trip is its first-request latency (then switched back, untimed).
 */
async function measureStartUps(specs: HelperSpec[], spawns: number, directory: string, fds: number[]): Promise<Map<HelperSpec, StartUp>> {
  const samples = new Map(specs.map((spec) => [spec, [] as StartUp[]]));
  const firstBatch = fds.slice(0, SCM_MAX_FD);
  // The first spawn of each warms the page cache and is not counted; then the
  // order rotates so that no helper always follows the same one.
  for (let spawnIndex = -1; spawnIndex < spawns; spawnIndex++) {
    for (const spec of rotate(specs, Math.max(spawnIndex, 0))) {
      const { launched, startUpMs } = launch(spec, directory);
      const rssMiB = peakRssMiB(launched.child.pid!);
      let firstRequestNs: number | undefined;
      if (spec.takesRequests) {
        firstRequestNs = await request(launched, TCP_REPAIR_ON, firstBatch);
        await request(launched, TCP_REPAIR_OFF_NO_WP, firstBatch);
      }
      await finish(launched);
      if (spawnIndex >= 0) samples.get(spec)!.push({ ms: startUpMs, rssMiB, firstRequestNs });
    }
  }
  return new Map(
    [...samples].map(([spec, runs]) => {
      const first = runs.flatMap((run) => (run.firstRequestNs === undefined ? [] : [run.firstRequestNs]));
      return [
        spec,
        {
          ms: median(runs.map((run) => run.ms)),
          rssMiB: median(runs.map((run) => run.rssMiB)),
          ...(first.length > 0 && { firstRequestNs: median(first) }),
        },
      ];
    }),
  );
}

// ---------------------------------------------------------------- switching sockets

interface Verification {
  passes: number;
  checks: number;
}

/** Sends every socket to the helper with `command` in batches of SCM_MAX_FD, in passt-double's native loop; returns each batch's round trip. */
async function switchAll(launched: Launched, fds: number[], command: number): Promise<number[]> {
  const { reply, ns } = passt.switchAll(launched.connection, command, fds);
  if (reply !== command) {
    await brokeDuring(launched, reply === null ? `closed the connection on command ${command}` : `replied ${reply} to command ${command}`);
  }
  return ns;
}

/** Checks every socket's repair state with getsockopt; any mismatch ends the run. */
function verifyAll(fds: number[], command: number, label: string, verification: Verification): void {
  const expected = command === TCP_REPAIR_ON ? 1 : 0;
  const wrong = fds.filter((fd) => passt.repairState(fd) !== expected);
  verification.passes++;
  verification.checks += fds.length;
  if (wrong.length > 0) {
    throw new BenchBroke(
      `after ${label} applied command ${command}, ${wrong.length} of ${fds.length} sockets are not in ` +
        `repair state ${expected} (descriptors ${wrong.slice(0, 10).join(', ')}${wrong.length > 10 ? ', ...' : ''})`,
    );
  }
}

/**
 * Every helper is connected at once; each round switches all sockets ON then
 * OFF through each helper in turn, the order rotating every round, after one
 * warm-up round per helper that is not counted. OFF alternates between
 * TCP_REPAIR_OFF and TCP_REPAIR_OFF_NO_WP so that every command is exercised.
 */
async function measureSwitching(
  specs: HelperSpec[],
  fds: number[],
  rounds: number,
  directory: string,
  verification: Verification,
): Promise<Map<HelperSpec, SwitchingFigures>> {
  const sessions = specs.map((spec) => launch(spec, directory).launched);
  const fullBatch = Math.min(SCM_MAX_FD, fds.length);
  const figures = new Map(
    sessions.map((launched) => [launched, { fullBatchesNs: [] as number[], totalNs: 0, sockets: 0, onOffNs: [] as number[], peakRssMiB: 0 }]),
  );
  for (let round = -1; round < rounds; round++) {
    const off = round % 2 === 0 ? TCP_REPAIR_OFF : TCP_REPAIR_OFF_NO_WP;
    for (const launched of rotate(sessions, Math.max(round, 0))) {
      let onOffNs = 0;
      for (const command of [TCP_REPAIR_ON, off]) {
        const roundTrips = await switchAll(launched, fds, command);
        if (launched.spec.switchesSockets) verifyAll(fds, command, launched.spec.label, verification);
        if (round < 0) continue;
        const figure = figures.get(launched)!;
        roundTrips.forEach((ns, index) => {
          const size = Math.min(SCM_MAX_FD, fds.length - index * SCM_MAX_FD);
          if (size === fullBatch) figure.fullBatchesNs.push(ns);
          figure.totalNs += ns;
          onOffNs += ns;
        });
        figure.sockets += fds.length;
      }
      if (round >= 0) figures.get(launched)!.onOffNs.push(onOffNs);
    }
  }
  for (const launched of sessions) {
    figures.get(launched)!.peakRssMiB = peakRssMiB(launched.child.pid!);
    await finish(launched);
  }
  return new Map([...figures].map(([launched, figure]) => [launched.spec, figure]));
}

// ---------------------------------------------------------------- the filter's cost

interface FilterCost {
  calls: number;
  /** ns per call, without and with the helper's filter. */
  bare: CallCosts;
  filtered: CallCosts;
}

/** test/bench/filter-cost.ts in the helper's runtime and sandbox: the protocol loop's system calls with and without the filter. */
function measureFilterCost(): FilterCost {
  const run = spawnSync(RUNTIME_LAUNCHER, [NODE, ...HELPER_NODE_FLAGS, FILTER_COST, String(FILTER_PROBE_CALLS)], { encoding: 'utf8' });
  if (run.status !== 0) throw new BenchBroke(`${FILTER_COST} failed (${run.signal ?? `exit ${run.status}`}): ${run.stderr.trim()}`);
  return JSON.parse(run.stdout) as FilterCost;
}

// ---------------------------------------------------------------- figures

function rotate<T>(items: T[], by: number): T[] {
  const shift = by % items.length;
  return [...items.slice(shift), ...items.slice(0, shift)];
}

/** Nearest-rank percentile. */
function percentile(values: number[], fraction: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil(fraction * sorted.length) - 1)]!;
}

function median(values: number[]): number {
  return percentile(values, 0.5);
}

interface HelperResult {
  command: string[];
  startupMs: number;
  rssAtStartMiB: number;
  peakRssMiB: number;
  /** Accept to the first reply, a full batch sent right after accepting; median over the spawns. */
  firstRequestUs?: number;
  batchP50Us?: number;
  batchP99Us?: number;
  socketsPerSecond?: number;
  /** Every connection switched ON then OFF, round trips only; median over the rounds. */
  onOffMs?: number;
  /** Full batches behind the percentiles. */
  batches?: number;
}

interface Target {
  description: string;
  ratio: number;
  limit: number;
  /** "max": the ratio must not exceed the limit; "min": it must reach it. */
  bound: 'max' | 'min';
  pass: boolean;
}

interface Ratio {
  description: string;
  ratio: number;
}

export interface BenchResult {
  parameters: { connections: number; rounds: number; spawns: number; batchSize: number };
  helpers: Record<HelperSpec['key'], HelperResult>;
  verification: { sockets: number; passes: number; checks: number; allVerified: boolean };
  /** Against the C floor with the helper's checks, and the helper's own steady state and the bare Node.js floor. */
  targets: { batchP50: Target; socketsPerSecond: Target; onOff: Target; firstRequest: Target; startup: Target; peakRss: Target };
  /** Against the bare C floor (what passt's own C helper does): ratios, no verdict. */
  againstBareFloor: { batchP50: Ratio; socketsPerSecond: Ratio; onOff: Ratio };
  /**
   * The helper's design in C (checked, closes after the reply) against the
   * checked floor: what the design itself reaches; and the helper against
   * that floor: what the helper's own machinery (Node.js, N-API, JavaScript,
   * seccomp, its wait for a request) adds, with the batch p50 difference.
   */
  design: {
    floor: { batchP50: Ratio; socketsPerSecond: Ratio; onOff: Ratio };
    helperOverDesign: { batchP50: Ratio; socketsPerSecond: Ratio; onOff: Ratio; batchP50AddedUs: number };
  };
  /**
   * What each step costs per descriptor, in ns: setsockopt (bare floor minus
   * exchange floor), the two checks together (checked floor minus bare
   * floor), each check alone (a native getsockopt loop), and what the
   * seccomp filter adds to each check.
   */
  perDescriptorNs: { setsockopt: number; checks: number; soProtocol: number; tcpRepair: number; filterOnSoProtocol: number; filterOnTcpRepair: number };
  filter: FilterCost & {
    /** What the filter adds to each of the protocol loop's calls, ns. */
    addedNs: CallCosts;
    /** ... and to a full batch: three calls a descriptor, four a request (µs). */
    perBatchUs: number;
  };
  /** The benchmark's own side: the exchange floor's share of the helper's batch p50. */
  passtSide: { batchP50Us: number; shareOfHelper: number };
}

function target(description: string, ratio: number, bound: 'max' | 'min', limit: number): Target {
  return { description, ratio, limit, bound, pass: bound === 'max' ? ratio <= limit : ratio >= limit };
}

function summarize(
  specs: HelperSpec[],
  options: Options,
  startUps: Map<HelperSpec, StartUp>,
  switching: Map<HelperSpec, SwitchingFigures>,
  verification: Verification,
  filter: FilterCost,
): BenchResult {
  const result = {} as Record<HelperSpec['key'], HelperResult>;
  for (const spec of specs) {
    const startUp = startUps.get(spec)!;
    const figures = switching.get(spec);
    result[spec.key] = {
      command: spec.command.map((part) => path.relative(ROOT, part) || part),
      startupMs: startUp.ms,
      rssAtStartMiB: startUp.rssMiB,
      // The bare Node.js floor only connects: its peak is the one read before it is told to exit.
      peakRssMiB: figures ? figures.peakRssMiB : startUp.rssMiB,
      ...(startUp.firstRequestNs !== undefined && { firstRequestUs: startUp.firstRequestNs / 1e3 }),
      ...(figures && {
        batchP50Us: percentile(figures.fullBatchesNs, 0.5) / 1e3,
        batchP99Us: percentile(figures.fullBatchesNs, 0.99) / 1e3,
        // Round-trip time only: passt is blocked for exactly that long.
        socketsPerSecond: figures.sockets / (figures.totalNs / 1e9),
        onOffMs: median(figures.onOffNs) / 1e6,
        batches: figures.fullBatchesNs.length,
      }),
    };
  }
  const { passtRepair, cFloor, cFloorChecked, cFloorLateClose, exchangeFloor, bareNode } = result;
  const batchSize = Math.min(SCM_MAX_FD, options.connections);
  const added = Object.fromEntries(HOT_CALLS.map((call) => [call, filter.filtered[call] - filter.bare[call]])) as CallCosts;
  const onOff = `${options.connections} sockets ON then OFF`;
  return {
    parameters: { connections: options.connections, rounds: options.rounds, spawns: options.spawns, batchSize },
    helpers: result,
    verification: { sockets: options.connections, passes: verification.passes, checks: verification.checks, allVerified: true },
    targets: {
      batchP50: target('batch p50 / checked C floor', passtRepair.batchP50Us! / cFloorChecked.batchP50Us!, 'max', 0.9),
      socketsPerSecond: target('sockets per second / checked C floor', passtRepair.socketsPerSecond! / cFloorChecked.socketsPerSecond!, 'min', 1.1),
      onOff: target(`${onOff} / checked C floor`, passtRepair.onOffMs! / cFloorChecked.onOffMs!, 'max', 0.9),
      firstRequest: target('first request / own steady-state batch p50', passtRepair.firstRequestUs! / passtRepair.batchP50Us!, 'max', 1.5),
      startup: target('start-up / bare Node.js floor', passtRepair.startupMs / bareNode.startupMs, 'max', 1.15),
      peakRss: target('peak RSS / bare Node.js floor', passtRepair.peakRssMiB / bareNode.peakRssMiB, 'max', 1.1),
    },
    againstBareFloor: {
      batchP50: { description: 'batch p50 / C floor', ratio: passtRepair.batchP50Us! / cFloor.batchP50Us! },
      socketsPerSecond: { description: 'sockets per second / C floor', ratio: passtRepair.socketsPerSecond! / cFloor.socketsPerSecond! },
      onOff: { description: `${onOff} / C floor`, ratio: passtRepair.onOffMs! / cFloor.onOffMs! },
    },
    design: {
      floor: {
        batchP50: { description: 'batch p50', ratio: cFloorLateClose.batchP50Us! / cFloorChecked.batchP50Us! },
        socketsPerSecond: { description: 'sockets/s', ratio: cFloorLateClose.socketsPerSecond! / cFloorChecked.socketsPerSecond! },
        onOff: { description: 'ON+OFF', ratio: cFloorLateClose.onOffMs! / cFloorChecked.onOffMs! },
      },
      helperOverDesign: {
        batchP50: { description: 'batch p50', ratio: passtRepair.batchP50Us! / cFloorLateClose.batchP50Us! },
        socketsPerSecond: { description: 'sockets/s', ratio: passtRepair.socketsPerSecond! / cFloorLateClose.socketsPerSecond! },
        onOff: { description: 'ON+OFF', ratio: passtRepair.onOffMs! / cFloorLateClose.onOffMs! },
        batchP50AddedUs: passtRepair.batchP50Us! - cFloorLateClose.batchP50Us!,
      },
    },
    perDescriptorNs: {
      setsockopt: ((cFloor.batchP50Us! - exchangeFloor.batchP50Us!) * 1e3) / batchSize,
      checks: ((cFloorChecked.batchP50Us! - cFloor.batchP50Us!) * 1e3) / batchSize,
      soProtocol: filter.bare['getsockopt SO_PROTOCOL'],
      tcpRepair: filter.bare['getsockopt TCP_REPAIR'],
      filterOnSoProtocol: added['getsockopt SO_PROTOCOL'],
      filterOnTcpRepair: added['getsockopt TCP_REPAIR'],
    },
    filter: {
      ...filter,
      addedNs: added,
      perBatchUs:
        (batchSize * (added['getsockopt SO_PROTOCOL'] + added['getsockopt TCP_REPAIR'] + added['setsockopt TCP_REPAIR']) +
          added.recvmsg +
          added.sendto +
          added.close_range +
          added.ppoll) /
        1e3,
    },
    passtSide: { batchP50Us: exchangeFloor.batchP50Us!, shareOfHelper: exchangeFloor.batchP50Us! / passtRepair.batchP50Us! },
  };
}

function printTable(specs: HelperSpec[], result: BenchResult): void {
  const { connections, rounds, spawns, batchSize } = result.parameters;
  const lines = [
    `passt-repair benchmark: ${connections} loopback TCP connections, ${rounds} ON/OFF rounds after a warm-up round, ` +
      `batches of ${batchSize} (percentiles over full batches); start-up and first request (a batch of ${batchSize} ` +
      `sent on accepting) are the medians of ${spawns} spawns`,
    '',
  ];
  const columns = ['helper', 'start-up ms', 'first request µs', 'batch p50 µs', 'batch p99 µs', 'sockets/s', `${connections} ON+OFF ms`, 'RSS at start MiB', 'peak RSS MiB'];
  const rows = specs.map((spec) => {
    const helper = result.helpers[spec.key];
    const figure = (value: number | undefined, digits: number) => (value === undefined ? '-' : value.toFixed(digits));
    return [
      spec.label,
      figure(helper.startupMs, 1),
      figure(helper.firstRequestUs, 1),
      figure(helper.batchP50Us, 1),
      figure(helper.batchP99Us, 1),
      figure(helper.socketsPerSecond, 0),
      figure(helper.onOffMs, 2),
      figure(helper.rssAtStartMiB, 1),
      figure(helper.peakRssMiB, 1),
    ];
  });
  lines.push(...formatColumns([columns, ...rows]));
  const { passes, checks } = result.verification;
  lines.push('', `verified: ${checks} getsockopt(TCP_REPAIR) checks over ${passes} passes, all in the expected state`, '');
  const targetRows = Object.values(result.targets).map((t) => [
    t.description,
    `${t.ratio.toFixed(2)}x`,
    `${t.bound === 'max' ? '<=' : '>='} ${t.limit.toFixed(2)}x`,
    t.pass ? 'PASS' : 'MISS',
  ]);
  lines.push(...formatColumns([['target', 'ratio', 'limit', 'result'], ...targetRows]));
  const bare = Object.values(result.againstBareFloor).map((r) => `${r.description} ${r.ratio.toFixed(2)}x`);
  const cost = result.perDescriptorNs;
  const ns = (value: number) => `${value.toFixed(0)} ns`;
  const signed = (value: number) => `${value >= 0 ? '+' : ''}${ns(value)}`;
  const ratios = (set: Record<string, Ratio>) =>
    Object.values(set)
      .map((r) => `${r.description} ${r.ratio.toFixed(2)}x`)
      .join(', ');
  const { floor, helperOverDesign } = result.design;
  lines.push(
    '',
    `the design in C (C floor, checked, closes after the reply) / checked C floor: ${ratios(floor)}`,
    `passt-repair / that design floor (the helper's own overhead): ${ratios({ batchP50: helperOverDesign.batchP50, socketsPerSecond: helperOverDesign.socketsPerSecond, onOff: helperOverDesign.onOff })}; ` +
      `batch p50 ${helperOverDesign.batchP50AddedUs >= 0 ? '+' : ''}${helperOverDesign.batchP50AddedUs.toFixed(1)} µs`,
    `against the bare C floor (as passt's C helper): ${bare.join(', ')}`,
    `per descriptor: setsockopt ${ns(cost.setsockopt)}, both checks ${ns(cost.checks)} (from the floors); ` +
      `getsockopt SO_PROTOCOL ${ns(cost.soProtocol)}, TCP_REPAIR ${ns(cost.tcpRepair)} (native loop of ${result.filter.calls})`,
    `seccomp filter per call: ${HOT_CALLS.map((call) => `${call} ${signed(result.filter.addedNs[call])}`).join(', ')}; ` +
      `per batch of ${batchSize} ${result.filter.perBatchUs >= 0 ? '+' : ''}${result.filter.perBatchUs.toFixed(1)} µs`,
    `passt's side (exchange floor: receive, close, reply): batch p50 ${result.passtSide.batchP50Us.toFixed(1)} µs, ` +
      `${(result.passtSide.shareOfHelper * 100).toFixed(0)}% of the helper's`,
  );
  process.stdout.write(lines.join('\n') + '\n');
}

/** Left-aligns the first column and right-aligns the others. */
function formatColumns(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  return rows.map((row) =>
    row.map((cell, column) => (column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!))).join('  '),
  );
}

// ---------------------------------------------------------------- the soak

interface SoakSample {
  seconds: number;
  rssMB: number;
  descriptors: number;
  /** Sockets switched per second since the previous sample. */
  socketsPerSecond: number;
}

interface SoakFigure {
  start: number;
  oneMinute: number;
  end: number;
  max: number;
}

export interface SoakResult {
  parameters: { connections: number; minutes: number; helper: string };
  operations: number;
  requests: number;
  samples: SoakSample[];
  rssMB: SoakFigure;
  descriptors: SoakFigure;
  socketsPerSecond: SoakFigure;
  targets: { operations: Target & { count: number }; rssGrowth: { description: string; growthMB: number; limitMB: number; pass: boolean } };
}

function openDescriptorCount(pid: number): number {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

/** The sample at or after `seconds` (the last one if the soak was shorter). */
function sampleAt(samples: SoakSample[], seconds: number): SoakSample {
  return samples.find((sample) => sample.seconds >= seconds) ?? samples[samples.length - 1]!;
}

/**
 * One session of the helper: each batch is switched ON and then OFF (the
 * command changes on every request), for `minutes`, sampling the helper's
 * VmRSS, open descriptors and throughput every second.
 */
async function soak(options: Options, fds: number[], directory: string, policy: string): Promise<SoakResult> {
  const { minutes, helper } = options.soak!;
  const spec: HelperSpec = { key: 'passtRepair', label: helper, command: [helper, '--policy', policy], env: process.env, takesRequests: true, switchesSockets: true };
  const { launched } = launch(spec, directory);
  const pid = launched.child.pid!;
  const batches: number[][] = [];
  for (let first = 0; first < fds.length; first += SCM_MAX_FD) batches.push(fds.slice(first, first + SCM_MAX_FD));
  const samples: SoakSample[] = [];
  const started = process.hrtime.bigint();
  const elapsedMs = () => Number(process.hrtime.bigint() - started) / 1e6;
  let operations = 0;
  let requests = 0;
  let sampled = { ms: 0, operations: 0 };
  const sample = () => {
    const ms = elapsedMs();
    samples.push({
      seconds: ms / 1e3,
      rssMB: (statusKiB(pid, 'VmRSS') * 1024) / 1e6,
      descriptors: openDescriptorCount(pid),
      socketsPerSecond: ((operations - sampled.operations) * 1e3) / Math.max(ms - sampled.ms, 1),
    });
    sampled = { ms, operations };
  };
  const endMs = minutes * 60_000;
  while (elapsedMs() < endMs) {
    for (const batch of batches) {
      await request(launched, TCP_REPAIR_ON, batch);
      await request(launched, TCP_REPAIR_OFF, batch);
      operations += 2 * batch.length;
      requests += 2;
    }
    if (elapsedMs() - sampled.ms >= SOAK_SAMPLE_MS) sample();
  }
  sample();
  verifyAll(fds, TCP_REPAIR_OFF, helper, { passes: 0, checks: 0 });
  await finish(launched);

  const figure = (pick: (sample: SoakSample) => number): SoakFigure => ({
    start: pick(samples[0]!),
    oneMinute: pick(sampleAt(samples, 60)),
    end: pick(samples[samples.length - 1]!),
    max: Math.max(...samples.map(pick)),
  });
  const rssMB = figure((s) => s.rssMB);
  const growthMB = rssMB.end - rssMB.oneMinute;
  const limitMB = SOAK_GROWTH_LIMIT_BYTES / 1e6;
  return {
    parameters: { connections: fds.length, minutes, helper: helper.startsWith(`${ROOT}/`) ? path.relative(ROOT, helper) : helper },
    operations,
    requests,
    samples,
    rssMB,
    descriptors: figure((s) => s.descriptors),
    socketsPerSecond: figure((s) => s.socketsPerSecond),
    targets: {
      operations: { ...target(`socket operations in one session (millions)`, operations / 1e6, 'min', SOAK_MIN_OPERATIONS / 1e6), count: operations },
      rssGrowth: { description: 'RSS growth after the first minute', growthMB, limitMB, pass: minutes > 1 && growthMB < limitMB },
    },
  };
}

function printSoak(result: SoakResult): void {
  const { connections, minutes, helper } = result.parameters;
  const lines = [
    `passt-repair soak: ${helper}, ${connections} loopback TCP connections, each batch switched ON then OFF, for ${minutes} min: ` +
      `${result.requests} requests, ${result.operations} socket operations`,
    '',
  ];
  const row = (label: string, f: SoakFigure, digits: number) => [label, ...[f.start, f.oneMinute, f.end, f.max].map((v) => v.toFixed(digits))];
  lines.push(
    ...formatColumns([
      ['', 'start', '1 min', 'end', 'max'],
      row('RSS MB', result.rssMB, 1),
      row('open descriptors', result.descriptors, 0),
      row('sockets/s', result.socketsPerSecond, 0),
    ]),
  );
  const curve = result.samples.filter((_, index) => index % 60 === 59 || index === result.samples.length - 1);
  lines.push('', `RSS MB each minute: ${curve.map((s) => s.rssMB.toFixed(1)).join(' ')}`, '');
  const { operations, rssGrowth } = result.targets;
  lines.push(
    ...formatColumns([
      ['target', 'figure', 'limit', 'result'],
      [operations.description, operations.ratio.toFixed(1), `>= ${operations.limit.toFixed(1)}`, operations.pass ? 'PASS' : 'MISS'],
      [`${rssGrowth.description} (MB)`, rssGrowth.growthMB.toFixed(2), `< ${rssGrowth.limitMB.toFixed(2)}`, rssGrowth.pass ? 'PASS' : 'MISS'],
    ]),
  );
  process.stdout.write(lines.join('\n') + '\n');
}

// ---------------------------------------------------------------- main

async function main(): Promise<number> {
  const options = parseOptions(process.argv.slice(2));
  buildCFloors();
  for (const file of [BARE_NODE, FILTER_COST])
    if (!fs.existsSync(file)) throw new BenchBroke(`${file} is missing: run npx tsc -p . first`);
  if (!fs.existsSync(RUNTIME_LAUNCHER)) throw new BenchBroke(`${RUNTIME_LAUNCHER} is missing: run npm run build:test first`);
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'passt-repair-bench-'));
  const connections = await openLoopbackConnections(options.connections);
  try {
    const policy = writePolicy(directory, {
      version: 1,
      rules: [{ name: 'bench', sockets: [`${directory}/*.repair`], peer: {} }],
    });
    if (options.soak) {
      const result = await soak(options, connections.fds, directory, policy);
      if (options.json) process.stdout.write(JSON.stringify(result, null, 2) + '\n');
      else printSoak(result);
      return 0;
    }
    const specs = helperSpecs(policy);
    const verification: Verification = { passes: 0, checks: 0 };
    const startUps = await measureStartUps(specs, options.spawns, directory, connections.fds);
    const switchers = specs.filter((spec) => spec.takesRequests);
    const switching = await measureSwitching(switchers, connections.fds, options.rounds, directory, verification);
    const filter = measureFilterCost();
    const result = summarize(specs, options, startUps, switching, verification, filter);
    if (options.json) process.stdout.write(JSON.stringify(result, null, 2) + '\n');
    else printTable(specs, result);
    return 0;
  } finally {
    abandonAll();
    connections.close();
    fs.rmSync(directory, { recursive: true, force: true });
  }
}

if (require.main === module) {
  main().then(
    (code) => (process.exitCode = code),
    (error: unknown) => {
      if (error instanceof UsageError) {
        process.stderr.write(`bench: ${error.message}\n${USAGE}`);
        process.exitCode = 2;
      } else {
        const message = error instanceof BenchBroke ? error.message : error instanceof Error ? (error.stack ?? error.message) : String(error);
        process.stderr.write(`bench: FAILED: ${message}\n`);
        process.exitCode = 1;
      }
    },
  );
}
