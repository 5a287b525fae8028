/** What Kubernetes allows as object names, checked before a name from a request reaches an API path. */

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const UID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A namespace's name (RFC 1123 label). */
export function isDnsLabel(name: string | undefined): name is string {
  return name !== undefined && DNS_LABEL.test(name);
}

/** Most objects' names: claims, volumes, pods (RFC 1123 subdomain). */
export function isDnsSubdomain(name: string | undefined): name is string {
  return name !== undefined && DNS_SUBDOMAIN.test(name);
}

/** An object's metadata.uid (a UUID, as the API server makes them). */
export function isUid(uid: string | undefined): uid is string {
  return uid !== undefined && UID.test(uid);
}
