/** Feature bits shared by all virtio devices (virtio 1.x, 6). */
export const VIRTIO_F_NOTIFY_ON_EMPTY = 24;
export const VIRTIO_F_INDIRECT_DESC = 28;
export const VIRTIO_F_EVENT_IDX = 29;
export const VIRTIO_F_VERSION_1 = 32;
export const VIRTIO_F_ACCESS_PLATFORM = 33;

export const VIRTIO_ID_BLOCK = 2;
/** The vendor id QEMU's vduse-blk uses; any value works for virtio-vdpa. */
export const VIRTIO_VENDOR_ID = 0x1af4;

export function featureMask(...bits: number[]): bigint {
  return bits.reduce((mask, bit) => mask | (1n << BigInt(bit)), 0n);
}

export function hasFeature(features: bigint, bit: number): boolean {
  return (features & (1n << BigInt(bit))) !== 0n;
}
