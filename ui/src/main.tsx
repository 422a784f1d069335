import "@picocss/pico/css/pico.min.css";
import "./styles.css";
import { render } from "preact";
import { App } from "./app.js";
import { applyTheme, storedTheme } from "./theme.js";

applyTheme(storedTheme());
render(<App />, document.getElementById("app")!);
