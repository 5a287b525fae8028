/*
 * Image references as the kubelet's image service (containerd's CRI) reads a pod's image: the
 * grammar and normalisation of distribution's reference package (ParseDockerRef). containerd's own
 * image store does not normalise: `ctr images import` names an image exactly as its archive does.
 */

export interface ImageReference {
  /** The name as written, without tag or digest (what a chart's image.repository holds). */
  repository: string;
  tag: string | undefined;
  digest: string | undefined;
}

const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN_LABEL = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN = new RegExp(`^${DOMAIN_LABEL}(?:\\.${DOMAIN_LABEL})*(?::[0-9]+)?$`);
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}$/;
const NAME_MAX = 255;

/** Splits and checks a reference; throws for anything the CRI would refuse. */
export function parseImageReference(reference: string): ImageReference {
  const at = reference.indexOf('@');
  const digest = at < 0 ? undefined : reference.slice(at + 1);
  const named = at < 0 ? reference : reference.slice(0, at);
  const colon = named.lastIndexOf(':');
  const hasTag = colon > named.lastIndexOf('/');
  const repository = hasTag ? named.slice(0, colon) : named;
  const tag = hasTag ? named.slice(colon + 1) : undefined;
  const { domain, path } = splitDomain(repository);
  const bad = (why: string): Error =>
    new Error(`${JSON.stringify(reference)} is not an image reference: ${why}`);
  if (!DOMAIN.test(domain)) throw bad(`${domain} is not a registry host[:port]`);
  if (!path.split('/').every((component) => PATH_COMPONENT.test(component)))
    throw bad(`${path} is not a repository path`);
  if (`${domain}/${path}`.length > NAME_MAX) throw bad(`the name is longer than ${NAME_MAX} characters`);
  if (tag !== undefined && !TAG.test(tag)) throw bad(`${tag} is not a tag`);
  if (digest !== undefined && !DIGEST.test(digest)) throw bad(`${digest} is not a digest`);
  return { repository, tag, digest };
}

/**
 * The reference the CRI looks the image up by: docker.io/ for a name without a registry (and
 * library/ for a one-component docker.io path), the digest alone when there is one, else the tag or
 * :latest.
 */
export function criImageReference(reference: string): string {
  const { repository, tag, digest } = parseImageReference(reference);
  const { domain, path } = splitDomain(repository);
  return `${domain}/${path}${digest === undefined ? `:${tag ?? 'latest'}` : `@${digest}`}`;
}

/** The registry and the path of a repository, as distribution's splitDockerDomain decides them. */
function splitDomain(repository: string): { domain: string; path: string } {
  const slash = repository.indexOf('/');
  const first = repository.slice(0, slash);
  const isDomain =
    slash >= 0 && (/[.:]/.test(first) || first === 'localhost' || first !== first.toLowerCase());
  let domain = isDomain ? first : 'docker.io';
  let path = isDomain ? repository.slice(slash + 1) : repository;
  if (domain === 'index.docker.io') domain = 'docker.io';
  if (domain === 'docker.io' && !path.includes('/')) path = `library/${path}`;
  return { domain, path };
}
