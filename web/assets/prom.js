// A small parser of the Prometheus text exposition format (version 0.0.4).
// Used by the dashboard (rates from counters) and by tests/web (the format check).
//
//   const { samples, types, helps } = parsePrometheus(text);   // throws PromParseError
//   sum(samples, 'wscluster_frames_in_total')                    // over every label set

export class PromParseError extends Error {
  constructor(message, lineNo, line) {
    super(`line ${lineNo}: ${message}: ${JSON.stringify(line)}`);
    this.name = 'PromParseError';
    this.lineNo = lineNo;
  }
}

const NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

function parseValue(text) {
  if (text === 'NaN') return NaN;
  if (text === '+Inf' || text === 'Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) return undefined;
  return Number(text);
}

// Parses `{a="x",b="y"}` starting at line[i] === '{'; returns [labels, index after '}'].
function parseLabels(line, i, lineNo) {
  const labels = {};
  i++; // '{'
  for (;;) {
    while (line[i] === ' ') i++;
    if (line[i] === '}') return [labels, i + 1];
    let j = i;
    while (j < line.length && /[a-zA-Z0-9_]/.test(line[j])) j++;
    const name = line.slice(i, j);
    if (!LABEL_RE.test(name)) throw new PromParseError('bad label name', lineNo, line);
    if (Object.prototype.hasOwnProperty.call(labels, name)) throw new PromParseError(`duplicate label ${name}`, lineNo, line);
    i = j;
    while (line[i] === ' ') i++;
    if (line[i] !== '=') throw new PromParseError('expected =', lineNo, line);
    i++;
    while (line[i] === ' ') i++;
    if (line[i] !== '"') throw new PromParseError('expected "', lineNo, line);
    i++;
    let value = '';
    for (;;) {
      if (i >= line.length) throw new PromParseError('unterminated label value', lineNo, line);
      const ch = line[i];
      if (ch === '\\') {
        const next = line[i + 1];
        if (next === 'n') value += '\n';
        else if (next === '\\' || next === '"') value += next;
        else throw new PromParseError('bad escape in label value', lineNo, line);
        i += 2;
      } else if (ch === '"') {
        i++;
        break;
      } else {
        value += ch;
        i++;
      }
    }
    labels[name] = value;
    while (line[i] === ' ') i++;
    if (line[i] === ',') {
      i++;
      continue;
    }
    if (line[i] === '}') return [labels, i + 1];
    throw new PromParseError('expected , or }', lineNo, line);
  }
}

/** The family a sample belongs to (histogram/summary series share their base name). */
export function familyOf(name, types) {
  if (types.has(name)) return name;
  for (const suffix of ['_bucket', '_sum', '_count', '_created']) {
    if (name.endsWith(suffix)) {
      const base = name.slice(0, -suffix.length);
      const t = types.get(base);
      if (t === 'histogram' || t === 'summary') return base;
    }
  }
  return name;
}

/**
 * Parses the text format. Throws PromParseError on a malformed line, a TYPE given twice
 * or after the family's samples, an unknown type, or a repeated series.
 */
export function parsePrometheus(text) {
  const samples = [];
  const types = new Map();
  const helps = new Map();
  const seenFamilies = new Set();
  const seenSeries = new Set();
  const lines = text.split('\n');
  lines.forEach((raw, idx) => {
    const lineNo = idx + 1;
    const line = raw.replace(/\r$/, '');
    if (line.trim() === '') return;
    if (line.startsWith('#')) {
      const m = /^#\s+(HELP|TYPE)\s+(\S+)(?:\s+(.*))?$/.exec(line);
      if (!m) return; // a plain comment
      const [, kind, name, rest = ''] = m;
      if (!NAME_RE.test(name)) throw new PromParseError('bad metric name', lineNo, line);
      if (kind === 'TYPE') {
        if (!TYPES.has(rest.trim())) throw new PromParseError('unknown type', lineNo, line);
        if (types.has(name)) throw new PromParseError('second TYPE line', lineNo, line);
        if (seenFamilies.has(name)) throw new PromParseError('TYPE after samples', lineNo, line);
        types.set(name, rest.trim());
      } else {
        if (helps.has(name)) throw new PromParseError('second HELP line', lineNo, line);
        helps.set(name, rest);
      }
      return;
    }
    let i = 0;
    while (i < line.length && /[a-zA-Z0-9_:]/.test(line[i])) i++;
    const name = line.slice(0, i);
    if (!NAME_RE.test(name)) throw new PromParseError('bad metric name', lineNo, line);
    let labels = {};
    if (line[i] === '{') [labels, i] = parseLabels(line, i, lineNo);
    const rest = line.slice(i).trim().split(/\s+/);
    if (line[i] !== ' ' && line[i] !== '\t') throw new PromParseError('expected a space before the value', lineNo, line);
    if (rest.length < 1 || rest.length > 2) throw new PromParseError('expected value [timestamp]', lineNo, line);
    const value = parseValue(rest[0]);
    if (value === undefined) throw new PromParseError('bad value', lineNo, line);
    let ts;
    if (rest.length === 2) {
      if (!/^-?\d+$/.test(rest[1])) throw new PromParseError('bad timestamp', lineNo, line);
      ts = Number(rest[1]);
    }
    const series = name + JSON.stringify(Object.entries(labels).sort());
    if (seenSeries.has(series)) throw new PromParseError('repeated series', lineNo, line);
    seenSeries.add(series);
    seenFamilies.add(familyOf(name, types));
    samples.push({ name, labels, value, ts });
  });
  return { samples, types, helps };
}

/** Sum of every sample named `name` whose labels match `where` (all given labels equal). */
export function sum(samples, name, where = {}) {
  let total = 0;
  let found = false;
  for (const s of samples) {
    if (s.name !== name) continue;
    if (Object.entries(where).some(([k, v]) => s.labels[k] !== v)) continue;
    total += s.value;
    found = true;
  }
  return found ? total : undefined;
}
