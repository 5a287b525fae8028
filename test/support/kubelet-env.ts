// What kubelet makes of a container's env, command and args: `$(VAR)` expansion, fieldRef values,
// the service variables it adds to every container, and command/args against the image's
// Entrypoint/Cmd.
import { Fields, fieldsOf, listOf, onlyKnown, requiredString, stringOf, stringsOf } from './spec-fields';

/**
 * Kubernetes' expansion (third_party/forked/golang/expansion): `$(NAME)` becomes the value of NAME
 * when it is defined and stays as written otherwise; `$$` is an escaped `$`.
 */
export function expand(input: string, lookup: (name: string) => string | undefined): string {
  let output = '';
  for (let index = 0; index < input.length; index++) {
    const char = input[index]!;
    const next = input[index + 1];
    if (char === '$' && next === '$') {
      output += '$';
      index++;
    } else if (char === '$' && next === '(') {
      const close = input.indexOf(')', index + 2);
      if (close < 0) {
        output += input.slice(index);
        break;
      }
      const name = input.slice(index + 2, close);
      output += lookup(name) ?? `$(${name})`;
      index = close;
    } else output += char;
  }
  return output;
}

/** The values of the fieldRef paths kubelet resolves (the downward API). */
export type FieldValues = Record<string, string>;

/**
 * The environment kubelet passes to the runtime for one container, in its order: the service
 * variables, then the container's env entries, each expanded against the variables before it.
 */
export function containerEnv(
  container: Fields,
  fieldValues: FieldValues,
  serviceEnv: Record<string, string>,
  where: string,
): Map<string, string> {
  const env = new Map(Object.entries(serviceEnv));
  for (const [index, entry] of listOf(container.env, `${where}.env`).entries()) {
    const at = `${where}.env[${index}]`;
    onlyKnown(entry, ['name', 'value', 'valueFrom'], at);
    const name = requiredString(entry.name, `${at}.name`);
    if (entry.valueFrom !== undefined) {
      const from = fieldsOf(entry.valueFrom, `${at}.valueFrom`);
      onlyKnown(from, ['fieldRef'], `${at}.valueFrom`);
      const ref = fieldsOf(from.fieldRef, `${at}.valueFrom.fieldRef`);
      onlyKnown(ref, ['fieldPath', 'apiVersion'], `${at}.valueFrom.fieldRef`);
      const path = requiredString(ref.fieldPath, `${at}.valueFrom.fieldRef.fieldPath`);
      const value = fieldValues[path];
      if (value === undefined) throw new Error(`${at}: fieldRef ${path} is not supported`);
      env.set(name, value);
    } else {
      env.set(
        name,
        expand(stringOf(entry.value, `${at}.value`) ?? '', (ref) => env.get(ref)),
      );
    }
  }
  return env;
}

/**
 * The process arguments: `command` replaces the image's Entrypoint (and drops its Cmd), `args`
 * replace its Cmd; both are expanded against the container's environment.
 */
export function containerArgs(
  container: Fields,
  image: { entrypoint: string[]; cmd: string[] },
  env: Map<string, string>,
  where: string,
): string[] {
  const command = stringsOf(container.command, `${where}.command`);
  const args = stringsOf(container.args, `${where}.args`);
  const lookup = (name: string): string | undefined => env.get(name);
  const expanded = (list: string[]): string[] => list.map((item) => expand(item, lookup));
  const result = command
    ? [...expanded(command), ...expanded(args ?? [])]
    : [...image.entrypoint, ...(args ? expanded(args) : image.cmd)];
  if (result.length === 0) throw new Error(`${where}: no command (none in the spec or the image)`);
  return result;
}

/** What kubelet adds to every container for the `kubernetes` Service in the default namespace. */
export function kubernetesServiceEnv(host: string, port: number): Record<string, string> {
  const address = `tcp://${host}:${port}`;
  return {
    KUBERNETES_SERVICE_HOST: host,
    KUBERNETES_SERVICE_PORT: String(port),
    KUBERNETES_SERVICE_PORT_HTTPS: String(port),
    KUBERNETES_PORT: address,
    [`KUBERNETES_PORT_${port}_TCP`]: address,
    [`KUBERNETES_PORT_${port}_TCP_PROTO`]: 'tcp',
    [`KUBERNETES_PORT_${port}_TCP_PORT`]: String(port),
    [`KUBERNETES_PORT_${port}_TCP_ADDR`]: host,
  };
}
