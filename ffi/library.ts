// Where libmnl is: the Debian location by default, overridable by option or environment.

/** Environment variable that overrides the libmnl path. */
export const LIBMNL_PATH_ENV = "IPRULE_LIBMNL_PATH";

/** Where Debian's libmnl0 installs libmnl on this architecture. */
export const DEFAULT_LIBMNL_PATH = `/usr/lib/${Deno.build.arch}-linux-gnu/libmnl.so.0`;

/** The libmnl path to open: `path`, else $IPRULE_LIBMNL_PATH, else the Debian location. */
export function resolveLibmnlPath(path?: string): string {
  if (path !== undefined && path !== "") return path;
  let fromEnv: string | undefined;
  try {
    fromEnv = Deno.env.get(LIBMNL_PATH_ENV);
  } catch {
    // Without --allow-env: the default location.
  }
  return fromEnv !== undefined && fromEnv !== "" ? fromEnv : DEFAULT_LIBMNL_PATH;
}
