// The API server's validation of a custom resource against its CRD version's openAPIV3Schema, as
// field errors: the JSON Schema keywords (with ajv, as chart-schemas.ts sets it up for CRDs; CEL
// rules are crd-validation-rules.ts's), then the invariants of x-kubernetes-list-type map and set
// lists (no two items with the same keys, no two equal items). The errors say what the API server
// says (its messages come from kube-openapi's validator: "<path> in body should match ...").
import { ErrorObject } from 'ajv';
import { customResourceAjv } from './chart-schemas';
import {
  FieldError,
  childPath,
  duplicate,
  invalid,
  itemPath,
  notSupported,
  required,
  tooLong,
  typeInvalid,
} from './field-errors';
import { Json, Schema, entriesOf, isObject, itemsOf, propertyOf } from './structural-schema';

/** A validator of whole objects of one CRD version. */
export function schemaValidator(openAPIV3Schema: Schema): (object: Json) => FieldError[] {
  const validate = customResourceAjv().compile(openAPIV3Schema);
  return (object) => [
    ...(validate(object) ? [] : (validate.errors ?? []).map((error) => fieldErrorOf(error, object))),
    ...listErrors(object, openAPIV3Schema, ''),
  ];
}

/** The field path and the value an ajv instancePath (a JSON pointer) leads to in `object`. */
function located(object: Json, pointer: string): { path: string; value: unknown } {
  let path = '';
  let value: unknown = object;
  for (const escaped of pointer.split('/').slice(1)) {
    const part = escaped.replaceAll('~1', '/').replaceAll('~0', '~');
    path = Array.isArray(value) ? itemPath(path, Number(part)) : childPath(path, part);
    value = (value as Json)[part];
  }
  return { path, value };
}

/** The type names kube-openapi uses for JSON values. */
function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number';
  return typeof value;
}

const COMPARISONS: Record<string, string> = {
  '>=': 'greater than or equal to',
  '>': 'greater than',
  '<=': 'less than or equal to',
  '<': 'less than',
};

function fieldErrorOf(error: ErrorObject, object: Json): FieldError {
  const { path, value } = located(object, error.instancePath);
  const params = error.params as Record<string, unknown>;
  const inBody = `${path} in body`;
  switch (error.keyword) {
    case 'required':
      return required(childPath(path, String(params.missingProperty)));
    case 'enum':
      return notSupported(path, value, params.allowedValues as unknown[]);
    case 'type':
      return typeInvalid(
        path,
        typeName(value),
        `${inBody} must be of type ${String(params.type)}: "${typeName(value)}"`,
      );
    case 'maxLength':
      return tooLong(path, Number(params.limit));
    case 'minLength':
      return invalid(path, value, `${inBody} should be at least ${String(params.limit)} chars long`);
    case 'pattern':
      return invalid(path, value, `${inBody} should match '${String(params.pattern)}'`);
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum':
      return invalid(
        path,
        value,
        `${inBody} should be ${COMPARISONS[String(params.comparison)]} ${String(params.limit)}`,
      );
    case 'format':
      return invalid(
        path,
        value,
        `${inBody} must be of type ${String(params.format)}: ${JSON.stringify(value)}`,
      );
    default:
      return invalid(path, value, `${inBody} ${error.message ?? error.keyword}`);
  }
}

/** Duplicates in x-kubernetes-list-type map lists (by their keys) and set lists (whole items). */
function listErrors(value: unknown, schema: Schema | undefined, path: string): FieldError[] {
  if (!schema) return [];
  if (Array.isArray(value)) {
    const errors = value.flatMap((item, index) => listErrors(item, itemsOf(schema), itemPath(path, index)));
    const listType = schema['x-kubernetes-list-type'];
    if (listType !== 'map' && listType !== 'set') return errors;
    const keys = (schema['x-kubernetes-list-map-keys'] ?? []) as string[];
    const identity = (item: unknown): unknown =>
      listType === 'map' && isObject(item) ? Object.fromEntries(keys.map((key) => [key, item[key]])) : item;
    const seen = new Set<string>();
    value.forEach((item, index) => {
      const id = JSON.stringify(identity(item));
      if (seen.has(id)) errors.push(duplicate(itemPath(path, index), identity(item)));
      seen.add(id);
    });
    return errors;
  }
  if (!isObject(value)) return [];
  return Object.entries(value).flatMap(([name, child]) => {
    const property = propertyOf(schema, name);
    return property
      ? listErrors(child, property, childPath(path, name))
      : listErrors(child, entriesOf(schema), itemPath(path, name));
  });
}
