// Reading the policy file: trusted only if nobody but root (or the helper's
// own uid) can have written it, parsed strictly, validated against
// policy/policy.schema.json (validator generated at build time), and every
// mistake reported like a compiler error: FILE:LINE:COLUMN: /pointer: what.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ExitCode, HelperError } from '../errors';
import { JsonSyntaxError, parseJson, type Position } from './json';
import { compilePattern } from './pattern';
import { validatePolicySchema } from './validate.generated';

export const DEFAULT_POLICY_FILE = '/etc/passt-repair/policy.json';
/** A policy is a few kilobytes; anything far larger is not one. */
const MAX_POLICY_BYTES = 1 << 20;

export interface Pattern {
  source: string;
  matches(path: string): boolean;
}

export interface PeerRule {
  sameOwner: boolean;
  uids: readonly number[] | undefined;
  gids: readonly number[] | undefined;
}

/** Which processes may lend their root (/proc/PID/root/...) to a rule's paths: all present conditions hold. */
export interface ProcessRootRule {
  uids: readonly number[] | undefined;
  gids: readonly number[] | undefined;
}

export interface Rule {
  name: string;
  sockets: readonly Pattern[];
  directories: readonly Pattern[];
  peer: PeerRule;
  /** Present: the rule's patterns name paths inside a process's root, given as /proc/PID/root/...; absent: host paths. */
  processRoot: ProcessRootRule | undefined;
}

export type LogFormat = 'text' | 'json';

/** What a Sentry report may carry unscrubbed. */
export type SentryInclude = 'paths' | 'ids' | 'pids';

export interface SentrySettings {
  dsn: string;
  environment: string;
  include: ReadonlySet<SentryInclude>;
}

export interface Policy {
  file: string;
  sandbox: { user: string; seccomp: 'kill' | 'log' };
  log: { format: LogFormat };
  /** Reporting to Sentry, when the policy opts in. */
  sentry: SentrySettings | undefined;
  rules: readonly Rule[];
}

/** A policy that cannot be used: exit 2, connect nowhere. */
export class PolicyError extends HelperError {
  constructor(message: string) {
    super(message, ExitCode.Usage);
  }
}

// The file as the schema guarantees it to be.
interface PolicyDocument {
  version: 1;
  sandbox?: { user?: string; seccomp?: 'kill' | 'log' };
  log?: { format?: LogFormat };
  telemetry?: { sentry?: { dsn: string; environment?: string; include?: SentryInclude[] } };
  rules: { name: string; sockets: string[]; directories?: string[]; peer: { sameOwner?: boolean; uids?: number[]; gids?: number[] };
    processRoot?: { uids?: number[]; gids?: number[] };
  }[];
}

interface SchemaError {
  instancePath: string;
  schemaPath: string;
  keyword: string;
  params: Record<string, unknown>;
  message?: string;
}

const validate = validatePolicySchema as unknown as { (data: unknown): boolean; errors?: SchemaError[] | null };

const S_ISVTX = 0o1000;

function modeText(mode: number): string {
  return `0${(mode & 0o7777).toString(8).padStart(3, '0')}`;
}

/** sshd's and sudo's rule: owned by root or by us, and not writable by group or others unless a sticky directory. */
function checkTrusted(file: string, stats: fs.Stats): void {
  const euid = process.geteuid!();
  if (stats.uid !== 0 && stats.uid !== euid)
    throw new PolicyError(`${file}: owned by uid ${stats.uid}; a policy and every directory above it must be owned by root${euid === 0 ? '' : ` or uid ${euid}`}`);
  const sticky = stats.isDirectory() && (stats.mode & S_ISVTX) !== 0;
  if ((stats.mode & 0o022) !== 0 && !sticky)
    throw new PolicyError(`${file}: mode ${modeText(stats.mode)} is writable by group or others; a policy and every directory above it must not be`);
}

/** Reads the policy file after checking that nobody untrusted can have written it. */
function readTrustedFile(file: string): { text: string; owner: number } {
  const absolute = path.resolve(file);
  let fd: number;
  try {
    // Named by its real path: a symlink would let whoever controls the
    // link's directory choose which file is the policy.
    if (fs.realpathSync(absolute) !== absolute) throw new PolicyError(`${file}: reached through a symlink (to ${fs.realpathSync(absolute)}); name the policy file by its real path`);
    fd = fs.openSync(absolute, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  } catch (error) {
    if (error instanceof PolicyError) throw error;
    throw new PolicyError(`${file}: cannot read the policy: ${(error as Error).message.replace(/^[A-Z]+: /, '')}`);
  }
  try {
    const stats = fs.fstatSync(fd);
    if (!stats.isFile()) throw new PolicyError(`${file}: not a regular file`);
    checkTrusted(absolute, stats);
    for (let directory = path.dirname(absolute); ; directory = path.dirname(directory)) {
      checkTrusted(directory, fs.lstatSync(directory));
      if (directory === '/') break;
    }
    if (stats.size > MAX_POLICY_BYTES) throw new PolicyError(`${file}: ${stats.size} bytes; a policy is at most ${MAX_POLICY_BYTES}`);
    return { text: fs.readFileSync(fd, 'utf8'), owner: stats.uid };
  } finally {
    fs.closeSync(fd);
  }
}

function schemaErrorLine(error: SchemaError): { pointer: string; message: string } {
  switch (error.keyword) {
    case 'additionalProperties': {
      const key = String(error.params.additionalProperty);
      return { pointer: `${error.instancePath}/${key.replace(/~/g, '~0').replace(/\//g, '~1')}`, message: `unknown key "${key}"` };
    }
    case 'required':
      return { pointer: error.instancePath, message: `missing the required key "${String(error.params.missingProperty)}"` };
    case 'const':
      return { pointer: error.instancePath, message: `expected ${JSON.stringify(error.params.allowedValue)}` };
    case 'enum':
      return { pointer: error.instancePath, message: `expected one of ${(error.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}` };
    case 'type':
      return { pointer: error.instancePath, message: `expected ${String(error.params.type) === 'integer' ? 'an integer' : `a(n) ${String(error.params.type)}`}` };
    case 'pattern':
      if (error.schemaPath.startsWith('#/definitions/pattern/'))
        return {
          pointer: error.instancePath,
          message: 'expected an absolute path pattern without ".", ".." or empty segments, a trailing "/", or "**" inside a segment',
        };
      return { pointer: error.instancePath, message: `expected a string matching ${String(error.params.pattern)}` };
    default:
      return { pointer: error.instancePath, message: error.message ?? error.keyword };
  }
}

interface Located {
  at: Position;
  text: string;
}

function located(file: string, positions: Map<string, Position>, pointer: string, message: string): Located {
  let at = positions.get(pointer);
  // A pointer to a key that is not there (a required key) is reported at its object.
  for (let parent = pointer; at === undefined && parent !== ''; ) {
    parent = parent.slice(0, parent.lastIndexOf('/'));
    at = positions.get(parent);
  }
  const where = at ?? { line: 1, column: 1 };
  return { at: where, text: `${file}:${where.line}:${where.column}: ${pointer === '' ? '/' : pointer}: ${message}` };
}

/** Parses and validates policy text; `file` names it in messages. */
export function parsePolicy(file: string, text: string): Policy {
  let parsed;
  try {
    parsed = parseJson(text);
  } catch (error) {
    if (!(error instanceof JsonSyntaxError)) throw error;
    throw new PolicyError(`${file}:${error.position.line}:${error.position.column}: invalid JSON: ${error.message}`);
  }
  const { value, positions } = parsed;
  if (!validate(value)) {
    const lines = (validate.errors ?? [])
      .map((error) => {
        const { pointer, message } = schemaErrorLine(error);
        return located(file, positions, pointer, message);
      })
      .sort((a, b) => a.at.line - b.at.line || a.at.column - b.at.column)
      .map((line) => line.text);
    throw new PolicyError([...new Set(lines)].join('\n'));
  }
  const document = value as PolicyDocument;
  const seen = new Set<string>();
  document.rules.forEach((rule, index) => {
    if (seen.has(rule.name)) throw new PolicyError(located(file, positions, `/rules/${index}/name`, `a rule named "${rule.name}" exists already; names must be unique`).text);
    seen.add(rule.name);
  });
  const pattern = (source: string): Pattern => ({ source, matches: compilePattern(source) });
  const sentry = document.telemetry?.sentry;
  return {
    file,
    sandbox: { user: document.sandbox?.user ?? 'nobody', seccomp: document.sandbox?.seccomp ?? 'kill' },
    log: { format: document.log?.format ?? 'text' },
    sentry: sentry && { dsn: sentry.dsn, environment: sentry.environment ?? 'production', include: new Set(sentry.include ?? []) },
    rules: document.rules.map((rule) => ({
      name: rule.name,
      sockets: rule.sockets.map(pattern),
      directories: (rule.directories ?? []).map(pattern),
      peer: { sameOwner: rule.peer.sameOwner ?? true, uids: rule.peer.uids, gids: rule.peer.gids },
      processRoot: rule.processRoot && { uids: rule.processRoot.uids, gids: rule.processRoot.gids },
    })),
  };
}

/** Loads the policy, failing closed with a PolicyError (exit 2). */
export function loadPolicy(file: string): Policy {
  const { text, owner } = readTrustedFile(file);
  const policy = parsePolicy(file, text);
  // Reports leave the machine: only the administrator decides that, not a
  // user who runs the helper with a policy of their own.
  if (policy.sentry !== undefined && owner !== 0)
    throw new PolicyError(`${file}: owned by uid ${owner}; "telemetry" is honoured only in a policy owned by root`);
  return policy;
}
