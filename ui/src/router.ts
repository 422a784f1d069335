import { useEffect, useState } from "preact/hooks";

/** Where the server serves the dashboard; every route is below it. */
export const BASE = "/ui";

export type Route =
  | { page: "overview" }
  | { page: "jobs"; query: URLSearchParams }
  | { page: "job"; jobId: string }
  | { page: "queues" }
  | { page: "nodes" }
  | { page: "schedules" }
  | { page: "schedule"; scheduleId: string }
  | { page: "not-found"; path: string };

export function parseRoute(pathname: string, search: string): Route {
  const path = pathname.startsWith(BASE) ? pathname.slice(BASE.length) : pathname;
  const parts = path.split("/").filter((p) => p !== "");
  if (parts.length === 0) return { page: "overview" };
  if (parts[0] === "jobs" && parts.length === 1) {
    return { page: "jobs", query: new URLSearchParams(search) };
  }
  if (parts[0] === "jobs" && parts.length === 2) {
    return { page: "job", jobId: decodeURIComponent(parts[1]!) };
  }
  if (parts[0] === "queues" && parts.length === 1) return { page: "queues" };
  if (parts[0] === "nodes" && parts.length === 1) return { page: "nodes" };
  if (parts[0] === "schedules" && parts.length === 1) return { page: "schedules" };
  if (parts[0] === "schedules" && parts.length === 2) {
    return { page: "schedule", scheduleId: decodeURIComponent(parts[1]!) };
  }
  return { page: "not-found", path };
}

const NAVIGATED = "jobqueue:navigated";

/** Goes to a path inside the app (`/jobs?status=failed`), adding a history entry. */
export function navigate(path: string, options: { replace?: boolean } = {}): void {
  const url = BASE + path;
  if (options.replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  window.dispatchEvent(new Event(NAVIGATED));
  if (!options.replace) window.scrollTo(0, 0);
}

/** The current route, following links, back and forward. */
export function useRoute(): Route {
  const read = () => parseRoute(location.pathname, location.search);
  const [route, setRoute] = useState(read);
  useEffect(() => {
    const update = () => setRoute(read());
    window.addEventListener("popstate", update);
    window.addEventListener(NAVIGATED, update);
    return () => {
      window.removeEventListener("popstate", update);
      window.removeEventListener(NAVIGATED, update);
    };
  }, []);
  return route;
}
