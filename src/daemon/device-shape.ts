/** What a served device looks like to the driver, however a server is asked to make it. */
export interface DeviceShape {
  queues: number;
  queueSize: number;
  blockSize: number;
  /** Size of a new image (an existing one keeps its size unless this is larger). */
  sizeBytes?: number;
}

export const BLOCK_SIZES = [512, 1024, 2048, 4096];
export const MAX_QUEUES = 64;
export const MAX_QUEUE_SIZE = 1024;

/** Checks a shape's limits; `names` says what each field is called where it came from. */
export function checkDeviceShape(shape: DeviceShape, names: Record<keyof DeviceShape, string>): DeviceShape {
  const whole = (value: number, what: string, min: number, max: number): void => {
    if (!Number.isSafeInteger(value) || value < min || value > max)
      throw new Error(`${what} must be a whole number between ${min} and ${max}, got ${value}`);
  };
  whole(shape.queues, names.queues, 1, MAX_QUEUES);
  whole(shape.queueSize, names.queueSize, 2, MAX_QUEUE_SIZE);
  if ((shape.queueSize & (shape.queueSize - 1)) !== 0)
    throw new Error(`${names.queueSize} must be a power of two, got ${shape.queueSize}`);
  if (!BLOCK_SIZES.includes(shape.blockSize))
    throw new Error(`${names.blockSize} must be one of ${BLOCK_SIZES.join(', ')}, got ${shape.blockSize}`);
  const size = shape.sizeBytes;
  if (size !== undefined && (!Number.isSafeInteger(size) || size <= 0 || size % shape.blockSize !== 0))
    throw new Error(`${names.sizeBytes} must be a positive multiple of the block size ${shape.blockSize}`);
  return shape;
}
