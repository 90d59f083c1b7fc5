// SPDX-License-Identifier: GPL-2.0-or-later
// Whether two path patterns can match one same path: --check-policy's test
// for a "directories" pattern under which no "sockets" pattern of its rule
// could ever match a socket. Exact for the pattern language of pattern.ts
// (a decision, not a guess): each pattern is read as a small automaton over
// characters, and a path both accept exists if and only if the two automata,
// run side by side, can reach their ends together.

type Token = { kind: 'char'; char: string } | { kind: 'any' } | { kind: 'star' } | { kind: 'globstar' };

/** A valid pattern (the schema has checked it) as tokens: "/" and literal characters, "?", "*", and "**" segments. */
function tokenize(pattern: string): Token[] {
  const tokens: Token[] = [];
  for (const segment of pattern.slice(1).split('/')) {
    if (segment === '**') {
      tokens.push({ kind: 'globstar' });
      continue;
    }
    tokens.push({ kind: 'char', char: '/' });
    for (const c of segment) tokens.push(c === '*' ? { kind: 'star' } : c === '?' ? { kind: 'any' } : { kind: 'char', char: c });
  }
  return tokens;
}

/**
 * Stands for the characters other than "/" that neither pattern names: where
 * one of them can be read, any can, so one is enough to try.
 */
const ANY_OTHER = '\0';

/**
 * A position in a pattern, as one number (token * PHASES + phase): the
 * token reached and, in a "**" (zero or more "/segment"), where inside it:
 * 0 between segments, 1 right after a "/" (a segment needs a character),
 * 2 inside a segment. A number, so that a pair of positions indexes a flat
 * table: policy checks run at every start (check.ts), before connect.
 */
type State = number;
const PHASES = 3;

class Automaton {
  /** How many states there are, the end included. */
  readonly size: number;

  constructor(readonly tokens: readonly Token[]) {
    this.size = (tokens.length + 1) * PHASES;
  }

  /** The states reachable from `state` without reading a character. */
  closure(state: State): State[] {
    const states: State[] = [state];
    for (let i = 0; i < states.length; i++) {
      const index = Math.floor(states[i]! / PHASES);
      const phase = states[i]! % PHASES;
      const token = this.tokens[index];
      let next: State | undefined;
      if (token?.kind === 'star') next = (index + 1) * PHASES;
      else if (token?.kind === 'globstar' && phase === 0) next = (index + 1) * PHASES;
      else if (token?.kind === 'globstar' && phase === 2) next = index * PHASES;
      if (next !== undefined && !states.includes(next)) states.push(next);
    }
    return states;
  }

  step(state: State, c: string): State | undefined {
    const index = Math.floor(state / PHASES);
    const token = this.tokens[index];
    const segmentCharacter = c !== '/';
    switch (token?.kind) {
      case 'char':
        return token.char === c ? (index + 1) * PHASES : undefined;
      case 'any':
        return segmentCharacter ? (index + 1) * PHASES : undefined;
      case 'star':
        return segmentCharacter ? index * PHASES : undefined;
      case 'globstar':
        if (state % PHASES === 0) return c === '/' ? index * PHASES + 1 : undefined;
        return segmentCharacter ? index * PHASES + 2 : undefined;
      default:
        return undefined;
    }
  }

  accepts(state: State): boolean {
    return Math.floor(state / PHASES) === this.tokens.length;
  }

  /** The literal character `state` must read next, if it is at one. */
  literal(state: State): string | undefined {
    const token = this.tokens[Math.floor(state / PHASES)];
    return token?.kind === 'char' ? token.char : undefined;
  }
}

function overlapTokens(a: readonly Token[], b: readonly Token[]): boolean {
  const first = new Automaton(a);
  const second = new Automaton(b);
  const seen = new Uint8Array(first.size * second.size);
  const queue: [State, State][] = [];
  const visit = (x: State, y: State): void => {
    for (const p of first.closure(x))
      for (const q of second.closure(y)) {
        if (seen[p * second.size + q] === 1) continue;
        seen[p * second.size + q] = 1;
        queue.push([p, q]);
      }
  };
  visit(0, 0);
  for (let next = 0; next < queue.length; next++) {
    const [p, q] = queue[next]!;
    if (first.accepts(p) && second.accepts(q)) return true;
    // The characters worth trying: at a literal, only that one can be read;
    // at no literal, each step depends only on whether the character is "/".
    const literal = first.literal(p) ?? second.literal(q);
    for (const c of literal === undefined ? ['/', ANY_OTHER] : [literal]) {
      const x = first.step(p, c);
      const y = second.step(q, c);
      if (x !== undefined && y !== undefined) visit(x, y);
    }
  }
  return false;
}

/**
 * Whether some directory `directoryPattern` matches can hold a socket
 * "NAME.repair" (what directory mode waits for) that `socketPattern` matches.
 */
export function directoryCanHoldSocket(directoryPattern: string, socketPattern: string): boolean {
  const child: Token[] = [{ kind: 'char', char: '/' }, { kind: 'star' }, ...[...'.repair'].map((char): Token => ({ kind: 'char', char }))];
  return overlapTokens([...tokenize(directoryPattern), ...child], tokenize(socketPattern));
}
