export const DAEMON_ROLES = ['starting', 'standby', 'taking-over', 'serving', 'stopping'] as const;

/** Where a device daemon process is in its life. */
export type DaemonRole = (typeof DAEMON_ROLES)[number];
