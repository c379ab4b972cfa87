/** A small leveled logger writing one line per event to stderr. */
export interface Logger {
  debug(message: string, extra?: unknown): void;
  info(message: string, extra?: unknown): void;
  warn(message: string, extra?: unknown): void;
  error(message: string, extra?: unknown): void;
}

const LEVELS = ['debug', 'info', 'warn', 'error', 'silent'] as const;
type Level = (typeof LEVELS)[number];

export function createLogger(level: Level = 'info', name = 'dispatch'): Logger {
  const min = LEVELS.indexOf(level);
  const write = (at: Exclude<Level, 'silent'>, message: string, extra?: unknown) => {
    if (LEVELS.indexOf(at) < min) return;
    const detail =
      extra instanceof Error
        ? ` ${extra.stack ?? extra.message}`
        : extra === undefined
          ? ''
          : ` ${JSON.stringify(extra)}`;
    process.stderr.write(`${new Date().toISOString()} ${at.toUpperCase().padEnd(5)} [${name}] ${message}${detail}\n`);
  };
  return {
    debug: (m, e) => write('debug', m, e),
    info: (m, e) => write('info', m, e),
    warn: (m, e) => write('warn', m, e),
    error: (m, e) => write('error', m, e),
  };
}
