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
 * A position in a pattern: the token reached and, in a "**" (zero or more
 * "/segment"), where inside it: 0 between segments, 1 right after a "/"
 * (a segment needs a character), 2 inside a segment.
 */
type State = readonly [token: number, inGlobstar: 0 | 1 | 2];

class Automaton {
  constructor(readonly tokens: readonly Token[]) {}

  /** The states reachable from `state` without reading a character. */
  closure(state: State): State[] {
    const states: State[] = [state];
    for (let i = 0; i < states.length; i++) {
      const [index, phase] = states[i]!;
      const token = this.tokens[index];
      const next: State[] = [];
      if (token?.kind === 'star') next.push([index + 1, 0]);
      if (token?.kind === 'globstar' && phase === 0) next.push([index + 1, 0]);
      if (token?.kind === 'globstar' && phase === 2) next.push([index, 0]);
      for (const state of next) if (!states.some(([a, b]) => a === state[0] && b === state[1])) states.push(state);
    }
    return states;
  }

  step([index, phase]: State, c: string): State | undefined {
    const token = this.tokens[index];
    const segmentCharacter = c !== '/';
    switch (token?.kind) {
      case 'char':
        return token.char === c ? [index + 1, 0] : undefined;
      case 'any':
        return segmentCharacter ? [index + 1, 0] : undefined;
      case 'star':
        return segmentCharacter ? [index, 0] : undefined;
      case 'globstar':
        if (phase === 0) return c === '/' ? [index, 1] : undefined;
        return segmentCharacter ? [index, 2] : undefined;
      default:
        return undefined;
    }
  }

  accepts([index]: State): boolean {
    return index === this.tokens.length;
  }
}

function literals(tokens: readonly Token[]): string[] {
  return tokens.flatMap((token) => (token.kind === 'char' ? [token.char] : []));
}

function overlapTokens(a: readonly Token[], b: readonly Token[]): boolean {
  const first = new Automaton(a);
  const second = new Automaton(b);
  const alphabet = [...new Set(['/', ANY_OTHER, ...literals(a), ...literals(b)])];
  const key = (x: State, y: State): string => `${x[0]},${x[1]},${y[0]},${y[1]}`;
  const seen = new Set<string>();
  const queue: [State, State][] = [];
  const visit = (x: State, y: State): void => {
    for (const p of first.closure(x))
      for (const q of second.closure(y)) {
        if (seen.has(key(p, q))) continue;
        seen.add(key(p, q));
        queue.push([p, q]);
      }
  };
  visit([0, 0], [0, 0]);
  while (queue.length > 0) {
    const [p, q] = queue.shift()!;
    if (first.accepts(p) && second.accepts(q)) return true;
    for (const c of alphabet) {
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
