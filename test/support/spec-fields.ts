// Strict reading of a rendered Kubernetes object: every field a reader does not know makes it throw,
// so something a chart adds later cannot be ignored without anyone noticing.

export type Fields = Record<string, unknown>;

/** Throws when `value` has a field outside `known` (each known field maps to why it is understood). */
export function onlyKnown(value: Fields, known: readonly string[], where: string): void {
  const unknown = Object.keys(value).filter((field) => !known.includes(field));
  if (unknown.length > 0)
    throw new Error(
      `${where}: unsupported field(s) ${unknown.join(', ')} (the pod runtime cannot express them)`,
    );
}

export function fieldsOf(value: unknown, where: string): Fields {
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw new Error(`${where}: expected an object, got ${JSON.stringify(value)}`);
  return value as Fields;
}

export function optionalFields(value: unknown, where: string): Fields | undefined {
  return value === undefined || value === null ? undefined : fieldsOf(value, where);
}

export function listOf(value: unknown, where: string): Fields[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw new Error(`${where}: expected a list, got ${JSON.stringify(value)}`);
  return value.map((item, index) => fieldsOf(item, `${where}[${index}]`));
}

export function stringsOf(value: unknown, where: string): string[] | undefined {
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value) || value.some((item) => typeof item !== 'string'))
    throw new Error(`${where}: expected a list of strings, got ${JSON.stringify(value)}`);
  return value as string[];
}

export function stringOf(value: unknown, where: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw new Error(`${where}: expected a string, got ${JSON.stringify(value)}`);
  return value;
}

export function requiredString(value: unknown, where: string): string {
  const text = stringOf(value, where);
  if (text === undefined) throw new Error(`${where} is required`);
  return text;
}

export function booleanOf(value: unknown, where: string): boolean | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'boolean')
    throw new Error(`${where}: expected a boolean, got ${JSON.stringify(value)}`);
  return value;
}

export function numberOf(value: unknown, where: string): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number') throw new Error(`${where}: expected a number, got ${JSON.stringify(value)}`);
  return value;
}
