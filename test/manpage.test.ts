// SPDX-License-Identifier: GPL-2.0-or-later
// The manual page, passt-repair.1: it renders without a single roff warning,
// and it documents what the helper really has. Every option --help prints,
// every key (and enumerated value) of the policy schema, and the exit codes
// of src/errors.ts and the README: an option or a key added without being
// documented makes this test fail.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const ROOT = path.resolve(__dirname, '../..');
const PAGE = path.join(ROOT, 'passt-repair.1');
const HELPER = path.join(ROOT, 'bin/passt-repair');
const SCHEMA = path.join(ROOT, 'policy/policy.schema.json');
const WIDTH = 80;

const SECTIONS = [
  'NAME',
  'SYNOPSIS',
  'DESCRIPTION',
  'OPTIONS',
  'DIRECTORY MODE',
  'POLICY FILE',
  'LOGGING',
  'EXIT STATUS',
  'SECURITY',
  'ENVIRONMENT',
  'FILES',
  'EXAMPLES',
  'SEE ALSO',
];

/**
 * Policy keys and values the page documents ahead of the schema: the "log"
 * and "telemetry" objects being added. Once the schema has them, the walk
 * over the schema below checks them anyway.
 */
const KEYS_AHEAD_OF_SCHEMA = ['log', 'format', 'telemetry', 'sentry', 'dsn', 'environment', 'include'];
const VALUES_AHEAD_OF_SCHEMA = ['text', 'json', 'production', 'paths', 'ids', 'pids'];

/** The JSON log's events and the fields each adds (besides time, level, event, message). */
const LOG_EVENTS: Record<string, string[]> = {
  start: ['version', 'pid', 'path', 'policy'],
  connected: ['socket', 'rootPid', 'insidePath', 'rule', 'peerPid', 'peerUid', 'peerGid', 'peerExe', 'limits'],
  command: ['command', 'requests', 'sockets', 'durationMs'],
  warning: [],
  refused: ['gate', 'reason'],
  error: ['phase', 'reason'],
  end: ['reason', 'signal', 'exitCode', 'requests', 'sockets', 'durationMs', 'droppedLines'],
};

function commandExists(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}

/** man(1) as a reader's terminal would run it, minus the pager and the formatting. */
function renderWithMan() {
  const env: NodeJS.ProcessEnv = { ...process.env, MANWIDTH: String(WIDTH), LANG: 'C.UTF-8', LC_ALL: 'C.UTF-8', MAN_DISABLE_SECCOMP: '1' };
  for (const name of ['MAN_KEEP_FORMATTING', 'MANOPT', 'MANROFFOPT', 'MANPAGER', 'PAGER', 'GROFF_TMAC_PATH']) delete env[name];
  const result = spawnSync('man', ['--warnings=all', '-l', PAGE], { encoding: 'utf8', env });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** The rendered text with what a terminal may draw differently made plain: hyphens, minus signs, overstrikes. */
function plain(text: string): string {
  return text
    .replace(/.\x08/g, '')
    .replace(/[\u2010\u2011\u2212]/g, '-')
    .replace(/\x1b\[[0-9;]*m/g, '');
}

/** Whitespace collapsed, and a word broken after a hyphen at a line's end joined again. */
function flat(text: string): string {
  return text.replace(/-\n\s+/g, '-').replace(/\s+/g, ' ');
}

/** Section headings (at column 0) and the lines under each. */
function sectionsOf(lines: readonly string[]): Map<string, string[]> {
  const sections = new Map<string, string[]>();
  let current: string[] | undefined;
  // The first line is the header, the last non-empty one the footer.
  const last = lines.map((line) => line.trim() !== '').lastIndexOf(true);
  for (const line of lines.slice(1, last)) {
    if (/^[A-Z][A-Z ]*[A-Z]$/.test(line)) sections.set(line, (current = []));
    else current?.push(line);
  }
  return sections;
}

/**
 * The entries (.TP tags) of a section as rendered: a tag alone on its line
 * with its text indented below it, or a short tag with its text starting on
 * the same line at the text's indentation.
 */
function tagsOf(lines: readonly string[]): string[] {
  const tags: string[] = [];
  lines.forEach((line, index) => {
    const next = lines[index + 1] ?? '';
    const short = /^ {7}(\S+(?: \S+)*) {2,}(?=\S)/.exec(line);
    if (short && short[0].length === 14 && (next === '' || /^ {14}\S/.test(next))) return tags.push(short[1]!);
    // A tag is never justified: no double space in it.
    const alone = /^ {7}(\S(?:.*\S)?)$/.exec(line);
    if (alone && !alone[1]!.includes('  ') && /^ {14}\S/.test(next)) return tags.push(alone[1]!);
    return undefined;
  });
  return tags;
}

function helpText(): string {
  const result = spawnSync(HELPER, ['--help'], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`${HELPER} --help exited ${result.status}: ${result.stderr}`);
  return result.stdout;
}

/** The option specifications of --help's "Options:" block, such as "--policy FILE" and "-h, --help". */
function helpOptionSpecs(help: string): string[] {
  const block = help.slice(help.indexOf('\nOptions:\n'));
  const specs: string[] = [];
  for (const line of block.split('\n')) {
    const spec = /^ {1,4}(-\S.*?)(?: {2,}|$)/.exec(line);
    if (spec) specs.push(spec[1]!.trim());
  }
  return specs;
}

/** Every option name --help mentions anywhere: its synopsis, its options and their descriptions. */
function helpOptionNames(help: string): Set<string> {
  const names = new Set<string>();
  for (const spec of helpOptionSpecs(help)) for (const name of spec.match(/(?<![\w-])--?[A-Za-z0-9][\w-]*/g) ?? []) names.add(name);
  for (const name of help.match(/(?<![\w-])--[A-Za-z0-9][\w-]*/g) ?? []) names.add(name);
  return names;
}

/** The usage forms of --help: "passt-repair [OPTIONS] PATH" and so on. */
function helpUsageForms(help: string): string[] {
  const forms: string[] = [];
  for (const line of help.split('\n')) {
    if (forms.length === 0 && !line.startsWith('Usage: ')) continue;
    if (forms.length > 0 && !/^\s+passt-repair\b/.test(line)) break;
    forms.push(line.replace(/^Usage:/, '').trim().replace(/\s+/g, ' '));
  }
  return forms;
}

/** Every key under "properties" anywhere in the schema, and every string an "enum" or "const" allows. */
function schemaKeysAndValues(schema: unknown): { keys: Set<string>; values: Set<string> } {
  const keys = new Set<string>();
  const values = new Set<string>();
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) return node.forEach(walk);
    if (node === null || typeof node !== 'object') return;
    const object = node as Record<string, unknown>;
    if (object.properties !== null && typeof object.properties === 'object') for (const key of Object.keys(object.properties)) keys.add(key);
    for (const value of Array.isArray(object.enum) ? object.enum : []) if (typeof value === 'string') values.add(value);
    if (typeof object.const === 'string') values.add(object.const);
    Object.values(object).forEach(walk);
  };
  walk(schema);
  return { keys, values };
}

function exitCodesOfErrorsTs(): number[] {
  const source = fs.readFileSync(path.join(ROOT, 'src/errors.ts'), 'utf8');
  const body = /enum ExitCode\s*\{([^}]*)\}/.exec(source);
  if (!body) throw new Error('src/errors.ts: no enum ExitCode');
  const withoutComments = body[1]!.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '');
  return [...withoutComments.matchAll(/=\s*(\d+)/g)].map((match) => Number(match[1])).sort();
}

function exitCodesOfReadme(): number[] {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const start = readme.search(/^#+ Exit status\s*$/im);
  if (start < 0) throw new Error('README.md: no "Exit status" section');
  const rest = readme.slice(readme.indexOf('\n', start) + 1);
  const next = rest.search(/^#+ /m);
  const section = next < 0 ? rest : rest.slice(0, next);
  return [...section.matchAll(/^\|\s*(\d+)\s*\|/gm)].map((match) => Number(match[1])).sort();
}

const missing = ['man', 'groff'].filter((command) => !commandExists(command));
if (missing.length > 0) {
  t.fail(`${missing.join(' and ')} not installed: the page cannot be rendered (Debian packages man-db and groff-base; ./run test installs them)`);
} else {
  const rendered = renderWithMan();
  const text = plain(rendered.stdout);
  const lines = text.split('\n');
  const sections = sectionsOf(lines);
  const section = (name: string): string => (sections.get(name) ?? []).join('\n');
  const tags = (name: string): string[] => tagsOf(sections.get(name) ?? []);
  const help = helpText();

  t.test('man renders the page without a warning', async (t) => {
    t.equal(rendered.code, 0, 'man exits 0');
    t.equal(rendered.stderr, '', 'man --warnings=all says nothing');
    t.ok(lines.length > 100, `${lines.length} lines rendered`);
  });

  t.test('groff checks the page with every warning on', async (t) => {
    for (const device of ['utf8', 'ascii']) {
      const result = spawnSync('groff', ['-man', '-ww', '-z', `-T${device}`, PAGE], { encoding: 'utf8' });
      t.equal(result.status, 0, `groff -T${device} exits 0`);
      t.equal(result.stderr, '', `groff -T${device} -ww says nothing`);
    }
  });

  t.test(`every rendered line fits in ${WIDTH} columns`, async (t) => {
    const long = lines.filter((line) => [...line].length > WIDTH);
    t.same(long, [], 'no line overflows');
  });

  t.test('the source writes every option hyphen as \\-', async (t) => {
    const source = fs.readFileSync(PAGE, 'utf8').split('\n');
    const bare = source.map((line, index) => ({ line, number: index + 1 })).filter(({ line }) => !line.startsWith('.\\"') && /(?<![\\\w])--?[A-Za-z]/.test(line));
    t.same(bare, [], 'an option or a value typed on a command line is never a typographic hyphen');
  });

  t.test('the page has every section, in order', async (t) => {
    t.same([...sections.keys()], SECTIONS);
    for (const name of SECTIONS) t.ok(section(name).trim().length > 0, `${name} is not empty`);
  });

  t.test('the title names the version of package.json', async (t) => {
    const { version } = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    t.match(fs.readFileSync(PAGE, 'utf8'), new RegExp(`^\\.TH PASST\\\\-REPAIR 1 \\S+ "passt\\\\-repair ${version.replace(/\./g, '\\.')}"`, 'm'));
    t.match(lines.filter((line) => line.trim() !== '').at(-1) ?? '', new RegExp(`^passt-repair ${version.replace(/\./g, '\\.')}\\s`), 'the footer');
  });

  t.test('SYNOPSIS gives the usage forms of --help', async (t) => {
    const forms = helpUsageForms(help);
    t.ok(forms.length >= 3, `${forms.length} usage forms in --help`);
    const synopsis = section('SYNOPSIS')
      .split('\n')
      .map((line) => line.trim().replace(/\s+/g, ' '))
      .filter((line) => line !== '');
    t.same(synopsis, forms);
  });

  t.test('every option --help prints is documented under OPTIONS', async (t) => {
    const names = helpOptionNames(help);
    for (const known of ['--policy', '--check-policy', '--explain', '--timeout', '-h', '--help', '-V', '--version'])
      t.ok(names.has(known), `${known} found in --help (the extraction works)`);
    const options = flat(section('OPTIONS'));
    for (const name of names) t.match(options, new RegExp(`(?<![\\w-])${name}(?![\\w-])`), `${name} is documented`);
    // Each option with its argument, as --help writes it, is an entry (a tag) of OPTIONS.
    const entries = tags('OPTIONS');
    for (const spec of helpOptionSpecs(help)) t.ok(entries.includes(spec.replace(/\s+/g, ' ')), `OPTIONS has an entry "${spec}"`);
  });

  t.test('--log-format and its values are documented', async (t) => {
    const options = flat(section('OPTIONS'));
    t.match(options, /--log-format FORMAT/);
    t.match(options, /\btext\b.*\(the default\)/);
    t.match(options, /\bjson\b/);
    t.match(flat(section('LOGGING')), /--log-format json/);
  });

  t.test('the default policy file of --help is the one documented', async (t) => {
    const defaultPolicy = /\(default: (\/\S+)\)/.exec(help)?.[1];
    t.ok(defaultPolicy, '--help names the default policy file');
    for (const name of ['OPTIONS', 'POLICY FILE', 'FILES']) t.match(flat(section(name)), defaultPolicy!, `${name} names ${defaultPolicy}`);
  });

  t.test('EXIT STATUS documents exactly the exit codes of src/errors.ts and the README', async (t) => {
    const entries = tags('EXIT STATUS');
    t.ok(entries.every((entry) => /^\d+$/.test(entry)), `every entry is a code: ${entries.join(', ')}`);
    // 128 + N for each signal the helper catches (src/errors.ts SIGNAL_NAMES), apart from ExitCode.
    const signalExits = (['SIGHUP', 'SIGINT', 'SIGTERM'] as const).map((name) => 128 + os.constants.signals[name]);
    t.same(entries.filter((entry) => signalExits.includes(Number(entry))).map(Number), signalExits, 'the page documents 128 + N for SIGHUP, SIGINT and SIGTERM');
    const documented = entries.map(Number).filter((code) => !signalExits.includes(code)).sort();
    const ofCode = exitCodesOfErrorsTs();
    t.same(ofCode, [0, 1, 2], 'src/errors.ts: 0, 1, 2');
    t.same(documented, ofCode, 'the page documents the codes of src/errors.ts');
    t.same(documented, exitCodesOfReadme(), "the page documents the codes of the README's table");
  });

  t.test('every key and every value of the policy schema is documented', async (t) => {
    const schema = JSON.parse(fs.readFileSync(SCHEMA, 'utf8')) as { properties: Record<string, unknown> };
    const policySection = flat(section('POLICY FILE'));
    const topLevel = new Set([...Object.keys(schema.properties), 'log', 'telemetry']);
    for (const key of topLevel) t.ok(policySection.includes(`"${key}"`), `top-level key "${key}" in POLICY FILE`);
    const { keys, values } = schemaKeysAndValues(schema);
    t.ok(keys.has('sameOwner') && values.has('kill'), 'the walk reaches nested keys and values');
    const page = flat(text);
    for (const key of new Set([...keys, ...KEYS_AHEAD_OF_SCHEMA])) t.ok(page.includes(`"${key}"`), `key "${key}"`);
    for (const value of new Set([...values, ...VALUES_AHEAD_OF_SCHEMA])) t.ok(page.includes(`"${value}"`), `value "${value}"`);
  });

  t.test('LOGGING documents every event of the JSON log and its fields', async (t) => {
    const words = flat(section('LOGGING'));
    for (const field of ['time', 'level', 'event', 'message']) t.match(words, new RegExp(`\\b${field}\\b`), `common field ${field}`);
    for (const level of ['info', 'warning', 'error']) t.ok(words.includes(`"${level}"`), `level "${level}"`);
    t.same(tags('LOGGING'), Object.keys(LOG_EVENTS), 'one entry per event, in order');
    for (const [event, fields] of Object.entries(LOG_EVENTS)) for (const field of fields) t.match(words, new RegExp(`\\b${field}\\b`), `${event}: ${field}`);
    for (const prefix of ['<3>', '<4>', '<6>']) t.ok(words.includes(prefix), `journal priority ${prefix}`);
    t.match(words, /JOURNAL_STREAM/);
  });

  t.test('the protocol, the environment and the references are there', async (t) => {
    const description = flat(section('DESCRIPTION'));
    for (const [byte, command] of [['1', 'TCP_REPAIR_ON'], ['0', 'TCP_REPAIR_OFF'], ['-1', 'TCP_REPAIR_OFF_NO_WP']])
      t.match(description, new RegExp(`(?<![\\w-])${byte} ${command}:`), `command ${byte} ${command}`);
    t.match(description, /SCM_RIGHTS/);
    t.match(description, /1 to 253/);
    t.match(flat(section('DIRECTORY MODE')), /\.repair/);
    t.match(flat(section('ENVIRONMENT')), /JOURNAL_STREAM/);
    const files = flat(section('FILES'));
    for (const file of ['policy/policy.schema.json', 'seccomp/allowlist.policy']) {
      t.match(files, file);
      t.ok(fs.existsSync(path.join(ROOT, file)), `${file} exists`);
    }
    const security = flat(section('SECURITY'));
    for (const word of ['CAP_NET_ADMIN', 'NO_NEW_PRIVS', 'SO_PEERCRED', 'SO_PEERPIDFD', 'AmbientCapabilities=CAP_NET_ADMIN', 'setpriv']) t.match(security, word);
    const examples = flat(section('EXAMPLES'));
    for (const example of ['passt-repair /run/libvirt/qemu/passt/', '--timeout 55', '--check-policy', '--explain']) t.match(examples, example);
    t.same(flat(section('SEE ALSO')).trim(), 'passt(1), setpriv(1), capabilities(7), seccomp(2), systemd.exec(5)');
  });
}
