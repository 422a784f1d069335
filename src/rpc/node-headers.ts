import type { IncomingHttpHeaders } from "node:http";

/**
 * A read-mostly `Headers` over Node's parsed request headers, made without copying them: the
 * WHATWG `Headers` constructor validates and copies every header of every request (measured at
 * ~2% of a GET /jobs/{job_id} on the REST path), though a call reads one or two. Writes copy on
 * first use. Names are lowercase, as Node gives them.
 */
export class NodeHeaders implements Headers {
  #raw: IncomingHttpHeaders;
  #copy: Headers | null = null;

  constructor(raw: IncomingHttpHeaders) {
    this.#raw = raw;
  }

  #headers(): Headers {
    if (!this.#copy) {
      const h = new Headers();
      for (const [name, value] of Object.entries(this.#raw)) {
        if (name.startsWith(":") || value === undefined) continue;
        for (const v of Array.isArray(value) ? value : [value]) h.append(name, v);
      }
      this.#copy = h;
    }
    return this.#copy;
  }

  get(name: string): string | null {
    if (this.#copy) return this.#copy.get(name);
    const key = name.toLowerCase();
    if (key.startsWith(":")) return null;
    const value = this.#raw[key];
    if (value === undefined) return null;
    return Array.isArray(value) ? value.join(", ") : value;
  }
  has(name: string): boolean {
    return this.get(name) !== null;
  }
  getSetCookie(): string[] {
    return this.#headers().getSetCookie();
  }
  set(name: string, value: string): void {
    this.#headers().set(name, value);
  }
  append(name: string, value: string): void {
    this.#headers().append(name, value);
  }
  delete(name: string): void {
    this.#headers().delete(name);
  }
  forEach(fn: (value: string, key: string, parent: Headers) => void, thisArg?: unknown): void {
    this.#headers().forEach((v, k) => {
      fn.call(thisArg, v, k, this);
    });
  }
  entries(): ReturnType<Headers["entries"]> {
    return this.#headers().entries();
  }
  keys(): ReturnType<Headers["keys"]> {
    return this.#headers().keys();
  }
  values(): ReturnType<Headers["values"]> {
    return this.#headers().values();
  }
  [Symbol.iterator](): ReturnType<Headers["entries"]> {
    return this.#headers()[Symbol.iterator]();
  }
}
