// The x-kubernetes-validations rules of a CRD version, evaluated as the API server evaluates them
// on a write, with a real CEL evaluator (@marcbachmann/cel-js):
// - each rule runs where it is declared, `self` being the value there, when that value is present;
// - a transition rule (one that reads `oldSelf`) runs only on an update, and only where the old
//   object has a value at the same place: through properties and map entries, and through the items
//   of x-kubernetes-list-type map lists by their keys (other lists' items have no old value);
// - values are typed by the schema: integers are CEL ints, numbers doubles; at the root, metadata
//   shows only name and generateName;
// - a rule that is false is an Invalid field error at its place with its message ("failed rule:
//   <rule>" without one); one that fails to evaluate is an Invalid error saying why.
// Modelled per rule: rule and message. A rule with anything else (messageExpression, reason,
// fieldPath, optionalOldSelf), or one that does not compile, fails the load, so no test can pass
// by this module ignoring it.
import { Environment, ParseResult } from '@marcbachmann/cel-js';
import { FieldError, childPath, invalid, itemPath } from './field-errors';
import { Json, Schema, entriesOf, isObject, itemsOf, propertiesOf, propertyOf } from './structural-schema';

interface Rule {
  source: string;
  message: string | undefined;
  program: ParseResult;
  /** Whether it reads oldSelf. */
  transition: boolean;
}

const RULE_FIELDS = new Set(['rule', 'message']);

const environment = new Environment().registerVariable('self', 'dyn').registerVariable('oldSelf', 'dyn');
const withoutOldSelf = new Environment().registerVariable('self', 'dyn');

function compile(declared: Json, where: string): Rule {
  const unmodelled = Object.keys(declared).filter((field) => !RULE_FIELDS.has(field));
  if (unmodelled.length > 0)
    throw new Error(`${where}: x-kubernetes-validations ${unmodelled.join(', ')} not modelled`);
  const source = String(declared.rule);
  const program = environment.parse(source);
  const checked = program.check();
  if (!checked.valid) throw new Error(`${where}: rule ${source} does not compile: ${checked.error?.message}`);
  return {
    source,
    message: declared.message as string | undefined,
    program,
    transition: !withoutOldSelf.parse(source).check().valid,
  };
}

/** Every schema node's compiled rules. */
function compileAll(schema: Schema, where: string, rules: Map<Schema, Rule[]>): void {
  const declared = (schema['x-kubernetes-validations'] ?? []) as Json[];
  if (declared.length > 0)
    rules.set(
      schema,
      declared.map((rule) => compile(rule, where)),
    );
  for (const [name, child] of Object.entries(propertiesOf(schema)))
    compileAll(child, `${where}.${name}`, rules);
  for (const nested of [entriesOf(schema), itemsOf(schema)])
    if (nested) compileAll(nested, `${where}[*]`, rules);
}

/** What CEL sees of the root's metadata: its name and generateName. */
function rootMetadata(metadata: Json): Json {
  const { name, generateName } = metadata;
  return { ...(name === undefined ? {} : { name }), ...(generateName === undefined ? {} : { generateName }) };
}

/** A JSON value as CEL sees it under `schema` (see above). */
function celValue(value: unknown, schema: Schema | undefined, root = false): unknown {
  if (typeof value === 'number')
    return schema?.type === 'number' || !Number.isInteger(value) ? value : BigInt(value);
  if (Array.isArray(value)) return value.map((item) => celValue(item, itemsOf(schema)));
  if (!isObject(value)) return value;
  return Object.fromEntries(
    Object.entries(value).map(([name, child]) =>
      root && name === 'metadata' && isObject(child)
        ? [name, rootMetadata(child)]
        : [name, celValue(child, propertyOf(schema, name) ?? entriesOf(schema))],
    ),
  );
}

/** The old item a list-map item correlates with: the one with the same keys. */
function oldItem(list: unknown, item: unknown, keys: string[]): unknown {
  if (!Array.isArray(list) || !isObject(item)) return undefined;
  return list.find((old) => isObject(old) && keys.every((key) => old[key] === item[key]));
}

function evaluate(rule: Rule, self: unknown, oldSelf: unknown, schema: Schema, path: string): FieldError[] {
  const type = String(schema.type ?? 'object');
  try {
    if (rule.program({ self, oldSelf }) === true) return [];
    return [invalid(path, type, rule.message ?? `failed rule: ${rule.source}`)];
  } catch (error) {
    const why = String((error as Error).message).split('\n')[0];
    return [invalid(path, type, `${why} evaluating rule: ${rule.source}`)];
  }
}

/** A validator of writes of one CRD version: `old` is the object replaced, null for a create. */
export function ruleValidator(openAPIV3Schema: Schema): (object: Json, old: Json | null) => FieldError[] {
  const rules = new Map<Schema, Rule[]>();
  compileAll(openAPIV3Schema, 'openAPIV3Schema', rules);

  const errorsAt = (
    value: unknown,
    old: unknown,
    schema: Schema,
    path: string,
    root: boolean,
  ): FieldError[] => {
    if (value === undefined) return [];
    const errors: FieldError[] = [];
    const here = rules.get(schema) ?? [];
    if (here.length > 0) {
      const self = celValue(value, schema, root);
      const oldSelf = old === undefined ? undefined : celValue(old, schema, root);
      for (const rule of here)
        if (!rule.transition || oldSelf !== undefined)
          errors.push(...evaluate(rule, self, oldSelf, schema, path));
    }
    const items = itemsOf(schema);
    if (Array.isArray(value) && items) {
      const mapKeys =
        schema['x-kubernetes-list-type'] === 'map' ? schema['x-kubernetes-list-map-keys'] : undefined;
      value.forEach((item, index) => {
        const oldValue = mapKeys ? oldItem(old, item, mapKeys as string[]) : undefined;
        errors.push(...errorsAt(item, oldValue, items, itemPath(path, index), false));
      });
    } else if (isObject(value)) {
      const olds = isObject(old) ? old : {};
      for (const [name, child] of Object.entries(value)) {
        const property = propertyOf(schema, name);
        const entries = property ? undefined : entriesOf(schema);
        if (property) errors.push(...errorsAt(child, olds[name], property, childPath(path, name), false));
        else if (entries) errors.push(...errorsAt(child, olds[name], entries, itemPath(path, name), false));
      }
    }
    return errors;
  };

  return (object, old) => errorsAt(object, old ?? undefined, openAPIV3Schema, '', true);
}
