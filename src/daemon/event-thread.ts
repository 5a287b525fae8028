import { MessagePort, receiveMessageOnPort } from 'node:worker_threads';
import * as libc from '../sys/libc';
import { ThreadCommand, ThreadReply } from './worker-data';

const IDLE_POLL_MS = 1000;
/** While a command's reply waits for a Promise, the longest the event loop waits for a turn. */
const REPLY_POLL_MS = 10;
/**
 * While requests are in flight: they complete through watched descriptors, which end the wait at
 * once, so this only bounds how late what settles through the event loop alone (a large-I/O
 * helper's exit) is seen. Each timed-out wait costs a wake-up and a turn of the event loop: with
 * RBD requests taking 50 ms, 10 ms made the thread's CPU per request almost three times as high.
 */
const IN_FLIGHT_POLL_MS = 100;

/**
 * The loop of a device thread: sleeps in poll(2) on a wake eventfd and the descriptors its
 * servers registered, runs the commands the main thread posted, and calls the handler of each
 * descriptor that became ready. The loop is synchronous, so commands arrive through
 * receiveMessageOnPort rather than message events.
 */
export class EventThread {
  private readonly handlers = new Map<number, () => void>();
  private poller: libc.PollSet;
  private running = true;
  /** Replies that wait for a Promise: the loop must yield to the event loop for them to settle. */
  private deferredReplies = 0;

  constructor(
    private readonly wakeFd: number,
    private readonly commands: MessagePort,
    /** A Promise defers the reply until it settles (the loop keeps serving meanwhile). */
    private readonly onCommand: (
      command: ThreadCommand,
    ) => { notified?: boolean } | undefined | Promise<void>,
    /** Called on every wake-up, before descriptor handlers (shared-state changes arrive this way). */
    private readonly onWake: () => void,
    /**
     * True while requests are in flight: the event loop must run while the thread waits, as they
     * settle Promises.
     */
    private readonly busy: () => boolean,
  ) {
    this.poller = new libc.PollSet([wakeFd]);
  }

  private isBusy(): boolean {
    return this.busy() || this.deferredReplies > 0;
  }

  private waitMs(): number {
    if (this.deferredReplies > 0) return REPLY_POLL_MS;
    return this.busy() ? IN_FLIGHT_POLL_MS : IDLE_POLL_MS;
  }

  watch(fd: number, onReady: () => void): void {
    this.handlers.set(fd, onReady);
    this.poller = new libc.PollSet([this.wakeFd, ...this.handlers.keys()]);
  }

  unwatch(fd: number): void {
    this.handlers.delete(fd);
    this.poller = new libc.PollSet([this.wakeFd, ...this.handlers.keys()]);
  }

  async run(): Promise<void> {
    while (this.running) {
      // Work in flight settles on this thread's event loop: give it a turn before sleeping, then
      // sleep briefly. Never a poll on the libuv threadpool: that pool is the whole process's, and
      // a pool taken by other callers would stop this thread from serving any request.
      if (this.isBusy()) await new Promise((resolve) => setImmediate(resolve));
      const poller = this.poller;
      const events = poller.wait(this.waitMs());
      if (events[0]) libc.drainEventFd(this.wakeFd);
      this.runCommands();
      this.onWake();
      for (let i = 1; i < events.length; i++) {
        if (events[i]) this.handlers.get(poller.fds[i]!)?.();
      }
    }
  }

  private runCommands(): void {
    for (
      let message = receiveMessageOnPort(this.commands);
      message;
      message = receiveMessageOnPort(this.commands)
    ) {
      const command = message.message as ThreadCommand;
      const failed = (error: unknown): ThreadReply => ({
        type: 'failed',
        id: command.id,
        error: error instanceof Error ? error.message : String(error),
      });
      try {
        if (command.type === 'exit') this.running = false;
        const result = this.onCommand(command);
        if (result instanceof Promise) {
          this.deferredReplies++;
          result
            .then(
              () => this.commands.postMessage({ type: 'done', id: command.id } satisfies ThreadReply),
              (error: unknown) => this.commands.postMessage(failed(error)),
            )
            .finally(() => this.deferredReplies--);
          continue;
        }
        this.commands.postMessage({ type: 'done', ...result, id: command.id } satisfies ThreadReply);
      } catch (error) {
        this.commands.postMessage(failed(error));
      }
    }
  }
}
