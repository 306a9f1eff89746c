import type { Method, RouteHandler, RouteTable } from './http.js';

/**
 * Path router. `:name` matches one segment; `:name+` matches one or more segments, because image
 * references contain slashes and the docker CLI does not escape them (`/images/127.0.0.1:5000/bb/push`).
 * Routes are tried in registration order, so register the more specific ones first.
 */
interface Route {
  method: Method;
  pattern: RegExp;
  names: string[];
  handler: RouteHandler;
}

export class Router implements RouteTable {
  private readonly routes: Route[] = [];

  add(method: Method, path: string, handler: RouteHandler): void {
    const names: string[] = [];
    const source = path
      .split('/')
      .map((segment) => {
        const m = /^:([A-Za-z_]+)(\+?)$/.exec(segment);
        if (!m) return segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
        names.push(m[1]);
        return m[2] === '+' ? '(.+?)' : '([^/]+)';
      })
      .join('/');
    this.routes.push({ method, pattern: new RegExp(`^${source}/?$`), names, handler });
  }

  /** The handler and decoded params for a request. */
  match(method: string, path: string): { handler: RouteHandler; params: Record<string, string> } | null {
    for (const route of this.routes) {
      if (route.method !== method) continue;
      const m = route.pattern.exec(path);
      if (!m) continue;
      const params: Record<string, string> = {};
      route.names.forEach((name, i) => {
        params[name] = safeDecode(m[i + 1]);
      });
      return { handler: route.handler, params };
    }
    return null;
  }
}

function safeDecode(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}
