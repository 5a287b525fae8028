import winston from 'winston';

/** Structured JSON logs on stderr, so stdout stays free for a command's own output. */
export const log = winston.createLogger({
  level: process.env.VDUSE_CSI_LOG_LEVEL ?? 'info',
  format: winston.format.combine(winston.format.timestamp(), winston.format.json()),
  transports: [
    new winston.transports.Console({ stderrLevels: ['error', 'warn', 'info', 'debug', 'verbose', 'silly'] }),
  ],
});

export function setLogLevel(level: string): void {
  log.level = level;
}
