import { log } from '../log';
import { StartFailure, StartFailureKind, kindOfErrno } from './start-failure';

interface Undo {
  readonly what: string;
  readonly undo: () => unknown;
}

/**
 * The steps of starting a device server and how to undo each: a failure names the step it
 * happened at, and everything the earlier steps made is undone, last first, each exactly once.
 * An undo that fails is logged and noted beside the failure; it never replaces it, and the undos
 * after it still run.
 */
export class StartSteps {
  private readonly undos: Undo[] = [];

  private constructor(readonly device: string) {}

  /** Runs `start`; if it throws, undoes its steps and rethrows the failure as a StartFailure. */
  static async attempt<T>(device: string, start: (steps: StartSteps) => Promise<T>): Promise<T> {
    const steps = new StartSteps(device);
    try {
      return await start(steps);
    } catch (error) {
      const failure =
        error instanceof StartFailure
          ? error
          : new StartFailure(device, `starting device ${device}`, 'internal', error);
      await steps.undoAll(failure);
      throw failure;
    }
  }

  /**
   * Runs one step. A failure becomes a StartFailure naming the step, of the kind its errno tells
   * (a privilege, a busy device) or else `kind`.
   */
  async run<T>(step: string, action: () => T | Promise<T>, kind: StartFailureKind = 'internal'): Promise<T> {
    try {
      return await action();
    } catch (error) {
      if (error instanceof StartFailure) throw error;
      throw new StartFailure(this.device, step, kindOfErrno(error) ?? kind, error);
    }
  }

  /** A failure at `step` this code detected itself (no exception to wrap). */
  fail(step: string, kind: StartFailureKind, reason: string): StartFailure {
    return new StartFailure(this.device, step, kind, new Error(reason));
  }

  /** Registers how to undo what a step made, should a later step fail. */
  onFailure(what: string, undo: () => unknown): void {
    this.undos.push({ what, undo });
  }

  private async undoAll(failure: StartFailure): Promise<void> {
    for (const { what, undo } of this.undos.splice(0).reverse()) {
      try {
        await undo();
      } catch (error) {
        log.error('cleanup after a failed start failed', {
          device: this.device,
          cleanup: what,
          error: String(error),
          failure: failure.message,
        });
        failure.noteCleanupFailure(what, error);
      }
    }
  }
}
