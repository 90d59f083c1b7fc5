// SPDX-License-Identifier: GPL-2.0-or-later
// The administrator's documents agree with the helper and with each other:
// the README is short and starts with the two commands, names only files
// that exist and options --help has, gives the exit codes of src/errors.ts,
// and says what the manual page says about who starts the helper. No
// document speaks of one particular machine.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

const ROOT = path.resolve(__dirname, '../..');
const HELPER = path.join(ROOT, 'bin/passt-repair');
const read = (file: string): string => fs.readFileSync(path.join(ROOT, file), 'utf8');
const README = read('README.md');
const DOCUMENTS = ['README.md', 'HACKING.md', 'SECURITY.md', 'docs/deploying.md', 'passt-repair.1'];

/**
 * The manual page's words as a reader sees them, on one line: escapes
 * resolved, the alternating-font macros' arguments joined as roff joins them
 * (".RI /proc/ PID /root" reads "/proc/PID/root"), other macros dropped.
 */
function manualText(): string {
  return read('passt-repair.1')
    .replace(/\\-/g, '-')
    .replace(/\\\(dq/g, '"')
    .replace(/^\.(?:RI|IR|BR|RB|BI|IB) (.*)$/gm, (_line, args: string) => (args.match(/"[^"]*"|\S+/g) ?? []).map((arg) => arg.replace(/^"|"$/g, '')).join(''))
    .replace(/\n\.\w+ ?/g, '\n')
    .replace(/\s+/g, ' ');
}

/** A document's text as a reader sees it. */
const readDocument = (file: string): string => (file === 'passt-repair.1' ? manualText() : read(file));

/** The text of the README section headed `title` (any level), up to the next heading. */
function section(text: string, title: string): string {
  const start = text.search(new RegExp(`^#+ ${title}\\s*$`, 'm'));
  if (start < 0) throw new Error(`no section "${title}"`);
  const rest = text.slice(text.indexOf('\n', start) + 1);
  const next = rest.search(/^#+ /m);
  return next < 0 ? rest : rest.slice(0, next);
}

/** The long options --help's "Options:" block lists. */
function helpOptions(): Set<string> {
  const result = spawnSync(HELPER, ['--help'], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`--help exited ${result.status}`);
  const block = result.stdout.slice(result.stdout.indexOf('\nOptions:\n'));
  return new Set([...block.matchAll(/^ {1,4}(?:-\w, )?(--[a-z][\w-]*)/gm)].map((match) => match[1]!));
}

function exitCodesOfErrorsTs(): number[] {
  const body = /enum ExitCode\s*\{([^}]*)\}/.exec(read('src/errors.ts'))![1]!;
  return [...body.replace(/\/\*[\s\S]*?\*\//g, '').matchAll(/=\s*(\d+)/g)].map((match) => Number(match[1])).sort();
}

t.test('the README is under 200 lines and starts with the two commands', async (t) => {
  const lines = README.split('\n');
  t.ok(lines.length < 200, `${lines.length} lines`);
  const beforeFirstSection = README.slice(0, README.search(/^## /m));
  t.match(beforeFirstSection, /^# passt-repair\n/);
  t.match(beforeFirstSection, /```sh\n\.\/run demo\s.*\n\.\/run test\s.*\n```/);
});

t.test("the README's options are those of --help", async (t) => {
  const help = helpOptions();
  t.ok(help.has('--policy') && help.has('--check-policy'), `--help lists ${[...help].join(' ')}`);
  const options = section(README, 'Options');
  const named = new Set(options.match(/(?<![\w-])--[a-z][\w-]*/g) ?? []);
  t.same([...named].sort(), [...help].sort(), 'the Options section names exactly the options of --help');
  // Every option given to passt-repair anywhere in the README is one it has.
  for (const match of README.matchAll(/passt-repair((?: --?[\w-]+(?:[ =](?!-)\S+)?)+)/g))
    for (const option of match[1]!.match(/(?<![\w-])--[a-z][\w-]*/g) ?? []) t.ok(help.has(option), `${option} (in "passt-repair${match[1]}") is an option of --help`);
});

t.test('the exit status table of the README is the ExitCode enum', async (t) => {
  const codes = [...section(README, 'Exit status').matchAll(/^\|\s*(\d+)\s*\|/gm)].map((match) => Number(match[1])).sort();
  t.same(codes, exitCodesOfErrorsTs());
});

t.test('every file of this tree the README names exists', async (t) => {
  const named = new Set<string>();
  for (const match of README.matchAll(/`([^`\s]+)`/g)) {
    const name = match[1]!;
    // A relative path of this tree: has a "/" or is a top-level document; absolute paths are the installed system's.
    if (name.startsWith('/') || name.startsWith('.') || name.startsWith('$') || !/^[\w.-]+(?:\/[\w.-]+)*\/?$/.test(name)) continue;
    if (name.includes('/') || /\.(md|1)$/.test(name)) named.add(name);
  }
  for (const name of ['docs/deploying.md', 'policy/policy.schema.json', 'policy/examples/kubevirt.json', 'HACKING.md'])
    t.ok(named.has(name), `${name} is among the names found (the extraction works)`);
  for (const name of named) t.ok(fs.existsSync(path.join(ROOT, name)), `${name} exists`);
});

t.test('the README and the manual page agree on who starts the helper', async (t) => {
  const page = manualText();
  for (const [name, text] of [['README.md', README.replace(/\s+/g, ' ')], ['passt-repair.1', page], ['docs/deploying.md', read('docs/deploying.md').replace(/\s+/g, ' ')]] as const) {
    t.match(text, /libvirt starts passt,? but not the helper/, `${name}: libvirt starts passt, not the helper`);
    t.notMatch(text, /libvirt (runs|starts) `?passt-repair/, `${name} never says libvirt runs the helper`);
    t.match(text, /\/proc\/[A-Z_]+\/root\/var\/run\/libvirt\/qemu\/run\/passt/, `${name}: the KubeVirt form virt-handler runs today`);
  }
});

t.test('no document speaks of one particular machine', async (t) => {
  for (const document of DOCUMENTS) {
    const text = readDocument(document);
    for (const local of [/\/work\//, /\/home\/\w/, /(?:^|[\s`(])\/root\//m, /passt-repair-test-/, /\bthis machine\b/i, /\bon this host\b/i])
      t.notMatch(text, local, `${document} has nothing like ${local}`);
  }
});
