// Walking a structural schema (a CRD version's openAPIV3Schema) alongside a JSON value.

export type Schema = Record<string, unknown>;
export type Json = Record<string, unknown>;

/** Whether a JSON value is an object (neither null nor a list). */
export const isObject = (value: unknown): value is Json =>
  value !== null && typeof value === 'object' && !Array.isArray(value);

/** The schema of a named property of the object `schema` describes, when it names one. */
export function propertyOf(schema: Schema | undefined, name: string): Schema | undefined {
  const properties = schema?.properties as Record<string, Schema> | undefined;
  return properties && Object.hasOwn(properties, name) ? properties[name] : undefined;
}

/** The schemas of the named properties. */
export const propertiesOf = (schema: Schema): Record<string, Schema> =>
  (schema.properties ?? {}) as Record<string, Schema>;

/** The schema of a map's entries (additionalProperties), when the object is a map. */
export const entriesOf = (schema: Schema | undefined): Schema | undefined =>
  isObject(schema?.additionalProperties) ? schema.additionalProperties : undefined;

/** The schema of a list's items. */
export const itemsOf = (schema: Schema | undefined): Schema | undefined =>
  isObject(schema?.items) ? schema.items : undefined;
