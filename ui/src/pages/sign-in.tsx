import { useState } from "preact/hooks";
import { errorText } from "../api/client.js";
import { type Access, probeAccess } from "../api/session.js";

/**
 * Asks for an API key (the same keys as every other client; `jobqueue keygen` makes one). The
 * key is checked against the server and kept in this tab's sessionStorage only.
 */
export function SignInPage(props: {
  notice: string | null;
  onSignedIn: (key: string, access: Access) => void;
}) {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    const key = String(new FormData(e.currentTarget as HTMLFormElement).get("apiKey") ?? "").trim();
    if (key === "") {
      setError("Enter an API key.");
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const access = await probeAccess(key);
      if (access === null) setError("The server refused this key.");
      else props.onSignedIn(key, access);
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <article class="sign-in">
      <h1>Sign in</h1>
      {props.notice && <p class="warn-note">{props.notice}</p>}
      <p>
        This server needs an API key. It is kept in this tab only, until you sign out or close it.
      </p>
      <form onSubmit={submit}>
        <label>
          API key
          <input
            name="apiKey"
            type="password"
            autoComplete="off"
            spellcheck={false}
            required
            aria-invalid={error ? true : undefined}
            aria-describedby={error ? "sign-in-error" : undefined}
          />
        </label>
        {error && (
          <p id="sign-in-error" class="error-note" role="alert">
            {error}
          </p>
        )}
        <button type="submit" aria-busy={busy} disabled={busy}>
          Sign in
        </button>
      </form>
    </article>
  );
}
