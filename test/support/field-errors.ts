// What the API server says about a write it refuses as invalid, as apimachinery builds it: field
// errors (k8s.io/apimachinery/pkg/util/validation/field) with paths like spec.parameters.queues or
// status.conditions[0].reason, gathered into a 422 Invalid Status (apierrors.NewInvalid) whose
// details list one cause per error.

/** A StatusCause type (field.ErrorType). */
export type CauseType =
  | 'FieldValueRequired'
  | 'FieldValueNotSupported'
  | 'FieldValueInvalid'
  | 'FieldValueTypeInvalid'
  | 'FieldValueTooLong'
  | 'FieldValueDuplicate';

export interface FieldError {
  type: CauseType;
  /** The field's path; '' for the object itself. */
  field: string;
  /** What the error says after the field's path (field.Error.ErrorBody). */
  body: string;
}

/** The path of a property of the field at `path` ('' for a property of the object itself). */
export function childPath(path: string, name: string): string {
  return path ? `${path}.${name}` : name;
}

/** The path of an item of a list, or of an entry of a map (additionalProperties), at `path`. */
export function itemPath(path: string, indexOrKey: number | string): string {
  return `${path}[${indexOrKey}]`;
}

/** A bad value as field errors print it: strings quoted, numbers and booleans bare, the rest as JSON. */
function printed(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint')
    return String(value);
  return JSON.stringify(value);
}

export function required(field: string): FieldError {
  return { type: 'FieldValueRequired', field, body: 'Required value' };
}

export function notSupported(field: string, value: unknown, supported: unknown[]): FieldError {
  const values = supported.map(printed).join(', ');
  return {
    type: 'FieldValueNotSupported',
    field,
    body: `Unsupported value: ${printed(value)}: supported values: ${values}`,
  };
}

export function invalid(field: string, value: unknown, detail: string): FieldError {
  return { type: 'FieldValueInvalid', field, body: `Invalid value: ${printed(value)}: ${detail}` };
}

/** A value of the wrong type; `value` is the name of the type it has. */
export function typeInvalid(field: string, value: string, detail: string): FieldError {
  return { type: 'FieldValueTypeInvalid', field, body: `Invalid value: ${printed(value)}: ${detail}` };
}

export function tooLong(field: string, maximum: number): FieldError {
  return { type: 'FieldValueTooLong', field, body: `Too long: may not be more than ${maximum} bytes` };
}

export function duplicate(field: string, value: unknown): FieldError {
  return { type: 'FieldValueDuplicate', field, body: `Duplicate value: ${printed(value)}` };
}

/** A nil field.Path prints as <nil>: the errors of rules on the object itself carry it. */
const fieldName = (error: FieldError): string => error.field || '<nil>';

/** The 422 Invalid Status of a refused write of `kind` (with its group) named `name`. */
export function invalidStatus(
  group: string,
  kind: string,
  name: string,
  errors: FieldError[],
): Record<string, unknown> {
  const described = errors.map((error) => `${fieldName(error)}: ${error.body}`);
  const aggregate = described.length === 1 ? described[0] : `[${described.join(', ')}]`;
  return {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message: `${kind}.${group} ${JSON.stringify(name)} is invalid: ${aggregate}`,
    reason: 'Invalid',
    details: {
      name,
      group,
      kind,
      causes: errors.map((error) => ({ reason: error.type, message: error.body, field: fieldName(error) })),
    },
    code: 422,
  };
}
