import assert from 'node:assert/strict';
import { CustomResourceSchema } from '../support/chart-crds';
import { schemaValidator } from '../support/crd-schema-validation';
import { ruleValidator } from '../support/crd-validation-rules';
import { FieldError, invalidStatus } from '../support/field-errors';

/* Custom resource validation as the API server does it, on small schemas of its own (the chart's CRDs: fake-kube-api-crds.test.ts). */
const ITEMS = {
  type: 'array',
  'x-kubernetes-list-type': 'map',
  'x-kubernetes-list-map-keys': ['name'],
  items: {
    type: 'object',
    required: ['name'],
    properties: {
      name: { type: 'string' },
      size: {
        type: 'integer',
        'x-kubernetes-validations': [{ rule: 'self >= oldSelf', message: 'an item never shrinks' }],
      },
    },
  },
};
const SCHEMA = {
  type: 'object',
  required: ['spec'],
  'x-kubernetes-validations': [{ rule: "self.metadata.name.startsWith('x-') && !has(self.metadata.uid)" }],
  properties: {
    apiVersion: { type: 'string' },
    kind: { type: 'string' },
    metadata: { type: 'object' },
    spec: {
      type: 'object',
      required: ['mode'],
      properties: {
        mode: { type: 'string', enum: ['fast', 'slow'] },
        count: {
          type: 'integer',
          minimum: 1,
          maximum: 8,
          'x-kubernetes-validations': [{ rule: 'self % 2 == 0' }],
        },
        ratio: {
          type: 'number',
          'x-kubernetes-validations': [{ rule: 'self >= 1.0', message: 'at least 1' }],
        },
        label: { type: 'string', maxLength: 4, pattern: '^[a-z]+$' },
        when: { type: 'string', format: 'date-time' },
        items: ITEMS,
        tags: { type: 'array', 'x-kubernetes-list-type': 'set', items: { type: 'string' } },
        fixed: {
          type: 'object',
          properties: { a: { type: 'string' } },
          'x-kubernetes-validations': [{ rule: 'self == oldSelf', message: 'fixed is immutable' }],
        },
      },
    },
  },
};
const object = (spec: Record<string, unknown>, name = 'x-1'): Record<string, unknown> => ({
  apiVersion: 'example.com/v1',
  kind: 'Thing',
  metadata: { name, uid: 'u-1' },
  spec,
});
const causes = (errors: FieldError[]): string[] =>
  errors.map((error) => `${error.type} ${error.field}: ${error.body}`);

describe('custom resource validation', () => {
  describe('by the schema', () => {
    const validate = schemaValidator(SCHEMA);

    it('accepts a valid object', () => {
      assert.deepEqual(
        validate(object({ mode: 'fast', count: 2, label: 'abc', when: '2026-01-02T03:04:05.678Z' })),
        [],
      );
    });

    it('names each field that is missing, of the wrong type, not supported or out of bounds', () => {
      const errors = validate(
        object({
          count: 1.5,
          label: 'ABCDE',
          when: 'yesterday',
          items: [{ size: 1 }],
          tags: ['a'],
          mode: 'medium',
        }),
      );
      assert.deepEqual(causes(errors).sort(), [
        'FieldValueInvalid spec.label: Invalid value: "ABCDE": spec.label in body should match \'^[a-z]+$\'',
        'FieldValueInvalid spec.when: Invalid value: "yesterday": spec.when in body must be of type date-time: "yesterday"',
        'FieldValueNotSupported spec.mode: Unsupported value: "medium": supported values: "fast", "slow"',
        'FieldValueRequired spec.items[0].name: Required value',
        'FieldValueTooLong spec.label: Too long: may not be more than 4 bytes',
        'FieldValueTypeInvalid spec.count: Invalid value: "number": spec.count in body must be of type integer: "number"',
      ]);
      assert.deepEqual(causes(validate({ metadata: { name: 'x-1' } })), [
        'FieldValueRequired spec: Required value',
      ]);
      assert.deepEqual(causes(validate(object({ mode: 'slow', count: 9 }))), [
        'FieldValueInvalid spec.count: Invalid value: 9: spec.count in body should be less than or equal to 8',
      ]);
    });

    it('refuses two items of a map list with the same keys, and two equal items of a set list', () => {
      const errors = validate(
        object({
          mode: 'fast',
          items: [{ name: 'a' }, { name: 'b' }, { name: 'a', size: 2 }],
          tags: ['x', 'y', 'x'],
        }),
      );
      assert.deepEqual(causes(errors), [
        'FieldValueDuplicate spec.items[2]: Duplicate value: {"name":"a"}',
        'FieldValueDuplicate spec.tags[2]: Duplicate value: "x"',
      ]);
    });
  });

  describe('by x-kubernetes-validations rules', () => {
    const validate = ruleValidator(SCHEMA);

    it('runs a rule where it is declared, with the root seeing only name and generateName of metadata', () => {
      assert.deepEqual(validate(object({ mode: 'fast', count: 2, ratio: 1 }), null), []);
      assert.deepEqual(causes(validate(object({ mode: 'fast', count: 3, ratio: 0.5 }, 'y-1'), null)), [
        'FieldValueInvalid : Invalid value: "object": failed rule: self.metadata.name.startsWith(\'x-\') && !has(self.metadata.uid)',
        'FieldValueInvalid spec.count: Invalid value: "integer": failed rule: self % 2 == 0',
        'FieldValueInvalid spec.ratio: Invalid value: "number": at least 1',
      ]);
    });

    it('runs transition rules only on updates where the old object has a value, list-map items by their keys', () => {
      const before = object({
        mode: 'fast',
        fixed: { a: '1' },
        items: [
          { name: 'a', size: 5 },
          { name: 'b', size: 5 },
        ],
      });
      // A create has no old object; an update may add what was not there.
      assert.deepEqual(validate(before, null), []);
      assert.deepEqual(validate(before, object({ mode: 'fast' })), []);
      // Items are matched by name, not by position: b moved first and grew, a shrank.
      const after = object({
        mode: 'fast',
        fixed: { a: '2' },
        items: [
          { name: 'b', size: 6 },
          { name: 'a', size: 4 },
          { name: 'c', size: 0 },
        ],
      });
      assert.deepEqual(causes(validate(after, before)), [
        'FieldValueInvalid spec.fixed: Invalid value: "object": fixed is immutable',
        'FieldValueInvalid spec.items[1].size: Invalid value: "integer": an item never shrinks',
      ]);
    });

    it('reports a rule that fails to evaluate as invalid, saying why', () => {
      const broken = ruleValidator({
        type: 'object',
        properties: { spec: { type: 'object', 'x-kubernetes-validations': [{ rule: 'self.missing == 1' }] } },
      });
      const [error] = broken({ spec: {} }, null);
      assert.equal(error?.field, 'spec');
      assert.match(
        error?.body ?? '',
        /^Invalid value: "object": No such key: missing evaluating rule: self.missing == 1$/,
      );
    });

    it('refuses to load rules with what it does not model, or that do not compile', () => {
      const withRule = (rule: Record<string, unknown>): Record<string, unknown> => ({
        type: 'object',
        'x-kubernetes-validations': [rule],
      });
      assert.throws(
        () => ruleValidator(withRule({ rule: 'true', messageExpression: "'no'" })),
        /messageExpression not modelled/,
      );
      assert.throws(() => ruleValidator(withRule({ rule: 'self ==' })), /self ==/);
    });
  });

  it('refuses to load a schema that needs defaulting, which is not modelled', () => {
    const mode = { type: 'string', default: 'fast' };
    const schema = { type: 'object', properties: { spec: { type: 'object', properties: { mode } } } };
    assert.throws(() => new CustomResourceSchema(schema), /spec\.properties\.mode: default is not modelled/);
  });

  it('answers a refused write with the API server Status: 422 Invalid, one cause per field, <nil> for the object itself', () => {
    const status = invalidStatus('example.com', 'Thing', 'x-1', [
      { type: 'FieldValueRequired', field: 'spec.mode', body: 'Required value' },
      { type: 'FieldValueInvalid', field: '', body: 'Invalid value: "object": no' },
    ]);
    assert.deepEqual(status, {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message:
        'Thing.example.com "x-1" is invalid: [spec.mode: Required value, <nil>: Invalid value: "object": no]',
      reason: 'Invalid',
      details: {
        name: 'x-1',
        group: 'example.com',
        kind: 'Thing',
        causes: [
          { reason: 'FieldValueRequired', message: 'Required value', field: 'spec.mode' },
          { reason: 'FieldValueInvalid', message: 'Invalid value: "object": no', field: '<nil>' },
        ],
      },
      code: 422,
    });
  });
});
