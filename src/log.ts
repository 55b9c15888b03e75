/**
 * Structured logs: JSON lines (default in-cluster) or text for a terminal, Kubernetes style
 * (`msg` in past tense, object kind/name, node, reconcileID as fields).
 */

/** Log levels, lowest first. */
export type Level = "debug" | "info" | "warn" | "error";
const RANK: Record<Level, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** Fields of a log line. */
export type Fields = Record<string, unknown>;

/** Where lines go; stderr by default. */
export type Sink = (line: string) => void;

const encoder = new TextEncoder();
const stderrSink: Sink = (line) => Deno.stderr.writeSync(encoder.encode(line + "\n"));

/** A logger with fixed fields. */
export class Logger {
  readonly #format: "json" | "text";
  readonly #level: Level;
  readonly #fields: Fields;
  readonly #sink: Sink;

  constructor(
    options: { format?: "json" | "text"; level?: Level; fields?: Fields; sink?: Sink } = {},
  ) {
    this.#format = options.format ?? "json";
    this.#level = options.level ?? "info";
    this.#fields = options.fields ?? {};
    this.#sink = options.sink ?? stderrSink;
  }

  /** A logger adding `fields` to every line. */
  with(fields: Fields): Logger {
    return new Logger({
      format: this.#format,
      level: this.#level,
      fields: { ...this.#fields, ...fields },
      sink: this.#sink,
    });
  }

  /** Whether lines of this level are written. */
  enabled(level: Level): boolean {
    return RANK[level] >= RANK[this.#level];
  }

  debug(msg: string, fields?: Fields): void {
    this.#write("debug", msg, fields);
  }
  info(msg: string, fields?: Fields): void {
    this.#write("info", msg, fields);
  }
  warn(msg: string, fields?: Fields): void {
    this.#write("warn", msg, fields);
  }
  error(msg: string, fields?: Fields): void {
    this.#write("error", msg, fields);
  }

  #write(level: Level, msg: string, fields: Fields = {}): void {
    if (!this.enabled(level)) return;
    const all: Fields = { ...this.#fields, ...fields };
    for (const [k, v] of Object.entries(all)) {
      if (v instanceof Error) all[k] = v.message;
      else if (v === undefined) delete all[k];
    }
    const ts = new Date().toISOString();
    if (this.#format === "json") {
      this.#sink(JSON.stringify({ ts, level, msg, ...all }));
    } else {
      const rest = Object.entries(all).map(([k, v]) =>
        `${k}=${typeof v === "string" && !/\s/.test(v) ? v : JSON.stringify(v)}`
      );
      this.#sink(
        `${ts} ${level.toUpperCase().padEnd(5)} ${msg}${rest.length ? " " + rest.join(" ") : ""}`,
      );
    }
  }
}
