import { Watch } from '@kubernetes/client-node';
import { log } from '../log';
import { CustomResource, Selector } from './custom-resource';
import { KubeObject } from './resources';

export interface WatchHandler<T> {
  /** The whole (selected) collection: at the start, and again whenever the watch had to start over. */
  listed(items: T[]): void;
  changed(object: T, deleted: boolean): void;
}

const RETRY_MS = 1000;
const RETRY_MAX_MS = 30_000;

/**
 * List, then watch from the list's resourceVersion; a closed watch resumes from the last version
 * seen, an expired one (410 Gone) starts over from a list. Handlers must be idempotent: after a
 * relist they see objects again.
 */
export class ResourceWatch<T extends KubeObject> {
  private version = '';
  private stopped = false;
  private abort: AbortController | undefined;
  private wake: (() => void) | undefined;

  constructor(
    private readonly resource: CustomResource<T>,
    private readonly selector: Selector,
    private readonly handler: WatchHandler<T>,
  ) {}

  start(): void {
    void this.run();
  }

  stop(): void {
    this.stopped = true;
    this.abort?.abort();
    this.wake?.();
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      try {
        if (!this.version) await this.relist();
        if (!this.stopped && (await this.watchOnce()) === 'expired') this.version = '';
        failures = 0;
      } catch (error) {
        if (this.stopped) return;
        const delay = Math.min(RETRY_MAX_MS, RETRY_MS * 2 ** failures++);
        log.warn('watch failed', {
          resource: this.resource.kind.plural,
          retryInMs: delay,
          error: String(error),
        });
        this.version = '';
        await new Promise<void>((resolve) => {
          this.wake = resolve;
          setTimeout(resolve, delay).unref();
        });
      }
    }
  }

  private async relist(): Promise<void> {
    const list = await this.resource.list(this.selector);
    if (this.stopped) return;
    this.version = list.metadata.resourceVersion;
    this.handler.listed(list.items);
  }

  private watchOnce(): Promise<'expired' | 'closed'> {
    return new Promise((resolve, reject) => {
      let expired = false;
      const onEvent = (type: string, object: T & { code?: number }): void => {
        if (this.stopped) return;
        if (type === 'ERROR') {
          expired ||= object.code === 410;
          return;
        }
        this.version = object.metadata.resourceVersion ?? this.version;
        if (type === 'ADDED' || type === 'MODIFIED' || type === 'DELETED')
          this.handler.changed(object, type === 'DELETED');
      };
      const onDone = (error: (Error & { statusCode?: number }) | null): void => {
        if (!error || this.stopped || error.name === 'TimeoutError') resolve(expired ? 'expired' : 'closed');
        else if (error.statusCode === 410) resolve('expired');
        else reject(error);
      };
      new Watch(this.resource.config)
        .watch(
          this.resource.path,
          { ...this.selector, resourceVersion: this.version, allowWatchBookmarks: true },
          onEvent,
          onDone,
        )
        .then((controller) => {
          this.abort = controller;
          if (this.stopped) controller.abort();
        }, reject);
    });
  }
}
