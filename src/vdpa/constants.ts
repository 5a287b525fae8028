/*
 * The vdpa generic netlink family (include/uapi/linux/vdpa.h). Numbers checked against the header;
 * the attribute enum is append-only up to VDPA_ATTR_DEV_FEATURES (20). Later numbers differ between
 * kernel versions (6.1 has VDPA_DEV_SUPPORTED_FEATURES at 21, newer kernels put BLK_CFG_* there), so
 * nothing beyond 20 is used here.
 */
export const VDPA_GENL_NAME = 'vdpa';
export const VDPA_GENL_VERSION = 1;

export const VDPA_CMD_MGMTDEV_NEW = 1;
export const VDPA_CMD_MGMTDEV_GET = 2;
export const VDPA_CMD_DEV_NEW = 3;
export const VDPA_CMD_DEV_DEL = 4;
export const VDPA_CMD_DEV_GET = 5;
export const VDPA_CMD_DEV_CONFIG_GET = 6;
export const VDPA_CMD_DEV_VSTATS_GET = 7;

/** Type 0 doubles as the padding attribute the kernel inserts before 64-bit values. */
export const VDPA_ATTR_PAD = 0;
export const VDPA_ATTR_MGMTDEV_BUS_NAME = 1;
export const VDPA_ATTR_MGMTDEV_DEV_NAME = 2;
export const VDPA_ATTR_MGMTDEV_SUPPORTED_CLASSES = 3;
export const VDPA_ATTR_DEV_NAME = 4;
export const VDPA_ATTR_DEV_ID = 5;
export const VDPA_ATTR_DEV_VENDOR_ID = 6;
export const VDPA_ATTR_DEV_MAX_VQS = 7;
export const VDPA_ATTR_DEV_MAX_VQ_SIZE = 8;
export const VDPA_ATTR_DEV_MIN_VQ_SIZE = 9;
export const VDPA_ATTR_DEV_NET_CFG_MACADDR = 10;
export const VDPA_ATTR_DEV_NET_STATUS = 11;
export const VDPA_ATTR_DEV_NET_CFG_MAX_VQP = 12;
export const VDPA_ATTR_DEV_NET_CFG_MTU = 13;
export const VDPA_ATTR_DEV_NEGOTIATED_FEATURES = 14;
export const VDPA_ATTR_DEV_MGMTDEV_MAX_VQS = 15;
export const VDPA_ATTR_DEV_SUPPORTED_FEATURES = 16;
export const VDPA_ATTR_DEV_QUEUE_INDEX = 17;
export const VDPA_ATTR_DEV_VENDOR_ATTR_NAME = 18;
export const VDPA_ATTR_DEV_VENDOR_ATTR_VALUE = 19;
export const VDPA_ATTR_DEV_FEATURES = 20;

export const VDPA_COMMAND_NAMES: Readonly<Record<number, string>> = {
  [VDPA_CMD_MGMTDEV_NEW]: 'MGMTDEV_NEW',
  [VDPA_CMD_MGMTDEV_GET]: 'MGMTDEV_GET',
  [VDPA_CMD_DEV_NEW]: 'DEV_NEW',
  [VDPA_CMD_DEV_DEL]: 'DEV_DEL',
  [VDPA_CMD_DEV_GET]: 'DEV_GET',
  [VDPA_CMD_DEV_CONFIG_GET]: 'DEV_CONFIG_GET',
  [VDPA_CMD_DEV_VSTATS_GET]: 'DEV_VSTATS_GET',
};

/** Virtio device ids (include/uapi/linux/virtio_ids.h), the vdpa "classes". */
export const VIRTIO_ID_NET = 1;
export const VIRTIO_ID_BLOCK = 2;

const VIRTIO_CLASS_NAMES: Readonly<Record<number, string>> = {
  1: 'net',
  2: 'block',
  3: 'console',
  4: 'rng',
  5: 'balloon',
  8: 'scsi',
  9: '9p',
  16: 'gpu',
  18: 'input',
  19: 'vsock',
  20: 'crypto',
  26: 'fs',
};

export function virtioClassName(id: number): string {
  return VIRTIO_CLASS_NAMES[id] ?? `virtio-${id}`;
}
