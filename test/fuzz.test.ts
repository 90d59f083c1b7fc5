// SPDX-License-Identifier: GPL-2.0-or-later
// The request decoder, fuzzed: seeded and bounded. Each request is a
// well-formed one (a command, one SCM_RIGHTS message of 1 to 253 TCP
// sockets) with one random defect: the command, the length, the control
// messages (none, empty, several, SCM_CREDENTIALS, another level or type,
// cmsg_len cut short or too long, up to 300 descriptors, a bad descriptor
// number) or a descriptor of another kind (UDP, UNIX, raw, MPTCP, a pipe, a
// file, epoll, a listening TCP socket). For each: the documented outcome
// (confirmed with the echo, or refused with its code and no echo), no crash,
// every TCP socket in the state last confirmed (getsockopt TCP_REPAIR on
// passt's side), no descriptor leaked.
//
// REQUESTS of them drive the helper's own request handler (its addon's
// serveRequests, one request a call) in this process over real socket pairs; a sample of
// PROCESS_SAMPLE goes to the real helper process under its real filter,
// which must exit 0 or 1 and never die by a signal. The seed is printed; a
// failure reproduces with PASST_REPAIR_FUZZ_SEED=SEED.
import t from 'tap';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { native } from '../src/addon';
import { commandMask } from '../src/limits';
import { isNativeFailure } from '../src/errors';
import type { Served } from '../src/native.d';
import { awaitReply, FAILURE_BYTE, passt, TCP_REPAIR_OFF_NO_WP } from './passt-double/passt-double';
import { startSession } from './lib';

const SEED = Number(process.env.PASST_REPAIR_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 32));
const REQUESTS = Number(process.env.PASST_REPAIR_FUZZ_REQUESTS ?? 10_000);
const PROCESS_SAMPLE = Number(process.env.PASST_REPAIR_FUZZ_PROCESS_SAMPLE ?? 100);

const SCM_MAX_FD = 253;
const SOL_SOCKET = 1;
const SOL_TCP = 6;
const SCM_RIGHTS = 1;
const SCM_CREDENTIALS = 2;
const CMSG_HEADER = 16; // struct cmsghdr on 64-bit Linux: size_t len, int level, int type
const EAGAIN = 11;

/**
 * The request handler with a rule that sets no limit: every command, 253
 * sockets a request, no session total. One request, no wait: the request,
 * when one was sent, is already queued.
 */
function handle(sock: number): Served {
  return native.serveRequests(sock, 0, 0, Infinity, commandMask(['TCP_REPAIR_ON', 'TCP_REPAIR_OFF', 'TCP_REPAIR_OFF_NO_WP']), 253, Infinity, 1);
}

// ---------------------------------------------------------------------------
// Random numbers: mulberry32, reproducible from the seed.

function generator(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let x = state;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 2 ** 32;
  };
}

// ---------------------------------------------------------------------------
// The descriptors passt's side sends.

type Kind = 'tcp-established' | 'tcp-unconnected' | 'tcp6-unconnected' | 'tcp-close-wait' | 'tcp-listening' | 'udp' | 'unix' | 'raw-tcp' | 'mptcp' | 'pipe' | 'file' | 'epoll';

/** What the helper makes of a descriptor of that kind when it is the only defect. */
const REFUSAL_OF: Record<Exclude<Kind, 'tcp-established' | 'tcp-unconnected' | 'tcp6-unconnected' | 'tcp-close-wait'>, string> = {
  'tcp-listening': 'REPAIR_FAILED', // TCP, but the kernel refuses repair mode on a listening socket
  udp: 'NOT_TCP',
  unix: 'NOT_TCP',
  'raw-tcp': 'NOT_TCP',
  mptcp: 'NOT_TCP',
  pipe: 'NOT_A_SOCKET',
  file: 'NOT_A_SOCKET',
  epoll: 'NOT_A_SOCKET',
};

interface Pool {
  /** TCP sockets repair mode can be set on. */
  repairable: number[];
  /** Every other kind, with its kind. */
  others: { fd: number; kind: keyof typeof REFUSAL_OF }[];
  /** Every TCP socket, listening included: whose state is checked after each request. */
  tcp: number[];
  kinds: Map<number, Kind>;
  close(): Promise<void>;
}

function fdOf(socket: net.Socket | net.Server): number {
  return (socket as unknown as { _handle: { fd: number } })._handle.fd;
}

async function makePool(): Promise<Pool> {
  const kinds = new Map<number, Kind>();
  const accepted: net.Socket[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (socket) => accepted.push(socket));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  const clients: net.Socket[] = [];
  for (let i = 0; i < 10; i++) {
    const client = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    await new Promise<void>((resolve, reject) => client.once('connect', resolve).once('error', reject));
    clients.push(client);
  }
  while (accepted.length < clients.length) await new Promise((resolve) => setTimeout(resolve, 2));
  // The last two in CLOSE_WAIT: their peers have sent FIN (allowHalfOpen keeps them open here).
  for (const socket of accepted.slice(-2)) socket.end();
  await new Promise((resolve) => setTimeout(resolve, 50));
  clients.forEach((client, i) => kinds.set(fdOf(client), i >= clients.length - 2 ? 'tcp-close-wait' : 'tcp-established'));
  const owned: number[] = [];
  const own = (fd: number, kind: Kind) => {
    owned.push(fd);
    kinds.set(fd, kind);
  };
  own(passt.tcpSocket(4), 'tcp-unconnected');
  own(passt.tcpSocket(6), 'tcp6-unconnected');
  kinds.set(fdOf(server), 'tcp-listening');
  for (const kind of ['udp', 'unix', 'raw-tcp'] as const) own(passt.otherSocket(kind), kind);
  try {
    own(passt.otherSocket('mptcp'), 'mptcp');
  } catch (error) {
    t.comment(`MPTCP is not available on this kernel (${(error as Error).message}): no MPTCP descriptors in the fuzz`);
  }
  const pipe = native.makePipe();
  own(pipe.read, 'pipe');
  own(pipe.write, 'pipe');
  own(fs.openSync('/dev/null', 'r'), 'file');
  own(passt.epollInstance(), 'epoll');
  const repairable = [...kinds].filter(([, kind]) => kind.startsWith('tcp') && kind !== 'tcp-listening').map(([fd]) => fd);
  return {
    repairable,
    others: [...kinds].filter(([, kind]) => kind in REFUSAL_OF).map(([fd, kind]) => ({ fd, kind: kind as keyof typeof REFUSAL_OF })),
    tcp: [...kinds].filter(([, kind]) => kind.startsWith('tcp')).map(([fd]) => fd),
    kinds,
    async close() {
      // Out of repair mode before closing, so that the connections end as connections do.
      for (const fd of repairable) if (passt.repairState(fd) === 1) setRepairOff(fd);
      for (const fd of owned) fs.closeSync(fd);
      for (const socket of [...clients, ...accepted]) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** Sends TCP_REPAIR_OFF_NO_WP through a well-formed request to an in-process handler. */
function setRepairOff(fd: number): void {
  const [passtEnd, helperEnd] = passt.socketPair();
  passt.sendRequest(passtEnd, Buffer.from([TCP_REPAIR_OFF_NO_WP & 0xff]), [fd]);
  handle(helperEnd);
  fs.closeSync(passtEnd);
  fs.closeSync(helperEnd);
}

// ---------------------------------------------------------------------------
// Requests: a well-formed one and one random defect.

interface ControlMessage {
  level: number;
  type: number;
  payload: Buffer;
  /** Added to the true cmsg_len: negative cuts it short. */
  lengthDelta: number;
}

interface Request {
  defect: string;
  data: Buffer;
  control: ControlMessage[];
  /** The outcome the documented behaviour gives: "confirmed", a refusal code, or "nothing sent" (the kernel refused the sendmsg). */
  expected: string;
  /** The descriptors the helper receives when the request is confirmed. */
  delivered: number[];
}

function rights(fds: readonly number[], lengthDelta = 0): ControlMessage {
  const payload = Buffer.alloc(4 * fds.length);
  fds.forEach((fd, i) => payload.writeInt32LE(fd, 4 * i));
  return { level: SOL_SOCKET, type: SCM_RIGHTS, payload, lengthDelta };
}

function controlBuffer(messages: readonly ControlMessage[]): Buffer {
  const parts = messages.map((message) => {
    const space = CMSG_HEADER + Math.ceil(message.payload.length / 8) * 8;
    const part = Buffer.alloc(space);
    part.writeBigUInt64LE(BigInt(Math.max(0, CMSG_HEADER + message.payload.length + message.lengthDelta)), 0);
    part.writeInt32LE(message.level, 8);
    part.writeInt32LE(message.type, 12);
    message.payload.copy(part, CMSG_HEADER);
    return part;
  });
  return Buffer.concat(parts);
}

function generateRequest(random: () => number, pool: Pool): Request {
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const between = (low: number, high: number): number => low + Math.floor(random() * (high - low + 1));
  const command = pick([1, 0, -1]);
  // Small batches and full ones alike.
  const count = random() < 0.5 ? between(1, 8) : between(9, SCM_MAX_FD);
  const fds = Array.from({ length: count }, () => pick(pool.repairable));
  const well = (defect: string, expected = 'confirmed', delivered = fds): Request => ({ defect, data: Buffer.from([command & 0xff]), control: [rights(fds)], expected, delivered });
  const refused = (request: Request, code: string): Request => ({ ...request, expected: code, delivered: [] });
  switch (between(0, 15)) {
    case 0:
      return well('none');
    case 1: {
      let bad = between(-128, 127);
      if (bad >= -1 && bad <= 1) bad = 2;
      return refused({ ...well('unknown command'), data: Buffer.from([bad & 0xff]) }, 'UNKNOWN_COMMAND');
    }
    case 2: {
      const extra = Buffer.alloc(between(1, 64), Math.floor(random() * 256));
      return refused({ ...well('longer than one byte'), data: Buffer.concat([Buffer.from([command & 0xff]), extra]) }, 'WRONG_LENGTH');
    }
    case 3:
      // A stream socket sends nothing for zero bytes, descriptors or not.
      return refused({ ...well('no byte'), data: Buffer.alloc(0) }, 'nothing sent');
    case 4: {
      const other = pick(pool.others);
      const at = between(0, fds.length - 1);
      const mixed = [...fds];
      mixed[at] = other.fd;
      return { defect: `a ${other.kind} descriptor`, data: Buffer.from([command & 0xff]), control: [rights(mixed)], expected: REFUSAL_OF[other.kind], delivered: [] };
    }
    case 5:
      return refused({ ...well('no control message'), control: [] }, 'NO_DESCRIPTORS');
    case 6:
      // An SCM_RIGHTS header with no descriptor attaches none.
      return refused({ ...well('an empty SCM_RIGHTS'), control: [rights([])] }, 'NO_DESCRIPTORS');
    case 7: {
      // The kernel gathers several SCM_RIGHTS headers of one sendmsg into one list.
      const cut = between(1, fds.length);
      const split = [rights(fds.slice(0, cut)), ...(cut < fds.length ? [rights(fds.slice(cut))] : [])];
      const extra = Array.from({ length: between(1, 60) }, () => pick(pool.repairable));
      const total = fds.length + extra.length;
      const control = [...split, rights(extra)];
      return total <= SCM_MAX_FD
        ? { defect: 'several SCM_RIGHTS headers', data: Buffer.from([command & 0xff]), control, expected: 'confirmed', delivered: [...fds, ...extra] }
        : { defect: 'several SCM_RIGHTS headers, over 253 in all', data: Buffer.from([command & 0xff]), control, expected: 'nothing sent', delivered: [] };
    }
    case 8: {
      const many = Array.from({ length: between(SCM_MAX_FD + 1, 300) }, () => pick(pool.repairable));
      return { defect: `${many.length} descriptors`, data: Buffer.from([command & 0xff]), control: [rights(many)], expected: 'nothing sent', delivered: [] };
    }
    case 9: {
      // SCM_CREDENTIALS reaches a receiver only with SO_PASSCRED, which the helper never sets.
      const credentials = Buffer.alloc(12);
      credentials.writeInt32LE(process.pid, 0);
      credentials.writeUInt32LE(process.getuid!(), 4);
      credentials.writeUInt32LE(process.getgid!(), 8);
      const message: ControlMessage = { level: SOL_SOCKET, type: SCM_CREDENTIALS, payload: credentials, lengthDelta: 0 };
      return { ...well('with SCM_CREDENTIALS'), control: random() < 0.5 ? [message, rights(fds)] : [rights(fds), message] };
    }
    case 10: {
      // A header of another level is ignored by the kernel for AF_UNIX; an unknown SOL_SOCKET type is refused.
      const level = pick([SOL_TCP, 0, 41, 255]);
      return { ...well(`with a level ${level} header`), control: [rights(fds), { level, type: between(0, 64), payload: Buffer.alloc(between(0, 32)), lengthDelta: 0 }] };
    }
    case 11:
      return { ...well('an unknown SOL_SOCKET type'), control: [rights(fds), { level: SOL_SOCKET, type: between(5, 200), payload: Buffer.alloc(between(0, 16)), lengthDelta: 0 }], expected: 'nothing sent', delivered: [] };
    case 12: {
      // cmsg_len cut by 1 to 3 bytes: the last descriptor does not fit, the kernel sends one fewer.
      const delta = -between(1, 3);
      const sent = fds.slice(0, -1);
      return { defect: 'cmsg_len cut short', data: Buffer.from([command & 0xff]), control: [rights(fds, delta)], expected: sent.length === 0 ? 'NO_DESCRIPTORS' : 'confirmed', delivered: sent };
    }
    case 13:
      // Longer than the control buffer, or shorter than its own header: refused by the kernel.
      return { defect: 'cmsg_len out of bounds', data: Buffer.from([command & 0xff]), control: [rights(fds, random() < 0.5 ? between(8, 4096) : -CMSG_HEADER - 4 * fds.length + between(0, CMSG_HEADER - 1))], expected: 'nothing sent', delivered: [] };
    case 14: {
      const mixed = [...fds];
      mixed[between(0, fds.length - 1)] = pick([-1, 1 << 20, 2 ** 31 - 1]);
      return { defect: 'a descriptor number that is not open', data: Buffer.from([command & 0xff]), control: [rights(mixed)], expected: 'nothing sent', delivered: [] };
    }
    default: {
      const listening = pool.others.find((other) => other.kind === 'tcp-listening')!;
      const mixed = [...fds];
      mixed[between(0, fds.length - 1)] = listening.fd;
      return { defect: 'a listening TCP socket', data: Buffer.from([command & 0xff]), control: [rights(mixed)], expected: 'REPAIR_FAILED', delivered: [] };
    }
  }
}

function commandOf(request: Request): number {
  return request.data.readInt8(0);
}

function openDescriptorCount(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

// ---------------------------------------------------------------------------

t.test(`${REQUESTS} malformed requests to the helper's request handler, in-process (seed ${SEED})`, async (t) => {
  t.comment(`seed ${SEED}: reproduce with PASST_REPAIR_FUZZ_SEED=${SEED}`);
  const pool = await makePool();
  t.teardown(() => pool.close());
  const random = generator(SEED);
  const expectedState = new Map(pool.tcp.map((fd) => [fd, passt.repairState(fd)]));
  const outcomes = new Map<string, number>();
  const failures: string[] = [];
  const baseline = openDescriptorCount();
  const started = process.hrtime.bigint();
  for (let i = 0; i < REQUESTS && failures.length < 5; i++) {
    const request = generateRequest(random, pool);
    const [passtEnd, helperEnd] = passt.socketPair();
    // Never blocks: a request the kernel refused to send leaves nothing to read.
    native.setNonBlocking(helperEnd);
    const sent = passt.sendRaw(passtEnd, request.data, controlBuffer(request.control));
    let outcome: string;
    try {
      const handled = handle(helperEnd);
      // 'timeout': nothing was queued (the handler does not wait here).
      outcome = { closed: 'end', timeout: 'nothing sent', signal: 'signal', yield: 'confirmed', command: 'confirmed' }[handled.end];
      const confirmed = handled.runs.reduce((sum, run) => sum + run.sockets, 0);
      if (confirmed !== (handled.end === 'yield' ? request.delivered.length : 0)) failures.push(`#${i} (${request.defect}): ${confirmed} socket(s) confirmed, ${request.delivered.length} sent`);
    } catch (error) {
      if (!isNativeFailure(error)) throw error;
      outcome = error.code === 'RECEIVE_FAILED' && error.errno === EAGAIN ? 'nothing sent' : error.code;
    }
    const reply = passt.receiveReply(passtEnd, 0);
    fs.closeSync(passtEnd);
    fs.closeSync(helperEnd);
    outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    if ((sent <= 0) !== (request.expected === 'nothing sent')) failures.push(`#${i} (${request.defect}): sendmsg returned ${sent}`);
    if (outcome !== request.expected) failures.push(`#${i} (${request.defect}): ${outcome}, expected ${request.expected}`);
    if (outcome === 'confirmed') {
      if (reply !== commandOf(request)) failures.push(`#${i} (${request.defect}): confirmed with reply ${String(reply)}`);
      for (const fd of request.delivered) expectedState.set(fd, commandOf(request) === 1 ? 1 : 0);
    } else if (request.data.length > 0 && reply === commandOf(request)) failures.push(`#${i} (${request.defect}): refused (${outcome}) yet echoed`);
    for (const [fd, state] of expectedState)
      if (passt.repairState(fd) !== state) failures.push(`#${i} (${request.defect}): descriptor ${fd} (${pool.kinds.get(fd)}) has TCP_REPAIR ${passt.repairState(fd)}, last confirmed ${state}`);
    const open = openDescriptorCount();
    if (open !== baseline) failures.push(`#${i} (${request.defect}): ${open} descriptors open, ${baseline} before`);
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  t.same(failures, [], 'every request had its documented outcome, left every TCP socket as last confirmed, and leaked nothing');
  t.comment(`${REQUESTS} requests in ${seconds.toFixed(1)} s; outcomes: ${[...outcomes].sort((a, b) => b[1] - a[1]).map(([name, n]) => `${name} ${n}`).join(', ')}`);
  t.ok(outcomes.get('confirmed')! > 0 && outcomes.size >= 8, 'both confirmed and refused requests, of many kinds');
});

t.test(`${PROCESS_SAMPLE} of them to the real helper process, under its real filter (seed ${SEED})`, async (t) => {
  const pool = await makePool();
  t.teardown(() => pool.close());
  const random = generator(SEED ^ 0x5eed);
  const expectedState = new Map(pool.tcp.map((fd) => [fd, passt.repairState(fd)]));
  const exits = new Map<string, number>();
  for (let i = 0; i < PROCESS_SAMPLE; i++) {
    const request = generateRequest(random, pool);
    const session = await startSession();
    const sent = passt.sendRaw(session.sock, request.data, controlBuffer(request.control));
    // A request that was not sent leaves the helper waiting: passt's close ends it.
    const reply = sent < 0 || request.data.length === 0 ? null : await awaitReply(session.sock, 20_000);
    fs.closeSync(session.sock);
    const { code, signal, stderr } = await session.helper.exited;
    fs.rmSync(session.dir, { recursive: true, force: true });
    exits.set(`exit ${code}`, (exits.get(`exit ${code}`) ?? 0) + 1);
    const what = `#${i} (${request.defect}, expected ${request.expected})`;
    if (signal !== null || (code !== 0 && code !== 1)) {
      t.fail(`${what}: ended by ${signal ?? `exit ${code}`}: ${stderr}`);
      break;
    }
    const confirmed = request.expected === 'confirmed';
    t.equal(code, confirmed || request.expected === 'nothing sent' ? 0 : 1, `${what}: exit ${code}`);
    if (confirmed) {
      t.equal(reply, commandOf(request), `${what}: echoed`);
      for (const fd of request.delivered) expectedState.set(fd, commandOf(request) === 1 ? 1 : 0);
    } else if (request.expected === 'nothing sent') t.equal(reply, null, `${what}: no reply`);
    // A refusal is answered with the failure byte, which is never an echo:
    // 0x80 is no command (a request carrying it as its byte is refused too).
    else t.equal(reply, FAILURE_BYTE, `${what}: the failure byte, no echo`);
    const wrong = [...expectedState].filter(([fd, state]) => passt.repairState(fd) !== state);
    t.same(wrong, [], `${what}: every TCP socket as last confirmed`);
  }
  t.comment(`helper processes: ${[...exits].map(([name, n]) => `${name}: ${n}`).join(', ')}`);
});
