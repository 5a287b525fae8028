// What the API server drops from a custom resource before it validates it, given the structural
// schema (openAPIV3Schema) of its CRD version:
// - pruning: every field the schema does not specify (neither a property nor under
//   additionalProperties), except under x-kubernetes-preserve-unknown-fields: true and, at the root
//   and in x-kubernetes-embedded-resource objects, apiVersion, kind and metadata (ObjectMeta is the
//   server's own type, not the schema's);
// - then nulls of properties that are not `nullable: true` (a default would take their place; the
//   chart's CRDs have none, and chart-crds.ts refuses schemas with one).
import { childPath, itemPath } from './field-errors';
import { Json, Schema, entriesOf, isObject, itemsOf, propertyOf } from './structural-schema';

const TYPE_AND_OBJECT_META = new Set(['apiVersion', 'kind', 'metadata']);

/**
 * Removes, in place, what the API server drops from the custom resource `object` (see above);
 * returns the paths of the unknown fields it dropped (the API server warns of them, not of nulls).
 */
export function pruneCustomResource(object: Json, schema: Schema): string[] {
  const unknown: string[] = [];
  pruneUnknown(object, schema, '', true, unknown);
  pruneNulls(object, schema);
  return unknown;
}

function pruneUnknown(
  value: unknown,
  schema: Schema | undefined,
  path: string,
  root: boolean,
  unknown: string[],
): void {
  if (Array.isArray(value)) {
    value.forEach((item, index) =>
      pruneUnknown(item, itemsOf(schema), itemPath(path, index), false, unknown),
    );
    return;
  }
  if (!isObject(value)) return;
  const keepsMeta = root || schema?.['x-kubernetes-embedded-resource'] === true;
  const preserves = schema?.['x-kubernetes-preserve-unknown-fields'] === true;
  for (const [name, child] of Object.entries(value)) {
    if (keepsMeta && TYPE_AND_OBJECT_META.has(name)) continue;
    const property = propertyOf(schema, name);
    const entries = property ? undefined : entriesOf(schema);
    const where = entries ? itemPath(path, name) : childPath(path, name);
    if (property ?? entries) pruneUnknown(child, property ?? entries, where, false, unknown);
    else if (!preserves) {
      delete value[name];
      unknown.push(where);
    }
  }
}

function pruneNulls(value: unknown, schema: Schema | undefined): void {
  if (Array.isArray(value)) {
    for (const item of value) pruneNulls(item, itemsOf(schema));
    return;
  }
  if (!isObject(value) || !schema) return;
  for (const [name, child] of Object.entries(value)) {
    const property = propertyOf(schema, name);
    if (child === null && property && property.nullable !== true) delete value[name];
    else pruneNulls(child, property ?? entriesOf(schema));
  }
}
