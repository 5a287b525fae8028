// ValidatingAdmissionPolicies (admissionregistration.k8s.io/v1) of a render, applied to a request as
// the API server's admission plugin applies them, with a real CEL evaluator (@marcbachmann/cel-js).
//
// As the API server has them, `request`, `object` and `oldObject` are plain maps of their JSON:
// fields the JSON leaves out (AdmissionRequest's omitempty: subResource on the object itself, extra
// of a user without any) are absent, and reading one is an error. `object` is null for a DELETE,
// `oldObject` for a CREATE. Variables are evaluated when first read, once.
//
// Modelled: matchConstraints.resourceRules, matchConditions, variables, validations in order (the
// first that fails or errs denies; an error counts as a failure under failurePolicy Fail), message,
// messageExpression and reason (Invalid when none: 422; Forbidden: 403), bindings whose
// validationActions include Deny, and the Status the API server answers (admission.NewForbidden
// with the policy's reason and code). Anything else a policy or binding might use (params,
// selectors, excluded resources, the authorizer variable, audit annotations) is refused when the
// policies are loaded, so a test cannot pass by this module ignoring it.
import { Environment, ParseResult } from '@marcbachmann/cel-js';
import { KubeObject } from './chart';

/** The authenticated user, as authentication.k8s.io/v1 UserInfo (the API server's user.Info). */
export interface UserInfo {
  username: string;
  uid?: string;
  groups?: string[];
  extra?: Record<string, string[]>;
}

/** One write as admission sees it. */
export interface AdmissionAttributes {
  operation: 'CREATE' | 'UPDATE' | 'DELETE';
  group: string;
  version: string;
  resource: string;
  subresource?: string;
  name: string;
  namespace?: string;
  user: UserInfo;
  object: Record<string, unknown> | null;
  oldObject: Record<string, unknown> | null;
}

/** The API server's answer to a denied request: HTTP status and the Status object. */
export interface Denial {
  code: number;
  status: Record<string, unknown>;
}

type Json = Record<string, unknown>;

interface Validation {
  expression: ParseResult;
  source: string;
  message?: string;
  messageExpression?: ParseResult;
  reason: string;
}

interface Policy {
  name: string;
  bindings: string[];
  failOnError: boolean;
  rules: ResourceRule[];
  matchConditions: { expression: ParseResult; source: string }[];
  variables: { name: string; expression: ParseResult; source: string }[];
  validations: Validation[];
}

interface ResourceRule {
  apiGroups: string[];
  apiVersions: string[];
  operations: string[];
  resources: string[];
}

const CODES: Record<string, number> = { Forbidden: 403, Unauthorized: 401, RequestEntityTooLarge: 413 };

const SPEC_FIELDS = new Set([
  'failurePolicy',
  'matchConstraints',
  'matchConditions',
  'variables',
  'validations',
]);
const BINDING_FIELDS = new Set(['policyName', 'validationActions']);

const environment = new Environment()
  .registerVariable('request', 'map<string, dyn>')
  .registerVariable('object', 'dyn')
  .registerVariable('oldObject', 'dyn')
  .registerVariable('variables', 'map<string, dyn>');

function compile(source: string): ParseResult {
  const parsed = environment.parse(source);
  const checked = parsed.check();
  if (!checked.valid) throw new Error(`CEL expression does not check: ${source}: ${checked.error?.message}`);
  return parsed;
}

function refuseUnmodelled(what: string, fields: Json, modelled: Set<string>): void {
  const unknown = Object.keys(fields).filter((field) => !modelled.has(field));
  if (unknown.length > 0) throw new Error(`${what}: ${unknown.join(', ')} not modelled`);
}

function policyOf(object: KubeObject, bindings: KubeObject[]): Policy {
  const spec = object.spec as Json;
  const name = object.metadata.name;
  refuseUnmodelled(`ValidatingAdmissionPolicy ${name}`, spec, SPEC_FIELDS);
  const constraints = spec.matchConstraints as Json;
  refuseUnmodelled(
    `ValidatingAdmissionPolicy ${name} matchConstraints`,
    constraints,
    new Set(['resourceRules']),
  );
  for (const binding of bindings)
    refuseUnmodelled(
      `ValidatingAdmissionPolicyBinding ${binding.metadata.name}`,
      binding.spec,
      BINDING_FIELDS,
    );
  const named = (list: unknown): { name: string; expression: string }[] =>
    (list as { name: string; expression: string }[] | undefined) ?? [];
  return {
    name,
    bindings: bindings
      .filter((binding) => (binding.spec.validationActions as string[]).includes('Deny'))
      .map((binding) => binding.metadata.name),
    failOnError: (spec.failurePolicy ?? 'Fail') === 'Fail',
    rules: constraints.resourceRules as ResourceRule[],
    matchConditions: named(spec.matchConditions).map(({ expression }) => ({
      expression: compile(expression),
      source: expression,
    })),
    variables: named(spec.variables).map(({ name: variable, expression }) => ({
      name: variable,
      expression: compile(expression),
      source: expression,
    })),
    validations: (spec.validations as Json[]).map((validation) => {
      refuseUnmodelled(
        `ValidatingAdmissionPolicy ${name} validation`,
        validation,
        new Set(['expression', 'message', 'messageExpression', 'reason']),
      );
      return {
        expression: compile(validation.expression as string),
        source: validation.expression as string,
        ...(validation.message !== undefined ? { message: validation.message as string } : {}),
        ...(validation.messageExpression !== undefined
          ? { messageExpression: compile(validation.messageExpression as string) }
          : {}),
        reason: (validation.reason as string | undefined) ?? 'Invalid',
      };
    }),
  };
}

const matches = (values: string[], value: string): boolean => values.includes('*') || values.includes(value);

function ruleMatches(rule: ResourceRule, attributes: AdmissionAttributes): boolean {
  const resource = attributes.subresource
    ? `${attributes.resource}/${attributes.subresource}`
    : attributes.resource;
  return (
    matches(rule.apiGroups, attributes.group) &&
    matches(rule.apiVersions, attributes.version) &&
    matches(rule.operations, attributes.operation) &&
    (matches(rule.resources, resource) ||
      (attributes.subresource !== undefined && rule.resources.includes(`${attributes.resource}/*`)))
  );
}

/** AdmissionRequest as JSON, its empty fields left out (omitempty), as CEL sees `request`. */
function requestOf(attributes: AdmissionAttributes): Json {
  const user: Json = { username: attributes.user.username };
  if (attributes.user.uid) user.uid = attributes.user.uid;
  if (attributes.user.groups?.length) user.groups = attributes.user.groups;
  if (attributes.user.extra && Object.keys(attributes.user.extra).length > 0)
    user.extra = attributes.user.extra;
  const kind = { group: attributes.group, version: attributes.version, resource: attributes.resource };
  return {
    operation: attributes.operation,
    resource: kind,
    requestResource: kind,
    ...(attributes.subresource ? { subResource: attributes.subresource } : {}),
    name: attributes.name,
    ...(attributes.namespace ? { namespace: attributes.namespace } : {}),
    userInfo: user,
  };
}

/** The activation of one request: variables evaluated when first read, each once. */
function activationOf(policy: Policy, attributes: AdmissionAttributes): Json {
  const variables: Json = {};
  const context: Json = {
    request: requestOf(attributes),
    object: attributes.object,
    oldObject: attributes.oldObject,
    variables,
  };
  for (const variable of policy.variables) {
    let outcome: { value: unknown } | { error: unknown } | undefined;
    Object.defineProperty(variables, variable.name, {
      enumerable: true,
      get() {
        if (!outcome) {
          try {
            outcome = { value: variable.expression(context) };
          } catch (error) {
            outcome = { error };
          }
        }
        if ('error' in outcome) throw outcome.error;
        return outcome.value;
      },
    });
  }
  return context;
}

type Outcome = { passed: true } | { passed: false; message: string; reason: string };

function evaluate(expression: ParseResult, source: string, context: Json): boolean | Error {
  try {
    const result: unknown = expression(context);
    if (typeof result !== 'boolean') return new Error(`expression '${source}' did not evaluate to a bool`);
    return result;
  } catch (error) {
    return new Error(`expression '${source}' resulted in error: ${(error as Error).message}`);
  }
}

function validate(policy: Policy, attributes: AdmissionAttributes): Outcome {
  const context = activationOf(policy, attributes);
  for (const condition of policy.matchConditions) {
    const result = evaluate(condition.expression, condition.source, context);
    if (result instanceof Error) {
      if (policy.failOnError) return { passed: false, message: result.message, reason: 'Invalid' };
      return { passed: true };
    }
    if (!result) return { passed: true };
  }
  for (const validation of policy.validations) {
    const result = evaluate(validation.expression, validation.source, context);
    if (result instanceof Error) {
      if (policy.failOnError) return { passed: false, message: result.message, reason: 'Invalid' };
      continue;
    }
    if (result) continue;
    return { passed: false, message: messageOf(validation, context), reason: validation.reason };
  }
  return { passed: true };
}

/** messageExpression when it yields a string, else message, else the API server's default. */
function messageOf(validation: Validation, context: Json): string {
  if (validation.messageExpression) {
    try {
      const message: unknown = validation.messageExpression(context);
      if (typeof message === 'string' && message.trim() !== '') return message;
    } catch {
      // The API server falls back to message as well.
    }
  }
  return validation.message ?? `failed expression: ${validation.source}`;
}

/** The rendered policies and their bindings; a policy without a Deny binding enforces nothing. */
export class AdmissionPolicies {
  private constructor(private readonly policies: Policy[]) {}

  static of(objects: KubeObject[]): AdmissionPolicies {
    const bindings = objects.filter((object) => object.kind === 'ValidatingAdmissionPolicyBinding');
    const policies = objects
      .filter((object) => object.kind === 'ValidatingAdmissionPolicy')
      .map((object) =>
        policyOf(
          object,
          bindings.filter((binding) => binding.spec.policyName === object.metadata.name),
        ),
      );
    return new AdmissionPolicies(policies.filter((policy) => policy.bindings.length > 0));
  }

  get size(): number {
    return this.policies.length;
  }

  /** Whether any policy's resource rules take in the request (before its match conditions). */
  concerns(attributes: Omit<AdmissionAttributes, 'user' | 'object' | 'oldObject'>): boolean {
    const probe = { ...attributes, user: { username: '' }, object: null, oldObject: null };
    return this.policies.some((policy) => policy.rules.some((rule) => ruleMatches(rule, probe)));
  }

  /** The API server's answer when a policy denies the request; null when all admit it. */
  admit(attributes: AdmissionAttributes): Denial | null {
    for (const policy of this.policies) {
      if (!policy.rules.some((rule) => ruleMatches(rule, attributes))) continue;
      const outcome = validate(policy, attributes);
      if (outcome.passed) continue;
      return denialOf(
        attributes,
        `ValidatingAdmissionPolicy '${policy.name}' with binding '${policy.bindings[0]}' denied request: ${outcome.message}`,
        outcome.reason,
      );
    }
    return null;
  }
}

/** admission.NewForbidden (apierrors.NewForbidden for the resource and name), reason and code set. */
function denialOf(attributes: AdmissionAttributes, message: string, reason: string): Denial {
  const resource = attributes.group ? `${attributes.resource}.${attributes.group}` : attributes.resource;
  const what = attributes.name ? `${resource} ${JSON.stringify(attributes.name)}` : resource;
  const code = CODES[reason] ?? 422;
  return {
    code,
    status: {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: `${what} is forbidden: ${message}`,
      reason,
      details: {
        name: attributes.name,
        group: attributes.group,
        kind: attributes.resource,
        causes: [{ message }],
      },
      code,
    },
  };
}
