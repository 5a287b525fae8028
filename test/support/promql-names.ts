// What a PromQL expression (as a Grafana panel holds it) names: its metrics, the labels each
// selector matches on, and the labels of its by/without/on/ignoring/group_left/group_right lists.
// Not a full parser: a tokenizer and a scan that knows which identifiers are functions, aggregators
// and keywords, so that every other identifier outside braces is a metric name. It refuses what
// it does not know (an unknown function, an unbalanced bracket, a character PromQL has not),
// so that nothing is silently skipped.

/** One vector selector: `metric{label="value", ...}` or `{__name__="metric", ...}`. */
export interface Selector {
  /** The metric name; undefined for a selector that names none. */
  metric: string | undefined;
  /** The label names its matchers use (`__name__` left out). */
  labels: string[];
}

export interface PromqlNames {
  selectors: Selector[];
  /** Labels of every by, without, on, ignoring, group_left and group_right list. */
  groupingLabels: string[];
  /** Functions and aggregators called. */
  functions: string[];
}

const AGGREGATORS = new Set([
  'sum',
  'min',
  'max',
  'avg',
  'group',
  'stddev',
  'stdvar',
  'count',
  'count_values',
  'bottomk',
  'topk',
  'quantile',
  'limitk',
  'limit_ratio',
]);

/** Prometheus' functions (as of 3.x), called with parentheses. */
const FUNCTIONS = new Set([
  'abs',
  'absent',
  'absent_over_time',
  'acos',
  'acosh',
  'asin',
  'asinh',
  'atan',
  'atanh',
  'avg_over_time',
  'ceil',
  'changes',
  'clamp',
  'clamp_max',
  'clamp_min',
  'cos',
  'cosh',
  'count_over_time',
  'day_of_month',
  'day_of_week',
  'day_of_year',
  'days_in_month',
  'deg',
  'delta',
  'deriv',
  'exp',
  'floor',
  'histogram_avg',
  'histogram_count',
  'histogram_fraction',
  'histogram_quantile',
  'histogram_stddev',
  'histogram_stdvar',
  'histogram_sum',
  'holt_winters',
  'hour',
  'idelta',
  'increase',
  'irate',
  'label_join',
  'label_replace',
  'last_over_time',
  'ln',
  'log10',
  'log2',
  'mad_over_time',
  'max_over_time',
  'min_over_time',
  'minute',
  'month',
  'pi',
  'predict_linear',
  'present_over_time',
  'quantile_over_time',
  'rad',
  'rate',
  'resets',
  'round',
  'scalar',
  'sgn',
  'sin',
  'sinh',
  'sort',
  'sort_desc',
  'sort_by_label',
  'sort_by_label_desc',
  'sqrt',
  'stddev_over_time',
  'stdvar_over_time',
  'sum_over_time',
  'tan',
  'tanh',
  'time',
  'timestamp',
  'vector',
  'year',
]);

/** Keywords followed by a list of label names in parentheses (group_left/right may have none). */
const GROUPING = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);

/** Set operators, atan2, the bool modifier, offset, and the float literals spelt as words. */
const WORDS = new Set(['and', 'or', 'unless', 'atan2', 'bool', 'offset', 'inf', 'nan']);

type TokenKind = 'identifier' | 'number' | 'string' | 'variable' | 'punctuation';

interface Token {
  kind: TokenKind;
  text: string;
  /** Where it starts in the expression (for messages). */
  at: number;
}

const PATTERNS: Array<[TokenKind | 'space' | 'comment', RegExp]> = [
  ['space', /^\s+/],
  ['comment', /^#[^\n]*/],
  ['string', /^"(?:[^"\\]|\\.)*"|^'(?:[^'\\]|\\.)*'|^`[^`]*`/],
  // Grafana's template variables: $name, ${name}, ${name:format}, $__rate_interval.
  ['variable', /^\$(?:\{[A-Za-z0-9_]+(?::[A-Za-z0-9_]+)?\}|[A-Za-z0-9_]+)/],
  // A number or a duration (5m, 1h30m): durations appear in ranges and after offset.
  ['number', /^(?:0[xX][0-9a-fA-F]+|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?[a-zA-Z0-9_]*)/],
  ['identifier', /^[a-zA-Z_:][a-zA-Z0-9_:]*/],
  ['punctuation', /^(?:==|!=|=~|!~|<=|>=|[-+*/%^<>=(){}[\],@])/],
];

export function tokenize(expr: string): Token[] {
  const tokens: Token[] = [];
  let at = 0;
  while (at < expr.length) {
    const rest = expr.slice(at);
    const found = PATTERNS.map(([kind, pattern]) => [kind, pattern.exec(rest)] as const).find(
      ([, match]) => match !== null,
    );
    if (!found) throw new Error(`PromQL: unexpected ${JSON.stringify(rest[0])} at ${at} of ${expr}`);
    const [kind, match] = found;
    if (kind !== 'space' && kind !== 'comment') tokens.push({ kind, text: match![0], at });
    at += match![0].length;
  }
  return tokens;
}

/** The value of a string literal token. */
function stringValue(token: Token): string {
  if (token.text.startsWith('`')) return token.text.slice(1, -1);
  if (token.text.startsWith("'"))
    return JSON.parse(`"${token.text.slice(1, -1).replace(/\\'/g, "'").replace(/"/g, '\\"')}"`);
  return JSON.parse(token.text);
}

const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const MATCH_OPS = new Set(['=', '!=', '=~', '!~']);

/** The metrics, selector labels and grouping labels an expression names. */
export function promqlNames(expr: string): PromqlNames {
  const tokens = tokenize(expr);
  const names: PromqlNames = { selectors: [], groupingLabels: [], functions: [] };
  const fail = (message: string, token?: Token): never => {
    throw new Error(`PromQL: ${message}${token ? ` at ${token.at}` : ''} of ${expr}`);
  };
  let open = 0;
  let index = 0;
  const peek = (offset = 0): Token | undefined => tokens[index + offset];
  const expect = (text: string): Token => {
    const token = tokens[index];
    if (token?.text !== text) fail(`expected ${text}, found ${token?.text ?? 'the end'}`, token);
    index++;
    return token!;
  };

  /** `{label op "value", ...}` from the opening brace: the label names, and `__name__="..."`'s value. */
  const matchers = (): { labels: string[]; name: string | undefined } => {
    expect('{');
    const labels: string[] = [];
    let name: string | undefined;
    while (peek()?.text !== '}') {
      const label = peek();
      if (label?.kind !== 'identifier' || !LABEL_NAME.test(label.text)) fail('expected a label name', label);
      index++;
      const op = peek();
      if (op?.kind !== 'punctuation' || !MATCH_OPS.has(op.text)) fail('expected a label matcher', op);
      index++;
      const value = peek();
      if (value?.kind !== 'string') fail('expected a quoted label value', value);
      index++;
      if (label!.text === '__name__') {
        if (op!.text === '=') name = stringValue(value!);
      } else labels.push(label!.text);
      if (peek()?.text === ',') index++;
      else if (peek()?.text !== '}') fail('expected , or }', peek());
    }
    index++;
    return { labels, name };
  };

  /** `(label, ...)` after a grouping keyword. */
  const labelList = (): string[] => {
    expect('(');
    const labels: string[] = [];
    while (peek()?.text !== ')') {
      const label = peek();
      if (label?.kind !== 'identifier' || !LABEL_NAME.test(label.text)) fail('expected a label name', label);
      labels.push(label!.text);
      index++;
      if (peek()?.text === ',') index++;
      else if (peek()?.text !== ')') fail('expected , or )', peek());
    }
    index++;
    return labels;
  };

  while (index < tokens.length) {
    const token = tokens[index]!;
    if (token.kind === 'identifier') {
      const word = token.text.toLowerCase();
      const next = peek(1);
      if (GROUPING.has(word)) {
        index++;
        if (peek()?.text === '(') names.groupingLabels.push(...labelList());
        else if (word !== 'group_left' && word !== 'group_right') fail(`${word} without a label list`, token);
        continue;
      }
      index++;
      if (WORDS.has(word)) continue;
      if (AGGREGATORS.has(word)) {
        if (next?.text !== '(' && !GROUPING.has(next?.text.toLowerCase() ?? ''))
          fail(`aggregator ${token.text} not called`, token);
        names.functions.push(word);
        continue;
      }
      if (next?.text === '(') {
        if (!FUNCTIONS.has(token.text)) fail(`unknown function ${token.text}`, token);
        names.functions.push(token.text);
        continue;
      }
      const selector: Selector = { metric: token.text, labels: [] };
      if (peek()?.text === '{') selector.labels = matchers().labels;
      names.selectors.push(selector);
      continue;
    }
    if (token.text === '{') {
      const { labels, name } = matchers();
      names.selectors.push({ metric: name, labels });
      continue;
    }
    if (token.text === '[') {
      // A range or subquery ([5m], [$__rate_interval], [1h:5m], whose `:5m` reads as an
      // identifier): durations and Grafana variables, nothing that names a metric.
      index++;
      while (peek() && peek()!.text !== ']') {
        const inside = peek()!;
        if (inside.kind !== 'number' && inside.kind !== 'variable' && !inside.text.startsWith(':'))
          fail(`unexpected ${inside.text} in a range`, inside);
        index++;
      }
      expect(']');
      continue;
    }
    if (token.text === '(') open++;
    if (token.text === ')' && --open < 0) fail('unbalanced )', token);
    if (token.text === '}' || token.text === ']') fail(`unbalanced ${token.text}`, token);
    index++;
  }
  if (open !== 0) fail('unbalanced (');
  return names;
}

/**
 * A Grafana Prometheus variable query: `label_values(selector, label)` or `label_values(label)`.
 * Its selector's names, and the label whose values it lists.
 */
export function variableQueryNames(query: string): { names: PromqlNames; label: string } {
  const match = /^\s*label_values\(\s*(?:(.*\S)\s*,\s*)?([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$/s.exec(query);
  if (!match) throw new Error(`variable query: only label_values(selector, label) is known: ${query}`);
  const names =
    match[1] === undefined ? { selectors: [], groupingLabels: [], functions: [] } : promqlNames(match[1]);
  return { names, label: match[2]! };
}
