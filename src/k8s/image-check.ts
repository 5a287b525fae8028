import { ImageDirectory } from '../storage/images';
import { ConditionState, IMAGE_HEALTHY } from './conditions';

/**
 * The ImageHealthy condition of a Ready volume: its image must exist with at least the size the
 * node reported when it made it (more is fine: a grow may be under way).
 */
export function imageCondition(
  images: ImageDirectory,
  volumeId: string,
  madeBytes: number,
  generation: number,
): ConditionState {
  const state = (healthy: boolean, reason: string, message: string): ConditionState => ({
    type: IMAGE_HEALTHY,
    status: healthy ? 'True' : 'False',
    observedGeneration: generation,
    reason,
    message,
  });
  const path = images.path('volumes', volumeId);
  let size: number | null;
  try {
    size = images.size('volumes', volumeId);
  } catch (error) {
    return state(false, 'ImageUnreadable', `cannot look at the image ${path}: ${String(error)}`);
  }
  if (size === null) return state(false, 'ImageMissing', `the image ${path} is missing`);
  if (size < madeBytes)
    return state(
      false,
      'ImageTruncated',
      `the image ${path} is ${size} bytes, it was made with ${madeBytes}`,
    );
  return state(true, 'ImagePresent', `the image has the ${madeBytes} bytes it was made with`);
}
