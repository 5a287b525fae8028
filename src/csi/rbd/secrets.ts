import { invalidArgument } from '../errors';

/**
 * A cephx user and key from a request's `secrets` (the keys ceph-csi's secrets use). The key is
 * never put into an error, a log, a record or a command line: only into librados in memory (the
 * controller) or a 0600 keyring file (the node).
 */
export interface CephCredentials {
  /** Without "client.". */
  user: string;
  key: string;
}

const USER = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** A cephx secret is base64 (40 characters for today's keys). */
const KEY = /^[A-Za-z0-9+/]{16,256}={0,2}$/;

/** The credentials in `secrets`; INVALID_ARGUMENT (without the key's value) when absent or malformed. */
export function cephCredentials(
  secrets: Record<string, string> | undefined,
  purpose: string,
): CephCredentials {
  const user = secrets?.userID;
  const key = secrets?.userKey;
  if (user === undefined || key === undefined)
    throw invalidArgument(
      `${purpose} needs the secret keys userID and userKey (the csi.storage.k8s.io/*-secret-name parameters of the StorageClass)`,
    );
  const name = user.startsWith('client.') ? user.slice('client.'.length) : user;
  if (!USER.test(name))
    throw invalidArgument(`secret userID must be 1-64 of [A-Za-z0-9._-], got ${JSON.stringify(user)}`);
  if (!KEY.test(key)) throw invalidArgument(`secret userKey of ${name} is not a base64 cephx key`);
  return { user: name, key };
}

/** A keyring file holding the one key. */
export function keyringText(credentials: CephCredentials): string {
  return `[client.${credentials.user}]\n\tkey = ${credentials.key}\n`;
}
