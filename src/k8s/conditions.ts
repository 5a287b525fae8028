import { Condition } from './resources';

/*
 * The conditions of a VduseVolume's status, written by its node agent: Ready (the phase, for
 * `kubectl wait --for=condition=Ready`) and ImageHealthy (whether the image of a Ready volume is
 * still there with the size it was made with; the controller's volume_condition).
 */
export const READY = 'Ready';
export const IMAGE_HEALTHY = 'ImageHealthy';

/** A condition as its writer states it; the transition time is setCondition's. */
export type ConditionState = Omit<Condition, 'lastTransitionTime'>;

/** `conditions` with `state` in place of the condition of its type; the transition time moves only with the status. */
export function setCondition(conditions: Condition[] | undefined, state: ConditionState): Condition[] {
  const before = conditions?.find((condition) => condition.type === state.type);
  const lastTransitionTime =
    before?.status === state.status ? before.lastTransitionTime : new Date().toISOString();
  return [
    ...(conditions ?? []).filter((condition) => condition.type !== state.type),
    { ...state, lastTransitionTime },
  ];
}

export function findCondition(
  status: { conditions?: Condition[] } | undefined,
  type: string,
): Condition | undefined {
  return status?.conditions?.find((condition) => condition.type === type);
}

/** Whether `condition` says what `state` says (its transition time aside). */
export function sameCondition(condition: Condition | undefined, state: ConditionState): boolean {
  return (
    condition !== undefined &&
    condition.status === state.status &&
    condition.reason === state.reason &&
    condition.message === state.message &&
    condition.observedGeneration === state.observedGeneration
  );
}
