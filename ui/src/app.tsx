import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { createApi, errorText } from "./api/client.js";
import { type Access, probeAccess, session } from "./api/session.js";
import { Link } from "./components/link.js";
import { JobPage } from "./pages/job.js";
import { JobsPage } from "./pages/jobs.js";
import { NodesPage } from "./pages/nodes.js";
import { OverviewPage } from "./pages/overview.js";
import { QueuesPage } from "./pages/queues.js";
import { SchedulePage, SchedulesPage } from "./pages/schedules.js";
import { SignInPage } from "./pages/sign-in.js";
import { type Route, useRoute } from "./router.js";
import { applyTheme, nextTheme, storedTheme, type Theme } from "./theme.js";

type Auth =
  | { state: "checking" }
  | { state: "signed-out"; notice: string | null }
  | { state: "signed-in"; access: Access }
  | { state: "unreachable"; message: string };

const ACCESS_LABEL: Record<Access, string> = {
  open: "no authentication",
  admin: "admin",
  submitter: "submitter",
  reader: "reader (read-only)",
};

/** The shell: sign-in when the server needs a key, the navigation, and the page of the route. */
export function App() {
  const route = useRoute();
  const [auth, setAuth] = useState<Auth>(() => {
    const access = session.access();
    return access ? { state: "signed-in", access } : { state: "checking" };
  });
  const api = useMemo(
    () =>
      createApi({
        apiKey: () => session.apiKey(),
        onUnauthenticated: () => {
          if (session.access() === null) return;
          session.clear();
          setAuth({
            state: "signed-out",
            notice: "The server no longer accepts your key: sign in again.",
          });
        },
      }),
    [],
  );

  useEffect(() => {
    if (auth.state !== "checking") return;
    probeAccess(session.apiKey()).then(
      (access) => {
        if (access === null) setAuth({ state: "signed-out", notice: null });
        else {
          session.save(session.apiKey(), access);
          setAuth({ state: "signed-in", access });
        }
      },
      (err) => setAuth({ state: "unreachable", message: errorText(err) }),
    );
  }, [auth.state]);

  useEffect(() => {
    document.title = `${titleOf(route)} · JobQueue`;
  }, [route]);

  // A new page (not a new filter of the same one) takes the focus to its content, so keyboard and
  // screen-reader users start there, as after a page load.
  const pageKey =
    route.page === "job"
      ? `job:${route.jobId}`
      : route.page === "schedule"
        ? `schedule:${route.scheduleId}`
        : route.page;
  const firstPage = useRef(true);
  useEffect(() => {
    if (firstPage.current) {
      firstPage.current = false;
      return;
    }
    document.getElementById("main")?.focus({ preventScroll: true });
  }, [pageKey]);

  const signedIn = auth.state === "signed-in" ? auth.access : null;
  // Whose key it is, shown beside the role.
  const [principal, setPrincipal] = useState<string | null>(null);
  useEffect(() => {
    setPrincipal(null);
    if (!signedIn || signedIn === "open") return;
    api.getCaller({}).then(
      (caller) => setPrincipal(caller.principal ?? null),
      () => {},
    );
  }, [api, signedIn]);
  return (
    <>
      <a class="skip-link" href="#main">
        Skip to content
      </a>
      <header class="container-fluid top">
        <nav aria-label="Main">
          <ul>
            <li>
              <Link href="/" class="brand">
                JobQueue
              </Link>
            </li>
          </ul>
          {signedIn && (
            <ul class="nav-pages">
              <li>
                <Link href="/" aria-current={route.page === "overview" ? "page" : undefined}>
                  Overview
                </Link>
              </li>
              <li>
                <Link
                  href="/jobs"
                  aria-current={route.page === "jobs" || route.page === "job" ? "page" : undefined}
                >
                  Jobs
                </Link>
              </li>
              <li>
                <Link href="/queues" aria-current={route.page === "queues" ? "page" : undefined}>
                  Queues
                </Link>
              </li>
              <li>
                <Link href="/nodes" aria-current={route.page === "nodes" ? "page" : undefined}>
                  Nodes
                </Link>
              </li>
              <li>
                <Link
                  href="/schedules"
                  aria-current={
                    route.page === "schedules" || route.page === "schedule" ? "page" : undefined
                  }
                >
                  Schedules
                </Link>
              </li>
            </ul>
          )}
          <ul class="nav-tools">
            {signedIn && (
              <li>
                <span class="access" data-access={signedIn} title="What this session may do">
                  {principal && <strong class="principal">{principal}</strong>}
                  {principal && " · "}
                  {ACCESS_LABEL[signedIn]}
                </span>
              </li>
            )}
            <li>
              <ThemeToggle />
            </li>
            {signedIn && signedIn !== "open" && (
              <li>
                <button
                  type="button"
                  class="secondary outline small"
                  onClick={() => {
                    session.clear();
                    setAuth({ state: "signed-out", notice: null });
                  }}
                >
                  Sign out
                </button>
              </li>
            )}
          </ul>
        </nav>
      </header>
      <main class="container" id="main" tabIndex={-1}>
        {auth.state === "checking" && <p aria-busy="true">Connecting…</p>}
        {auth.state === "unreachable" && (
          <article>
            <h1>The server cannot be reached</h1>
            <p>{auth.message}</p>
            <button type="button" onClick={() => setAuth({ state: "checking" })}>
              Try again
            </button>
          </article>
        )}
        {auth.state === "signed-out" && (
          <SignInPage
            notice={auth.notice}
            onSignedIn={(key, access) => {
              session.save(key, access);
              setAuth({ state: "signed-in", access });
            }}
          />
        )}
        {signedIn && <Page route={route} api={api} access={signedIn} />}
      </main>
    </>
  );
}

function Page(props: { route: Route; api: ReturnType<typeof createApi>; access: Access }) {
  const { route, api, access } = props;
  switch (route.page) {
    case "overview":
      return <OverviewPage api={api} />;
    case "jobs":
      return <JobsPage api={api} query={route.query} access={access} />;
    case "queues":
      return <QueuesPage api={api} access={access} />;
    case "job":
      return <JobPage api={api} jobId={route.jobId} access={access} key={route.jobId} />;
    case "nodes":
      return <NodesPage api={api} />;
    case "schedules":
      return <SchedulesPage api={api} access={access} />;
    case "schedule":
      return (
        <SchedulePage
          api={api}
          scheduleId={route.scheduleId}
          access={access}
          key={route.scheduleId}
        />
      );
    case "not-found":
      return (
        <>
          <h1>Not found</h1>
          <p>
            Nothing lives at <code>{route.path}</code>. <Link href="/">Go to the overview</Link>.
          </p>
        </>
      );
  }
}

function titleOf(route: Route): string {
  switch (route.page) {
    case "overview":
      return "Overview";
    case "jobs":
      return "Jobs";
    case "job":
      return route.jobId;
    case "queues":
      return "Queues";
    case "nodes":
      return "Nodes";
    case "schedules":
      return "Schedules";
    case "schedule":
      return route.scheduleId;
    case "not-found":
      return "Not found";
  }
}

function ThemeToggle() {
  const [theme, setTheme] = useState<Theme>(storedTheme);
  return (
    <button
      type="button"
      class="secondary outline small theme-toggle"
      aria-label={`Colour theme: ${theme}. Change it.`}
      onClick={() => {
        const next = nextTheme(theme);
        applyTheme(next);
        setTheme(next);
      }}
    >
      {theme === "auto" ? "◐ auto" : theme === "light" ? "☀ light" : "☾ dark"}
    </button>
  );
}
