/**
 * Where the API server is and how to authenticate, from a kubeconfig or the in-cluster service
 * account, with only the parts of client-node the client needs: its kubeconfig entry parsing
 * (`config_types`) and its token-file and exec-plugin authenticators. client-node's package
 * entry loads ~1,100 generated modules (~60 MB of RSS under Deno, measured: the agent's budget
 * is 64 MiB), so it is imported only for the auth providers these parts do not cover (oidc,
 * azure, gcp), on demand.
 */
import {
  type Cluster,
  newClusters,
  newContexts,
  newUsers,
  type User,
} from "@kubernetes/client-node/dist/config_types.js";
import { ExecAuth } from "@kubernetes/client-node/dist/exec_auth.js";
import { FileAuth } from "@kubernetes/client-node/dist/file_auth.js";

/** A kubeconfig that cannot be used, with the file and the setting at fault. */
export class KubeconfigError extends Error {
  override name = "KubeconfigError";
}

function reason(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Reads a file a kubeconfig names; `what` says which setting named it. */
function readNamed(path: string, what: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch (error: unknown) {
    throw new KubeconfigError(`${what} "${path}" not readable: ${reason(error)}`, {
      cause: error,
    });
  }
}

/** Where the service account's token, CA and namespace are mounted in a pod. */
export const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

/** The API server, its TLS material, and the credentials of each request. */
export interface KubeAccess {
  /** API server URL, without a trailing slash. */
  server: string;
  /** PEM of the CA that signed the server's certificate, when the kubeconfig names one. */
  ca?: string;
  /** PEM of the client certificate and key, when the user authenticates with one. */
  cert?: string;
  key?: string;
  /** Sets the credential headers of one request (token files and exec tokens are refreshed). */
  authenticate(headers: Headers): Promise<void>;
}

/** Options of {@linkcode loadKubeAccess}. */
export interface KubeAccessOptions {
  /** Kubeconfig path; default $KUBECONFIG, then ~/.kube/config, then in-cluster. */
  kubeconfig?: string;
}

interface Loaded {
  clusters: Cluster[];
  users: User[];
  contexts: { name: string; cluster: string; user?: string }[];
  current: string | undefined;
}

/** The options object client-node's authenticators write into. */
interface AuthOptions {
  headers: Record<string, string>;
  cert?: unknown;
  key?: unknown;
}

function text(data: unknown): string | undefined {
  if (data === undefined || data === null) return undefined;
  if (typeof data === "string") return data;
  if (data instanceof Uint8Array) return new TextDecoder().decode(data);
  return String(data);
}

function fileOrData(
  file: string | null | undefined,
  data: string | null | undefined,
  what: string,
): string | undefined {
  if (file) return readNamed(file, what);
  if (data) return new TextDecoder().decode(Uint8Array.from(atob(data), (c) => c.charCodeAt(0)));
  return undefined;
}

/** A file named in a kubeconfig, relative to the kubeconfig's directory. */
function absolute(dir: string, file: string): string {
  return file.startsWith("/") ? file : `${dir}/${file}`;
}

async function loadFile(path: string): Promise<Loaded> {
  // Loaded only for a kubeconfig file: in a pod (service account) the YAML parser is not needed.
  const { parse } = await import("yaml");
  const source = readNamed(path, "Kubeconfig");
  let doc: unknown;
  try {
    doc = parse(source) ?? {};
  } catch (error: unknown) {
    // The parser's first line says what and where; the rest is a code frame.
    const what = reason(error).split("\n")[0];
    throw new KubeconfigError(`Kubeconfig "${path}" is not valid YAML: ${what}`, {
      cause: error,
    });
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
    throw new KubeconfigError(
      `Kubeconfig "${path}": expected a mapping of clusters, users and contexts`,
    );
  }
  const fields = doc as Record<string, unknown>;
  const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) || "/" : ".";
  try {
    const clusters = newClusters(fields.clusters);
    for (const c of clusters) if (c.caFile) c.caFile = absolute(dir, c.caFile);
    const users = newUsers(fields.users);
    for (const u of users) {
      if (u.certFile) u.certFile = absolute(dir, u.certFile);
      if (u.keyFile) u.keyFile = absolute(dir, u.keyFile);
    }
    return {
      clusters,
      users,
      contexts: newContexts(fields.contexts),
      current: typeof fields["current-context"] === "string"
        ? fields["current-context"]
        : undefined,
    };
  } catch (error: unknown) {
    // client-node's entry checks name the entry, e.g. "clusters[0].name is missing".
    throw new KubeconfigError(`Kubeconfig "${path}": ${reason(error)}`, { cause: error });
  }
}

/** Several kubeconfig files merged as kubectl does: the first definition of a name wins. */
function merge(all: Loaded[]): Loaded {
  const first = <T extends { name: string }>(lists: T[][]) => {
    const seen = new Map<string, T>();
    for (const item of lists.flat()) if (!seen.has(item.name)) seen.set(item.name, item);
    return [...seen.values()];
  };
  return {
    clusters: first(all.map((l) => l.clusters)),
    users: first(all.map((l) => l.users)),
    contexts: first(all.map((l) => l.contexts)),
    current: all.find((l) => l.current)?.current,
  };
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

function inCluster(): Loaded {
  const host = Deno.env.get("KUBERNETES_SERVICE_HOST");
  const port = Deno.env.get("KUBERNETES_SERVICE_PORT");
  if (!host || !port) {
    throw new KubeconfigError(
      "No kubeconfig found and KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT are not set",
    );
  }
  const scheme = ["80", "8080", "8001"].includes(port) ? "http" : "https";
  const server = `${scheme}://${host.includes(":") ? `[${host}]` : host}:${port}`;
  return {
    clusters: [{
      name: "inCluster",
      server,
      caFile: `${SERVICE_ACCOUNT_DIR}/ca.crt`,
      skipTLSVerify: false,
    }],
    users: [{
      name: "inClusterUser",
      authProvider: { name: "tokenFile", config: { tokenFile: `${SERVICE_ACCOUNT_DIR}/token` } },
    }],
    contexts: [{ name: "inClusterContext", cluster: "inCluster", user: "inClusterUser" }],
    current: "inClusterContext",
  };
}

/** The kubeconfig as client-node's `loadFromDefault` finds it, or the given file. */
async function load(options: KubeAccessOptions): Promise<Loaded> {
  if (options.kubeconfig) return await loadFile(options.kubeconfig);
  const env = Deno.env.get("KUBECONFIG");
  if (env) {
    return merge(await Promise.all(env.split(":").filter((f) => f !== "").map(loadFile)));
  }
  const home = Deno.env.get("HOME");
  if (home && exists(`${home}/.kube/config`)) return await loadFile(`${home}/.kube/config`);
  if (exists(`${SERVICE_ACCOUNT_DIR}/token`)) return inCluster();
  throw new KubeconfigError(
    "No kubeconfig found: pass --kubeconfig, set KUBECONFIG or run in a pod",
  );
}

/**
 * Loads where the API server is and how to authenticate: the given kubeconfig, else
 * $KUBECONFIG, ~/.kube/config, then the in-cluster service account (client-node's order).
 */
export async function loadKubeAccess(options: KubeAccessOptions = {}): Promise<KubeAccess> {
  const config = await load(options);
  if (config.current === undefined) {
    throw new KubeconfigError(
      "No current-context in the kubeconfig: set one (kubectl config use-context)",
    );
  }
  const context = config.contexts.find((c) => c.name === config.current);
  if (!context) {
    throw new KubeconfigError(
      `current-context "${config.current}" is not among the kubeconfig's contexts`,
    );
  }
  const cluster = config.clusters.find((c) => c.name === context.cluster);
  if (!cluster) {
    throw new KubeconfigError(
      `No cluster in the kubeconfig's current context: context "${context.name}" names cluster ` +
        `"${context.cluster}", which is not defined`,
    );
  }
  const user: User = config.users.find((u) => u.name === context.user) ?? { name: "" };
  const provider = user.authProvider?.name;
  if (provider !== undefined && !user.authProvider?.config?.tokenFile) {
    return await clientNodeAccess(options);
  }
  const authenticators = [new ExecAuth(), new FileAuth()];
  const authenticator = authenticators.find((a) => a.isAuthProvider(user));
  const apply = async (): Promise<AuthOptions> => {
    const opts: AuthOptions = { headers: {} };
    // deno-lint-ignore no-explicit-any
    if (authenticator) await authenticator.applyAuthentication(user, opts as any);
    if (user.token) opts.headers.Authorization = `Bearer ${user.token}`;
    if (user.username) {
      opts.headers.Authorization = `Basic ${btoa(`${user.username}:${user.password ?? ""}`)}`;
    }
    if (user.impersonateUser) opts.headers["Impersonate-User"] = user.impersonateUser;
    return opts;
  };
  // An exec plugin may answer with a client certificate instead of a token.
  const first = await apply();
  const access: KubeAccess = {
    server: cluster.server.replace(/\/+$/, ""),
    async authenticate(headers) {
      for (const [name, value] of Object.entries((await apply()).headers)) {
        headers.set(name, value);
      }
    },
  };
  const ca = fileOrData(
    cluster.caFile,
    cluster.caData,
    `certificate-authority of cluster "${cluster.name}"`,
  );
  const cert = text(first.cert) ??
    fileOrData(user.certFile, user.certData, `client-certificate of user "${user.name}"`);
  const key = text(first.key) ??
    fileOrData(user.keyFile, user.keyData, `client-key of user "${user.name}"`);
  if (ca) access.ca = ca;
  if (cert) access.cert = cert;
  if (key) access.key = key;
  return access;
}

/** Access through client-node's full KubeConfig, for auth providers the lean path lacks. */
async function clientNodeAccess(options: KubeAccessOptions): Promise<KubeAccess> {
  const { KubeConfig } = await import("@kubernetes/client-node");
  const config = new KubeConfig();
  if (options.kubeconfig) config.loadFromFile(options.kubeconfig);
  else config.loadFromDefault();
  const cluster = config.getCurrentCluster();
  if (!cluster) throw new KubeconfigError("No cluster in the kubeconfig's current context");
  const tls: { ca?: Uint8Array; cert?: Uint8Array; key?: Uint8Array } = {};
  await config.applyToHTTPSOptions(tls as Record<string, unknown>);
  const access: KubeAccess = {
    server: cluster.server.replace(/\/+$/, ""),
    async authenticate(headers) {
      // Re-applied per request: tokens are refreshed by the auth provider.
      const opts: { headers: Record<string, string> } = { headers: {} };
      await config.applyToHTTPSOptions(opts as Record<string, unknown>);
      for (const [name, value] of Object.entries(opts.headers)) headers.set(name, value);
    },
  };
  const ca = text(tls.ca);
  const cert = text(tls.cert);
  const key = text(tls.key);
  if (ca) access.ca = ca;
  if (cert) access.cert = cert;
  if (key) access.key = key;
  return access;
}
