import { type DestinationStream, type Logger, type LoggerOptions, pino } from "pino";

/**
 * The logger's line format: JSON lines with level names (`"level":"info"`) and ISO 8601 UTC times
 * (`"time":"2026-11-30T12:00:00.000Z"`), which people and log shippers read without a table of
 * pino's numbers.
 */
export const LOG_FORMAT: LoggerOptions = {
  timestamp: pino.stdTimeFunctions.isoTime,
  formatters: { level: (label) => ({ level: label }) },
};

/** A pino logger in the service's format, writing to `destination`. */
export function createLogger(level: string, destination: DestinationStream): Logger {
  return pino({ ...LOG_FORMAT, level }, destination);
}
